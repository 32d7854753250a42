"""Where a preset's time goes: seconds per phase, per method, from the records.

Every record carries ``timings``: ``load_s`` (reading the dataset), ``run_s`` (the method),
``compile_s`` (XLA compilation inside it), ``total_s`` (the whole job in its worker),
``started`` and ``phases`` (``levi_core.progress``: ``features`` = the large model's layer
states or HT's frozen boundary, ``train_large``, ``evaluate``, ``train_heads``). ``bench status
--timings`` prints them as one table, so a budget such as "Table 1's MovieLens column within
150 minutes" can be read off, with the harness's own share (the wall-clock span of the jobs
minus their summed run times: scheduling, records, process start) on the last line.
"""

from __future__ import annotations

import calendar
import time
from typing import Iterable, Mapping

import pandas as pd

PHASES = ("features", "train_large", "evaluate", "train_heads")


def _start(rec: Mapping) -> float | None:
    s = (rec.get("timings") or {}).get("started")
    if not s:
        return None
    return float(calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")))


def phase_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per method: jobs, minutes per phase, compile, other (the rest of the method's
    run), load and the jobs' total; a last row sums them."""
    rows = []
    for rec in records:
        t = rec.get("timings") or {}
        if "total_s" not in t:
            continue
        phases = t.get("phases") or {}
        row = {"method": rec["job"]["method"], "jobs": 1}
        for p in PHASES:
            row[p] = phases.get(p, 0.0)
        row["compile"] = t.get("compile_s", 0.0) or 0.0
        row["other"] = max(0.0, (t.get("run_s") or 0.0) - sum(phases.values()))
        row["load"] = t.get("load_s", 0.0) or 0.0
        row["total"] = t["total_s"]
        rows.append(row)
    cols = ["jobs", *PHASES, "compile", "other", "load", "total"]
    if not rows:
        return pd.DataFrame(columns=["method", *cols])
    frame = pd.DataFrame(rows).groupby("method", sort=False)[cols].sum()
    frame.loc["all jobs"] = frame.sum()
    minutes = [c for c in cols if c != "jobs"]
    frame[minutes] = (frame[minutes] / 60.0).round(1)
    frame["jobs"] = frame["jobs"].astype(int)
    return frame.reset_index()


def harness_minutes(records: Iterable[Mapping]) -> tuple[float, float, float] | None:
    """(wall-clock span of the jobs, the part of it when no job ran, job-minutes per minute of
    the rest), minutes; None without timestamps.

    The idle part is the span less the union of the jobs' intervals, so jobs running side by
    side on several workers are not counted twice, and a pause between two sessions shows as
    idle time rather than vanishing."""
    spans = sorted((s, s + rec["timings"]["total_s"]) for rec in records
                   if (s := _start(rec)) is not None and "total_s" in (rec.get("timings") or {}))
    if not spans:
        return None
    wall = max(e for _, e in spans) - spans[0][0]
    covered, reach = 0.0, spans[0][0]
    for s, e in spans:
        if e > reach:
            covered += e - max(s, reach)
            reach = e
    busy = sum(e - s for s, e in spans)
    return wall / 60.0, max(0.0, wall - covered) / 60.0, busy / covered if covered else 0.0


def report(records: list[Mapping]) -> str:
    """The text ``bench status --timings`` prints."""
    frame = phase_frame(records)
    if frame.empty:
        return "no finished jobs with timings"
    out = ["minutes per phase (features = layer states / HT boundary; compile overlaps the phases)",
           frame.to_string(index=False)]
    h = harness_minutes(records)
    if h is not None:
        out.append(f"wall clock from the first job's start to the last job's end: {h[0]:.1f} min, "
                   f"of which no job was running (harness, scheduling, pauses between runs): "
                   f"{h[1]:.1f} min; while jobs ran, {h[2]:.1f} ran at once on average")
    return "\n".join(out)
