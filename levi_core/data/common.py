"""Helpers shared by the dataset loaders: options, errors, caching, splits, vocabularies, images.

Nothing here imports TensorFlow or TFDS at module level; loaders import them lazily, only when a
TFDS source is actually used, so ``import levi_core.data`` stays fast.

Caching (``load_cached``): a prepared dataset is stored as one ``.npz`` (arrays only, loaded with
``allow_pickle=False``) plus one ``.json`` (task, metric, vocab sizes, shift, info) under
``<cache_dir>/<name>-<key>``, where the key is a sha256 over the loader's version, its resolved
options and a signature of the raw inputs (file sizes and content hashes, see ``file_signature``).
The cache dir is the ``cache_dir`` option, else ``$LEVI_DATA_CACHE``, else
``~/.cache/levi-bench/data``; ``cache=0`` turns caching off. Files are written atomically
(temporary name, then rename), so a killed run never leaves a half-written cache entry.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from levi_core.data import fixtures
from levi_core.data.cache import (  # noqa: F401  (the cache's API, re-exported for the loaders)
    CACHE_ENV, cache_key, cache_root, count_build, file_signature, load_cached, read_dataset,
    save_dataset,
)
from levi_core.errors import ConfigError, DataError
from levi_core.settings import coerce, type_hints

# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class DatasetOptions:
    """A loader's options as a frozen dataclass: each field is an accepted key, its default the
    value when the id does not give it, and its annotation how the id's text is read (bool, int,
    float, str: ``levi_core.settings.coerce``, the parser the settings use too). Unknown keys are
    an error (no silent typos).

    A loader subclasses it, parses with ``MyOptions.parse(name, raw)`` and declares the class
    at registration (``register_dataset(..., options=MyOptions)``), which tells the generic
    ``max_*`` options which keys the loader reads itself. ``opts[key]`` reads a value;
    ``resolved()`` is the full option dict in field order, used in cache keys and ``info``.
    """

    @classmethod
    def parse(cls, dataset: str, raw: Mapping[str, str]):
        accepted = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(accepted))
        if unknown:
            raise ConfigError(
                f"dataset {dataset!r}: unknown option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(accepted))}"
            )
        hints = type_hints(cls)
        values: dict[str, object] = {}
        for key in accepted:
            if key not in raw:
                continue
            text = raw[key]
            try:
                values[key] = coerce(hints[key], text)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"dataset {dataset!r}: option {key}={text!r} is not a valid "
                    f"{hints[key].__name__}"
                ) from None
        return cls(**values)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def resolved(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


NON_SEMANTIC = ("source", "download", "fixture", "cache", "cache_dir")


def key_options(opts: "DatasetOptions") -> dict[str, object]:
    """The options that change the prepared data (not where it comes from or is cached)."""
    return {k: v for k, v in opts.resolved().items() if k not in NON_SEMANTIC}


def resolve_source(name: str, opts: "DatasetOptions", data_dir: str | None) -> tuple[str | None, str]:
    """(data_dir, source) after the ``source`` and ``fixture`` options of a text loader:
    ``source`` is auto | files | tfds; ``fixture=1`` reads the generated fixture files."""
    source = opts["source"]
    if source not in ("auto", "files", "tfds"):
        raise DataError(f"{name}: source={source!r}; use auto, files or tfds")
    if opts["fixture"]:
        return str(fixtures.fixture_dir(name)), "files"
    return data_dir, source


def parse_list(text: str) -> list[str]:
    """``"action+comedy"`` -> ``["action", "comedy"]`` (``+`` separates: ``,`` separates options)."""
    return [t.strip() for t in text.split("+") if t.strip()]


# ---------------------------------------------------------------- errors


def missing_files_error(dataset: str, folder: str | None, expected: Sequence[str], how: str) -> DataError:
    """The one message for a missing or incomplete data dir: what is expected and where."""
    if not folder:
        where = "(no --data-dir given)"
    elif not Path(folder).is_dir():
        where = f"in {folder!r}: that folder does not exist"
    else:
        where = f"in {folder!r}"
    lines = "\n".join(f"  - {e}" for e in expected)
    return DataError(
        f"{dataset}: the raw data was not found {where}.\nExpected files:\n{lines}\n{how}"
    )


def network_available(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """A quick reachability check, bounded by ``timeout`` seconds including the DNS lookup (run
    in a daemon thread), so that a TFDS download is never attempted offline (TFDS itself retries
    for minutes)."""
    import threading

    result: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


OFFLINE_ENV = "LEVI_OFFLINE"


def offline_forced() -> bool:
    """True when ``$LEVI_OFFLINE`` is set (1/true/yes/on): no dataset download is ever tried.
    Test suites and air-gapped machines set it so that a missing dataset fails at once even
    where a network happens to be reachable."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def parse_download(dataset: str, text: object) -> str:
    """The ``download`` option: ``auto`` (default: download with TFDS when nothing is found
    locally and the network answers), ``1`` (same, but say so when offline), ``0`` (never)."""
    t = str(text).strip().lower()
    if t in ("auto", ""):
        return "auto"
    if t in ("1", "true", "yes"):
        return "1"
    if t in ("0", "false", "no"):
        return "0"
    raise ConfigError(f"dataset {dataset!r}: option download={text!r}; use auto, 1 or 0")


def can_download(host: str) -> bool:
    """Whether a TFDS download may start now: not forced offline and ``host`` answers."""
    return not offline_forced() and network_available(host)


def tfds_prepared_dir(data_dir: str | None, builder_path: str) -> Path | None:
    """The folder of an already prepared TFDS dataset (``<root>/<name>/<config>/<version>``) under
    ``data_dir``, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``, found without importing TFDS."""
    roots = [data_dir, os.environ.get("TFDS_DATA_DIR"), str(Path.home() / "tensorflow_datasets")]
    for root in roots:
        if not root:
            continue
        base = Path(root) / builder_path
        if base.is_dir():
            for version in sorted(base.iterdir(), reverse=True):
                if (version / "dataset_info.json").is_file():
                    return version
    return None


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


# ---------------------------------------------------------------- streaming large files


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal (quiet in logs, CI and tests);
    ``$LEVI_PROGRESS=1`` / ``0`` forces them on / off."""
    import sys

    forced = os.environ.get("LEVI_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


@contextlib.contextmanager
def open_text(path: Path, desc: str | None = None) -> Iterator[io.TextIOBase]:
    """Open a text file for streaming, gunzipped when its name ends in ``.gz`` (UTF-8, bad bytes
    replaced). On a terminal a tqdm bar follows the bytes read from disk (compressed bytes for
    .gz), so a multi-GB file shows how far it is; elsewhere nothing is printed."""
    import gzip

    with open(path, "rb") as raw:
        source: io.RawIOBase | io.BufferedReader = raw
        bar = None
        if progress_enabled():
            from tqdm import tqdm

            bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=desc or path.name, leave=False)
            source = io.BufferedReader(_CountingReader(raw, bar), 1 << 20)
        try:
            binary = gzip.GzipFile(fileobj=source, mode="rb") if path.name.endswith(".gz") else source
            with io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="") as text:
                yield text
        finally:
            if bar is not None:
                bar.close()


class _CountingReader(io.RawIOBase):
    """A read-only raw file wrapper that advances a tqdm bar by the bytes read."""

    def __init__(self, raw, bar):
        self._raw, self._bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._raw.readinto(b)
        if n:
            self._bar.update(n)
        return n


# ---------------------------------------------------------------- splits, vocabularies


def split_indices(n: int, val_frac: float, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded random partition of ``range(n)`` into train / id_val / id_test; each part keeps
    the input order (sorted indices), so the result depends only on n, fractions and seed."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ConfigError(f"val_frac={val_frac} and test_frac={test_frac} must be in [0,1) with sum < 1")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_frac))
    n_test = int(round(n * test_frac))
    val = np.sort(perm[:n_val])
    test = np.sort(perm[n_val : n_val + n_test])
    train = np.sort(perm[n_val + n_test :])
    return train, val, test


class Vocab:
    """String -> int32 ids built from the training split only. Index 0 is unknown (and padding):
    anything not seen in training maps to 0. Ids are assigned in sorted order of the values, so
    the vocabulary does not depend on example order."""

    def __init__(self, values: Iterable[str]):
        self.itos = ["<unk>"] + sorted(set(values))
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, values: Sequence[str]) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(v, 0) for v in values), dtype=np.int32, count=len(values))

    def encode_lists(self, lists: Sequence[Sequence[str]], length: int) -> np.ndarray:
        """Fixed-length padded id lists: [N, length], truncated, padded with 0."""
        out = np.zeros((len(lists), length), dtype=np.int32)
        get = self.stoi.get
        for i, items in enumerate(lists):
            ids = [get(v, 0) for v in items][:length]
            out[i, : len(ids)] = ids
        return out


_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric word pieces: ``"Cuckoo's Nest (1975)"`` -> cuckoo, s, nest, 1975."""
    return _TOKEN.findall(text.lower())


def subsample(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of k of n items (all when k <= 0 or k >= n)."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


# ---------------------------------------------------------------- images


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode an image file to RGB uint8 [size, size, 3]: the whole image is resized (bilinear,
    aspect ratio not kept, no crop), as the paper says "we resize all images into 224x224"."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"corrupt or unreadable image file {str(path)!r}: {e}") from None


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"corrupt or unreadable image file {str(path)!r}: {e}") from None


def label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {str(v.item() if hasattr(v, "item") else v): int(c) for v, c in zip(values, counts)}


def shared_data_dir(folder: str, marker: str, env: str, repo_root: str | Path | None = None) -> Path | None:
    """A dataset folder of this project's machines (never copied into the project), if there is
    one: ``$env``, else ``<repo root>/../shared/data/<folder>``; for a git worktree also the same
    path next to the main checkout. A folder counts when ``marker`` (a file or folder) is in it."""
    if os.environ.get(env):  # set to a non-folder (e.g. "none") to disable
        p = Path(os.environ[env])
        return p if (p / marker).exists() else None
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[2]
    roots = [root]
    git = root / ".git"
    if git.is_file():  # a worktree: ".git" says "gitdir: <main>/.git/worktrees/<name>"
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            for parent in Path(text.split(":", 1)[1].strip()).parents:
                if parent.name == ".git":
                    roots.append(parent.parent)
                    break
    for r in roots:
        p = (r / ".." / "shared" / "data" / folder).resolve()
        if (p / marker).exists():
            return p
    return None
