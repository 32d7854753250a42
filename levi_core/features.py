"""Frozen-feature cache: a large model's pooled layer states, computed once and reused.

Every method whose large model is frozen (``lp``, ``levi*``, ``a3``, ``layer/<k>``) only reads
the large model's pooled hidden states, so they are computed once per

    (large-model checkpoint, dataset fingerprint, split role, pooling, max_len)

and every later job reads them from disk instead of running the backbone at each step.

* Pre-trained (or fixed random "pre-trained") backbones: under ``settings["cache_dir"]``
  (``<cache_dir>/features/<sha256 of the key fields>.npz``), content-addressed by the key above;
  one file per role. Writes are atomic (a temporary file in the same folder, then
  ``os.replace``), so concurrent jobs computing the same entry never see a partial file.
* Fine-tuned models (``ft``, ``ht``, ``lora``): the job that trains the model already runs it on
  every split to write its predictions, so it writes the pooled states at the same time into
  its own workdir (``features.npz`` + ``features.json``); dependants (``levi``, ``levi/ft``,
  ``levi/lora``) read them from their dependency's folder.

Stored arrays are ``[S, N, D]`` float16 (S = number of states: the embedding output, then one
per block; see ``levi_core.methods.large.select_states``), read with ``allow_pickle=False``.
float16 halves the disk and memory for the cached states; pooled states are O(1)-scale, so the
rounding (relative 5e-4) is far below what training noise does to the heads.

``BUILDS`` counts cache misses (entries actually computed) per process, for tests and the
benchmark.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from levi_core.errors import ConfigError

FEATURES_FILE = "features.npz"
FEATURES_META = "features.json"
STORE_DTYPE = np.float16
BUILDS: list[dict] = []  # one entry per computed (not read) cache entry


def cache_key(fields: Mapping[str, object]) -> str:
    """sha256 of the key fields, canonical JSON (sorted keys)."""
    blob = json.dumps(dict(fields), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read(path: Path) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["states"]
    except (OSError, KeyError, ValueError):  # missing or corrupt: recompute
        return None


def cached_states(
    cache_dir: str | Path | None,
    base_key: Mapping[str, object],
    roles: Sequence[str],
    compute: Callable[[list[str]], Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """role -> [S, N, D] states for a frozen pre-trained model.

    ``base_key`` holds the checkpoint id, dataset fingerprint, pooling and max_len; the role is
    added per entry. ``compute(missing_roles)`` runs the backbone on the roles not cached yet.
    With ``cache_dir=None`` nothing is stored (every call computes).
    """
    out: dict[str, np.ndarray] = {}
    paths = {}
    for role in roles:
        if cache_dir is None:
            continue
        key = cache_key({**base_key, "role": role})
        paths[role] = Path(cache_dir) / "features" / f"{key}.npz"
        got = _read(paths[role])
        if got is not None:
            out[role] = got
    missing = [r for r in roles if r not in out]
    if missing:
        fresh = compute(missing)
        for role in missing:
            arr = np.asarray(fresh[role]).astype(STORE_DTYPE)
            BUILDS.append({**base_key, "role": role})
            if cache_dir is not None:
                _atomic_savez(paths[role], states=arr)
            out[role] = arr
    return out


def write_workdir_states(workdir: Path, states: Mapping[str, np.ndarray], meta: Mapping) -> None:
    """A trained model's pooled states for every role, written by the job that trained it."""
    _atomic_savez(
        Path(workdir) / FEATURES_FILE,
        **{r.replace("/", "__"): np.asarray(a).astype(STORE_DTYPE) for r, a in states.items()},
    )
    (Path(workdir) / FEATURES_META).write_text(json.dumps(dict(meta), sort_keys=True, default=str))


def read_workdir_states(workdir: Path, expect: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The states a dependency job wrote; ``expect`` (fingerprint, pooling, max_len, backbone)
    must match what it recorded, else the dependency was run on other data or settings."""
    meta_path = Path(workdir) / FEATURES_META
    if not meta_path.is_file():
        raise ConfigError(f"{workdir} has no {FEATURES_META}: the dependency job wrote no features")
    meta = json.loads(meta_path.read_text())
    bad = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
    if bad:
        raise ConfigError(f"features in {workdir} were computed for other settings: {bad}")
    with np.load(Path(workdir) / FEATURES_FILE, allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}
