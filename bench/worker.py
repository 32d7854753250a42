"""What runs on a worker: one job through levi_core, turned into a result dict.

The same function runs in-process (``--executor local``) and as a Ray task, so both give the
same numbers for the same job. A user-fixable problem (missing data, unknown option) becomes a
``failed`` result with its message; any other exception a ``failed`` result with a traceback.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Mapping

from levi_core.errors import UserError


def execute(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job. ``payload``: job_id, config, workdir, deps (name -> artifact folder)."""
    from bench import provenance
    from levi_core.api import train_and_evaluate

    started = time.time()
    t0 = time.perf_counter()
    try:
        out = train_and_evaluate(payload["config"], payload["workdir"], payload.get("deps"))
    except UserError as e:
        out = {"state": "failed", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - a job's crash must not end the grid
        out = {"state": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    out.setdefault("timings", {})
    out["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    out["timings"]["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    out["worker"] = {"device": provenance.device(), "packages": provenance.package_versions()}
    out["job_id"] = payload["job_id"]
    return out
