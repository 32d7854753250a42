"""The progress line's time left weighs each job by its method's duration (``bench.eta``)."""

from __future__ import annotations

import io

import pytest

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_fit, toy_ens)
from bench.eta import Durations, seconds_left
from bench.executors import LocalExecutor
from bench.jobs import Job, plan
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.specs import Column, MetricGrid, TableSpec


def job(method: str, seed: int, dataset: str = "toy") -> Job:
    return Job.make(dataset, method, seed, {}, "smoke")


def timed(secs: float) -> dict:
    return {"timings": {"total_s": secs}}


def test_jobs_left_are_weighed_by_their_methods_duration_not_counted():
    d = Durations()
    fast, slow = job("toy_ens", 0), job("toy_fit", 0)
    d.add(fast, timed(0.1))
    d.add(slow, timed(100.0))
    # 2 workers finished 100.1 job-seconds in 50 s; 200.1 are left: about 100 s, where the
    # count alone (50 s per 2 jobs, 3 left) would say 75
    left = seconds_left([fast, slow], [job("toy_fit", 1), job("toy_fit", 2), job("toy_ens", 1)],
                        50.0, d)
    assert left == pytest.approx(50.0 * 200.1 / 100.1)
    # only fast jobs left: seconds, not minutes
    assert seconds_left([fast, slow], [job("toy_ens", 1)] * 3, 50.0, d) == pytest.approx(50.0 * 0.3 / 100.1)


def test_a_dataset_of_its_own_comes_first_and_an_unknown_method_counts_as_the_mean():
    d = Durations()
    d.add(job("toy_fit", 0, "toy:a"), timed(10.0))
    d.add(job("toy_fit", 0, "toy:b"), timed(30.0))
    assert d.expected(job("toy_fit", 1, "toy:a")) == 10.0
    assert d.expected(job("toy_fit", 1, "toy:c")) == 20.0  # the method's mean over datasets
    assert d.expected(job("toy_ens", 1)) is None
    done = [job("toy_fit", 0, "toy:a"), job("toy_fit", 0, "toy:b")]
    assert seconds_left(done, [job("toy_ens", 1)], 40.0, d) == pytest.approx(20.0)
    assert seconds_left([], [job("toy_ens", 1)], 40.0, Durations()) is None
    d.add(job("toy_ens", 0), {"timings": {}})  # a record without a duration adds nothing
    assert d.expected(job("toy_ens", 1)) is None


def test_a_run_prints_the_time_left_after_each_job_but_the_last(tmp_path):
    spec = TableSpec(name="eta_toy", title="t", caption="c",
                     sections=(MetricGrid(rows=("toy_fit", "toy_ens"),
                                          columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
    jobs = plan(spec, "smoke")
    out = io.StringIO()
    summary = run_jobs(jobs, spec, "smoke", LocalExecutor(), Ledger(tmp_path / "smoke"), out=out)
    assert summary.states["done"] == len(jobs) > 1
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("[")]
    assert len(lines) == len(jobs)
    assert all("s left" in ln for ln in lines[:-1]) and "s left" not in lines[-1]
