"""A persistent XLA compilation cache shared by every job on a machine.

Each job (a Ray worker, a fresh ``bench run``) is a new process whose in-memory jit caches are
empty, so without this every job of the same shape compiles the same programs again (seconds
each for a 6-layer backbone on CPU). ``use(cache_dir)`` points JAX's persistent compilation
cache at one folder per machine and user (``folder()``: ``$XDG_CACHE_HOME/levi-bench/xla``,
by default ``~/.cache/levi-bench/xla``): the first job of a shape writes the compiled
executables there and every later job, in any process and under any results root, loads them
instead of compiling. A smoke table is mostly compilation on CPU, so a warm cache saves most of
its time (``bench run`` prints what the cache saved per job).

Why per machine and not per results root: a results root on shared storage is read by every
node of a cluster, and an XLA CPU executable is built for its host's instruction set.
``LEVI_BENCH_COMPILE_CACHE`` overrides the folder (``off``: no persistent cache); when the
folder cannot be created the job falls back to ``<cache_dir>/xla``. The folder is capped at
``MAX_BYTES`` (JAX evicts the least recently used entries).

Every program is cached whatever its compile time (JAX's default skips programs that compiled
in under a second, which are most of ours on CPU, yet together they cost tens of seconds per
job). A cached executable is the same binary XLA would build again, so results do not change.

``Meter`` counts, from JAX's own monitoring events, the seconds spent compiling and the
compile seconds the cache saved within a span of work (one job); the job's record carries
both under ``timings``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax

SUBDIR = "xla"
ENV = "LEVI_BENCH_COMPILE_CACHE"
MAX_BYTES = 4 << 30
_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_totals = {"saved_s": 0.0, "compile_s": 0.0, "hits": 0}
_lock = threading.Lock()
_listening = False
_current: str | None = None


def _on_duration(event: str, duration: float, **_) -> None:
    with _lock:
        if event == _SAVED_EVENT:
            _totals["saved_s"] += max(0.0, float(duration))
            _totals["hits"] += 1
        elif event == _COMPILE_EVENT:
            _totals["compile_s"] += float(duration)


def _listen() -> None:
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _listening = True


def folder() -> str | None:
    """The machine's folder of compiled programs: ``$LEVI_BENCH_COMPILE_CACHE`` (None when it
    is ``off``), else ``$XDG_CACHE_HOME/levi-bench/xla`` (``~/.cache`` when unset)."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        return None if chosen.lower() == "off" else str(Path(chosen).expanduser())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "levi-bench" / SUBDIR)


def use(cache_dir: str | Path | None) -> str | None:
    """Cache compiled programs in ``folder()`` for a job with a cache (nothing when
    ``cache_dir`` is None, or with ``LEVI_BENCH_COMPILE_CACHE=off``); ``<cache_dir>/xla`` when
    the machine's folder cannot be created. Returns the folder used. Switching folders within a
    process (tests) resets JAX's cache object so that the new folder takes effect."""
    global _current
    _listen()
    if cache_dir is None:
        return None
    path = folder()
    if path is None:
        return None
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:  # e.g. a read-only home on a cluster node
        path = str(Path(cache_dir) / SUBDIR)
        Path(path).mkdir(parents=True, exist_ok=True)
    if path == _current:
        return path
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if jax.default_backend() != "gpu":
        # XLA's own GPU caches write their folder into every program's compile options, hence
        # into its cache key: off elsewhere, so entries stay valid when a results root moves
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
    if _current is not None:
        try:  # the cache object is built once per process from the first folder
            from jax._src import compilation_cache as cc

            cc.reset_cache()
        except (ImportError, AttributeError):  # private API moved: the first folder stays
            pass
    _current = path
    return path


class Meter:
    """Compile seconds spent and saved (cache hits) between ``__enter__`` and ``__exit__``."""

    def __enter__(self) -> "Meter":
        _listen()
        with _lock:
            self._start = dict(_totals)
        self.compile_s = self.saved_s = 0.0
        self.hits = 0
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            self.compile_s = _totals["compile_s"] - self._start["compile_s"]
            self.saved_s = _totals["saved_s"] - self._start["saved_s"]
            self.hits = _totals["hits"] - self._start["hits"]

    def as_dict(self) -> dict[str, float]:
        return {"compile_s": round(self.compile_s, 3), "compile_saved_s": round(self.saved_s, 3),
                "compile_cache_hits": int(self.hits)}
