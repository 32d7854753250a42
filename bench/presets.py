"""Presets scale a table spec without changing its meaning.

A preset is a name (part of every job id), a mapping from a table's logical dataset names to
the dataset ids it runs on (fixtures for ``smoke``, subsampled real data for ``cpu``), and the
size knobs (``settings``) handed to levi_core. Changing a preset's settings changes results
without changing job ids, so treat them like code: the git commit in every record's provenance
says which settings produced it.

- ``paper``: the paper's models (T5-small, ViT-B/16 ImageNet-21k), full data, its batch sizes,
  optimizers and LR grids (D.3). Needs the weights and data locally or a network.
- ``cpu``: MiniLM-L6 (from the installed package), real MovieLens subsampled; 2-core machine.
- ``smoke``: tiny random backbones on generated fixtures; seconds; what CI runs.

Settings are one mapping per modality (``text``, ``vision``, ``tabular``) whose keys and
defaults are the fields of ``levi_core.settings`` (an unknown key fails when the preset is
used, naming the key and the known ones). A job's resolved settings go into its record, and a
job whose record holds other settings runs again, so editing a preset re-runs exactly the jobs
it affects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from levi_core.errors import ConfigError
from levi_core.settings import Settings


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    # logical name -> dataset id, or None: not part of this preset (its columns are dropped)
    datasets: Mapping[str, str | None] = field(default_factory=dict)
    # logical dataset -> method -> grid: a stated subset of a method's grid on that dataset
    # under this preset (time budget); other datasets (e.g. synthetic) keep their grids
    grids: Mapping[str, Mapping[str, Mapping[str, tuple]]] = field(default_factory=dict)

    def typed_settings(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
        """The preset's settings (with a table's per-modality overrides), checked."""
        merged = {k: dict(v) for k, v in self.settings.items()}
        for modality, values in (overrides or {}).items():
            merged.setdefault(modality, {}).update(values)
        try:
            return Settings.from_mapping(merged)
        except ConfigError as e:
            raise ConfigError(f"preset {self.name!r}: {e}") from None

    def dataset_id(self, logical: str) -> str | None:
        """The id a table's dataset runs as under this preset (itself when not remapped)."""
        return self.datasets.get(logical, logical)


# The paper's settings are levi_core.settings' defaults; presets state only what they change.

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "paper", "the paper's models (T5-small, ViT-B/16), full data, 3 seeds",
            settings={}, datasets={"movielens_time": "movielens:shift=time"},
        ),
        Preset(
            "cpu", "real MovieLens with MiniLM-L6, subsampled; sized for a 2-core machine",
            # Budget (measured on 2 cores): a MiniLM fine-tuning step on 200 sentences of 64
            # tokens takes ~7 s and a forward pass ~20 ms per sentence, so each job that trains
            # the large model (ft, ht, fs, lp_ft, and a1's second ft) gets 2 epochs over 1,000
            # training ratings and one lr (1e-4, a stated subset of the paper's grid); methods on
            # cached features (lp, LEVI, A3-A5, layer/<k>) get the full grid and 10 epochs.
            settings={"text": {"backbone": "minilm-l6", "max_len": 64, "epochs": 2,
                               "head_epochs": 10},
                      "vision": {"batch_size": 64, "epochs": 1}},
            # Only MovieLens is available on these machines; the other datasets' columns are
            # not part of this preset.
            datasets={"movielens": "movielens:max_train=1000,max_eval=150",
                      "movielens_time": "movielens:shift=time,max_train=1000,max_eval=150",
                      "amazon": None, "retinopathy": None, "imagenet": None},
            grids={d: {m: {"lr": (1e-4,)} for m in ("ft", "ht", "fs", "lp_ft", "lora")}
                   for d in ("movielens", "movielens_time")},
        ),
        Preset(
            "smoke", "tiny random backbones on generated fixtures; seconds (CI)",
            settings={"text": {"backbone": "bert-tiny", "weights": "random", "max_len": 32,
                               "epochs": 1, "batch_size": 32, "small_hidden": (16, 8),
                               "adapter_hidden": 8, "embed_dim": 4, "lora_rank": 2},
                      "vision": {"backbone": "vit-tiny", "weights": "random", "batch_size": 16,
                                 "epochs": 1, "small_conv": (4, 4, 4, 4), "adapter_hidden": 8,
                                 "lora_rank": 2}},
            datasets={"movielens": "movielens:fixture=1",
                      "movielens_time": "movielens:shift=time,fixture=1",
                      "amazon": "amazon:fixture=2023",
                      "retinopathy": "retinopathy:fixture=1,image_size=32",
                      "imagenet": "imagenet:fixture=1,image_size=32"},
        ),
    ]
}

DEFAULT_PRESET = "paper"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
