"""Settings: one default per field, types from the annotations, and records that keep the
settings they always had (a record is reused only when its settings equal these)."""

from __future__ import annotations

import pytest

from levi_core.data.common import DatasetOptions
from levi_core.errors import ConfigError
from levi_core.settings import (FALLBACK_BATCH_SIZE, MIN_EVAL_BATCH_SIZE, Settings, TextSettings,
                                VisionSettings, coerce, settings_dict)

# What records of the default settings held before the settings shared a base class; a field
# added since must be left out at its default, or every finished record would go stale.
RECORDED_VISION = {"backbone": "vit-b16-224-in21k", "weights": "pretrained", "weights_dir": None,
                   "optimizer": "sgd", "epochs": 3, "head_epochs": None, "batch_size": None,
                   "eval_batch_size": None, "lora_rank": 8, "small_conv": [32, 64, 64, 64],
                   "small_pool": "global", "adapter_hidden": 1024, "levi_layers": []}
RECORDED_TEXT = {"backbone": "t5-small", "weights": "pretrained", "weights_dir": None,
                 "max_len": 128, "optimizer": "adam", "epochs": 3, "head_epochs": None,
                 "batch_size": None, "eval_batch_size": None, "lora_rank": 8,
                 "small_hidden": [512, 256], "embed_dim": 32, "adapter_hidden": 256,
                 "unknown_id_frac": 0.05, "ref_reg": 10.0, "levi_layers": []}


def test_records_of_the_defaults_are_unchanged():
    s = Settings()
    assert settings_dict(s.vision) == RECORDED_VISION
    assert settings_dict(s.text) == RECORDED_TEXT


def test_vision_states_its_unknown_id_frac_and_records_it_only_when_set():
    assert VisionSettings().unknown_id_frac == 0.0 and TextSettings().unknown_id_frac == 0.05
    v = Settings.from_mapping({"vision": {"unknown_id_frac": "0.1", "head_patience": 2}}).vision
    assert settings_dict(v)["unknown_id_frac"] == 0.1 and settings_dict(v)["head_patience"] == 2
    with pytest.raises(ConfigError, match=r"vision.unknown_id_frac must be in \[0, 1\)"):
        Settings.from_mapping({"vision": {"unknown_id_frac": 1.5}})
    assert VisionSettings().max_len is None  # images: a class constant, not a setting
    with pytest.raises(ConfigError, match="unknown setting vision.max_len"):
        Settings.from_mapping({"vision": {"max_len": 3}})


def test_types_come_from_the_annotations():
    t = Settings.from_mapping({"text": {"levi_layers": "1,3", "batch_size": "16", "max_len": 8.0,
                                        "ref_reg": "2"}}).text
    assert t.levi_layers == (1, 3) and t.batch_size == 16 and t.max_len == 8 and t.ref_reg == 2.0
    assert Settings.from_mapping({"text": {"head_epochs": None}}).text.head_epochs is None
    with pytest.raises(ConfigError, match=r"setting text.epochs='x' is not a valid value"):
        Settings.from_mapping({"text": {"epochs": "x"}})
    assert coerce(bool, "No") is False and coerce(bool, "yes") is True
    with pytest.raises(ValueError):
        coerce(bool, "maybe")


def test_batch_fallbacks_are_named():
    s = TextSettings()
    assert s.train_batch_size(None) == FALLBACK_BATCH_SIZE and s.train_batch_size(100) == 100
    assert s.eval_batch(32) == MIN_EVAL_BATCH_SIZE and s.eval_batch(512) == 512
    assert TextSettings(batch_size=8, eval_batch_size=4).eval_batch(8) == 4


def test_dataset_options_parse_like_settings():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Opts(DatasetOptions):
        flag: bool = False
        k: int = 3
        name: str = "a"

    o = Opts.parse("d", {"flag": "true", "k": "5"})
    assert (o["flag"], o["k"], o["name"]) == (True, 5, "a")
    assert o.resolved() == {"flag": True, "k": 5, "name": "a"}
    with pytest.raises(ConfigError, match=r"dataset 'd': unknown option\(s\) x; accepted: flag, k, name"):
        Opts.parse("d", {"x": "1"})
    with pytest.raises(ConfigError, match=r"option flag='2' is not a valid bool"):
        Opts.parse("d", {"flag": "2"})
