"""Provenance for every record: code version, packages, device, host."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-cpu", "tensorflow-datasets",
            "pandas", "ray", "levi-bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, object]:
    """The git commit of the project checkout and whether it had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                                    check=True).stdout.strip())
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def node() -> dict[str, object]:
    """The machine that runs this process: host name, and under Ray its IP and node id."""
    out: dict[str, object] = {"host": platform.node()}
    try:
        ray = sys.modules.get("ray")  # never import Ray just to ask
        if ray is not None and ray.is_initialized():
            ctx = ray.get_runtime_context()
            out["ray_node_id"] = ctx.get_node_id()
            out["ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - provenance must never fail a job
        pass
    return out


def device() -> dict[str, object]:
    """The accelerator jax sees in this process (the worker's, not the driver's)."""
    import jax

    d = jax.devices()[0]
    return {"platform": d.platform, "kind": getattr(d, "device_kind", ""), "count": jax.device_count(),
            "host": platform.node()}
