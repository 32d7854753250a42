"""A dataset is one module: registering its loader, options, fixture, shift and preset ids
from a single module makes it loadable, fixture-able and usable by a table spec."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from bench.jobs import plan
from bench.presets import get_preset
from bench.specs import MetricGrid, TableSpec, shift
from levi_core.data import base, fixtures, load_dataset, write_fixture
from levi_core.data.base import declaration
from levi_core.errors import ConfigError

MODULE = '''
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from levi_core.data import common, fixtures
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)

NAME = "regtest"


@dataclasses.dataclass(frozen=True)
class RegtestOptions(common.DatasetOptions):
    fixture: bool = False
    n: int = 40


def _fixture(folder: Path, rng: np.random.Generator) -> None:
    (folder / "values.txt").write_text("\\n".join(str(v) for v in rng.normal(size=200)))


fixtures.register_fixture(NAME, _fixture, stream=1000)


@register_dataset(NAME, modality="tabular", options=RegtestOptions)
def load(options, data_dir):
    opts = RegtestOptions.parse(NAME, options)
    folder = fixtures.fixture_dir(NAME) if opts["fixture"] else Path(data_dir)
    x = np.loadtxt(folder / "values.txt", dtype=np.float32)[: opts["n"]]
    def split(a, b):
        return Split(np.arange(a, b), (x[a:b] > 0).astype(np.int32), {"x": x[a:b, None]})
    q = opts["n"] // 4
    return Dataset(NAME, "classification", "accuracy", {"train": split(0, q), "id_val": split(q, 2 * q),
                   "id_test": split(2 * q, 3 * q), "ood/a": split(3 * q, 4 * q)}, num_classes=2)


register_shift("regtest_shift", "Regtest", NAME, "ood/a", "accuracy")
register_preset_ids(NAME, {"smoke": "regtest:fixture=1", "cpu": None})
'''


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """Import the module above with fresh copies of every registry (restored afterwards)."""
    for name in ("_LOADERS", "_DECLARED", "_SHIFTS", "_PRESET_IDS"):
        monkeypatch.setattr(base, name, dict(getattr(base, name)))
    monkeypatch.setattr(fixtures, "_FIXTURES", dict(fixtures._FIXTURES))
    monkeypatch.setenv("LEVI_DATA_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "regtest_module.py"
    path.write_text(textwrap.dedent(MODULE))
    spec = importlib.util.spec_from_file_location("regtest_module", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "regtest_module", module)
    spec.loader.exec_module(module)


def test_one_module_makes_a_dataset_loadable_and_fixture_able(registered, tmp_path):
    folder = write_fixture("regtest", tmp_path / "raw")
    assert (folder / "values.txt").is_file()
    ds = load_dataset("regtest:fixture=1,n=20")
    assert len(ds.splits["train"]) == 5 and ds.modality == "tabular"
    assert set(ds.splits) == {"train", "id_val", "id_test", "ood/a"}
    # the generic options know which keys the loader reads itself, from its declared options
    assert base._loader_options("regtest") == {"fixture", "n"}
    with pytest.raises(ConfigError, match=r"dataset 'regtest': option n='x' is not a valid int"):
        load_dataset("regtest:fixture=1,n=x")
    assert declaration("regtest").options.__name__ == "RegtestOptions"


def test_one_module_gives_a_table_its_shift_and_preset_ids(registered):
    grid = MetricGrid(rows=("lp",), shifts=(shift("regtest_shift"),))
    assert grid.shifts[0].dataset == "regtest" and grid.shifts[0].ood_role == "ood/a"
    assert get_preset("smoke").dataset_id("regtest") == "regtest:fixture=1"
    assert get_preset("cpu").dataset_id("regtest") is None
    assert get_preset("paper").dataset_id("regtest") == "regtest"
    spec = TableSpec(name="regtest_table", title="t", caption="c", sections=(grid,), seeds=(0,))
    assert {j.dataset for j in plan(spec, "smoke")} == {"regtest:fixture=1"}


def test_a_fixture_stream_cannot_be_shared(monkeypatch):
    monkeypatch.setattr(fixtures, "_FIXTURES", dict(fixtures._FIXTURES))
    with pytest.raises(ConfigError, match="stream 2 is 'movielens'"):
        fixtures.register_fixture("other", lambda folder, rng: None, stream=2)
