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
