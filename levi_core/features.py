"""Frozen-feature cache: a large model's pooled layer states, computed once and reused.

Every method whose large model is frozen (``lp``, ``levi*``, ``a3``, ``layer/<k>``) only reads
the large model's pooled hidden states, so they are computed once per

    (large-model checkpoint, dataset fingerprint, split role, pooling, max_len)

and every later job reads them from disk instead of running the backbone at each step. The
engine builds every such key in one place (``TransformerEngine.states_key``).

* Pre-trained (or fixed random "pre-trained") backbones: under ``settings["cache_dir"]``
  (``<cache_dir>/features/<sha256 of the key fields>.npz``), content-addressed by the key above;
  one file per role. Writes are atomic (a temporary file in the same folder, then
  ``os.replace``), so concurrent jobs computing the same entry never see a partial file.
* Fine-tuned models (``ft``, ``ht``, ``lora``): the job that trains the model already runs it on
  every split to write its predictions, so it writes the pooled states at the same time into
  its own workdir (``features.npz`` + ``features.json``); dependants (``levi``, ``levi/ft``,
  ``levi/lora``) read them from their dependency's folder.

Stored arrays are ``[S, N, D]`` float16 (S = number of states: the embedding output, then one
per block; see ``levi_core.engines.forward.select_states``), read with ``allow_pickle=False``.
float16 halves the disk and memory for the cached states; pooled states are O(1)-scale, so the
rounding (relative 5e-4) is far below what training noise does to the heads.

Concurrent jobs (``lp`` and ``levi/pretrained`` start together under Ray) never build one entry
twice: the builder claims ``<sha256 of the key fields but the role>.lock`` beside the entries (an exclusive
create), refreshes its time stamp while it computes, and removes it when the entries are
written; the others wait and then read them. A claim whose holder stopped refreshing it
(``STALE_S``) or whose process is gone (same host) is taken over, so a killed job never blocks
the cache. The claim only saves time: entries are written atomically and content-addressed,
so even two builders (a takeover race) write the same bytes.

A long extraction keeps its work across an interrupt: the builder computes the distinct
examples in chunks of ``CHUNK_ROWS`` (whole batches, so the numbers are those of one pass) and
writes each finished chunk atomically under ``<key>.parts/``; a builder that finds chunks there
(a killed or interrupted run's) reads them instead of computing them again, and the folder is
removed once the entries are written (``run_in_chunks``).

``BUILDS`` counts cache misses (entries actually computed) per process, for tests and the
benchmark; ``CHUNKS_REUSED`` the chunks read back from an interrupted build.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from levi_core.errors import ConfigError

FEATURES_FILE = "features.npz"
FEATURES_META = "features.json"
STORE_DTYPE = np.float16
BUILDS: list[dict] = []  # one entry per computed (not read) cache entry
CHUNKS_REUSED: list[str] = []  # chunk files read back instead of recomputed
CHUNK_ROWS = 4096  # examples per resumable chunk (rounded up to whole batches)
STALE_S = 120.0  # a claim not refreshed for this long is abandoned
HEARTBEAT_S = 10.0
POLL_S = 0.5


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
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing or corrupt
        return None


def chunk_size(batch_size: int) -> int:
    """``CHUNK_ROWS`` rounded up to whole batches: chunked and one-pass batches then coincide."""
    return max(1, -(-CHUNK_ROWS // batch_size)) * batch_size


def _read_chunk(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # cut short: again
        return None


def run_in_chunks(parts: Path | None, n: int, chunk: int,
                  compute: Callable[[int, int], Mapping[str, np.ndarray]],
                  place: Callable[[int, int, Mapping[str, np.ndarray]], None],
                  reused: Callable[[int], None] | None = None) -> None:
    """Positions ``0 .. n`` in chunks ``[lo, hi)``: ``compute(lo, hi)`` -> arrays, then
    ``place(lo, hi, arrays)``. With a ``parts`` folder, each computed chunk is first written
    there atomically (``<lo>-<hi>.npz``) and a chunk already there is read instead of computed
    (``reused(rows)`` is told), so an interrupted pass continues where it stopped."""
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        path = parts / f"{lo:010d}-{hi:010d}.npz" if parts is not None else None
        arrays = _read_chunk(path) if path is not None and path.exists() else None
        if arrays is not None:
            CHUNKS_REUSED.append(str(path))
            if reused is not None:
                reused(hi - lo)
        else:
            arrays = {k: np.asarray(v) for k, v in compute(lo, hi).items()}
            if path is not None:
                _atomic_savez(path, **arrays)
        place(lo, hi, arrays)


def cached_states(
    cache_dir: str | Path | None,
    base_key: Mapping[str, object],
    roles: Sequence[str],
    compute: Callable[..., Mapping[str, np.ndarray]],
    resumable: bool = False,
) -> dict[str, np.ndarray]:
    """role -> [S, N, D] states for a frozen pre-trained model.

    ``base_key`` holds the checkpoint id, dataset fingerprint, pooling and max_len
    (``TransformerEngine.states_key``); the role is added per entry. ``compute(missing_roles)`` runs the backbone on the roles not cached yet
    (all of them in one call, so that an example shared by several roles runs once). With
    ``resumable``, it is called as ``compute(missing_roles, parts=FOLDER)``: a folder for its
    finished chunks (``run_in_chunks``), kept across an interrupt and removed once the entries
    are written. With ``cache_dir=None`` nothing is stored (every call computes).
    """
    if cache_dir is None:
        fresh = compute(list(roles))
        out = {}
        for role in roles:
            BUILDS.append({**base_key, "role": role})
            out[role] = np.asarray(fresh[role]).astype(STORE_DTYPE)
        return out
    folder = Path(cache_dir) / "features"
    paths = {role: folder / f"{cache_key({**base_key, 'role': role})}.npz" for role in roles}
    out: dict[str, np.ndarray] = {}

    def read_all() -> list[str]:
        for role in roles:
            if role not in out:
                got = _read(paths[role])
                if got is not None:
                    out[role] = got
        return [r for r in roles if r not in out]

    if not read_all():
        return out
    lock = folder / f"{cache_key(base_key)}.lock"  # one builder per model and data
    while True:
        claim = Claim.take(lock)
        if claim is not None:
            break
        Claim.wait(lock)  # someone else builds these entries: read what they wrote
        if not read_all():
            return out
    try:
        missing = read_all()  # written between our last look and the claim
        if missing:
            parts = folder / f"{cache_key({**base_key, 'roles': missing})}.parts"
            fresh = compute(missing, parts=parts) if resumable else compute(missing)
            for role in missing:
                arr = np.asarray(fresh[role]).astype(STORE_DTYPE)
                BUILDS.append({**base_key, "role": role})
                _atomic_savez(paths[role], states=arr)
                out[role] = arr
            if resumable:
                import shutil

                shutil.rmtree(parts, ignore_errors=True)  # the entries hold it all now
    finally:
        claim.release()
    return out


def build_once(lock: Path, done, build):
    """Run ``build()`` in exactly one process of those that need the same artifact.

    Until ``done()`` holds: claim ``lock`` and build (returning ``build()``'s result), or wait
    for the live holder and look again (a dead or silent holder's claim is taken over). Returns
    None when another process built it."""
    while not done():
        claim = Claim.take(lock)
        if claim is None:
            Claim.wait(lock)
            continue
        try:
            if not done():
                return build()
        finally:
            claim.release()
    return None


class Claim:
    """An exclusive claim on building a set of cache entries: a lock file holding the
    holder's host, pid and a token, whose modification time a thread refreshes."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    @staticmethod
    def take(path: Path) -> "Claim | None":
        """The claim, or None while another live holder has it (a stale one is removed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(path)
                if not _is_stale(path, holder):
                    return None
                # abandoned: contest it once more
                _remove_if(path, holder.get("token") if holder else None)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                           "since": time.time()}, f)
            return Claim(path, token)
        return None

    @staticmethod
    def wait(path: Path) -> None:
        """Until the claim at ``path`` is released or abandoned."""
        while path.exists() and not _is_stale(path, _holder(path)):
            time.sleep(POLL_S)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        _remove_if(self.path, self.token)


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # gone, or being written this instant
        return None


def _is_stale(path: Path, holder: Mapping | None) -> bool:
    """No refresh for ``STALE_S``, or (same host) the holder's process is gone. A claim still
    being written (unreadable) is young, hence live."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return True
    if age > STALE_S:
        return True
    if holder is not None and holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            pass
    return False


def _remove_if(path: Path, token: str | None) -> None:
    """Remove the lock file if it still holds ``token`` (not a newer holder's claim); with
    ``token`` None, if it is still unreadable."""
    holder = _holder(path)
    if (holder.get("token") if holder else None) == token:
        try:
            os.unlink(path)
        except OSError:
            pass


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
