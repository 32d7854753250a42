"""SIGKILL mid-grid, then resume: no finished job runs again; the table is byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

TESTS = Path(__file__).parent
SCRIPT = """
import os, sys
sys.path[:0] = [{root!r}, {tests!r}]
import toy_family
from bench.specs import TableSpec, Column, MetricGrid
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.jobs import plan
from bench.executors import LocalExecutor
from bench.collect import collect
from bench.render import markdown, latex
from bench.claims import verdicts
spec = TableSpec(name="kill", title="Kill", caption="Kill test.",
                 sections=(MetricGrid(rows=("toy_slow",), columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),))
ledger = Ledger(__import__("pathlib").Path(sys.argv[1]))
run_jobs(plan(spec, "smoke"), spec, "smoke", LocalExecutor(), ledger)
result = collect(spec, "smoke", ledger)
open(sys.argv[2], "w").write(markdown(result, verdicts(result)) + latex(result))
"""


def _cmd(results: Path, table: Path) -> list[str]:
    code = SCRIPT.format(root=str(TESTS.parent), tests=str(TESTS))
    return [sys.executable, "-c", code, str(results), str(table)]


def _env(log: Path) -> dict:
    return {**os.environ, "TOY_RUN_LOG": str(log), "TOY_SLOW_S": "0.15"}


def test_sigkill_then_resume(tmp_path):
    # uninterrupted reference
    ref_log = tmp_path / "ref.log"
    subprocess.run(_cmd(tmp_path / "ref", tmp_path / "ref.txt"), env=_env(ref_log), check=True,
                   capture_output=True)
    n_jobs = len(ref_log.read_text().split())
    assert n_jobs == 6

    log = tmp_path / "run.log"
    records = tmp_path / "res" / "records"
    finished_before: set[str] = set()
    checkpoints: list[tuple[int, set[str]]] = []  # (runs logged so far, jobs recorded) per kill
    for kill_after in (2, 4):  # kill at two points of the grid
        proc = subprocess.Popen(_cmd(tmp_path / "res", tmp_path / "out.txt"), env=_env(log),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if records.is_dir() and len(list(records.glob("*.json"))) >= kill_after:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished_before |= {p.stem for p in records.glob("*.json")}
        checkpoints.append((len(log.read_text().split()), set(finished_before)))
    assert 2 <= len(finished_before) < n_jobs
    subprocess.run(_cmd(tmp_path / "res", tmp_path / "out.txt"), env=_env(log), check=True,
                   capture_output=True)
    runs = log.read_text().split()
    for n_logged, recorded in checkpoints:  # a job recorded before a kill never starts again
        assert not recorded & set(runs[n_logged:]), (recorded, runs[n_logged:])
    assert sorted(set(runs)) == sorted(set(ref_log.read_text().split()))
    assert not list(records.glob(".tmp-*"))  # a write cut by SIGKILL is cleaned up on resume
    assert (tmp_path / "out.txt").read_bytes() == (tmp_path / "ref.txt").read_bytes()
