"""Typed settings: defaults in one place, unknown keys rejected, and settings deciding whether a
finished record can be reused (a preset edit re-runs exactly the jobs it affects)."""

from __future__ import annotations

import dataclasses
import os

import pytest

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_*)
from bench import presets
from bench.executors import LocalExecutor
from bench.jobs import plan
from bench.ledger import Ledger
from bench.runner import run_jobs
from bench.specs import Column, MetricGrid, TableSpec
from levi_core.data.base import register_dataset
from levi_core.errors import ConfigError
from levi_core.methods.registry import implements
from levi_core.settings import Settings

# the toy loader again, declared as a tabular dataset: its records hold the tabular settings
register_dataset("toy_tab", modality="tabular")(toy_family.load_toy)
implements("toy_fit", "toy_tab")(toy_family.run_fit)

SPEC = TableSpec(
    name="toy2", title="Toy", caption="Toy table over two modalities.",
    sections=(MetricGrid(rows=("toy_fit",),
                         columns=(Column("a", "ID", "toy", "id_test", "rmse"),
                                  Column("b", "ID", "toy_tab", "id_test", "rmse"))),),
)


def test_defaults_are_the_papers_and_unknown_keys_fail():
    s = Settings.from_mapping({})
    assert s.text.backbone == "t5-small" and s.vision.adapter_hidden == 1024
    assert s.tabular.hidden == (64, 64)
    with pytest.raises(ConfigError, match=r"unknown setting text\.max_lenn; known text settings: .*max_len"):
        Settings.from_mapping({"text": {"max_lenn": 3}})
    with pytest.raises(ConfigError, match="unknown settings section 'txt'"):
        Settings.from_mapping({"txt": {}})
    with pytest.raises(ConfigError, match="text.optimizer"):
        Settings.from_mapping({"text": {"optimizer": "rmsprop"}})
    assert Settings.from_mapping({"text": {"small_hidden": "8,4"}}).text.small_hidden == (8, 4)


def test_every_preset_builds():
    for p in presets.PRESETS.values():
        p.typed_settings()


def test_changing_one_setting_reruns_exactly_the_jobs_it_affects(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv("TOY_RUN_LOG", str(log))
    ran = lambda: log.read_text().split() if log.exists() else []  # noqa: E731
    ledger = Ledger(tmp_path / "smoke")

    def run():
        return run_jobs(plan(SPEC, "smoke"), SPEC, "smoke", LocalExecutor(), ledger,
                        out=open(os.devnull, "w"))

    first = run()
    assert first.ran == 18 and len(ran()) == 18
    assert run().ran == 0
    smoke = presets.PRESETS["smoke"]
    edited = dataclasses.replace(smoke, settings={**smoke.settings, "tabular": {"epochs": 7}})
    monkeypatch.setitem(presets.PRESETS, "smoke", edited)
    again = run()
    rerun = ran()[18:]
    tab_jobs = {j.id for j in plan(SPEC, "smoke") if j.dataset == "toy_tab"}
    assert again.ran == again.stale == 9 and set(rerun) == tab_jobs
    assert run().ran == 0  # the new records hold the new settings


def test_records_of_other_settings_are_left_out_of_tables(tmp_path, monkeypatch):
    from bench.collect import collect

    ledger = Ledger(tmp_path / "smoke")
    run_jobs(plan(SPEC, "smoke"), SPEC, "smoke", LocalExecutor(), ledger, out=open(os.devnull, "w"))
    assert collect(SPEC, "smoke", Ledger(tmp_path / "smoke")).n_records == 18
    smoke = presets.PRESETS["smoke"]
    edited = dataclasses.replace(smoke, settings={**smoke.settings, "tabular": {"epochs": 7}})
    monkeypatch.setitem(presets.PRESETS, "smoke", edited)
    fresh = Ledger(tmp_path / "smoke")
    result = collect(SPEC, "smoke", fresh)
    assert result.n_records == 9 and len(set(fresh.other_settings)) == 9  # the tabular ones
