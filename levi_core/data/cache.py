"""The prepared-data cache: a loaded dataset saved once (``<cache>/<name>-<key>/``) and read
back in seconds, keyed by the loader's version, its semantic options and its source files'
signatures. ``LEVI_DATA_CACHE`` moves the cache; tests point it at a temporary folder."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from levi_core.data.base import Dataset, Split
from levi_core.errors import DataError


CACHE_ENV = "LEVI_DATA_CACHE"


def cache_root(option: str | None) -> Path:
    if option:
        return Path(option)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "levi-bench" / "data"


def file_signature(path: Path, full_hash_limit: int = 64 << 20) -> str:
    """Content signature of a raw file: sha256 of the whole file when it is at most
    ``full_hash_limit`` bytes; for larger files (Amazon's multi-GB TSVs) the size plus the sha256
    of the first and last 16 MiB (hashing GBs on every load would cost more than it saves)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= full_hash_limit:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f.read(16 << 20))
            f.seek(size - (16 << 20))
            h.update(f.read(16 << 20))
    return h.hexdigest()


def cache_key(name: str, version: str, options: Mapping[str, object], sources: Mapping[str, str]) -> str:
    payload = json.dumps(
        {"name": name, "version": version, "options": options, "sources": sources},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _sep(*parts: str) -> str:
    return "|".join(parts)


def save_dataset(ds: Dataset, folder: Path) -> None:
    """Write ``ds`` as ``data.npz`` + ``meta.json`` in ``folder`` (atomically). Arrays that are the
    same object in several places (e.g. an image array used by both models) are stored once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    aliases: dict[str, str] = {}
    seen: dict[int, str] = {}
    for role, split in ds.splits.items():
        for kind, mapping in (("small", split.small), ("large", split.large)):
            for key, arr in mapping.items():
                name = _sep(role, kind, key)
                if id(arr) in seen:
                    aliases[name] = seen[id(arr)]
                else:
                    seen[id(arr)] = name
                    arrays[name] = np.asarray(arr)
        arrays[_sep(role, "example_ids")] = np.asarray(split.example_ids)
        arrays[_sep(role, "labels")] = np.asarray(split.labels)
    meta = {
        "name": ds.name,
        "task": ds.task,
        "metric": ds.metric,
        "num_classes": ds.num_classes,
        "vocab_sizes": dict(ds.vocab_sizes),
        "shift": ds.shift,
        "info": ds.info,
        "roles": list(ds.splits),
        "aliases": aliases,
        "fingerprint": ds.fingerprint,
    }
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
    np.savez(tmp / "data.npz", **arrays)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process wrote it first: keep theirs
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def read_dataset(folder: Path) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "data.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for alias, target in meta["aliases"].items():
        arrays[alias] = arrays[target]
    splits = {}
    for role in meta["roles"]:
        small, large = {}, {}
        for name, arr in arrays.items():
            r, _, rest = name.partition("|")
            if r != role:
                continue
            kind, _, key = rest.partition("|")
            if kind == "small":
                small[key] = arr
            elif kind == "large":
                large[key] = arr
        splits[role] = Split(
            example_ids=arrays[_sep(role, "example_ids")],
            labels=arrays[_sep(role, "labels")],
            small=small,
            large=large,
        )
    ds = Dataset(
        name=meta["name"],
        task=meta["task"],
        metric=meta["metric"],
        splits=splits,
        num_classes=meta["num_classes"],
        vocab_sizes=meta["vocab_sizes"],
        shift=meta["shift"],
        info={**meta["info"], "cache": str(folder)},
    )
    if ds.fingerprint != meta["fingerprint"]:
        raise DataError(
            f"the cached dataset in {folder} is corrupt (fingerprint mismatch); delete that folder"
        )
    return ds


def load_cached(
    name: str,
    version: str,
    options: Mapping[str, object],
    sources: Mapping[str, str],
    build: Callable[[], Dataset],
    cache_dir: str | None,
    use_cache: bool,
) -> Dataset:
    """Return the cached dataset for (name, version, options, sources), building it once."""
    if not use_cache:
        return build()
    folder = cache_root(cache_dir) / f"{name}-{cache_key(name, version, options, sources)}"
    if (folder / "meta.json").is_file():
        try:
            return read_dataset(folder)
        except (OSError, ValueError, KeyError, DataError):
            import shutil  # unreadable or corrupt cache entry: drop it and rebuild below

            shutil.rmtree(folder, ignore_errors=True)
    ds = build()
    try:
        save_dataset(ds, folder)
    except OSError:
        return ds  # a read-only cache dir must not stop a run
    return ds


BUILD_COUNTS: dict[str, int] = {}
"""How many times each dataset was prepared from raw data in this process (tests check reuse)."""


def count_build(name: str) -> None:
    BUILD_COUNTS[name] = BUILD_COUNTS.get(name, 0) + 1
