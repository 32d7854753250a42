"""Running jobs, as their workers report them: one heartbeat file per job that is running now.

A worker (``bench.worker.execute``) writes ``<results>/<preset>/running/<job_id>.json`` when a
job starts: the job, host, pid, start time, the phase it is in (``levi_core.progress``'s
phases: ``features``, ``train_large``, ``train_heads``, ``evaluate`` ...) and the latest count
of that phase's progress bar with its rate and ETA. A heartbeat rewrites it every
``HEARTBEAT_S`` and the worker removes it when the job ends, so ``bench status`` can tell a job
that runs from one that waits, and a file left by a killed worker (no heartbeat for
``STALE_S``, or its process gone on this host) from a live one. Heartbeats only inform: the
drivers' job leases (``bench.ledger``) decide who runs a job.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from levi_core import progress

HEARTBEATS = "running"
HEARTBEAT_S = 10.0
STALE_S = 60.0


def heartbeat_path(root: Path, job_id: str) -> Path:
    """Where the heartbeat of ``job_id`` lives under a results root (``results/<preset>``)."""
    return Path(root) / HEARTBEATS / f"{job_id}.json"


class Heartbeat:
    """The heartbeat file a worker keeps while its job runs (a context manager)."""

    def __init__(self, path: str | Path, job_id: str, describe: str):
        self.path = Path(path)
        self.info: dict[str, Any] = {
            "job_id": job_id, "job": describe, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.time(), "phase": "starting", "phase_since": time.time(), "bar": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="heartbeat")
        self._unlisten = lambda: None

    def __enter__(self) -> "Heartbeat":
        self._write()
        self._unlisten = progress.listen(self._hear)
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._unlisten()
        self._stop.set()
        with self._lock:
            try:
                self.path.unlink()
            except OSError:
                pass

    def _hear(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            if "phase" in event and event["phase"] != self.info["phase"]:
                self.info.update(phase=event["phase"], phase_since=time.time())
            if "bar" in event:
                self.info["bar"] = None if event["bar"] is None else {
                    k: event.get(k) for k in ("bar", "n", "total", "unit", "elapsed")}
        self._write()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._write()

    def _write(self) -> None:
        """Atomically (a reader never sees half a file); a failure to write is ignored: the
        heartbeat only informs ``bench status``, and the job must go on."""
        with self._lock:
            if self._stop.is_set():
                return
            info = {**self.info, "updated": time.time()}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(info))
                os.replace(tmp, self.path)
            except OSError:
                pass


def stale_reason(info: Mapping[str, Any], now: float | None = None) -> str | None:
    """Why a heartbeat file no longer stands for a running job, or None while it does."""
    now = time.time() if now is None else now
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return f"its worker (pid {info['pid']}) is gone"
        except (PermissionError, KeyError, ValueError, TypeError):
            pass
    quiet = now - float(info.get("updated", 0))
    if quiet > STALE_S:
        return f"no heartbeat for {progress.duration(quiet)}"
    return None


def running(root: Path) -> list[dict[str, Any]]:
    """Every heartbeat under a results root, each with ``stale`` (None, or why it is stale)."""
    folder = Path(root) / HEARTBEATS
    out = []
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):  # removed or replaced this instant
            continue
        if isinstance(info, dict) and "job_id" in info:
            out.append({**info, "stale": stale_reason(info)})
    return out


def describe(info: Mapping[str, Any], now: float | None = None) -> str:
    """One line of ``bench status``: the job, its phase (with its progress), since when, where."""
    now = time.time() if now is None else now
    started = time.strftime("%H:%M:%S UTC", time.gmtime(info.get("started", now)))
    where = f"host {info.get('host')} pid {info.get('pid')}"
    if info.get("stale"):
        return (f"{info.get('job')}: stale heartbeat ({info['stale']}; last phase "
                f"{info.get('phase')}, started {started}, {where}); the next `bench run` runs it "
                f"again")
    text = f"{info.get('job')}: {info.get('phase')}"
    bar = info.get("bar")
    if bar and bar.get("bar"):
        text += " (" + progress.status(bar["bar"], int(bar.get("n") or 0), bar.get("total"),
                                       bar.get("unit") or "it", float(bar.get("elapsed") or 0)) + ")"
    text += (f" for {progress.duration(now - info.get('phase_since', now))}, started {started} "
             f"({progress.duration(now - info.get('started', now))} ago), {where}")
    return text
