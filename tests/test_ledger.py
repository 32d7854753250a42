"""The ledger under concurrency: job leases, dead holders, two drivers at once, schema versions."""

from __future__ import annotations

import pytest
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import toy_family  # noqa: F401
from bench.executors import LocalExecutor
from bench.jobs import plan
from bench.ledger import SCHEMA_VERSION, Ledger
from bench.runner import run_jobs
from bench.specs import Column, MetricGrid, TableSpec

TESTS = Path(__file__).parent
HOLD = """
import sys, time
sys.path[:0] = [{root!r}]
from pathlib import Path
from bench.ledger import Ledger
ledger = Ledger(Path(sys.argv[1]))
assert ledger.take_lease(sys.argv[2]) is None
print("leased", flush=True)
time.sleep(60)
"""


def _holder(root: Path, job_id: str) -> subprocess.Popen:
    code = HOLD.format(root=str(TESTS.parent))
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), job_id], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "leased"
    return proc


def test_lease_is_exclusive_and_released(tmp_path):
    a, b = Ledger(tmp_path), Ledger(tmp_path)
    assert a.take_lease("j1") is None
    assert a.take_lease("j1") is None  # ours already
    held = b.take_lease("j1")
    assert held is not None and held["pid"] == os.getpid() and held["driver"] == a.session
    a.release_lease("j1")
    assert b.take_lease("j1") is None
    b.close_session()
    a.close_session()
    assert not list((tmp_path / "claims").glob("*.json"))  # the leases' legacy folder name
    assert not list((tmp_path / "claims" / "drivers").iterdir())


def test_lease_of_a_live_driver_is_respected_and_of_a_dead_one_taken_over(tmp_path):
    proc = _holder(tmp_path, "j1")
    try:
        ledger = Ledger(tmp_path)
        held = ledger.take_lease("j1")
        assert held is not None and held["pid"] == proc.pid
        assert ledger.lease_holder("j1")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ledger.lease_holder("j1") is None  # its driver died: the lease is dead
    assert ledger.take_lease("j1") is None
    assert json.loads(ledger.lease_path("j1").read_text())["pid"] == os.getpid()
    ledger.close_session()


def test_unreadable_lease_is_taken_over(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.leases_dir.mkdir(parents=True)
    ledger.lease_path("j1").write_text('{"driver": "gone-12')  # cut short
    assert ledger.take_lease("j1") is None
    ledger.close_session()


def test_record_of_another_schema_version_is_reported_and_rerun(tmp_path):
    spec = TableSpec(name="toyv", title="T", caption="T.", seeds=(0,),
                     sections=(MetricGrid(rows=("toy_fit",),
                                          columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
    ledger = Ledger(tmp_path)
    devnull = open(os.devnull, "w")
    s = run_jobs(plan(spec, "smoke"), spec, "smoke", LocalExecutor(), ledger, out=devnull)
    assert s.ran == 3
    job = plan(spec, "smoke")[0]
    rec = json.loads(ledger.record_path(job.id).read_text())
    assert rec["schema"] == SCHEMA_VERSION
    old = {k: v for k, v in rec.items() if k != "schema"}  # as written before versioning
    ledger.record_path(job.id).write_text(json.dumps(old))
    fresh = Ledger(tmp_path)
    assert fresh.read(job.id) is None and fresh.outdated == [(ledger.record_path(job.id), 1)]
    assert set(fresh.read_all()) == {j.id for j in plan(spec, "smoke")[1:]}
    import io

    out = io.StringIO()
    s = run_jobs(plan(spec, "smoke"), spec, "smoke", LocalExecutor(), Ledger(tmp_path), out=out)
    assert s.ran == 1 and "schema version 1" in out.getvalue()
    assert Ledger(tmp_path).read(job.id)["schema"] == SCHEMA_VERSION


DRIVER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import toy_family
from pathlib import Path
from bench.specs import TableSpec, Column, MetricGrid
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.jobs import plan
from bench.executors import LocalExecutor
import os, time
barrier = Path(sys.argv[1] + ".ready")  # both drivers start the grid at the same moment
barrier.mkdir(parents=True, exist_ok=True)
(barrier / str(os.getpid())).touch()
while len(list(barrier.iterdir())) < 2:
    time.sleep(0.01)
spec = TableSpec(name="two", title="Two", caption="Two drivers.", seeds=(0, 1, 2, 3),
                 sections=(MetricGrid(rows=("toy_slow", "toy_ens"),
                                      columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
s = run_jobs(plan(spec, "smoke"), spec, "smoke", LocalExecutor(), Ledger(Path(sys.argv[1])))
print("RAN", s.ran, "ELSEWHERE", s.elsewhere, "BLOCKED", len(s.blocked), flush=True)
"""


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_two_drivers_on_one_results_folder_share_the_work(tmp_path):
    # toy_ens depends on toy_fit, which is not a row: the plan adds it (fast), plus toy_slow
    log = tmp_path / "runs.log"
    env = {**os.environ, "TOY_RUN_LOG": str(log), "TOY_SLOW_S": "0.3"}
    code = DRIVER.format(root=str(TESTS.parent), tests=str(TESTS))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "res")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    runs = log.read_text().split()
    n_jobs = 4 * (2 + 3 + 1)  # seeds x (toy_slow lr 1,2 + toy_fit lr 1,2,3 + toy_ens)
    assert len(runs) == len(set(runs)) == n_jobs  # no job ran twice, none was lost
    ran = [int(o.split("RAN ")[1].split()[0]) for o, _ in outs]
    assert sum(ran) == n_jobs and min(ran) > 0, outs  # both drivers worked
    elsewhere = [int(o.split("ELSEWHERE ")[1].split()[0]) for o, _ in outs]
    assert sum(elsewhere) > 0, outs  # and each used the other's records instead of re-running
    # each names the other driver once, not once per job it waits for
    assert all(err.count("elsewhere:") <= 1 for _, err in outs), [e for _, e in outs]
    assert any("another bench run (host" in err for _, err in outs)
    ledger = Ledger(tmp_path / "res")
    assert len(ledger.read_all()) == n_jobs and not ledger.corrupt
    assert not list(ledger.leases_dir.glob("*.json"))  # every lease released


def test_status_and_report_name_records_of_another_version(tmp_path, capsys, monkeypatch):
    from bench.cli import main
    from bench.specs import TABLES

    spec = TableSpec(name="toyv2", title="T", caption="T.", seeds=(0,),
                     sections=(MetricGrid(rows=("toy_fit",),
                                          columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
    monkeypatch.setitem(TABLES, spec.name, spec)
    common = ["--preset", "smoke", "--results-dir", str(tmp_path)]
    assert main(["run", spec.name, "--executor", "local", *common]) == 0
    job = plan(spec, "smoke")[0]
    path = tmp_path / "smoke" / "records" / f"{job.id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema": 99}))
    capsys.readouterr()
    assert main(["status", spec.name, *common]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(spec.name))
    assert "schema version 99" in out and row.split()[1:] == ["3", "2", "0", "0", "1"]
    assert main(["report", spec.name, *common, "--tables-dir", str(tmp_path / "t")]) == 0
    assert "schema version 99" in capsys.readouterr().err
