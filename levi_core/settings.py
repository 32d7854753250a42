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
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping

from levi_core.errors import ConfigError

WEIGHTS = ("pretrained", "random")
COMPUTE_DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adam", "sgd")
POOLS = ("global", "flatten")

# The training batch when neither the settings nor the dataset declare one (every built-in
# dataset declares its paper batch size, so only a plugin dataset can reach it).
FALLBACK_BATCH_SIZE = 200
# The smallest evaluation batch when ``eval_batch_size`` is None: evaluation keeps no
# gradients, so it takes at least this many examples a step even where training takes fewer.
MIN_EVAL_BATCH_SIZE = 256

# Field metadata of a setting added after records existed: the record leaves it out while it
# is at its default, so a record written before the setting existed stays valid (settings
# decide job identity, see ``settings_dict``).
OMITTED_AT_DEFAULT = {"omitted_at_default": True}


def _omitted(default: Any) -> Any:
    """A field with ``default`` that records leave out while it is at that default."""
    return field(default=default, metadata=OMITTED_AT_DEFAULT)


# ---------------------------------------------------------------- coercion from the annotations
_BOOL_TEXT = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def coerce(hint: Any, value: Any) -> Any:
    """``value`` as the annotated type ``hint``: ``int``, ``float``, ``bool``, ``str``,
    ``tuple[int, ...]`` (a tuple, list or ``"8,4"`` string) and ``X | None`` (None kept).

    A ``str`` value is kept as given; a ``bool`` is read strictly from text (1/0, true/false,
    yes/no), since ``bool("false")`` would be True. Raises ``ValueError`` or ``TypeError``;
    callers turn them into their own ``ConfigError``. Settings (``_build``) and dataset
    options (``levi_core.data.common.DatasetOptions``) both parse through it."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        parts = value.split(",") if isinstance(value, str) else value
        return tuple(coerce(args[0], v) for v in parts)
    if hint is bool:
        if isinstance(value, str):
            return _BOOL_TEXT[value.lower()] if value.lower() in _BOOL_TEXT else _bad(value)
        return bool(value)
    if hint in (int, float):
        return hint(value)
    return value


def _bad(value: Any):
    raise ValueError(value)


def type_hints(cls) -> dict[str, Any]:
    """Each field's annotated type (the annotations are strings under postponed evaluation)."""
    return typing.get_type_hints(cls)


# ---------------------------------------------------------------- the settings


@dataclass(frozen=True)
class BackboneSettings:
    """What a transformer backbone run shares between text and vision (paper D.2, D.3).

    The modality's own defaults (``backbone``, ``optimizer``, ``adapter_hidden``,
    ``unknown_id_frac``) and its own knobs are declared by ``TextSettings`` and
    ``VisionSettings``; everything here has one default for both."""

    weights: str = "pretrained"  # pretrained | random (a fixed seed-0 init: smoke runs)
    weights_dir: str | None = None
    epochs: int = 3  # large-model training (ft, ht, fs, lp_ft, lora)
    # large-model training on a seeded draw of this many training rows (the same draw for every
    # method of a seed); None: the whole training split (a CPU budget, see bench.presets)
    train_examples: int | None = _omitted(None)
    head_epochs: int | None = None  # training on cached states (lp, levi*, a3-a5, layer/k); None: epochs
    # heads: None trains head_epochs and keeps the last weights; N scores id_val after each
    # epoch, keeps the best weights and stops after N epochs without improvement
    head_patience: int | None = _omitted(None)
    batch_size: int | None = None  # None: the dataset's own, else FALLBACK_BATCH_SIZE
    eval_batch_size: int | None = None  # None: max(batch size, MIN_EVAL_BATCH_SIZE)
    lora_rank: int = 8
    levi_layers: tuple[int, ...] = ()  # blocks with an adapting layer; () = every block 1..L
    # the backbone's arithmetic: bfloat16 runs it on bfloat16 copies of the float32 parameters
    # (parameters, optimizer state, pooled states and heads stay float32); for accelerators
    compute_dtype: str = _omitted("float32")

    modality: ClassVar[str] = ""  # the settings section's name, for messages

    def train_batch_size(self, dataset_batch_size: int | None) -> int:
        """The training batch: the settings', else the dataset's, else FALLBACK_BATCH_SIZE."""
        return int(self.batch_size or dataset_batch_size or FALLBACK_BATCH_SIZE)

    def eval_batch(self, train_batch_size: int) -> int:
        """The evaluation batch: the settings', else max(training batch, MIN_EVAL_BATCH_SIZE)."""
        return int(self.eval_batch_size or max(train_batch_size, MIN_EVAL_BATCH_SIZE))

    def check(self) -> None:
        name = self.modality
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"{name}.compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"{name}.weights must be one of {WEIGHTS}, got {self.weights!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{name}.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for k in ("epochs", "lora_rank", "adapter_hidden"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{name}.{k} must be >= 0, got {getattr(self, k)}")
        if not 0.0 <= self.unknown_id_frac < 1.0:
            raise ConfigError(f"{name}.unknown_id_frac must be in [0, 1), got {self.unknown_id_frac}")
        for k in ("train_examples", "head_patience"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"{name}.{k} must be a positive integer or None, got {getattr(self, k)}")


@dataclass(frozen=True)
class TextSettings(BackboneSettings):
    """A text backbone and LEVI's recommendation parts (paper D.2, D.3)."""

    backbone: str = "t5-small"
    max_len: int = 128
    optimizer: str = "adam"
    small_hidden: tuple[int, ...] = (512, 256)
    embed_dim: int = 32
    adapter_hidden: int = 256
    # the fraction of the small model's training ids replaced by "unknown" (0), so that row 0
    # of its embeddings learns what an id unseen in training means
    unknown_id_frac: float = 0.05
    ref_reg: float = 10.0  # the bias references' regulariser

    modality: ClassVar[str] = "text"


@dataclass(frozen=True)
class VisionSettings(BackboneSettings):
    """A ViT backbone and LEVI's convolutional small model (paper D.2, D.3)."""

    backbone: str = "vit-b16-224-in21k"
    optimizer: str = "sgd"
    small_conv: tuple[int, ...] = (32, 64, 64, 64)
    # D.2: the CNN's last layer "is flattened to be served to the adapting layers", pooling not
    # given. "global" (default) averages it over space (64 values), which keeps LEVI's
    # parameters consistent with Tables 3/16's statements; "flatten" is the literal reading
    # (14 x 14 x 64 values at 224 x 224: LEVI would train about twice FT's parameters).
    small_pool: str = "global"
    adapter_hidden: int = 1024
    # as TextSettings.unknown_id_frac; 0.0: the convolutional small model reads images, it has
    # no categorical ids to replace. Left out of records at this default (vision records were
    # written before vision had the field).
    unknown_id_frac: float = _omitted(0.0)

    modality: ClassVar[str] = "vision"
    # images have no token length: a class constant, not a setting, so that engines and cache
    # keys read ``max_len`` of either modality
    max_len: ClassVar[None] = None

    def check(self) -> None:
        super().check()
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

    def check(self) -> None:
        if not self.hidden or min(self.hidden + self.small_hidden) < 1 or self.batch_size < 1:
            raise ConfigError(f"tabular settings: bad widths or batch size in {self}")


MODALITIES = {"text": TextSettings, "vision": VisionSettings, "tabular": TabularSettings}


def _build(cls, given: Mapping[str, Any], where: str):
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting {where}.{unknown[0]}; known {where} settings: "
                          f"{', '.join(known)}")
    hints = type_hints(cls)
    values = {}
    for k, v in given.items():
        try:
            values[k] = coerce(hints[k], v)
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


def settings_dict(s) -> dict[str, Any] | None:
    """JSON-able form of one modality's settings (what records hold); None for None.

    A field marked ``OMITTED_AT_DEFAULT`` is left out while it holds its default: such a field
    was added after records existed, and a record is reused only when its settings equal these,
    so a field that every old record lacks must not appear until a preset sets it."""
    if s is None:
        return None
    return {f.name: (list(v) if isinstance(v := getattr(s, f.name), tuple) else v) for f in fields(s)
            if not (f.metadata.get("omitted_at_default") and getattr(s, f.name) == f.default)}
