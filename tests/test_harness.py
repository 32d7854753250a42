"""The harness on the toy family: ids, ledger, resume, selection, dependencies, divergence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_*)
from bench.collect import collect
from bench.executors import LocalExecutor
from bench.jobs import Job, plan
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.selection import select_record
from bench.specs import Column, MetricGrid, TableSpec

SPEC = TableSpec(
    name="toy", title="Toy", caption="Toy table.",
    sections=(MetricGrid(rows=("toy_fit", "toy_ens"),
                         columns=(Column("id", "ID RMSE", "toy", "id_test", "rmse"),
                                  Column("ood", "OOD RMSE", "toy", "ood/mean", "rmse"))),),
)


def run(spec, ledger, **kw):
    return run_jobs(plan(spec, "smoke"), spec, "smoke", LocalExecutor(), ledger, out=open(os.devnull, "w"), **kw)


@pytest.fixture
def run_log(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv("TOY_RUN_LOG", str(log))
    return lambda: log.read_text().split() if log.exists() else []


def test_job_id_is_a_hash_of_semantic_fields_only():
    a = Job.make("toy", "toy_fit", 0, {"lr": 1, "wd": 0}, "smoke")
    b = Job.make("toy", "toy_fit", 0, {"wd": 0, "lr": 1}, "smoke")
    assert a.id == b.id  # hyperparameter order is not semantic
    assert len({a.id, Job.make("toy", "toy_fit", 1, {"lr": 1, "wd": 0}, "smoke").id,
                Job.make("toy", "toy_fit", 0, {"lr": 2, "wd": 0}, "smoke").id,
                Job.make("toy", "toy_fit", 0, {"lr": 1, "wd": 0}, "cpu").id,
                Job.make("toy:data_seed=1", "toy_fit", 0, {"lr": 1, "wd": 0}, "smoke").id}) == 5


def test_plan_orders_dependencies_first_and_expands_grid():
    jobs = plan(SPEC, "smoke")
    methods = [j.method for j in jobs]
    assert methods.count("toy_fit") == 9 and methods.count("toy_ens") == 3
    assert max(i for i, m in enumerate(methods) if m == "toy_fit") < methods.index("toy_ens")


def test_rerun_skips_finished_jobs_and_resumes_after_loss(tmp_path, run_log):
    ledger = Ledger(tmp_path / "smoke")
    s1 = run(SPEC, ledger)
    assert s1.ran == 12 and s1.states["done"] == 12
    assert len(run_log()) == 12
    s2 = run(SPEC, ledger)
    assert s2.ran == 0 and s2.skipped == 12 and len(run_log()) == 12
    # lose two records, as a kill before their atomic write would: only those run again
    lost = [j for j in plan(SPEC, "smoke") if j.method == "toy_fit"][:2]
    for j in lost:
        ledger.record_path(j.id).unlink()
    s3 = run(SPEC, ledger)
    assert s3.ran == 2 and sorted(run_log()[12:]) == sorted(j.id for j in lost)


def test_a_finished_job_leaves_no_resume_state(tmp_path, run_log):
    """What a killed attempt left to resume from (a training run's state) goes with the
    record; another job's is kept."""
    ledger = Ledger(tmp_path / "smoke")
    first, other = plan(SPEC, "smoke")[:2]
    for j in (first, other):
        (ledger.resume_dir(j.id) / "train_large").mkdir(parents=True)
        (ledger.resume_dir(j.id) / "train_large" / "train_state.msgpack").write_bytes(b"x")
    run_jobs([first], SPEC, "smoke", LocalExecutor(), ledger, out=open(os.devnull, "w"))
    assert ledger.read(first.id)["state"] == "done"
    assert not ledger.resume_dir(first.id).exists()
    assert ledger.resume_dir(other.id).exists()


def test_corrupt_record_is_reported_and_rerun(tmp_path, run_log):
    ledger = Ledger(tmp_path / "smoke")
    run(SPEC, ledger)
    victim = plan(SPEC, "smoke")[0]
    text = ledger.record_path(victim.id).read_text()
    ledger.record_path(victim.id).write_text(text[: len(text) // 2])  # truncated
    fresh = Ledger(tmp_path / "smoke")
    s = run(SPEC, fresh)
    assert [p for p, _ in fresh.corrupt] == [ledger.record_path(victim.id)]
    assert s.ran == 1 and run_log()[-1] == victim.id
    assert json.loads(ledger.record_path(victim.id).read_text())["state"] == "done"


def test_widened_grid_runs_only_new_jobs_and_reruns_stale_dependents(tmp_path, run_log):
    ledger = Ledger(tmp_path / "smoke")
    narrow = TableSpec(**{**SPEC.__dict__, "grids": {"toy_fit": {"lr": (2, 3)}}})
    run(narrow, ledger)
    assert len(run_log()) == 9  # 6 toy_fit + 3 toy_ens
    s = run(SPEC, ledger)  # lr=1 added: it wins on id_val, so every toy_ens is stale
    assert s.ran == 6 and s.stale == 3
    new = [j for j in plan(SPEC, "smoke") if j.hparams_dict.get("lr") == 1 or j.method == "toy_ens"]
    assert sorted(run_log()[9:]) == sorted(j.id for j in new)


def test_selection_cannot_see_ood_numbers():
    def rec(lr, id_val, ood):
        return {"job_id": str(lr), "job": {"hparams": {"lr": lr}}, "state": "done",
                "metrics": {"id_val": {"rmse": id_val}, "ood/a": {"rmse": ood}, "id_test": {"rmse": ood}}}

    base = [rec(1, 0.9, 0.1), rec(2, 0.8, 5.0), rec(3, 1.1, 0.0)]
    chosen = select_record(base, "rmse")["job_id"]
    assert chosen == "2"
    for ood_values in ([9.0, 9.0, 9.0], [0.0, 100.0, -1.0], [float("nan")] * 3):
        changed = [rec(r["job"]["hparams"]["lr"], r["metrics"]["id_val"]["rmse"], o)
                   for r, o in zip(base, ood_values)]
        assert select_record(changed, "rmse")["job_id"] == chosen


def test_selection_ignores_diverged_and_breaks_ties_stably():
    recs = [{"job_id": "a", "job": {"hparams": {"lr": 2}}, "state": "done", "metrics": {"id_val": {"accuracy": 80.0}}},
            {"job_id": "b", "job": {"hparams": {"lr": 1}}, "state": "done", "metrics": {"id_val": {"accuracy": 80.0}}},
            {"job_id": "c", "job": {"hparams": {"lr": 9}}, "state": "diverged", "metrics": {"id_val": {"accuracy": 99.0}}}]
    assert select_record(recs, "accuracy")["job_id"] == "b"
    assert select_record(list(reversed(recs)), "accuracy")["job_id"] == "b"


def test_diverged_runs_are_recorded_shown_and_never_averaged(tmp_path):
    spec = TableSpec(**{**SPEC.__dict__, "sections": (MetricGrid(
        rows=("toy_fit", "toy_ens"), columns=(Column("id", "ID RMSE", "toy:nan=1", "id_test", "rmse"),)),)})
    ledger = Ledger(tmp_path / "smoke")
    s = run(spec, ledger)
    assert s.states["diverged"] == 3 and s.states["done"] == 9
    result = collect(spec, "smoke", ledger)
    assert len(result.diverged_runs) == 3
    assert all(r["job"]["hparams"]["lr"] == 3 for r in result.diverged_runs)
    assert all(r["job"]["hparams"].get("lr") != 3 for r in result.selected.values())
    from bench.claims import verdicts
    from bench.render import markdown

    assert "Diverged runs" in markdown(result, verdicts(result))


def test_failed_job_is_recorded_with_its_message_and_retried(tmp_path, monkeypatch):
    from levi_core.methods import registry

    def boom(ctx):
        raise RuntimeError("kaboom")

    monkeypatch.setitem(registry._IMPLS, ("toy_fit", "toy"), boom)
    ledger = Ledger(tmp_path / "smoke")
    s = run(SPEC, ledger)
    assert s.states["failed"] == 9 and len(s.blocked) == 3  # toy_ens has nothing to select
    rec = ledger.read(plan(SPEC, "smoke")[0].id)
    assert rec["state"] == "failed" and "kaboom" in rec["error"]
    monkeypatch.undo()
    s2 = run(SPEC, ledger)
    assert s2.ran == 12 and s2.states["done"] == 12


def test_records_carry_provenance(tmp_path):
    ledger = Ledger(tmp_path / "smoke")
    run(SPEC, ledger)
    rec = ledger.read(plan(SPEC, "smoke")[0].id)
    prov = rec["provenance"]
    assert {"git_commit", "packages", "device"} <= set(prov)
    assert prov["packages"]["jax"] and prov["device"]["platform"] == "cpu"
    assert rec["dataset_fingerprint"] and rec["timings"]["total_s"] >= 0


def test_generic_subsample_is_stable_and_maps_unseen_ids_to_unknown():
    import numpy as np

    from levi_core.data.base import load_dataset

    full = load_dataset("movielens:fixture=1")
    small = load_dataset("movielens:fixture=1,max_train=40,max_eval=15")
    assert len(small.splits["train"]) == 40
    assert all(len(s) <= 15 for r, s in small.splits.items() if r != "train")
    again = load_dataset("movielens:fixture=1,max_train=40,max_eval=15")
    assert small.fingerprint == again.fingerprint != full.fingerprint
    seen = set(np.unique(small.splits["train"].small["movie_id"]))
    for s in small.splits.values():  # every movie id outside the kept training rows is unknown
        assert set(np.unique(s.small["movie_id"])) <= seen | {0}
    assert set(small.splits["train"].example_ids) <= set(full.splits["train"].example_ids)
