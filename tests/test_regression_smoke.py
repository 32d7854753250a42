"""CI regression on small configurations: every table under the ``smoke`` preset, then ``bench
check`` against the baselines committed under results/baselines/smoke/.

Each table runs through the scheduler on one shared Ray instance (the default executor, both
cores busy), then ``bench report`` and ``bench check`` run through the CLI exactly as a user
types them, so a preset, spec or method change that breaks a table, or moves its numbers beyond
the stated tolerances, fails here. A deliberate change of results updates the baselines in the
same commit (``bench check --preset smoke --update``), with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.executors import RayExecutor, Resources
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.jobs import plan
from bench.specs import TABLES, get_table

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"
SMOKE_TABLES = sorted(p.stem for p in (BASELINES / "smoke").glob("*.json"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke-results")


@pytest.fixture(scope="module")
def executor():
    # Ray workers are new processes: make this checkout importable there even when the
    # package is not installed (e.g. pytest run from a plain clone).
    root = str(Path(__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, old]))
    ex = RayExecutor(resources=Resources(cpus=1))
    yield ex
    ex.close()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def test_every_table_has_a_smoke_baseline():
    assert SMOKE_TABLES == sorted(TABLES)


def test_cli_run_of_a_smoke_table(results, capsys):
    """The whole CLI path once (argparse, preflight, executor start and stop)."""
    assert main(["run", "fig4", "--preset", "smoke", "--executor", "local",
                 "--results-dir", str(results)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("table", SMOKE_TABLES)
def test_smoke_table_runs_and_matches_baseline(table, results, executor, tmp_path, capsys):
    spec = get_table(table)
    summary = run_jobs(plan(spec, "smoke"), spec, "smoke", executor,
                       Ledger(results / "smoke"), out=open(os.devnull, "w"))
    assert not summary.states.get("failed") and not summary.blocked, summary
    assert main(["report", table, "--preset", "smoke", "--results-dir", str(results),
                 "--tables-dir", str(tmp_path), "--latex"]) == 0
    assert (tmp_path / "smoke" / f"{table}.tex").is_file()
    rc = main(["check", table, "--preset", "smoke", "--results-dir", str(results),
               "--baselines-dir", str(BASELINES)])
    out = capsys.readouterr().out
    assert rc == 0, out
