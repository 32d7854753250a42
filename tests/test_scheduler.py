"""The scheduler's decision, ``bench.runner.next_steps``, without any executor or file; and a
results folder of the older layout (job leases under ``claims/``) resumed by this harness."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_fit, toy_ens)
from bench.executors import LocalExecutor
from bench.jobs import FROM_SEED0, Job, plan
from bench.ledger import Ledger
from bench.runner import SEED0_DEP, next_steps, run_jobs
from bench.specs import Column, MetricGrid, TableSpec

SETTINGS = {"toy": None}  # the settings a toy record must hold to be kept (as ``record`` writes)


def fit(seed: int, lr) -> Job:
    return Job.make("toy", "toy_fit", seed, {"lr": lr}, "smoke")


def ens(seed: int) -> Job:
    return Job.make("toy", "toy_ens", seed, {}, "smoke")


def groups(*jobs: Job) -> dict[tuple, list[Job]]:
    out: dict[tuple, list[Job]] = defaultdict(list)
    for j in jobs:
        out[j.group].append(j)
    return out


def record(job: Job, state: str = "done", rmse: float = 1.0, deps=None, settings=None) -> dict:
    return {"job_id": job.id, "job": job.fields(), "state": state, "metric": "rmse",
            "metrics": {"id_val": {"rmse": rmse}} if state == "done" else {},
            "deps": deps or {}, "settings": settings}


def decide(pending, plan_jobs, settled=None, records=None, elsewhere=()):
    steps = next_steps(pending, groups(*plan_jobs), settled or {}, records or {}, SETTINGS,
                       elsewhere)
    placed = ([launch.job for launch in steps.launch] + [j for j, _ in steps.reuse] + steps.wait
              + [j for j, _ in steps.blocked])
    assert sorted(j.id for j in placed) == sorted(j.id for j in pending)  # each exactly once
    return steps


def launched(steps) -> list[Job]:
    return [launch.job for launch in steps.launch]


def test_a_job_waits_for_every_run_of_its_dependency_then_gets_the_selected_one():
    fits = [fit(0, lr) for lr in (1, 2, 3)]
    jobs = [*fits, ens(0)]
    steps = decide(jobs, jobs)
    assert launched(steps) == fits and steps.wait == [ens(0)]
    # two of three runs settled: still waiting (selection needs the whole group)
    settled = {fits[0].id: record(fits[0], rmse=2.0), fits[1].id: record(fits[1], rmse=0.5)}
    assert decide([ens(0)], jobs, settled).wait == [ens(0)]
    settled[fits[2].id] = record(fits[2], rmse=0.9)
    steps = decide([ens(0)], jobs, settled)
    assert launched(steps) == [ens(0)] and steps.launch[0].deps == {"toy_fit": fits[1]}
    assert steps.launch[0].dep_ids == {"toy_fit": fits[1].id}


def test_records_kept_early_in_a_pass_count_for_the_jobs_after_them():
    fits = [fit(0, lr) for lr in (1, 2, 3)]
    jobs = [*fits, ens(0)]
    on_disk = {j.id: record(j, rmse=float(j.hparams_dict["lr"])) for j in fits}
    steps = decide(jobs, jobs, records=on_disk)
    assert [j for j, _ in steps.reuse] == fits and not steps.stale
    assert launched(steps) == [ens(0)]  # in the same pass: its dependency is settled now
    assert steps.launch[0].deps == {"toy_fit": fits[0]}  # lr=1 has the lowest id_val rmse


def test_a_finished_record_is_kept_only_under_the_same_dependencies_and_settings():
    fits = [fit(0, lr) for lr in (1, 2, 3)]
    jobs = [*fits, ens(0)]
    settled = {j.id: record(j, rmse=float(j.hparams_dict["lr"])) for j in fits}
    good = record(ens(0), deps={"toy_fit": fits[0].id})
    assert [j for j, _ in decide([ens(0)], jobs, settled, {ens(0).id: good}).reuse] == [ens(0)]
    moved = record(ens(0), deps={"toy_fit": fits[1].id})
    steps = decide([ens(0)], jobs, settled, {ens(0).id: moved})
    assert launched(steps) == [ens(0)]
    assert steps.stale == [(ens(0), "its dependencies' selection changed")]
    other = record(ens(0), deps={"toy_fit": fits[0].id}, settings={"text": {"epochs": 9}})
    steps = decide([ens(0)], jobs, settled, {ens(0).id: other})
    assert steps.stale == [(ens(0), "it ran under other settings")]
    failed = record(ens(0), state="failed", deps={"toy_fit": fits[0].id})
    steps = decide([ens(0)], jobs, settled, {ens(0).id: failed})
    assert launched(steps) == [ens(0)] and not steps.stale  # a failed job simply runs again


def test_a_seed0_selection_is_waited_for_and_handed_over():
    seed0 = [fit(0, lr) for lr in (1, 2)]
    later = fit(1, FROM_SEED0)
    jobs = [*seed0, later]
    steps = decide(jobs, jobs)
    assert launched(steps) == seed0 and steps.wait == [later]
    settled = {seed0[0].id: record(seed0[0], rmse=3.0), seed0[1].id: record(seed0[1], rmse=1.0)}
    steps = decide([later], jobs, settled)
    assert launched(steps) == [later]
    assert steps.launch[0].deps == {SEED0_DEP: seed0[1]}  # seed 0's selected run (lr=2)
    # seed 0 not planned (e.g. --seeds 1): blocked, with the fix
    steps = decide([later], [later])
    assert steps.blocked == [(later, "its hyperparameters are selected on seed 0, which is not "
                                     "in the plan: add --seeds 0")]


def test_a_failed_dependency_blocks_its_dependents():
    fits = [fit(0, lr) for lr in (1, 2, 3)]
    jobs = [*fits, ens(0)]
    settled = {j.id: record(j, state="failed") for j in fits}
    steps = decide([ens(0)], jobs, settled)
    assert steps.blocked == [(ens(0), "no run of toy_fit finished without failing or diverging")]
    assert not steps.launch and not steps.wait
    # a dependency that is not planned at all blocks too
    assert decide([ens(0)], [ens(0)]).blocked == [(ens(0), "toy_fit is not in the plan")]
    # seed 0's whole group failed: the job that reuses its selection is blocked
    later = fit(1, FROM_SEED0)
    steps = decide([later], [*fits, later], settled)
    assert steps.blocked == [(later, "no run of toy_fit seed 0 finished")]


def test_a_job_another_driver_runs_is_waited_on_not_run_twice():
    fits = [fit(0, lr) for lr in (1, 2, 3)]
    jobs = [*fits, ens(0)]
    steps = decide(jobs, jobs, elsewhere={fits[1].id})
    assert launched(steps) == [fits[0], fits[2]]
    assert steps.wait == [fits[1], ens(0)]  # and its dependent waits for its record
    # the other driver's record has appeared and been read: it is kept, not re-run
    settled = {j.id: record(j) for j in (fits[0], fits[2])}
    steps = decide([fits[1], ens(0)], jobs, settled, {fits[1].id: record(fits[1], rmse=0.1)})
    assert [j for j, _ in steps.reuse] == [fits[1]] and launched(steps) == [ens(0)]
    assert steps.launch[0].deps == {"toy_fit": fits[1]}


# ------------------------------------------------------------------ the older on-disk layout
OLD_DRIVER = """
import fcntl, json, os, socket, sys, time
root, job_id, token = sys.argv[1:]
os.makedirs(os.path.join(root, "claims", "drivers"), exist_ok=True)
fd = os.open(os.path.join(root, "claims", "drivers", token + ".lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
with open(os.path.join(root, "claims", job_id + ".json"), "w") as f:
    json.dump({"driver": token, "host": socket.gethostname(), "pid": os.getpid(),
               "since": "2024-01-01T00:00:00Z"}, f)
print("held", flush=True)
sys.stdin.readline()  # until the test lets go: then this driver dies, its lease left behind
"""

SPEC = TableSpec(name="toyold", title="T", caption="T.", seeds=(0,),
                 sections=(MetricGrid(rows=("toy_fit",),
                                      columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))


def test_a_results_folder_of_the_older_layout_resumes(tmp_path, monkeypatch):
    """Leases written under ``claims/`` (by this harness's predecessor, which called them
    claims) are honoured while their driver lives, and taken over once it is dead."""
    log = tmp_path / "runs.log"
    monkeypatch.setenv("TOY_RUN_LOG", str(log))
    root = tmp_path / "smoke"
    jobs = plan(SPEC, "smoke")
    live, dead, done = jobs
    # a finished job, and a dead driver's lease (no lock file of its driver is left)
    first = run_jobs([done], SPEC, "smoke", LocalExecutor(), Ledger(root), out=io.StringIO())
    assert first.ran == 1
    (root / "claims").mkdir(exist_ok=True)
    (root / "claims" / f"{dead.id}.json").write_text(json.dumps(
        {"driver": "gone-1-abc", "host": "h", "pid": 1, "since": "2024-01-01T00:00:00Z"}))
    older = subprocess.Popen([sys.executable, "-c", OLD_DRIVER, str(root), live.id, "old-1-def"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert older.stdout.readline().strip() == "held"
        ledger = Ledger(root)
        assert ledger.lease_holder(live.id)["pid"] == older.pid  # honoured
        assert ledger.lease_holder(dead.id) is None
        out, summaries = io.StringIO(), []
        runner = threading.Thread(target=lambda: summaries.append(
            run_jobs(jobs, SPEC, "smoke", LocalExecutor(), ledger, out=out)), daemon=True)
        runner.start()
        for _ in range(200):  # until the dead lease's job has run: the live one must not have
            if log.exists() and len(log.read_text().split()) == 2:
                break
            runner.join(0.05)
        assert log.read_text().split() == [done.id, dead.id]
        assert runner.is_alive()  # waiting for the live driver's job
        assert f"another bench run (host {socket.gethostname()}, pid {older.pid})" in out.getvalue()
    finally:
        older.stdin.close()  # the older driver dies without a record: its lease is now dead
        older.wait(10)
    runner.join(30)
    assert not runner.is_alive()
    summary = summaries[0]
    assert summary.skipped == 1 and summary.ran == 2 and not summary.blocked
    assert log.read_text().split() == [done.id, dead.id, live.id]  # each ran once
    assert not list((root / "claims").glob("*.json"))  # every lease released


def test_a_dependency_recorded_by_another_driver_frees_the_jobs_queued_before_it(tmp_path):
    """A job another driver recorded comes back at the end of the pending list, after the jobs
    that wait for it; one decision must still launch them (seen on a real two-driver run: LEVI
    of a seed ended 'dependencies never settled' although its HT run had finished)."""
    from bench.runner import Scheduler

    fits = [fit(0, lr) for lr in (1, 2)]
    jobs = [*fits, ens(0)]
    sched = Scheduler(jobs, SPEC, "smoke", LocalExecutor(), Ledger(tmp_path / "smoke"),
                      out=io.StringIO())
    sched.wanted = dict(SETTINGS)
    sched.existing = {j.id: record(j, rmse=float(j.hparams_dict["lr"])) for j in fits}
    sched.pending = [ens(0), *fits]  # as ``_took_over`` leaves it: the recorded runs last
    sched._decide()
    assert [launch.job for launch in sched.ready] == [ens(0)] and not sched.pending
    assert sched.ready[0].deps == {"toy_fit": fits[0]}  # lr=1: the lower id_val rmse
