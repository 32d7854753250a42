"""Plugins as a first-class way to extend: a plugin module named in LEVI_PLUGINS registers
tables, presets, methods (a taken name only with ``replace=True``, which puts the code's identity
into the job id) and rows of an existing table; the README's one-file plugin runs as printed."""

from __future__ import annotations

import hashlib
import re
import sys
import textwrap
from pathlib import Path

import pytest

import toy_family  # noqa: F401  (registered before any test snapshots the registries)

from bench import specs
from levi_core import plugins
from levi_core.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def isolated(monkeypatch):
    """Every registry a plugin writes to, restored after the test (they are module globals)."""
    import levi_core.methods  # noqa: F401  (the built-ins, registered before the snapshot)
    from bench import presets
    from levi_core.methods import registry

    saved = [(d, dict(d)) for d in (specs.TABLES, presets.PRESETS, registry._METHODS,
                                    registry._IMPLS)]
    replaced = set(registry._REPLACED)
    monkeypatch.setattr(plugins, "_loaded", set())
    modules = set(sys.modules)
    yield
    for d, old in saved:
        d.clear()
        d.update(old)
    registry._REPLACED.clear()
    registry._REPLACED.update(replaced)
    registry._IDENTITY.clear()
    for name in set(sys.modules) - modules:
        if name in ("my_method", "my_tables", "my_presets"):
            sys.modules.pop(name, None)


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


def _five_field_id(job) -> str:
    """The id as the five semantic fields alone define it (what every built-in keeps)."""
    from bench.jobs import canonical_json

    fields = {"dataset": job.dataset, "method": job.method, "seed": job.seed,
              "hparams": job.hparams_dict, "preset": job.preset}
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:20]


def test_a_taken_method_name_fails_unless_replaced_and_then_the_code_enters_the_job_id(isolated):
    from bench.jobs import Job
    from levi_core.methods import Method, RunOutput, implements, register_method

    job = Job.make("movielens:fixture=1", "lp", 0, {"lr": 0.1}, "smoke")
    builtin_id = job.id
    assert builtin_id == _five_field_id(job) and "code" not in job.fields()
    with pytest.raises(ConfigError, match="'lp' is registered already.*replace=True"):
        register_method(Method("lp", "my linear probe"))
    with pytest.raises(ConfigError, match="'lp' already has an implementation.*replace=True"):
        implements("lp")(lambda ctx: RunOutput())
    assert job.id == builtin_id  # the refused attempts changed nothing

    register_method(Method("lp", "my linear probe", {"lr": (0.1,)}), replace=True)

    @implements("lp")  # the method was replaced on purpose: its implementation may follow
    def mine(ctx):
        return RunOutput()

    replaced_id = job.id
    assert replaced_id != builtin_id and job.fields()["code"].startswith("source:")

    @implements("lp", replace=True)
    def mine_edited(ctx):
        return RunOutput(extras={"edited": True})

    assert job.id not in (builtin_id, replaced_id)  # edited code: its records are not reused
    register_method(Method("lp", "my linear probe", {"lr": (0.1,)}, version="2"), replace=True)
    assert job.fields()["code"] == "version:2"
    other = Job.make("movielens:fixture=1", "ft", 0, {"lr": 0.1}, "smoke")
    assert other.id == _five_field_id(other)  # the other built-ins keep their ids


def test_a_plugin_method_has_its_own_label_and_version(isolated):
    from bench.jobs import Job
    from levi_core.methods import Method, register_method
    from levi_core.methods.catalog import label

    register_method(Method("mine", "mine", label="My method", version="3"))
    register_method(Method("mine", "mine", label="My method", version="3"))  # imported twice
    assert label("mine") == "My method" and label("lp") == "LP"
    assert Job.make("toy", "mine", 0, {}, "smoke").fields()["code"] == "version:3"


def _write_plugin(tmp_path, monkeypatch, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV_VAR, name)


def test_plugin_tables_show_in_bench_ls_and_plugin_presets_are_preset_choices(
        isolated, tmp_path, monkeypatch, capsys):
    from bench.cli import main

    _write_plugin(tmp_path, monkeypatch, "my_presets", '''
        import toy_family  # noqa: F401
        from bench.presets import PRESETS, Preset, register_preset
        from bench.specs import Column, MetricGrid, TableSpec, register_table

        register_preset(Preset("tiny", "a plugin's preset", settings=PRESETS["smoke"].settings,
                               datasets=PRESETS["smoke"].datasets))
        register_table(TableSpec(
            name="my_table", title="Mine", caption="A plugin's table.", seeds=(0,),
            sections=(MetricGrid(rows=("toy_fit",),
                                 columns=(Column("id", "ID", "toy", "id_test", "rmse"),)),)))
    ''')
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  my_table +Mine$", out, re.M) and re.search(r"^  tiny +a plugin's", out, re.M)
    assert main(["status", "my_table", "--preset", "tiny", "--results-dir", str(tmp_path)]) == 0
    assert re.search(r"^my_table +3 +0 +0 +0 +3$", capsys.readouterr().out, re.M)
    from bench.presets import Preset, register_preset

    with pytest.raises(ConfigError, match="preset named 'smoke' exists already"):
        register_preset(Preset("smoke", "another"))


def test_extend_table_checks_its_arguments(isolated):
    import toy_family  # noqa: F401

    with pytest.raises(ConfigError, match="unknown table 'tabel1'"):
        specs.extend_table("tabel1", rows=["toy_fit"], name="x")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        specs.extend_table("table1", rows=["nope"], name="x")
    with pytest.raises(ConfigError, match="shows lp already"):
        specs.extend_table("table1", rows=["lp"], name="x")
    with pytest.raises(ConfigError, match="no method grid"):
        specs.extend_table("fig4", rows=["toy_fit"], name="x")
    before = specs.TABLES["table1"]
    spec = specs.extend_table("table1", rows=["toy_fit"], name="toy")
    assert spec.grid.rows == before.grid.rows  # the claims' rows stay the paper's
    assert spec.grid.shown_rows("smoke")[-1] == "toy_fit"
    assert all(s.of is spec.grid for s in spec.sections if hasattr(s, "of"))  # breakdowns too
    assert specs.extend_table("table1", rows=["toy_fit"], name="toy") is spec  # imported twice


def _readme_plugin() -> tuple[str, list[str]]:
    """The README's one-file plugin and the `bench` commands printed under it."""
    text = README.read_text()
    m = re.search(r"`my_method\.py`[^\n]*\n\n```python\n(.*?)```\n\n```bash\n(.*?)```", text, re.S)
    assert m, "README: the one-file plugin example (`my_method.py`) is missing"
    commands = [line.split("#")[0].split() for line in m.group(2).splitlines()
                if line.startswith("bench ")]
    return m.group(1), commands


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_the_readme_plugin_runs_beside_levi_on_table1_smoke(isolated, tmp_path, monkeypatch, capsys):
    """Runs the README's file and commands as printed; only `--datasets movielens` (half the
    time), the in-process executor and a scratch results folder are added."""
    from bench.cli import main
    from bench.ledger import Ledger

    code, commands = _readme_plugin()
    assert [c[:2] for c in commands] == [["bench", "ls"], ["bench", "run"], ["bench", "report"]]
    _write_plugin(tmp_path, monkeypatch, "my_method", code)
    assert main(commands[0][1:]) == 0
    out = capsys.readouterr().out
    assert "[+ extension 'ridge': ridge]" in out and '"Ridge (frozen)" [version 1]' in out
    extra = ["--datasets", "movielens", "--results-dir", str(tmp_path / "results")]
    assert main(commands[1][1:] + extra + ["--executor", "local"]) == 0
    records = Ledger(tmp_path / "results" / "smoke").read_all().values()
    ridge = [r for r in records if r["job"]["method"] == "ridge"]
    assert len(ridge) == 2 and all(r["state"] == "done" for r in ridge)
    assert all(r["job"]["code"] == "version:1" for r in ridge)
    capsys.readouterr()
    assert main(commands[2][1:] + extra) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| LEVI ") or line.startswith("| Ridge (frozen) ")}
    assert set(rows) == {"LEVI", "Ridge (frozen)"}
    assert re.search(r"\| Ridge \(frozen\) +\| +[*<u>]*\d\.\d{4}", rows["Ridge (frozen)"])  # numbers
    assert "Rows added by the plugin extension 'ridge'" in out
