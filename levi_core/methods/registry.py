"""Methods as registered names: a hyperparameter grid, dependencies, and implementations.

A `Method` says *what* a method is (its grid, which other methods' selected runs it needs,
whether it trains anything). An implementation says *how* it runs: ``fn(ctx: RunContext) ->
RunOutput``. Built-in methods have one generic implementation each, written against the model
engine of the dataset's declared modality (``levi_core.engines``); a plugin may register one for
a single dataset name (``implements("toy_fit", "toy")``), which then takes precedence.

"Selected" means: the run of a dependency method, same dataset and seed, whose hyperparameters
won on ``id_val`` (the harness does the selection and passes that run's artifact folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from levi_core.data.base import Dataset
from levi_core.errors import ConfigError
from levi_core.method_kinds import TUNINGS, Kind  # noqa: F401  (Kind: re-exported for plugins)
from levi_core.settings import Settings


@dataclass(frozen=True)
class Method:
    """What a method is.

    Attributes:
      name: registered name (``ft``, ``levi``, ``layer/3`` ...).
      description: one line for ``bench ls``.
      grid: hyperparameter name -> candidate values; the harness runs the cartesian product
        and selects on id_val. Empty for methods without hyperparameters.
      depends_on: methods whose selected run (same dataset, seed) this one consumes.
      kind: what its job does (``Kind``); None: not stated (a plugin's method), so no list
        derived from the kinds includes it and the cost tables do not row it.
      label: how reports name it (None: its name).
      version: a version string its author bumps when the code changes what it computes; it
        enters the job id (``code_identity``), so records of an older version are not reused.
      tuning: for a method that trains the large model, which of its parameters (``all``,
        ``half``: the upper half of the blocks, ``lora``: LoRA adapters), each with the head.
    """

    name: str
    description: str
    grid: Mapping[str, tuple] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    kind: Kind | None = None
    label: str | None = None
    version: str | None = None
    tuning: str | None = None

    def __post_init__(self):
        if (self.tuning is not None) != (self.kind is Kind.TRAINS_LARGE):
            raise ConfigError(f"method {self.name!r}: a tuning mode is stated exactly when the "
                              f"method trains the large model (kind={self.kind}, tuning={self.tuning!r})")
        if self.tuning is not None and self.tuning not in TUNINGS:
            raise ConfigError(f"method {self.name!r}: tuning {self.tuning!r} is not one of {TUNINGS}")

    @property
    def composite(self) -> bool:
        """True when it trains nothing but combines other methods' runs (ensembles,
        interpolations): a cheap evaluation job over stored predictions or checkpoints."""
        return self.kind is Kind.COMPOSITE


@dataclass
class RunContext:
    """Everything an implementation needs for one job.

    Attributes:
      dataset: the loaded dataset.
      seed: the job's seed (model init, data order).
      hparams: one point of the method's grid.
      settings: the typed settings (``levi_core.settings.Settings``); an engine reads its
        dataset's modality section.
      workdir: folder to write artifacts into (checkpoints, predictions); readable by later jobs.
      deps: dependency method name -> artifact folder of its selected run.
      cache_dir: the feature cache shared by the jobs of a results root (None: no cache).
      grid: the hyperparameters of every job of this method, dataset and seed (this one's
        included), when the harness says: methods training small models on cached states
        train them in one batched program (``levi_core.methods.grids``).
      resume_dir: a folder that outlives a killed attempt of this job (unlike ``workdir``,
        which each attempt starts empty): long phases keep their progress there (None: none).
    """

    dataset: Dataset
    seed: int
    hparams: Mapping[str, Any]
    settings: Settings
    workdir: Path
    deps: Mapping[str, Path] = field(default_factory=dict)
    cache_dir: str | None = None
    grid: tuple = ()
    resume_dir: Path | None = None

    @property
    def lr(self) -> float:
        """The ``lr`` hyperparameter, checked."""
        if "lr" not in self.hparams:
            raise ConfigError(f"hyperparameter 'lr' missing (got {dict(self.hparams)})")
        try:
            return float(self.hparams["lr"])
        except (TypeError, ValueError):
            raise ConfigError(f"lr={self.hparams['lr']!r} is not a number") from None


@dataclass
class RunOutput:
    """What an implementation returns.

    Attributes:
      predictions: split role -> [N] predictions (regression values or class ids) or
        [N, C] probabilities; stored by the api as ``predictions.npz``.
      metrics: split role -> metric name -> value; computed by the api from predictions when
        left empty.
      diverged: True when a NaN or inf loss ended training (the record's state is then
        ``diverged`` and the report never averages it in).
      extras: JSON-serialisable facts worth keeping (loss curve summary, parameter counts).
    """

    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    diverged: bool = False
    extras: Mapping[str, Any] = field(default_factory=dict)


Impl = Callable[[RunContext], RunOutput]
_METHODS: dict[str, Method] = {}
_IMPLS: dict[tuple[str, str], Impl] = {}
# Parametric methods (``layer/<k>``): prefix -> factory(argument) -> Method. A parametric
# implementation is registered under ``"<prefix>/<k>"`` and called as ``fn(ctx, arg)``.
_PARAMETRIC: dict[str, Callable[[str], Method]] = {}
PARAM_PLACEHOLDER = "<k>"


def register_parametric(prefix: str, factory: Callable[[str], Method]) -> None:
    """Declare a family of methods ``<prefix>/<arg>``, made on demand by ``factory(arg)``."""
    _PARAMETRIC[prefix] = factory


def parametric_method_names() -> list[str]:
    """The declared parametric families, spelled ``<prefix>/<k>``."""
    _ensure_loaded()
    return sorted(f"{p}/{PARAM_PLACEHOLDER}" for p in _PARAMETRIC)


def _split_parametric(name: str) -> tuple[str, str] | None:
    prefix, sep, arg = name.partition("/")
    if sep and prefix in _PARAMETRIC and arg and arg != PARAM_PLACEHOLDER:
        return prefix, arg
    return None


# Methods a plugin replaced (``replace=True``): their code's identity enters their job ids.
_REPLACED: set[str] = set()
_IDENTITY: dict[str, str | None] = {}  # code_identity's answers, forgotten on any registration


def register_method(method: Method, replace: bool = False) -> Method:
    """Declare a method. A name that is taken (a built-in, or another plugin's) fails unless
    ``replace=True`` says the replacement is meant: then its code's identity enters its job
    ids (``code_identity``), so records computed by the method it replaces are never reused
    for it. Registering an equal declaration again (a module imported twice) is harmless."""
    old = _METHODS.get(method.name)
    if old is not None and old != method and not replace:
        raise ConfigError(f"a method named {method.name!r} is registered already ({old.description!r}); "
                          f"choose another name, or pass register_method(..., replace=True) to "
                          f"replace it (its job ids then change, so the old records are not reused)")
    if replace:
        _REPLACED.add(method.name)
    _METHODS[method.name] = method
    _IDENTITY.clear()
    return method


GENERIC = "*"


def implements(method_name: str, family: str = GENERIC, replace: bool = False):
    """Decorator: register ``fn`` as the implementation of a method: generic (every dataset
    whose modality it supports), or for one dataset name (``family``), which takes precedence.

    Another function already implementing that pair fails unless ``replace=True`` (or the
    method was registered with ``replace=True``): a plugin never changes a method silently."""

    def deco(fn: Impl) -> Impl:
        old = _IMPLS.get((method_name, family))
        if (old is not None and _where(old) != _where(fn) and not replace
                and method_name not in _REPLACED):
            raise ConfigError(f"method {method_name!r} already has an implementation for "
                              f"{'every dataset' if family == GENERIC else repr(family)} "
                              f"({_where(old)}); pass implements(..., replace=True) to replace it "
                              f"(its job ids then change, so the old records are not reused)")
        if old is not None and _where(old) != _where(fn):
            _REPLACED.add(method_name)
        _IMPLS[(method_name, family)] = fn
        _IDENTITY.clear()
        return fn

    return deco


def _where(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _source(fn: Callable) -> bytes:
    """The function's source text, or its compiled code where no source file exists."""
    import inspect
    import marshal

    try:
        return inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return marshal.dumps(code) if code is not None else repr(fn).encode()


def code_identity(name: str) -> str | None:
    """What of a method's code enters its job id, or None (the built-ins: their ids are the
    semantic fields alone). ``version:<v>`` when the method states a version; for a method a
    plugin replaced without one, ``source:<hash>`` of its declaration and of every
    implementation registered under its name, so editing the replacement re-runs its jobs."""
    if name in _IDENTITY:
        return _IDENTITY[name]
    method = _METHODS.get(name)
    ident: str | None = None
    if method is not None and method.version:
        ident = f"version:{method.version}"
    elif name in _REPLACED:
        import hashlib

        h = hashlib.sha256(repr(method).encode())
        for (m, family), fn in sorted(_IMPLS.items(), key=lambda kv: kv[0]):
            if m == name:
                h.update(family.encode() + b"\0" + _source(fn))
        ident = f"source:{h.hexdigest()[:16]}"
    _IDENTITY[name] = ident
    return ident


def registered_label(name: str) -> str | None:
    """The label a method's declaration states (plugins), without loading anything."""
    method = _METHODS.get(name)
    return method.label if method is not None else None


def method_names() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    _ensure_loaded()
    if name not in _METHODS and _split_parametric(name):
        prefix, arg = _split_parametric(name)  # type: ignore[misc]
        register_method(_PARAMETRIC[prefix](arg))  # the factory raises ConfigError if bad
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def get_impl(method_name: str, family: str) -> Impl:
    """The implementation of a method for a dataset name: its own, else the generic one."""
    _ensure_loaded()
    get_method(method_name)
    par = _split_parametric(method_name)
    names = [method_name] + ([f"{par[0]}/{PARAM_PLACEHOLDER}"] if par else [])
    for name in names:
        for fam in (family, GENERIC):
            if (name, fam) in _IMPLS:
                fn = _IMPLS[(name, fam)]
                if name != method_name:
                    return lambda ctx, fn=fn, arg=par[1]: fn(ctx, arg)  # type: ignore[misc]
                return fn
    have = sorted(f for m, f in _IMPLS if m in names)
    raise ConfigError(f"method {method_name!r} has no implementation for dataset {family!r} "
                      f"(it has: {', '.join(have) or 'none yet'})")


def _ensure_loaded() -> None:
    """The plugins' methods too. (The built-in ones are registered already: importing this
    module ran ``levi_core/methods/__init__.py`` first, which imports every method module.)"""
    from levi_core.plugins import load_plugins

    load_plugins()
