"""The scheduler: runs a table's jobs in dependency order, skipping what is finished.

A job is *ready* when, for each method it depends on, every run of that method's grid (same
dataset, seed, preset) is settled; it then receives the artifact folders of the selected runs
(selection on id_val only). A finished record is kept when its dependencies' selection is still
the one it was computed from; otherwise it is *stale* and runs again. Failed jobs are retried
by the next ``bench run``; done and diverged jobs never are.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TextIO

from levi_core.data.base import declaration
from levi_core.methods import get_method
from levi_core.settings import Settings, settings_dict

from bench import provenance
from bench.jobs import REFERENCE_SEED, Job, reuses_seed0
from bench.leases import lease_path
from bench.ledger import DONE, FAILED, FINISHED, NOT_A_FILE, SCHEMA_VERSION, Ledger
from bench.presets import get_preset
from bench.selection import select_record
from bench.specs import TableSpec


@dataclass
class RunSummary:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    states: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    blocked: list[str] = field(default_factory=list)
    stale: int = 0
    elsewhere: int = 0  # jobs another `bench run` on the same results folder ran meanwhile


POLL_S = 0.5
SEED0_DEP = "@seed0"  # the dependency name of seed 0's selected run (``reuses_seed0`` jobs)  # how often a driver looks at jobs that another driver is running


def job_settings(spec: TableSpec, preset: str) -> Settings:
    """The typed settings every job of a table runs with under a preset: the preset's (unknown
    keys fail)."""
    return get_preset(preset).typed_settings()


def expected_settings(settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """What a job's record must hold to be reused: its dataset modality's settings."""
    return settings_dict(settings.for_modality(declaration(dataset_id).modality))


def reusable(rec: Mapping[str, Any], dep_ids: Mapping[str, str], settings: Mapping | None) -> str | None:
    """None when a finished record can be kept; else why it is stale."""
    if (rec.get("deps") or {}) != dep_ids:
        return "its dependencies' selection changed"
    if rec.get("settings") != settings:
        return "it ran under other settings"
    return None


def selected_dependencies(job: Job, jobs_by_group: Mapping[tuple, list[Job]],
                          records: Mapping[str, dict]) -> tuple[str, dict[str, Job] | str]:
    """('wait', reason) | ('blocked', reason) | ('ready', {dep method: selected job}); a job
    that reuses seed 0's hyperparameters also gets seed 0's selected run as ``SEED0_DEP``."""
    chosen: dict[str, Job] = {}
    if reuses_seed0(job):
        members = jobs_by_group.get((job.dataset, job.method, REFERENCE_SEED, job.preset), [])
        if not members:
            return "blocked", (f"its hyperparameters are selected on seed {REFERENCE_SEED}, "
                               f"which is not in the plan: add --seeds {REFERENCE_SEED}")
        if any(m.id not in records for m in members):
            return "wait", f"{job.method} seed {REFERENCE_SEED}"
        best = select_record([records[m.id] for m in members])
        if best is None:
            return "blocked", f"no run of {job.method} seed {REFERENCE_SEED} finished"
        chosen[SEED0_DEP] = next(m for m in members if m.id == best["job_id"])
    for dep in get_method(job.method).depends_on:
        members = jobs_by_group.get((job.dataset, dep, job.seed, job.preset), [])
        if not members:
            return "blocked", f"{dep} is not in the plan"
        if any(m.id not in records for m in members):
            return "wait", dep
        recs = [records[m.id] for m in members]
        best = select_record(recs)  # in the direction of the metric the records declare
        if best is None:
            return "blocked", f"no run of {dep} finished without failing or diverging"
        chosen[dep] = next(m for m in members if m.id == best["job_id"])
    return "ready", chosen


def data_dir_for(dataset_id: str, data_dir: str | Mapping[str, str] | None) -> str | None:
    """The local folder of a dataset: one folder for all, or a per-dataset-name mapping."""
    if data_dir is None or isinstance(data_dir, str):
        return data_dir
    name = dataset_id.partition(":")[0]
    return data_dir.get(name, data_dir.get("*"))


def run_jobs(jobs: list[Job], spec: TableSpec, preset: str, executor, ledger: Ledger,
             data_dir: str | Mapping[str, str] | None = None, out: TextIO | None = None,
             on_record: Callable[[dict], None] | None = None) -> RunSummary:
    out = out if out is not None else sys.stderr  # looked up per call: stderr may be replaced
    summary = RunSummary(planned=len(jobs))
    by_group: dict[tuple, list[Job]] = defaultdict(list)
    for j in jobs:
        by_group[j.group].append(j)
    # records settled for dependency purposes in this invocation: finished ones on disk, and
    # whatever this run produces (failed included, so dependents are not waited on forever)
    settled: dict[str, dict] = {}
    existing: dict[str, dict] = {}
    ledger.remove_partial_writes()
    for j in jobs:
        r = ledger.read(j.id)
        if r is not None:
            existing[j.id] = r
    for path, why in ledger.corrupt:
        aside = " (the folder is renamed aside, kept)" if why == NOT_A_FILE else ""
        print(f"warning: corrupt record {path} ({why}); its job will run again{aside}", file=out)
    for path, version in ledger.outdated:
        print(f"warning: record {path} has schema version {version}, this harness writes "
              f"{SCHEMA_VERSION}; it is not mixed into tables and its job will run again", file=out)

    settings = job_settings(spec, preset)
    settings_map = settings.as_dict()
    cache_dir = str(ledger.root / "cache")
    wanted_settings = {j.dataset: expected_settings(settings, j.dataset) for j in jobs}
    commit = provenance.code_version()
    waiting = list(jobs)
    in_flight: dict[str, tuple[Job, dict[str, str], dict]] = {}  # job, dep ids, hparams run
    ready: deque[tuple[Job, dict[str, Job], dict[str, str]]] = deque()  # to start when a slot frees
    elsewhere: dict[str, Job] = {}  # claimed by another live driver: wait for its record
    other_drivers: set[str] = set()  # the live drivers already named in the output
    to_run = 0
    t_start = time.perf_counter()
    done_count = 0

    def schedule() -> None:
        nonlocal waiting
        still: list[Job] = []
        for j in waiting:
            status, info = selected_dependencies(j, by_group, settled)
            if status == "wait":
                still.append(j)
                continue
            if status == "blocked":
                summary.blocked.append(f"{j.describe()}: {info}")
                settled[j.id] = {"job_id": j.id, "state": "blocked", "metrics": {}}
                continue
            dep_ids = {name: dj.id for name, dj in info.items()}
            rec = existing.get(j.id)
            if rec is not None and rec["state"] in FINISHED:
                why = reusable(rec, dep_ids, wanted_settings[j.dataset])
                if why is None:
                    settled[j.id] = rec
                    summary.skipped += 1
                    continue
                summary.stale += 1
                print(f"stale: {j.describe()} ({why}); re-running", file=out)
            ready.append((j, info, dep_ids))
        waiting = still

    def advance() -> None:
        schedule()
        while launch():  # a record written by another driver meanwhile: evaluate its job again
            schedule()

    def launch() -> bool:
        """Start ready jobs while the executor has free slots; a job is claimed first."""
        nonlocal to_run
        recheck = False
        while ready and executor.pending() < executor.slots():
            j, info, dep_ids = ready.popleft()
            holder = ledger.claim(j.id)
            if holder is not None:
                elsewhere[j.id] = j
                driver = str(holder.get("driver"))
                if driver not in other_drivers:  # one line per other driver, not one per job
                    other_drivers.add(driver)
                    print(f"elsewhere: another bench run (host {holder.get('host')}, pid "
                          f"{holder.get('pid')}) is running jobs of this table; this one waits "
                          f"for their records (counted in the summary)", file=out)
                continue
            latest = ledger.read(j.id)  # another driver may have recorded it since we looked
            if latest != existing.get(j.id):
                ledger.release(j.id)
                took_over(j, latest)
                recheck = True
                continue
            fields = j.fields()
            if SEED0_DEP in info:  # seed 0's selected hyperparameters, resolved now
                fields["hparams"] = info[SEED0_DEP].hparams_dict
            payload = {
                "job_id": j.id,
                "config": {**fields, "settings": settings_map, "cache_dir": cache_dir,
                           "data_dir": data_dir_for(j.dataset, data_dir)},
                "workdir": str(ledger.fresh_workdir(j.id)),
                "deps": {name: str(ledger.artifacts_dir(dj.id)) for name, dj in info.items()
                         if name != SEED0_DEP},
                "dep_ids": dep_ids,
                "describe": j.describe(),
                "lease": str(lease_path(ledger.root, j.id)),
            }
            in_flight[j.id] = (j, dep_ids, fields["hparams"])
            executor.submit(payload)
            to_run += 1
        return recheck

    def took_over(j: Job, latest: dict | None) -> None:
        """Another driver settled (or gave up) a job: use its record, or look at it again."""
        if latest is not None and latest["state"] == FAILED:
            settled[j.id] = latest  # its failure this session; the next `bench run` retries it
            summary.elsewhere += 1
            return
        if latest is None:
            existing.pop(j.id, None)
        else:
            existing[j.id] = latest
            summary.elsewhere += 1
        waiting.append(j)

    def poll_elsewhere() -> None:
        for job_id, j in list(elsewhere.items()):
            if ledger.holder(job_id) is None:  # released, or its driver died: look again
                del elsewhere[job_id]
                took_over(j, ledger.read(job_id))

    ledger.open_session()
    try:
        advance()
    except BaseException:
        ledger.close_session()
        raise
    print(f"{spec.name} [{preset}]: {len(jobs)} jobs, {summary.skipped} already finished, "
          f"running the rest on {executor.name}", file=out)
    try:
        while executor.pending() or elsewhere:
            if not executor.pending():
                time.sleep(POLL_S)
                result = None
            else:
                result = executor.wait(timeout=POLL_S if elsewhere else None)
            if result is not None:
                job, dep_ids, hparams = in_flight.pop(result["job_id"])
                record = make_record(job, result, dep_ids=dep_ids, commit=commit)
                folder = data_dir_for(job.dataset, data_dir)
                if folder:  # where its data came from: the hints of a later report repeat it
                    record["provenance"]["data_dir"] = str(folder)
                if hparams != job.hparams_dict:
                    record["extras"]["hparams_from_seed0"] = hparams
                ledger.write(record)
                ledger.release(job.id)
                settled[job.id] = record
                summary.ran += 1
                summary.states[record["state"]] += 1
                done_count += 1
                elapsed = time.perf_counter() - t_start
                print(format_progress(done_count, to_run + len(waiting) + len(ready), job, record,
                                      elapsed), file=out)
                if on_record:
                    on_record(record)
            poll_elsewhere()
            advance()
    finally:
        ledger.close_session()  # releases the claims of jobs that did not finish here
    for j in waiting:  # only possible if a dependency never settled
        summary.blocked.append(f"{j.describe()}: dependencies never settled")
    return summary


def make_record(job: Job, result: Mapping[str, Any], dep_ids: Mapping[str, str],
                commit: Mapping[str, Any]) -> dict[str, Any]:
    record = {
        "schema": SCHEMA_VERSION,
        "job_id": job.id,
        "job": job.fields(),
        "state": result.get("state", FAILED),
        "metric": result.get("metric"),
        "metrics": result.get("metrics", {}),
        "extras": result.get("extras", {}),
        "dataset_fingerprint": result.get("dataset_fingerprint"),
        "settings": result.get("settings"),
        "backbone": result.get("backbone"),  # name, and sha256 of pre-trained weights
        "deps": dict(dep_ids),
        "timings": result.get("timings", {}),
        "provenance": {**commit, **(result.get("worker") or {})},
    }
    if record["state"] == FAILED:
        record["error"] = result.get("error", "unknown error")
        if result.get("traceback"):
            record["traceback"] = result["traceback"]
    return record


def format_progress(k: int, n: int, job: Job, record: Mapping[str, Any], elapsed: float) -> str:
    state = record["state"]
    detail = ""
    if state == DONE:
        metric = record.get("metric")
        val = (record["metrics"].get("id_val") or {}).get(metric) if metric else None
        if val is not None:
            detail = f" id_val {metric}={val:.4g}"
    elif state == FAILED:
        detail = " " + record.get("error", "").splitlines()[0][:200]
    secs = record.get("timings", {}).get("total_s")
    eta = ""
    if k and n > k:
        eta = f", ~{elapsed / k * (n - k):.0f}s left"
    took = f" ({secs:.1f}s)" if isinstance(secs, (int, float)) else ""
    saved = record.get("timings", {}).get("compile_saved_s")
    if isinstance(saved, (int, float)) and saved > 0:  # the shared compilation cache's gain
        took += f" [compile cache saved {saved:.1f}s]"
    return f"[{k:>{len(str(n))}}/{n}] {state:<8} {job.describe()}{detail}{took}{eta}"

