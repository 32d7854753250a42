"""The Ray executor: same numbers as the local executor, dependencies honoured."""

from __future__ import annotations

import os

import pytest

import toy_family  # noqa: F401
from bench.collect import collect
from bench.executors import LocalExecutor, RayExecutor, Resources
from bench.jobs import plan
from bench.ledger import Ledger
from bench.render import csv_text
from bench.runner import run_jobs
from bench.specs import Column, MetricGrid, TableSpec

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

SPEC = TableSpec(name="toyray", title="Toy", caption="Toy.", seeds=(0, 1),
                 sections=(MetricGrid(rows=("toy_fit", "toy_ens"),
                                      columns=(Column("ood", "OOD", "toy", "ood/mean", "rmse"),)),))


@pytest.fixture(scope="module")
def ray_executor(tmp_path_factory):
    # Ray workers are separate processes: they learn about the toy family through LEVI_PLUGINS
    # (and find tests/ on PYTHONPATH), exactly as a user's own plugin would be found.
    tests_dir = os.path.dirname(__file__)
    old = {k: os.environ.get(k) for k in ("LEVI_PLUGINS", "PYTHONPATH", "TOY_CRASH_DIR",
                                          "TOY_RUN_LOG")}
    os.environ["LEVI_PLUGINS"] = "toy_family"
    os.environ["TOY_CRASH_DIR"] = str(tmp_path_factory.mktemp("crash"))
    os.environ["TOY_RUN_LOG"] = str(tmp_path_factory.mktemp("runlog") / "runs.log")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, os.path.dirname(tests_dir), old["PYTHONPATH"]]))
    ex = RayExecutor(resources=Resources(cpus=1))
    yield ex
    ex.close()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_ray_and_local_give_identical_numbers(tmp_path, ray_executor):
    devnull = open(os.devnull, "w")
    l_ray, l_local = Ledger(tmp_path / "ray"), Ledger(tmp_path / "local")
    s = run_jobs(plan(SPEC, "smoke"), SPEC, "smoke", ray_executor, l_ray, out=devnull)
    assert s.states["done"] == 8
    run_jobs(plan(SPEC, "smoke"), SPEC, "smoke", LocalExecutor(), l_local, out=devnull)
    assert csv_text(collect(SPEC, "smoke", l_ray)) == csv_text(collect(SPEC, "smoke", l_local))
    ens = [j for j in plan(SPEC, "smoke") if j.method == "toy_ens"][0]
    assert l_ray.read(ens.id)["deps"] == l_local.read(ens.id)["deps"]


def test_lost_worker_is_retried_but_a_jobs_own_error_is_not(tmp_path, ray_executor):
    from pathlib import Path

    spec = TableSpec(name="toyfail", title="Toy", caption="Toy.", seeds=(0,),
                     sections=(MetricGrid(rows=("toy_crash", "toy_error"),
                                          columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
    ledger = Ledger(tmp_path / "res")
    s = run_jobs(plan(spec, "smoke"), spec, "smoke", ray_executor, ledger, out=open(os.devnull, "w"))
    assert s.states == {"done": 1, "failed": 1}
    crash, error = plan(spec, "smoke")
    runs = Path(os.environ["TOY_RUN_LOG"]).read_text().split()
    assert runs.count(crash.id) == 2 and ledger.read(crash.id)["state"] == "done"  # retried
    assert runs.count(error.id) == 1  # a job's own error: recorded, not retried by Ray
    rec = ledger.read(error.id)
    assert rec["state"] == "failed" and "the job's own bug" in rec["error"]
    assert rec["provenance"]["node"]["ray_node_id"]  # the record names the node that ran it


def test_fractional_gpu_share_caps_jax_memory():
    assert Resources(cpus=1, gpus=0.25).env_vars() == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"}
    assert Resources(cpus=1, gpus=1).env_vars() == {}


def test_a_share_the_cluster_cannot_supply_is_refused_in_seconds(ray_executor, tmp_path, capsys):
    """Issue 20, item 3: Ray would keep such a job pending forever; preflight names what the
    cluster has and exits 2 instead."""
    import time

    import ray

    from bench.cli import main
    from levi_core.errors import ConfigError

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"--gpus-per-job 0\.5 but the local Ray instance has 0 "
                                          r"GPUs \(CPU \d+\); drop the flag"):
        RayExecutor(resources=Resources(cpus=1, gpus=0.5))
    with pytest.raises(ConfigError, match=r"--tpus-per-job 1 but .* has 0 TPUs"):
        RayExecutor(resources=Resources(cpus=1, tpus=1))
    with pytest.raises(ConfigError, match=r"--cpus-per-job 1000 but .* has \d+ CPUs"):
        RayExecutor(resources=Resources(cpus=1000))
    code = main(["run", "synthetic", "--preset", "smoke", "--gpus-per-job", "0.25",
                 "--results-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: --gpus-per-job 0.25 but the local Ray instance has 0 GPUs" in err
    assert time.monotonic() - t0 < 30
    assert ray.is_initialized()  # a refused ask leaves the instance it joined running
    assert not list(tmp_path.rglob("*.json"))  # nothing ran


def test_check_fits_compares_with_the_largest_node():
    from bench.executors import check_fits
    from levi_core.errors import ConfigError

    nodes = [{"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}]
    check_fits(Resources(cpus=2, gpus=0.5), nodes, "10.0.0.5:6379")  # fits: no error
    check_fits(Resources(cpus=8, gpus=1), nodes, "10.0.0.5:6379")
    with pytest.raises(ConfigError, match=r"--gpus-per-job 2 but the largest node of the Ray "
                                          r"cluster at 10.0.0.5:6379 has 1 GPUs \(CPU 16, GPU 2 "
                                          r"over 2 nodes\)"):
        check_fits(Resources(cpus=1, gpus=2), nodes, "10.0.0.5:6379")


def test_progress_lines_of_a_ray_worker_reach_the_driver(tmp_path, ray_executor, capfd):
    """Issue 20, item 5: a worker's stderr is never a terminal; its progress lines (count, rate,
    ETA, the job named) still reach the driver's log, through Ray's relay."""
    import re
    import time

    spec = TableSpec(name="toyprogress", title="Toy", caption="Toy.", seeds=(0,),
                     sections=(MetricGrid(rows=("toy_progress",),
                                          columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
    s = run_jobs(plan(spec, "smoke"), spec, "smoke", ray_executor, Ledger(tmp_path),
                 out=open(os.devnull, "w"))
    assert s.states == {"done": 1}
    err, deadline = "", time.monotonic() + 20
    while "done, 10 steps" not in err and time.monotonic() < deadline:  # the relay lags a little
        time.sleep(0.2)
        err += capfd.readouterr().err
    assert re.search(r"\[levi\] toy_progress toy seed=0 lr=1 \| toy progress: \d+/10 steps "
                     r"\(\d+%\), [\d.]+ steps/s", err), err[-2000:]
    assert "toy progress: done, 10 steps" in err
