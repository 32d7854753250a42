"""The one shape every dataset is loaded into (WILDS-style named split roles).

Roles: ``train``, ``id_val``, ``id_test`` and one or more ``ood/<name>``. Every split carries
the large model's inputs (``large``: text sentences before tokenization, or images), the small
task model's inputs (``small``: categorical ids, dense features or images), the label and a
stable example id. A dataset owns its task and metric, and has a fingerprint (a hash of its
ids and labels per split) that goes into every run record.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from levi_core.errors import ConfigError

ID_ROLES = ("train", "id_val", "id_test")
OOD_PREFIX = "ood/"


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
      example_ids: [N] stable ids (str or int), unique within the dataset.
      labels: [N] float32 targets (regression) or int32 class ids (classification).
      small: inputs of the small task model, name -> [N, ...] array (int32 ids for embedding
        tables, float32 dense features, uint8 images).
      large: inputs of the large model: ``{"text": [N] str}`` (before tokenization) or
        ``{"image": [N, H, W, C] uint8}``; may be empty for datasets without a large model.
    """

    example_ids: np.ndarray
    labels: np.ndarray
    small: Mapping[str, np.ndarray] = field(default_factory=dict)
    large: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.labels))


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: named splits, task and metric, and a fingerprint.

    Attributes:
      name: the dataset id it was loaded under (e.g. ``movielens``).
      task: ``regression`` or ``classification``.
      metric: ``rmse`` (lower is better) or ``accuracy`` (higher is better).
      splits: role -> Split; roles are ``train``, ``id_val``, ``id_test``, ``ood/<name>``
        (a dataset may add others, e.g. the synthetic experiment's ``pretrain``).
      num_classes: number of classes (classification) or None.
      vocab_sizes: for each categorical small-model input, the size of its embedding table
        (index 0 is reserved for unknown ids).
      shift: the distribution shift in words (shown by ``bench data describe``).
      info: free-form facts about how it was built (config values, sources).
      modality: what the methods see (``text``, ``vision``, ``tabular``; ``none`` for datasets
        that only carry facts, e.g. ``costs``), declared at registration: methods and the
        harness key on it, never on the dataset's name.
      entities: role -> small-model input naming it (``{"user": "user_id", "item":
        "movie_id"}``), for the bias references.
      batch_size: the paper's training batch size for this dataset (D.3), unless settings say.
    """

    name: str
    task: str
    metric: str
    splits: Mapping[str, Split]
    num_classes: int | None = None
    vocab_sizes: Mapping[str, int] = field(default_factory=dict)
    shift: str = ""
    info: Mapping[str, object] = field(default_factory=dict)
    modality: str = "none"
    entities: Mapping[str, str] = field(default_factory=dict)
    batch_size: int | None = None

    @property
    def eval_roles(self) -> list[str]:
        """Every role a method predicts on (all but the synthetic experiment's pre-training)."""
        return [r for r in self.splits if not r.startswith("pretrain")]

    @property
    def ood_roles(self) -> list[str]:
        return sorted(r for r in self.splits if r.startswith(OOD_PREFIX))

    @property
    def fingerprint(self) -> str:
        return fingerprint_splits(self.splits)


def fingerprint_splits(splits: Mapping[str, Split]) -> str:
    """A short sha256 over every split's role, example ids and labels (order-sensitive)."""
    h = hashlib.sha256()
    for role in sorted(splits):
        s = splits[role]
        h.update(role.encode())
        h.update(np.asarray(s.example_ids).astype(str).tobytes())
        h.update(np.ascontiguousarray(np.asarray(s.labels)).tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- registry
Loader = Callable[..., Dataset]
_LOADERS: dict[str, Loader] = {}


@dataclass(frozen=True)
class Declaration:
    """What a registered dataset is, known without loading it (its files may be missing)."""

    modality: str = "none"
    entities: Mapping[str, str] = field(default_factory=dict)
    batch_size: int | None = None
    # the loader's options (a ``levi_core.data.common.DatasetOptions`` subclass), or None
    options: type | None = None


_DECLARED: dict[str, Declaration] = {}


def register_dataset(name: str, modality: str = "none", entities: Mapping[str, str] | None = None,
                     batch_size: int | None = None, options: type | None = None):
    """Decorator: register ``fn(options: dict, data_dir: str | None) -> Dataset`` under name,
    declaring its modality, entity inputs and batch size (see ``Dataset``) and the dataclass of
    the options it reads (``levi_core.data.common.DatasetOptions``; None: it reads none)."""

    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        _DECLARED[name] = Declaration(modality, dict(entities or {}), batch_size, options)
        return fn

    return deco


def declaration(dataset_id: str) -> Declaration:
    """The declaration of a dataset id's loader (``ConfigError`` if unknown)."""
    _ensure_loaders()
    name, _ = parse_dataset_id(dataset_id)
    if name not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    return _DECLARED[name]


def _ensure_loaders() -> None:
    """The plugins' loaders too. (The built-in ones are registered already: importing this
    module ran ``levi_core/data/__init__.py`` first, which imports every dataset module.)"""
    from levi_core.plugins import load_plugins

    load_plugins()


# ---------------------------------------------------------------- what tables and presets see


@dataclass(frozen=True)
class ShiftDeclaration:
    """A distribution shift a dataset offers the tables: its ``id_role`` test set against its
    ``ood_role`` set(s) of the logical ``dataset``, scored by ``metric``; ``key`` names it in
    table specs (``bench.specs`` builds its ``Shift`` from this) and ``label`` in reports."""

    key: str
    label: str
    dataset: str
    ood_role: str
    metric: str
    id_role: str = "id_test"


_SHIFTS: dict[str, ShiftDeclaration] = {}
# logical dataset -> preset name -> the dataset id it runs as (None: left out of that preset)
_PRESET_IDS: dict[str, dict[str, str | None]] = {}


def register_shift(key: str, label: str, dataset: str, ood_role: str, metric: str,
                   id_role: str = "id_test") -> ShiftDeclaration:
    """Declare a shift of the logical ``dataset`` (see ``ShiftDeclaration``); a dataset module
    calls it at import, so a table spec names the shift by its key."""
    decl = ShiftDeclaration(key, label, dataset, ood_role, metric, id_role)
    if _SHIFTS.get(key, decl) != decl:
        raise ConfigError(f"a shift named {key!r} is declared already; choose another key")
    _SHIFTS[key] = decl
    return decl


def declared_shift(key: str) -> ShiftDeclaration:
    """A declared shift: the built-in datasets' (imported with ``levi_core.data``) and those of
    modules imported so far (plugins)."""
    if key not in _SHIFTS:
        raise ConfigError(f"unknown shift {key!r}; declared shifts: {', '.join(sorted(_SHIFTS))}")
    return _SHIFTS[key]


def register_preset_ids(dataset: str, ids: Mapping[str, str | None]) -> None:
    """The dataset id the logical ``dataset`` of a table runs as under each preset of ``ids``
    (``{"smoke": "name:fixture=1", "cpu": None}``; None: that preset leaves its columns out).
    A preset not named runs the logical name itself, unless the preset maps it
    (``bench.presets.Preset.datasets``)."""
    _PRESET_IDS.setdefault(dataset, {}).update(ids)


def preset_dataset_id(preset: str, dataset: str) -> str | None:
    """The id the logical ``dataset`` runs as under ``preset`` (see ``register_preset_ids``)."""
    _ensure_loaders()
    return _PRESET_IDS.get(dataset, {}).get(preset, dataset)


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def parse_dataset_id(dataset_id: str) -> tuple[str, dict[str, str]]:
    """``"synthetic:rho=0.7,n=2000"`` -> ``("synthetic", {"rho": "0.7", "n": "2000"})``."""
    name, _, rest = dataset_id.partition(":")
    options: dict[str, str] = {}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise ConfigError(
                    f"dataset id {dataset_id!r}: option {part!r} is not key=value "
                    "(write e.g. 'synthetic:rho=0.7')"
                )
            options[key.strip()] = value.strip()
    return name, options


# Options every dataset accepts; handled here, after the loader, so each loader stays simple.
GENERIC_OPTIONS = ("max_train", "max_eval", "max_ood", "max_val")


def load_dataset(dataset_id: str, data_dir: str | None = None) -> Dataset:
    """Load a registered dataset by id (name plus optional ``:key=value,...`` options).

    Besides each loader's own options, every dataset accepts ``max_train=N``, ``max_eval=N``,
    ``max_ood=N`` and ``max_val=N`` (see `subsample`), which the ``cpu`` preset uses to fit a 2-core machine;
    a loader with an option of the same name (Amazon's ``max_ood``) reads it itself.
    """
    decl = declaration(dataset_id)
    name, options = parse_dataset_id(dataset_id)
    own = _loader_options(name)
    generic = {k: options.pop(k) for k in GENERIC_OPTIONS if k in options and k not in own}
    dataset = _LOADERS[name](options, data_dir)
    if generic:
        try:
            limits = {k: int(v) for k, v in generic.items()}
        except ValueError:
            raise ConfigError(f"dataset id {dataset_id!r}: max_train / max_eval / max_ood / max_val take an "
                              "integer, e.g. max_eval=2000") from None
        if any(v <= 0 for v in limits.values()):
            raise ConfigError(f"dataset id {dataset_id!r}: max_train / max_eval / max_ood / max_val must be positive")
        dataset = subsample(dataset, limits.get("max_train"), limits.get("max_eval"),
                            limits.get("max_ood"), limits.get("max_val"))
    return dataclasses.replace(dataset, modality=decl.modality, entities=dict(decl.entities),
                               batch_size=decl.batch_size)


def _loader_options(name: str) -> set[str]:
    """The options a loader reads itself (the fields of its declared options): a generic option
    of the same name is left to it (Amazon's, ImageNet's and Retinopathy's own ``max_ood``
    sample while reading, before anything is built)."""
    options = _DECLARED[name].options
    return {f.name for f in dataclasses.fields(options)} if options is not None else set()


def _keep_first(ids: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k examples with the smallest sha256 of their id: stable, order-free."""
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in ids]
    return np.sort(np.argsort(keys, kind="stable")[:k])


def subsample(dataset: Dataset, max_train: int | None, max_eval: int | None,
              max_ood: int | None = None, max_val: int | None = None) -> Dataset:
    """At most ``max_train`` training examples, ``max_eval`` per other split and, when given,
    ``max_ood`` per OOD split (``ood/...``; else ``max_eval``) and ``max_val`` for ``id_val``
    (else ``max_eval``; selection reads id_val after every epoch, scoring reads the others
    once): a sample stratified by split, so that every OOD genre keeps its own share (all of a
    split that is smaller).

    The kept examples are those with the smallest hash of their example id, so the choice does
    not depend on file order. Categorical ids of the small model that no kept training example
    has are mapped to 0 (unknown) in every split: an id the model never trains on must not reach
    an untrained embedding row.
    """
    splits: dict[str, Split] = {}
    for role, s in dataset.splits.items():
        limit = max_train if role == "train" else max_eval
        if role.startswith(OOD_PREFIX) and max_ood is not None:
            limit = max_ood
        if role == "id_val" and max_val is not None:
            limit = max_val
        if limit is None or len(s) <= limit:
            splits[role] = s
            continue
        idx = _keep_first(s.example_ids, limit)
        splits[role] = Split(
            example_ids=s.example_ids[idx], labels=s.labels[idx],
            small={k: v[idx] for k, v in s.small.items()},
            large={k: np.asarray(v)[idx] for k, v in s.large.items()},
        )
    if "train" in splits and max_train is not None:
        splits = _forget_unseen_ids(dataset.vocab_sizes, splits)
    info = dict(dataset.info)
    info["subsample"] = {"max_train": max_train, "max_eval": max_eval, "max_ood": max_ood,
                         "max_val": max_val}
    return Dataset(
        name=dataset.name, task=dataset.task, metric=dataset.metric, splits=splits,
        num_classes=dataset.num_classes, vocab_sizes=dataset.vocab_sizes, shift=dataset.shift,
        info=info,
    )


def _forget_unseen_ids(vocab_sizes: Mapping[str, int], splits: dict[str, Split]) -> dict[str, Split]:
    """Categorical small-model ids that no training example has, mapped to 0 (unknown) in every
    split: an id the model never trains on must not reach an untrained embedding row."""
    train = splits["train"]
    splits = dict(splits)
    for key in vocab_sizes:
        if key not in train.small or not np.issubdtype(train.small[key].dtype, np.integer):
            continue
        seen = np.unique(train.small[key])
        for role, s in list(splits.items()):
            arr = s.small[key]
            remapped = np.where(np.isin(arr, seen), arr, 0).astype(arr.dtype)
            splits[role] = Split(s.example_ids, s.labels, {**s.small, key: remapped}, s.large)
    return splits


TRAIN_DRAW_SALT = 6  # the draw's generator: SeedSequence([seed, TRAIN_DRAW_SALT])


def train_draw_rows(n_train: int, n: int, seed: int) -> np.ndarray | None:
    """The sorted training rows a run of ``seed`` learns from: a seeded draw of ``n`` of the
    ``n_train`` rows, or None (all of them) when ``n`` is not smaller."""
    if n >= n_train:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, TRAIN_DRAW_SALT]))
    return np.sort(rng.choice(n_train, size=n, replace=False))


def with_train_draw(dataset: Dataset, seed: int, n: int | None) -> Dataset:
    """``dataset`` whose training split is the seeded draw of ``n`` rows of ``seed``
    (``train_draw_rows``); every other split is unchanged, but small-model ids that only
    occur outside the draw become unknown (0), as in ``subsample``.

    The api applies it to every job of a seed when the settings set ``train_examples``, so
    every method of a seed (large-model trainings, heads, LEVI, references) learns from the
    same rows: methods compared on the same data."""
    if n is None or "train" not in dataset.splits:
        return dataset
    rows = train_draw_rows(len(dataset.splits["train"]), n, seed)
    if rows is None:
        return dataset
    s = dataset.splits["train"]
    splits = dict(dataset.splits)
    splits["train"] = Split(example_ids=s.example_ids[rows], labels=s.labels[rows],
                            small={k: v[rows] for k, v in s.small.items()},
                            large={k: np.asarray(v)[rows] for k, v in s.large.items()})
    info = {**dataset.info, "train_draw": {"seed": seed, "rows": int(n), "of": len(s)}}
    return dataclasses.replace(dataset, splits=_forget_unseen_ids(dataset.vocab_sizes, splits), info=info)
