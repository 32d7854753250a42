"""CI regression on small configurations: every table under the ``smoke`` preset, then ``bench
check`` against the baselines committed under results/baselines/smoke/.

This is the CLI path a user takes (`bench run TABLE --preset smoke --executor local`, then
`bench check --preset smoke`), so a preset, spec or method change that breaks a table, or moves
its numbers beyond the stated tolerances, fails here. A deliberate change of results updates the
baselines in the same commit (`bench check --preset smoke --update`), with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.specs import TABLES

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"
SMOKE_TABLES = sorted(p.stem for p in (BASELINES / "smoke").glob("*.json"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke-results")


def test_every_table_has_a_smoke_baseline():
    assert SMOKE_TABLES == sorted(TABLES)


@pytest.mark.parametrize("table", SMOKE_TABLES)
def test_smoke_table_runs_and_matches_baseline(table, results, tmp_path, capsys):
    assert main(["run", table, "--preset", "smoke", "--executor", "local",
                 "--results-dir", str(results)]) == 0, capsys.readouterr().err
    assert main(["report", table, "--preset", "smoke", "--results-dir", str(results),
                 "--tables-dir", str(tmp_path), "--latex"]) == 0
    assert (tmp_path / "smoke" / f"{table}.tex").is_file()
    rc = main(["check", table, "--preset", "smoke", "--results-dir", str(results),
               "--baselines-dir", str(BASELINES)])
    out = capsys.readouterr().out
    assert rc == 0, out
