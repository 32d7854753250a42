"""Presets scale a table spec without changing its meaning.

A preset is a name (part of every job id), a mapping from a table's logical dataset names to
the dataset ids it runs on (fixtures for ``smoke``, subsampled real data for ``cpu``; each
dataset module declares its own, ``levi_core.data.base.register_preset_ids``), and the size knobs (``settings``) handed to levi_core. Changing a preset's settings changes results
without changing job ids, so treat them like code: the git commit in every record's provenance
says which settings produced it.

- ``paper``: the paper's models (T5-small, ViT-B/16 ImageNet-21k), full data, its batch sizes,
  optimizers and LR grids (D.3). Needs the weights and data locally or a network.
- ``cpu``: MiniLM-L6 (from the installed package), real MovieLens: every method of a seed on
  the same seeded draw of the training split, scored on the whole evaluation sets; and a
  real-image shift (CIFAR-10 vehicles under corruptions) with the project's own pre-trained ViT;
  2-core machine.
- ``smoke``: tiny random backbones on generated fixtures, small enough that CI runs every table.

Settings are one mapping per modality (``text``, ``vision``, ``tabular``) whose keys and
defaults are the fields of ``levi_core.settings`` (an unknown key fails when the preset is
used, naming the key and the known ones). A job's resolved settings go into its record, and a
job whose record holds other settings runs again, so editing a preset re-runs exactly the jobs
it affects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from levi_core.data.base import preset_dataset_id
from levi_core.errors import ConfigError
from levi_core.methods.catalog import LARGE_GRIDS
from levi_core.settings import Settings


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    # logical name -> dataset id, or None: not part of this preset (its columns are dropped);
    # over what the dataset modules declare for this preset's name (register_preset_ids)
    datasets: Mapping[str, str | None] = field(default_factory=dict)
    # logical dataset -> method -> grid: a stated subset of a method's grid on that dataset
    # under this preset (time budget); other datasets (e.g. synthetic) keep their grids
    grids: Mapping[str, Mapping[str, Mapping[str, tuple]]] = field(default_factory=dict)
    # methods whose hyperparameters are selected on seed 0 (on id_val) and reused for the
    # other seeds, as the LP-FT protocol does: seeds 1.. run one job each, not the grid
    select_on_seed0: tuple[str, ...] = ()

    def typed_settings(self) -> Settings:
        """The preset's settings, checked."""
        try:
            return Settings.from_mapping({k: dict(v) for k, v in self.settings.items()})
        except ConfigError as e:
            raise ConfigError(f"preset {self.name!r}: {e}") from None

    def dataset_id(self, logical: str) -> str | None:
        """The id a table's dataset runs as under this preset: the preset's own mapping, else
        what the dataset's module declares for this preset (``levi_core.data.base.
        register_preset_ids``), else the logical name itself."""
        if logical in self.datasets:
            return self.datasets[logical]
        return preset_dataset_id(self.name, logical)


# The paper's settings are levi_core.settings' defaults; presets state only what they change.

# The methods that train the large model over a learning-rate grid (the expensive part of a
# CPU budget), from the catalog.
LARGE_METHODS = LARGE_GRIDS

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "paper", "the paper's models (T5-small, ViT-B/16), full data, 3 seeds",
            settings={},
        ),
        Preset(
            "cpu", "real MovieLens with MiniLM-L6, every method on the same draw of 10,000 "
                   "training ratings per seed; CIFAR-10 vehicles with the project's ViT; sized "
                   "for a 2-core machine",
            # Equal data: every method of a seed (large-model trainings, LP, LEVI and its
            # variants, A1-A5, layer/<k>, the references) learns from the same seeded draw of
            # ``train_examples`` training ratings (levi_core.data.base.with_train_draw), so that
            # methods differ in what they do, not in what they saw. The large models train
            # ``epochs`` over it at two learning rates of the paper's grid, selected on seed 0
            # and reused for the other seeds (the LP-FT protocol), which keeps the costliest
            # methods to one job per later seed; heads (lp, LEVI, A3-A5, layer/<k>) train up to
            # ``head_epochs`` with the epoch chosen on id_val (early stopping after
            # ``head_patience`` epochs without gain, best weights kept). Every method is scored
            # on the whole id_test and every rating of every OOD set; id_val, read after every
            # epoch of every head, is a fixed stratified sample (``max_val``) to keep that cheap.
            # Vision (CIFAR-10 vehicles, beyond the paper): the project's ViT pre-trained on
            # CIFAR-10's animals (`bench.benchmarks.pretrain_cifar_vit`, weights committed);
            # LEVI's adapting layers scaled to its width (``adapter_hidden`` in the paper's
            # ratio of hidden units to backbone width). As for text, every method of a seed
            # learns from the same seeded draw of training images and heads stop early on
            # id_val; scored on fixed samples of id_val / id_test and of each OOD set
            # (``max_eval``, ``max_ood``).
            settings={"text": {"backbone": "minilm-l6", "max_len": 64, "epochs": 1,
                               "batch_size": 32, "train_examples": 10_000,
                               "head_epochs": 20, "head_patience": 3},
                      "vision": {"backbone": "vit-cifar-animals", "batch_size": 64, "epochs": 2,
                                 "train_examples": 4_000, "head_epochs": 10, "head_patience": 2,
                                 "adapter_hidden": 128}},
            # Only MovieLens and CIFAR-10 are available on these machines; the other datasets'
            # columns are not part of this preset (each dataset module declares its cpu id).
            grids={**{d: {m: {"lr": (1e-4, 1e-3)} for m in LARGE_METHODS}
                      for d in ("movielens", "movielens_time")},
                   # SGD with momentum (the paper's vision optimizer): larger steps than Adam's.
                   # LEVI's heads start from scratch (a small CNN and adapting layers): the two
                   # upper points of their grid, where a fresh network moves in 10 epochs of SGD
                   "cifar_vehicles": {**{m: {"lr": (1e-3, 1e-2)} for m in LARGE_METHODS},
                                      **{m: {"lr": (1e-2, 1e-1)} for m in ("levi", "levi/lora", "a4")}}},
            select_on_seed0=LARGE_METHODS,
        ),
        Preset(
            "smoke", "tiny random backbones on generated fixtures; seconds (CI)",
            settings={"text": {"backbone": "bert-tiny", "weights": "random", "max_len": 32,
                               "epochs": 1, "batch_size": 32, "small_hidden": (16, 8),
                               "adapter_hidden": 8, "embed_dim": 4, "lora_rank": 2},
                      "vision": {"backbone": "vit-tiny", "weights": "random", "batch_size": 16,
                                 "epochs": 1, "small_conv": (4, 4, 4, 4), "adapter_hidden": 8,
                                 "lora_rank": 2}},
            # the datasets' fixtures: each dataset module declares its smoke id
        ),
    ]
}

DEFAULT_PRESET = "paper"


def register_preset(preset: Preset) -> Preset:
    """Add a preset (from a plugin module named in ``LEVI_PLUGINS``; the CLI loads plugins
    before reading its flags, so ``--preset NAME`` accepts it). Its name must be new: the name
    is part of every job id, so reusing one would mix two presets' records."""
    if not isinstance(preset, Preset):
        raise ConfigError(f"register_preset takes a bench.presets.Preset (got {type(preset).__name__})")
    old = PRESETS.get(preset.name)
    if old is not None and old != preset:
        raise ConfigError(f"a preset named {preset.name!r} exists already; choose another name "
                          f"(known presets: {', '.join(PRESETS)})")
    preset.typed_settings()  # an unknown setting fails when the plugin loads, not mid-grid
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
