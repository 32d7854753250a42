"""What `bench report` must never do: crash on a filtered table, overwrite a committed table with
a partial one, or show a different number because a record is unreadable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_*)
from bench.claims import CHECKERS, verdicts
from bench.cli import main
from bench.collect import collect
from bench.jobs import Job, Subset
from bench.ledger import Ledger
from bench.selection import select_record
from bench.specs import TABLES, Column, MetricGrid, TableSpec, subset_spec


# ------------------------------------------------------------------ claims on a filtered table
@pytest.mark.parametrize("name", [n for n, s in TABLES.items() if s.claims])
def test_every_claim_of_a_table_without_its_grid_cannot_decide_and_never_crashes(tmp_path, name):
    # what a --methods filter that keeps no ranked row leaves of any table
    spec = TABLES[name]
    part = dataclasses.replace(spec, sections=tuple(s for s in spec.sections
                                                    if not isinstance(s, MetricGrid)))
    vs = verdicts(collect(part, "smoke", Ledger(tmp_path / "smoke")))
    assert len(vs) == len([c for c in spec.claims if c in CHECKERS])
    assert all(v.status == "undecided" for v in vs), [(v.claim, v.status) for v in vs]


def test_table1_filtered_to_references_names_the_absent_rows(tmp_path):
    part = subset_spec(TABLES["table1"], Subset.parse(None, "ref/user_movie_bias,ref/mf", "0"))
    assert part.grid is None  # the filter left no ranked row: the grid section is gone
    by_claim = {v.claim: v for v in verdicts(collect(part, "cpu", Ledger(tmp_path / "cpu")))}
    assert by_claim["C1"].status == "undecided"
    assert "cannot decide: this table has no row for levi" in by_claim["C1"].detail


# ------------------------------------------------------------------ through the command line
TOY = TableSpec(name="toysafe", title="Toy", caption="Toy.", seeds=(0, 1),
                sections=(MetricGrid(rows=("toy_fit", "toy_ens"),
                                     columns=(Column("id", "ID RMSE", "toy", "id_test", "rmse"),
                                              Column("ood", "OOD RMSE", "toy", "ood/mean", "rmse"))),))


class Toy:
    """The toy table run once under the smoke preset, and the CLI pointed at its folders."""

    def __init__(self, tmp_path: Path, capsys):
        self.results, self.tables, self.capsys = tmp_path / "res", tmp_path / "tables", capsys
        self.records = self.results / "smoke" / "records"
        self.table = self.tables / "smoke" / "toysafe.md"

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        flags = ["--preset", "smoke", "--results-dir", str(self.results)]
        if argv[0] == "report":
            flags += ["--tables-dir", str(self.tables)]
        if argv[0] == "run":
            flags += ["--executor", "local"]
        code = main([*argv, *flags])
        out, err = self.capsys.readouterr()
        return code, out, err

    def path(self, method: str, seed: int, **hparams) -> Path:
        return self.records / f"{Job.make('toy', method, seed, hparams, 'smoke').id}.json"

    def selected(self, method: str, seed: int) -> Path:
        """The record of the run that won on id_val."""
        recs = [json.loads(p.read_text()) for p in self.records.glob("*.json")]
        best = select_record([r for r in recs if r["job"]["method"] == method
                              and r["job"]["seed"] == seed])
        return self.records / f"{best['job_id']}.json"


@pytest.fixture
def toy(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(TABLES, TOY.name, TOY)
    t = Toy(tmp_path, capsys)
    code, _, err = t("run", "toysafe")
    assert code == 0, err
    return t


def test_a_complete_table_is_written_and_a_partial_one_never_replaces_it(toy):
    code, _, err = toy("report", "toysafe")
    assert code == 0 and toy.table.is_file() and "wrote" in err
    complete = toy.table.read_bytes()
    # a record lost (a subset run, a deleted file): the cell still has a number, selected
    # over two of the three learning rates, but the table is not what the records would give
    loser = next(p for lr in (1, 2, 3) if (p := toy.path("toy_fit", 0, lr=lr)) != toy.selected("toy_fit", 0))
    loser.unlink()
    code, out, err = toy("report", "toysafe")
    assert code == 0 and "# Toy" in out
    assert "partial (1 of 8 jobs without a record)" in err and "left as it was" in err
    assert toy.table.read_bytes() == complete  # the complete table is untouched
    assert (toy.tables / "smoke" / "partial" / "toysafe.md").is_file()


def test_a_report_draws_the_verdicts_once_for_the_printed_and_the_written_table(toy, monkeypatch):
    """The verdicts' bootstrap runs once per table: rendering and writing are handed them."""
    import bench.claims

    drawn, real = [], bench.claims.verdicts
    monkeypatch.setattr(bench.claims, "verdicts", lambda result: drawn.append(result.spec.name) or real(result))
    code, out, _ = toy("report", "toysafe")
    assert code == 0 and drawn == ["toysafe"]
    assert out == toy.table.read_text() + "\n"  # what is printed is what is written


def test_a_table_without_records_writes_nothing_and_says_to_run_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(TABLES, TOY.name, TOY)
    t = Toy(tmp_path, capsys)
    code, out, err = t("report", "toysafe")
    assert code == 1 and not out and not t.tables.exists()
    assert err.count("\n") == 1, err
    assert f"run `bench run toysafe --preset smoke --results-dir {t.results}` first" in err


def test_a_corrupt_record_marks_its_cells_and_fails_the_report(toy):
    toy("report", "toysafe")
    complete = toy.table.read_bytes()
    victim = toy.selected("toy_fit", 0)
    text = victim.read_text()
    victim.write_text(text[: len(text) // 2])  # truncated
    code, out, err = toy("report", "toysafe")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("| Toy regressor") or
               line.startswith("| toy_fit"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    assert cells == ["corrupt", "corrupt"], row  # never a mean over the readable seed
    assert err.count(f"error: corrupt record {victim}") == 1
    assert "seed 0 unreadable (corrupt record)" in out
    assert toy.table.read_bytes() == complete
    partial = (toy.tables / "smoke" / "partial" / "toysafe.csv").read_text()
    assert "toy_fit,id" in partial


def test_a_record_path_that_is_a_folder_is_a_corrupt_record_for_status_report_and_run(toy):
    victim = toy.path("toy_fit", 1, lr=2)
    victim.unlink()
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    code, out, err = toy("status", "toysafe")
    assert code == 0 and "--results-dir with a folder" not in out + err
    line = next(line for line in out.splitlines() if str(victim) in line)
    assert "a folder where a record file belongs" in line
    assert f"`bench run toysafe --preset smoke --results-dir {toy.results}`" in line
    code, _, err = toy("report", "toysafe")
    assert code == 1 and f"error: corrupt record {victim} (a folder where a record file belongs)" in err
    code, _, err = toy("run", "toysafe")
    assert code == 0, err
    assert json.loads(victim.read_text())["state"] == "done"  # re-run, and written in its place
    aside = victim.with_name(victim.name + ".not-a-record")
    assert (aside / "keep.txt").read_text() == "mine"  # the folder is kept, renamed
    code, _, _ = toy("report", "toysafe")
    assert code == 0 and toy.table.is_file()


# ------------------------------------------------------------------ hints that keep the user's flags
def test_next_line_after_a_run_repeats_the_users_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(TABLES, TOY.name, TOY)
    t = Toy(tmp_path, capsys)
    code, _, err = t("run", "toysafe", "--seeds", "0", "--methods", "toy_fit")
    assert code == 0
    assert (f"next: bench report toysafe --preset smoke --results-dir {t.results} "
            f"--methods toy_fit --seeds 0") in err


def test_missing_cell_hints_keep_results_dir_and_data_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(TABLES, TOY.name, TOY)
    t = Toy(tmp_path, capsys)
    data = tmp_path / "toy data"
    code, _, err = t("run", "toysafe", "--data-dir", f"toy={data}")
    assert code == 0, err
    next(p for p in t.records.glob("*.json") if json.loads(p.read_text())["job"]["method"] == "toy_ens").unlink()
    code, out, _ = t("report", "toysafe")
    hint = (f"`bench run toysafe --preset smoke --results-dir {t.results} "
            f"--data-dir 'toy={data}'`")
    assert code == 0 and "## Missing cells" in out and hint in out


def test_preflight_never_suggests_the_preset_that_failed(tmp_path, capsys):
    code = main(["run", "table1", "--preset", "cpu", "--executor", "local", "--results-dir",
                 str(tmp_path), "--data-dir", f"movielens={tmp_path / 'none'}"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot start" in err
    assert "`--preset cpu`" not in err and "try `--preset smoke`, which runs offline" in err
