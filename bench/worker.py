"""What runs on a worker: one job through levi_core, turned into a result dict.

The same function runs in-process (``--executor local``) and as a Ray task, so both give the
same numbers for the same job. A user-fixable problem (missing data, unknown option) becomes a
``failed`` result with its message; any other exception a ``failed`` result with a traceback.
Neither is an exception for Ray, so Ray retries only system failures (a lost worker or node).

The result names the node that ran the job (host, IP, Ray node id). With ``BENCH_JOB_LOG`` set
to a file, every start of a job appends one line to it (``job_id host pid``): the chaos script
counts re-executions with it.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from levi_core.errors import UserError

JOB_LOG_ENV = "BENCH_JOB_LOG"


def execute(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job. ``payload``: job_id, config, workdir, deps (name -> artifact folder), and
    optionally ``describe`` (how progress lines name the job) and ``heartbeat`` (the file that
    tells ``bench status`` this job runs, and in which phase: ``bench.heartbeats``)."""
    import contextlib

    from bench import provenance
    from bench.heartbeats import Heartbeat
    from levi_core import progress

    started = time.time()
    t0 = time.perf_counter()
    node = provenance.node()
    _log_start(payload["job_id"], node)
    describe = payload.get("describe") or payload["job_id"]
    progress.set_job(describe)
    heartbeat = (Heartbeat(payload["heartbeat"], payload["job_id"], describe)
                 if payload.get("heartbeat") else contextlib.nullcontext())
    try:
        with heartbeat:
            _empty(Path(payload["workdir"]))  # a retried attempt starts from nothing
            from levi_core.api import train_and_evaluate

            out = train_and_evaluate(payload["config"], payload["workdir"], payload.get("deps"))
    except UserError as e:
        out = {"state": "failed", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - a job's crash must not end the grid
        out = {"state": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    finally:
        progress.set_job("")
    out.setdefault("timings", {})
    out["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    out["timings"]["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    out["worker"] = {"device": provenance.device(), "packages": provenance.package_versions(),
                     "node": node}
    out["job_id"] = payload["job_id"]
    return out


def _empty(workdir: Path) -> None:
    if workdir.is_dir() and any(workdir.iterdir()):
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)


def _log_start(job_id: str, node: Mapping[str, Any]) -> None:
    path = os.environ.get(JOB_LOG_ENV)
    if not path:
        return
    line = f"{job_id} {node.get('host')} {os.getpid()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent workers never mix
    finally:
        os.close(fd)
