"""A plugin module named in LEVI_PLUGINS can register a table, not only datasets and methods:
tables are looked up after the plugins load."""

from __future__ import annotations

import sys
import textwrap

import pytest

from bench import specs
from levi_core import plugins


def test_a_plugin_registers_a_table(tmp_path, monkeypatch):
    (tmp_path / "my_tables.py").write_text(textwrap.dedent('''
        import toy_family  # noqa: F401
        from bench.specs import Column, MetricGrid, TableSpec, register_table

        register_table(TableSpec(
            name="my_table", title="Mine", caption="A plugin's table.",
            sections=(MetricGrid(rows=("toy_fit",),
                                 columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),)))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV_VAR, "my_tables")
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.setattr(specs, "TABLES", dict(specs.TABLES))
    try:
        assert specs.get_table("my_table").title == "Mine"
        with pytest.raises(Exception, match="exists already"):
            specs.register_table(specs.TableSpec(name="table1", title="x", caption="x"))
    finally:
        sys.modules.pop("my_tables", None)


def test_report_subset_keeps_the_asked_rows_datasets_and_seeds():
    from bench.jobs import Subset
    from bench.sections import MetricGrid, OodBreakdown

    part = specs.subset_spec(specs.TABLE1, Subset.parse("movielens", "lp,levi", "0"))
    grid = part.grid
    assert grid.rows == ("lp", "levi") and [s.dataset for s in grid.shifts] == ["movielens"]
    assert grid.references == ()
    assert [s.dataset for s in part.sections_of(OodBreakdown)] == ["movielens"]
    assert part.seeds == (0,) and isinstance(grid, MetricGrid)
    with pytest.raises(Exception, match="nothing of the table matches"):
        specs.subset_spec(specs.TABLE1, Subset.parse("imagenet", None, None))
