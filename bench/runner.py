"""The scheduler: runs a table's jobs in dependency order, skipping what is finished.

A job is *ready* when, for each method it depends on, every run of that method's
hyperparameter grid (same dataset, seed, preset) is settled; it then receives the artifact folders of the selected runs
(selection on id_val only). A finished record is kept when its dependencies' selection is still
the one it was computed from; otherwise it is *stale* and runs again. Failed jobs are retried
by the next ``bench run``; done and diverged jobs never are.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence, TextIO

from levi_core.methods import get_method

from bench import provenance
from bench.heartbeats import heartbeat_path
from bench.job_settings import data_dir_for, expected_settings, job_settings
from bench.jobs import REFERENCE_SEED, Job, reuses_seed0
from bench.ledger import DONE, FAILED, FINISHED, NOT_A_FILE, SCHEMA_VERSION, Ledger
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


# How often a driver looks again at jobs that another driver is running: short enough that a
# dependent starts soon after its dependency's record appears, long enough to cost nothing.
POLL_S = 0.5
# The dependency name under which a ``reuses_seed0`` job gets seed 0's selected run: its
# hyperparameters are the ones this job runs with.
SEED0_DEP = "@seed0"


def reusable(rec: Mapping[str, Any], dep_ids: Mapping[str, str], settings: Mapping | None) -> str | None:
    """None when a finished record can be kept; else why it is stale."""
    if (rec.get("deps") or {}) != dep_ids:
        return "its dependencies' selection changed"
    if rec.get("settings") != settings:
        return "it ran under other settings"
    return None


def selected_dependencies(job: Job, jobs_by_group: Mapping[tuple, Sequence[Job]],
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
        recs = [records[m.id] for m in members]
        if any(r.get("state") == NOT_HERE for r in recs):  # a part of the grid is no selection
            return "blocked", (f"its hyperparameters are selected on seed {REFERENCE_SEED}, "
                               f"whose {job.method} runs have not all finished in this results "
                               f"folder: run --seeds {REFERENCE_SEED} first, or add it to --seeds")
        best = select_record(recs)
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


# The state of a stand-in for a seed-0 run read from outside the plan (``Scheduler``'s
# ``context``) that has no finished record: the jobs that reuse its selection are blocked, as
# a selection over part of the grid could pick another value than the whole grid would.
NOT_HERE = "not in this results folder"


def seed0_context(planned: Sequence[Job], every_job: Sequence[Job]) -> list[Job]:
    """The seed-0 runs, outside ``planned``, whose selection a planned job reuses (``--seeds
    1,2`` on a table whose later seeds take seed 0's hyperparameters): their finished records
    are read so that the later seeds can run, or be kept, without planning seed 0 again."""
    wanted = {(j.dataset, j.method, j.preset) for j in planned if reuses_seed0(j)}
    ids = {j.id for j in planned}
    return [j for j in every_job if j.seed == REFERENCE_SEED and j.id not in ids
            and (j.dataset, j.method, j.preset) in wanted]


def blocked_record(job: Job) -> dict[str, Any]:
    """What stands for a blocked job among the settled records (never written): its
    dependents see it settled without a finished run, so they are blocked in turn."""
    return {"job_id": job.id, "state": "blocked", "metrics": {}}


@dataclass(frozen=True)
class Launch:
    """A job whose dependencies are settled, with the run selected for each of them."""

    job: Job
    deps: Mapping[str, Job]  # dependency name -> its selected job (``SEED0_DEP`` included)

    @property
    def dep_ids(self) -> dict[str, str]:
        return {name: dj.id for name, dj in self.deps.items()}


@dataclass
class NextSteps:
    """What ``next_steps`` decided for each pending job; every one is in exactly one of
    ``launch``, ``reuse``, ``wait`` and ``blocked`` (``stale`` names those of ``launch`` whose
    finished record is not kept)."""

    launch: list[Launch] = field(default_factory=list)
    reuse: list[tuple[Job, dict[str, Any]]] = field(default_factory=list)  # finished record kept
    wait: list[Job] = field(default_factory=list)
    blocked: list[tuple[Job, str]] = field(default_factory=list)  # (job, why)
    stale: list[tuple[Job, str]] = field(default_factory=list)  # (job, why it runs again)


def next_steps(pending: Sequence[Job], groups: Mapping[tuple, Sequence[Job]],
               settled: Mapping[str, dict], records: Mapping[str, dict],
               wanted: Mapping[str, Mapping | None], elsewhere: Collection[str] = ()) -> NextSteps:
    """What to do next with each pending job: a pure function (no files, no executor).

    ``groups``: every planned job by ``Job.group`` (the runs of one method's hyperparameter
    values on one dataset, seed and preset); ``settled``: the records that count as settled for
    dependency purposes (finished records kept, and whatever this session produced, failed
    included, so that dependents are never waited on forever); ``records``: the records found
    on disk at the last look; ``wanted``: the settings a record of each dataset must hold to be
    kept; ``elsewhere``: jobs whose lease another live driver holds, waited on, never launched.

    One pass in ``pending`` order: a job reused or blocked earlier in the pass counts as
    settled for the jobs after it (the plan lists dependencies first)."""
    steps = NextSteps()
    known = dict(settled)
    for job in pending:
        if job.id in elsewhere:
            steps.wait.append(job)
            continue
        status, info = selected_dependencies(job, groups, known)
        if status == "wait":
            steps.wait.append(job)
            continue
        if status == "blocked":
            steps.blocked.append((job, str(info)))
            known[job.id] = blocked_record(job)
            continue
        launch = Launch(job, info)
        rec = records.get(job.id)
        if rec is not None and rec["state"] in FINISHED:
            why = reusable(rec, launch.dep_ids, wanted[job.dataset])
            if why is None:
                steps.reuse.append((job, rec))
                known[job.id] = rec
                continue
            steps.stale.append((job, why))
        steps.launch.append(launch)
    return steps


class Scheduler:
    """Runs a table's jobs on an executor, in dependency order, sharing a results folder with
    any other live driver; ``run`` returns the summary.

    What to run next is decided by ``next_steps``; this class does the rest: it reads and
    writes records, takes and releases job leases, submits to the executor and reports."""

    def __init__(self, jobs: list[Job], spec: TableSpec, preset: str, executor, ledger: Ledger,
                 data_dir: str | Mapping[str, str] | None = None, out: TextIO | None = None,
                 on_record: Callable[[dict], None] | None = None,
                 context: Sequence[Job] = ()) -> None:
        self.spec, self.preset, self.executor, self.ledger = spec, preset, executor, ledger
        self.jobs, self.data_dir, self.on_record = jobs, data_dir, on_record
        self.context = list(context)  # read, never run: see ``seed0_context``
        # stderr is looked up per run, not at import: a caller (or a test) may have replaced it
        self.out = out if out is not None else sys.stderr
        self.summary = RunSummary(planned=len(jobs))
        self.groups: dict[tuple, list[Job]] = defaultdict(list)
        for j in [*jobs, *self.context]:
            self.groups[j.group].append(j)
        self.settled: dict[str, dict] = {}  # see ``next_steps``
        self.existing: dict[str, dict] = {}  # the records on disk at our last look
        settings = job_settings(spec, preset)
        self.settings_map = settings.as_dict()
        self.wanted = {j.dataset: expected_settings(settings, j.dataset)
                       for j in [*jobs, *self.context]}
        self.cache_dir = str(ledger.root / "cache")
        self.commit = provenance.code_version()
        self.pending: list[Job] = list(jobs)  # not decided yet, or another driver runs them
        self.ready: deque[Launch] = deque()  # to start when the executor has a free slot
        # submitted jobs: the job, its dependencies' ids, the hyperparameters it runs with
        self.in_flight: dict[str, tuple[Job, dict[str, str], dict]] = {}
        self.elsewhere: dict[str, Job] = {}  # leased by another live driver: wait for its record
        self.other_drivers: set[str] = set()  # the live drivers already named in the output
        self.to_run = 0
        self.done_count = 0
        self.t_start = 0.0  # when this run started its jobs: the ETA of the progress lines

    # ------------------------------------------------------------------ the session
    def run(self) -> RunSummary:
        self._read_existing()
        self.t_start = time.perf_counter()
        self.ledger.open_session()
        try:
            self._advance()
        except BaseException:
            self.ledger.close_session()
            raise
        print(f"{self.spec.name} [{self.preset}]: {len(self.jobs)} jobs, {self.summary.skipped} "
              f"already finished, running the rest on {self.executor.name}", file=self.out)
        try:
            while self.executor.pending() or self.elsewhere:
                if not self.executor.pending():
                    time.sleep(POLL_S)
                    result = None
                else:
                    result = self.executor.wait(timeout=POLL_S if self.elsewhere else None)
                if result is not None:
                    self._record(result)
                self._poll_elsewhere()
                self._advance()
        finally:
            self.ledger.close_session()  # releases the leases of jobs that did not finish here
        for j in self.pending:  # only possible if a dependency never settled
            self.summary.blocked.append(f"{j.describe()}: dependencies never settled")
        return self.summary

    def _read_existing(self) -> None:
        """Load the finished records of the planned jobs; report the ones that cannot count."""
        ledger, out = self.ledger, self.out
        ledger.remove_partial_writes()
        for j in self.jobs:
            r = ledger.read(j.id)
            if r is not None:
                self.existing[j.id] = r
        for j in self.context:  # finished under this preset's settings, or a stand-in
            r = ledger.read(j.id)
            keep = (r is not None and r["state"] in FINISHED
                    and r.get("settings") == self.wanted[j.dataset])
            self.settled[j.id] = r if keep else {**blocked_record(j), "state": NOT_HERE}
        for path, why in ledger.corrupt:
            aside = " (the folder is renamed aside, kept)" if why == NOT_A_FILE else ""
            print(f"warning: corrupt record {path} ({why}); its job will run again{aside}",
                  file=out)
        for path, version in ledger.outdated:
            print(f"warning: record {path} has schema version {version}, this harness writes "
                  f"{SCHEMA_VERSION}; it is not mixed into tables and its job will run again",
                  file=out)

    # ------------------------------------------------------------------ deciding
    def _decide(self) -> None:
        """Apply ``next_steps`` to the pending jobs until nothing more settles: one pass
        settles a dependency only for the jobs after it, and a job another driver recorded
        comes back at the end of ``pending``, after the jobs that wait for it (without the
        second pass they would wait on a settled dependency, and the run would end with them
        undecided)."""
        while True:
            steps = next_steps(self.pending, self.groups, self.settled, self.existing,
                               self.wanted, self.elsewhere)
            for j, why in steps.blocked:
                self.summary.blocked.append(f"{j.describe()}: {why}")
                self.settled[j.id] = blocked_record(j)
            for j, rec in steps.reuse:
                self.settled[j.id] = rec
                self.summary.skipped += 1
            for j, why in steps.stale:
                self.summary.stale += 1
                print(f"stale: {j.describe()} ({why}); re-running", file=self.out)
            self.ready.extend(steps.launch)
            self.pending = steps.wait
            if not (steps.reuse or steps.blocked) or not self.pending:
                return

    def _advance(self) -> None:
        self._decide()
        while self._launch():  # a record written by another driver meanwhile: decide again
            self._decide()

    # ------------------------------------------------------------------ running
    def _launch(self) -> bool:
        """Start ready jobs while the executor has free slots, each under its lease; True when
        another driver's record changed what a job needs (then decide again)."""
        ledger, executor = self.ledger, self.executor
        recheck = False
        while self.ready and executor.pending() < executor.slots():
            launch = self.ready.popleft()
            j = launch.job
            holder = ledger.take_lease(j.id)
            if holder is not None:
                self.elsewhere[j.id] = j
                self.pending.append(j)  # waited on until the lease is free
                self._say_elsewhere(holder)
                continue
            latest = ledger.read(j.id)  # another driver may have recorded it since we looked
            if latest != self.existing.get(j.id):
                ledger.release_lease(j.id)
                self._took_over(j, latest)
                recheck = True
                continue
            self._submit(launch)
        return recheck

    def _say_elsewhere(self, holder: Mapping[str, Any]) -> None:
        driver = str(holder.get("driver"))
        if driver not in self.other_drivers:  # one line per other driver, not one per job
            self.other_drivers.add(driver)
            print(f"elsewhere: another bench run (host {holder.get('host')}, pid "
                  f"{holder.get('pid')}) is running jobs of this table; this one waits "
                  f"for their records (counted in the summary)", file=self.out)

    def _submit(self, launch: Launch) -> None:
        j, ledger = launch.job, self.ledger
        fields = j.fields()
        if SEED0_DEP in launch.deps:  # seed 0's selected hyperparameters, resolved now
            fields["hparams"] = launch.deps[SEED0_DEP].hparams_dict
        dep_ids = launch.dep_ids
        payload = {
            "job_id": j.id,
            "config": {**fields, "settings": self.settings_map, "cache_dir": self.cache_dir,
                       "data_dir": data_dir_for(j.dataset, self.data_dir),
                       # outlives a killed attempt (the workdir does not): training resumes
                       "resume_dir": str(ledger.resume_dir(j.id))},
            "workdir": str(ledger.fresh_workdir(j.id)),
            "deps": {name: str(ledger.artifacts_dir(dj.id)) for name, dj in launch.deps.items()
                     if name != SEED0_DEP},
            "dep_ids": dep_ids,
            "describe": j.describe(),
            "heartbeat": str(heartbeat_path(ledger.root, j.id)),
        }
        self.in_flight[j.id] = (j, dep_ids, fields["hparams"])
        self.executor.submit(payload)
        self.to_run += 1

    def _record(self, result: Mapping[str, Any]) -> None:
        """Write a finished job's record, release its lease and report it."""
        job, dep_ids, hparams = self.in_flight.pop(result["job_id"])
        record = make_record(job, result, dep_ids=dep_ids, commit=self.commit)
        folder = data_dir_for(job.dataset, self.data_dir)
        if folder:  # where its data came from: the hints of a later report repeat it
            record["provenance"]["data_dir"] = str(folder)
        if hparams != job.hparams_dict:
            record["extras"]["hparams_from_seed0"] = hparams
        self.ledger.write(record)
        self.ledger.drop_resume_state(job.id)  # the record ends the job: nothing left to resume
        self.ledger.release_lease(job.id)
        self.settled[job.id] = record
        self.summary.ran += 1
        self.summary.states[record["state"]] += 1
        self.done_count += 1
        elapsed = time.perf_counter() - self.t_start
        waiting = len(self.pending) - len(self.elsewhere)  # another driver's jobs are not counted
        print(format_progress(self.done_count, self.to_run + waiting + len(self.ready), job, record,
                              elapsed), file=self.out)
        if self.on_record:
            self.on_record(record)

    # ------------------------------------------------------------------ other drivers
    def _took_over(self, j: Job, latest: dict | None) -> None:
        """Another driver settled (or gave up) a job: use its record, or decide on it again."""
        if j in self.pending:
            self.pending.remove(j)
        if latest is not None and latest["state"] == FAILED:
            self.settled[j.id] = latest  # its failure this session; the next `bench run` retries it
            self.summary.elsewhere += 1
            return
        if latest is None:
            self.existing.pop(j.id, None)
        else:
            self.existing[j.id] = latest
            self.summary.elsewhere += 1
        self.pending.append(j)

    def _poll_elsewhere(self) -> None:
        for job_id, j in list(self.elsewhere.items()):
            if self.ledger.lease_holder(job_id) is None:  # released, or its driver died: look again
                del self.elsewhere[job_id]
                self._took_over(j, self.ledger.read(job_id))


def run_jobs(jobs: list[Job], spec: TableSpec, preset: str, executor, ledger: Ledger,
             data_dir: str | Mapping[str, str] | None = None, out: TextIO | None = None,
             on_record: Callable[[dict], None] | None = None,
             context: Sequence[Job] = ()) -> RunSummary:
    """Run ``jobs`` (one table's plan under ``preset``) on ``executor``, recording into
    ``ledger``; ``context``: finished runs outside ``jobs`` that they may read
    (``seed0_context``). See ``Scheduler``."""
    return Scheduler(jobs, spec, preset, executor, ledger, data_dir, out, on_record,
                     context).run()


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

