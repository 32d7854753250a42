"""The section interface: every table is made of ``Section``s, a section that only renders
needs nothing else, and a metric is shown the way its one description says everywhere."""

from __future__ import annotations

import dataclasses

import pandas as pd

from bench import metric_format
from bench.check import snapshot
from bench.collect import collect
from bench.jobs import Subset
from bench.ledger import Ledger
from bench.render import csv_text, latex, markdown, missing_lines, write_all
from bench.sections import CostTable, MetricGrid, Need, OodBreakdown, Section, Shift
from bench.sections.metric_grid import cell_text
from bench.specs import TABLES, TableSpec, subset_spec
from bench.styling import ranks
from bench.uncertainty import Gap
from bench.verdicts import Test as Comparison  # not named Test*: pytest would collect it


def test_every_section_of_every_table_is_a_section():
    for spec in TABLES.values():
        for section in spec.sections:
            assert isinstance(section, Section), (spec.name, section)


@dataclasses.dataclass(frozen=True)
class Note(Section):
    """A section that gives only what the interface requires."""

    text: str
    key: str = "note"

    def needs(self, preset: str) -> list[Need]:
        return []

    def collect(self, recs) -> pd.DataFrame:
        return pd.DataFrame({"x": [1]})

    def markdown(self, frame, table) -> str:
        return f"\n{self.text}\n"

    def latex(self, frame, table) -> str:
        return ""


def test_a_section_with_only_the_required_methods_renders_writes_and_narrows(tmp_path):
    spec = TableSpec(name="notes", title="Notes", caption="Only a note.", sections=(Note("hello"),))
    result = collect(spec, "smoke", Ledger(tmp_path / "smoke"))
    assert "hello" in markdown(result, [])
    assert latex(result) == "" and csv_text(result) == ""
    assert snapshot(result)["values"] == {} and missing_lines(result) == []
    assert result.cells.empty and result.caption == "Only a note."
    written = write_all(result, [], tmp_path / "tables")
    assert [p.name for p in written] == ["notes.md", "notes.tex", "notes.csv"]
    part = subset_spec(spec, Subset.parse("movielens", "lp", None))
    assert part.sections == spec.sections  # nothing of it depends on datasets or methods


def test_narrowing_keeps_a_breakdown_on_its_grids_rows_and_drops_what_is_empty():
    ml = Shift("ml", "ML", "movielens", "ood/mean", "rmse")
    amz = Shift("amz", "AMZ", "amazon", "ood/time", "rmse")
    grid = MetricGrid(rows=("ft", "lp", "levi"), shifts=(ml, amz), references=("ref/mean",))
    spec = TableSpec(name="t", title="t", caption="", sections=(
        grid, OodBreakdown("g", "per genre", "movielens", "ood/", "rmse", of=grid),
        OodBreakdown("p", "per product", "amazon", "ood/product/", "rmse", of=grid),
        CostTable(("ft", "levi"), ("t5-small",))))
    part = subset_spec(spec, Subset.parse("movielens", "lp,levi", None))
    new_grid, genres, costs = part.sections
    assert new_grid.rows == ("lp", "levi") and new_grid.shifts == (ml,) and new_grid.references == ()
    assert genres.of is new_grid
    assert costs.rows == ("levi",)
    refs = subset_spec(spec, Subset.parse(None, "ref/mean", None))
    assert [type(s).__name__ for s in refs.sections] == ["OodBreakdown", "OodBreakdown"]


def test_a_metric_is_shown_as_its_one_description_says(monkeypatch):
    rmse = metric_format.METRICS["rmse"]
    cell = {"mean": 1.23456, "std": 0.01234, "missing": [], "diverged": [], "n": 3}
    gap = Gap("ft", "lp", "c", "rmse", diff=0.012345, se=None, se_seed=None, se_boot=None,
              n_seeds=1, n_examples=None, basis="b")
    assert cell_text(cell, "rmse") == "1.2346 ± 0.0123"
    assert ranks({"a": 1.2341, "b": 1.2344}, "rmse") == {"a": 1, "b": 2}
    assert Comparison("ft", "lp", "c", gap).text().startswith("FT - LP = +0.0123 RMSE")
    monkeypatch.setitem(metric_format.METRICS, "rmse",
                        dataclasses.replace(rmse, decimals=2, diff_decimals=1, unit="units"))
    assert cell_text(cell, "rmse") == "1.23 ± 0.01"
    assert ranks({"a": 1.2341, "b": 1.2344}, "rmse") == {"a": 1, "b": 1}  # equal as shown
    assert Comparison("ft", "lp", "c", gap).text().startswith("FT - LP = +0.0 units")
    assert metric_format.metric("auc").cell(0.5) == "0.500"  # undeclared: 3 decimals
