"""Typed settings: every size knob of a run, with every default in one place.

A preset (``bench.presets``) states settings as a plain mapping; ``Settings.from_mapping`` turns
it into frozen dataclasses and rejects any key it does not know, naming the key and the known
ones, so a typo in a preset fails at once instead of being silently ignored.

There is one dataclass per modality (what a dataset declares it is, see
``levi_core.data.base.register_dataset``):

* ``text``  - a text backbone (T5, BERT) and the recommendation small model;
* ``vision`` - a ViT backbone and the convolutional small model;
* ``tabular`` - the synthetic experiment of Appendix E.8 (an MLP "large" model).

The settings a job ran with are ``Settings.for_modality(m).as_dict()``; the harness writes them
into the job's record and re-runs a job whose record holds other settings (a preset edit can
never silently reuse results computed under the old settings).

``batch_size`` ``None`` means the dataset's own (the paper's D.3: 200 for MovieLens, 100 for
Amazon, 512 for the vision datasets), declared by each loader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from levi_core.errors import ConfigError

WEIGHTS = ("pretrained", "random")
COMPUTE_DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adam", "sgd")
POOLS = ("global", "flatten")


def _ints(value: Any) -> tuple[int, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(int(v) for v in parts)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class TextSettings:
    """A text backbone and LEVI's recommendation parts (paper D.2, D.3)."""

    backbone: str = "t5-small"
    weights: str = "pretrained"  # pretrained | random (a fixed seed-0 init: smoke runs)
    weights_dir: str | None = None
    max_len: int = 128
    optimizer: str = "adam"
    epochs: int = 3  # large-model training (ft, ht, fs, lp_ft, lora)
    # large-model training on a seeded draw of this many training rows (the same draw for every
    # method of a seed); None: the whole training split (a CPU budget, see bench.presets)
    train_examples: int | None = None
    head_epochs: int | None = None  # training on cached states (lp, levi*, a3-a5, layer/k); None: epochs
    # heads: None trains head_epochs and keeps the last weights; N scores id_val after each
    # epoch, keeps the best weights and stops after N epochs without improvement
    head_patience: int | None = None
    batch_size: int | None = None  # None: the dataset's own
    eval_batch_size: int | None = None  # None: max(batch_size, 256)
    lora_rank: int = 8
    small_hidden: tuple[int, ...] = (512, 256)
    embed_dim: int = 32
    adapter_hidden: int = 256
    unknown_id_frac: float = 0.05
    ref_reg: float = 10.0  # the bias references' regulariser
    levi_layers: tuple[int, ...] = ()  # blocks with an adapting layer; () = every block 1..L
    # the backbone's arithmetic: bfloat16 runs it on bfloat16 copies of the float32 parameters
    # (parameters, optimizer state, pooled states and heads stay float32); for accelerators
    compute_dtype: str = "float32"

    _COERCE = {"max_len": int, "epochs": int, "head_epochs": _opt_int, "batch_size": _opt_int,
               "train_examples": _opt_int, "head_patience": _opt_int,
               "eval_batch_size": _opt_int, "lora_rank": int, "small_hidden": _ints,
               "embed_dim": int, "adapter_hidden": int, "unknown_id_frac": float, "ref_reg": float,
               "levi_layers": _ints}

    def check(self) -> None:
        _check_common(self, "text")
        if not 0.0 <= self.unknown_id_frac < 1.0:
            raise ConfigError(f"text.unknown_id_frac must be in [0, 1), got {self.unknown_id_frac}")
        for k in ("train_examples", "head_patience"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"text.{k} must be a positive integer or None, got {getattr(self, k)}")


@dataclass(frozen=True)
class VisionSettings:
    """A ViT backbone and LEVI's convolutional small model (paper D.2, D.3)."""

    backbone: str = "vit-b16-224-in21k"
    weights: str = "pretrained"
    weights_dir: str | None = None
    optimizer: str = "sgd"
    epochs: int = 3
    # as TextSettings: every method of a seed on the same seeded draw of this many training
    # rows (None: the whole split), and early stopping of the heads on id_val
    train_examples: int | None = None
    head_epochs: int | None = None
    head_patience: int | None = None
    batch_size: int | None = None
    eval_batch_size: int | None = None
    lora_rank: int = 8
    small_conv: tuple[int, ...] = (32, 64, 64, 64)
    # D.2: the CNN's last layer "is flattened to be served to the adapting layers", pooling not
    # given. "global" (default) averages it over space (64 values), which keeps LEVI's
    # parameters consistent with Tables 3/16's statements; "flatten" is the literal reading
    # (14 x 14 x 64 values at 224 x 224: LEVI would train about twice FT's parameters).
    small_pool: str = "global"
    adapter_hidden: int = 1024
    levi_layers: tuple[int, ...] = ()  # blocks with an adapting layer; () = every block 1..L
    compute_dtype: str = "float32"  # as TextSettings.compute_dtype

    _COERCE = {"epochs": int, "head_epochs": _opt_int, "batch_size": _opt_int,
               "train_examples": _opt_int, "head_patience": _opt_int,
               "eval_batch_size": _opt_int, "lora_rank": int, "small_conv": _ints,
               "adapter_hidden": int, "levi_layers": _ints}

    def check(self) -> None:
        _check_common(self, "vision")
        for k in ("train_examples", "head_patience"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"vision.{k} must be a positive integer or None, got {getattr(self, k)}")
        if self.small_pool not in POOLS:
            raise ConfigError(f"vision.small_pool must be one of {POOLS}, got {self.small_pool!r}")


@dataclass(frozen=True)
class TabularSettings:
    """The synthetic experiment of Appendix E.8: a 3-layer MLP is the "large" model."""

    hidden: tuple[int, ...] = (64, 64)  # 2 hidden layers + head = 3 layers
    small_hidden: tuple[int, ...] = (32, 32)
    adapter_hidden: int = 32
    epochs: int = 50
    batch_size: int = 200
    pretrain_epochs: int = 100
    pretrain_lr: float = 1e-3
    pretrain_seed: int = 0

    _COERCE = {"hidden": _ints, "small_hidden": _ints, "adapter_hidden": int, "epochs": int,
               "batch_size": int, "pretrain_epochs": int, "pretrain_lr": float,
               "pretrain_seed": int}

    def check(self) -> None:
        if not self.hidden or min(self.hidden + self.small_hidden) < 1 or self.batch_size < 1:
            raise ConfigError(f"tabular settings: bad widths or batch size in {self}")


def _check_common(s, name: str) -> None:
    if s.compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"{name}.compute_dtype must be one of {COMPUTE_DTYPES}, got {s.compute_dtype!r}")
    if s.weights not in WEIGHTS:
        raise ConfigError(f"{name}.weights must be one of {WEIGHTS}, got {s.weights!r}")
    if s.optimizer not in OPTIMIZERS:
        raise ConfigError(f"{name}.optimizer must be one of {OPTIMIZERS}, got {s.optimizer!r}")
    for k in ("epochs", "lora_rank", "adapter_hidden"):
        if getattr(s, k) < 0:
            raise ConfigError(f"{name}.{k} must be >= 0, got {getattr(s, k)}")


MODALITIES = {"text": TextSettings, "vision": VisionSettings, "tabular": TabularSettings}


def _build(cls, given: Mapping[str, Any], where: str):
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting {where}.{unknown[0]}; known {where} settings: "
                          f"{', '.join(known)}")
    values = {}
    for k, v in given.items():
        coerce = cls._COERCE.get(k)
        try:
            values[k] = coerce(v) if coerce is not None else v
        except (TypeError, ValueError):
            raise ConfigError(f"setting {where}.{k}={v!r} is not a valid value") from None
    obj = cls(**values)
    obj.check()
    return obj


@dataclass(frozen=True)
class Settings:
    """Every modality's settings; ``Settings()`` is the paper's defaults."""

    text: TextSettings = field(default_factory=TextSettings)
    vision: VisionSettings = field(default_factory=VisionSettings)
    tabular: TabularSettings = field(default_factory=TabularSettings)

    @staticmethod
    def from_mapping(m: Mapping[str, Any] | None) -> "Settings":
        """Build from a preset's mapping ``{modality: {key: value}}``; unknown keys fail."""
        m = dict(m or {})
        unknown = sorted(set(m) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"unknown settings section {unknown[0]!r}; known sections: "
                              f"{', '.join(MODALITIES)}")
        return Settings(**{name: _build(cls, m.get(name) or {}, name)
                           for name, cls in MODALITIES.items()})

    def for_modality(self, modality: str):
        """The settings of one modality, or None for datasets that take none (costs, exact)."""
        return getattr(self, modality) if modality in MODALITIES else None

    def replace(self, modality: str, **changes) -> "Settings":
        return dataclasses.replace(self, **{modality: dataclasses.replace(
            getattr(self, modality), **changes)})

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: settings_dict(getattr(self, name)) for name in MODALITIES}


# Settings added after records existed, left out of a record while at their default: a record
# written before the setting existed stays valid (settings decide job identity).
OMITTED_AT_DEFAULT = {"compute_dtype": "float32", "train_examples": None, "head_patience": None}


def settings_dict(s) -> dict[str, Any] | None:
    """JSON-able form of one modality's settings (what records hold); None for None."""
    if s is None:
        return None
    return {f.name: (list(v) if isinstance(v := getattr(s, f.name), tuple) else v) for f in fields(s)
            if OMITTED_AT_DEFAULT.get(f.name, object()) != getattr(s, f.name)}
