"""Implementations of the methods for the ``synthetic`` dataset family (paper, Appendix E.8).

The "large model" is a 3-layer MLP (``hidden`` = 64-64, then a 2-way head) pre-trained on the
``pretrain`` role. Pre-training is a pure function of the dataset and the settings
(``pretrain_seed``, ``pretrain_epochs``, ``pretrain_lr``, ``hidden``, ``batch_size``): it does not
depend on the job's seed, just as the paper's real experiments fine-tune one fixed checkpoint,
so every job recomputes the same network (memoised within a process; no disk cache).
Parameters are initialised with numpy from ``SeedSequence([seed, stream])`` (LeCun-normal
kernels, zero biases) and minibatch orders likewise, so a job is bit-reproducible in a fresh
process. Adam throughout; ``lp``'s grid is {1e-3 .. 10} as in the paper.

Methods (all trained with Adam, ``lr`` from the job's hyperparameters):

* ``ft``: every parameter, starting from the pre-trained net (its head included; the
  pre-training task has the same label).
* ``fs``: the same architecture from a random init.
* ``lp``: a new (re-initialised) head; the mask trains ``head`` only.
* ``ht``: the last half of the hidden layers (``layer_i`` with ``i >= L - L // 2``: ``layer_1``
  of 2) plus ``head``; the mask freezes the rest. ``ft``, ``lp`` and ``ht`` are one code path
  that differs only in the mask (``TRAINABLE``).
* ``lp_ft``: ``ft`` started from the selected ``lp`` run's parameters.
* ``levi`` (large model = the selected ``ht`` run), ``levi/pretrained``, ``levi/ft``: the large
  model is frozen; its layer states (the output of each of its 3 layers: two hidden layers and
  its logits) are computed once per split. The raw input is not a state: the small model
  already reads it, so an adapting layer on it would add no pre-trained view. A small MLP
  (``small_hidden`` = 32-32) reads the raw features; adapting layer j is an MLP with one hidden layer (``adapter_hidden`` = 32) on
  ``concat(state_j, small vector)``. Loss: mean over heads of the per-head cross-entropy;
  prediction: mean of the heads' probabilities.
* ``a3`` (adapting layers, no small model), ``a4`` (small model, one head), ``a5`` (small model,
  one head per large layer, averaged), ``layer/<k>`` (one adapting-layer-shaped MLP head on
  layer k = 1..3 of the frozen pre-trained net), ``a1`` (the selected ``ft`` averaged with an
  ``ft`` run of another seed at the same ``lr``), ``ft_zeroshot`` (WiSE-FT between the ``lp``
  model and the ``ft`` model, ``a`` chosen on ``id_val``). ``ft_fs``, ``ft_robust`` and ``a2``
  are the family-independent prediction ensembles of ``levi_core.methods.ensembles``.

Settings (``ctx.settings["synthetic"]``, a namespace of their own so that a preset's other
knobs never collide with them; unknown keys are ignored) and their defaults: ``DEFAULT_SETTINGS``.
Every job writes ``predictions`` for every role except ``pretrain`` (class probabilities
[N, 2]); trained methods also write ``params.npz`` and ``run.json`` for the jobs that depend on
them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from levi_core import training
from levi_core.data.base import Dataset
from levi_core.errors import ConfigError
from levi_core.methods import ensembles
from levi_core.methods.registry import RunContext, RunOutput, implements
from levi_core.models.mlp import MLP, LeviHeads

FAMILY = "synthetic"
DEFAULT_SETTINGS: dict[str, Any] = {
    "hidden": (64, 64),  # the large net: 2 hidden layers + head = 3 layers
    "small_hidden": (32, 32),  # LEVI's small model
    "adapter_hidden": 32,  # LEVI's adapting layers: one hidden layer
    "epochs": 50,  # fine-tuning epochs over the 1,600 train points
    "batch_size": 200,
    "pretrain_epochs": 100,
    "pretrain_lr": 1e-3,
    "pretrain_seed": 0,
}
_INT = ("adapter_hidden", "epochs", "batch_size", "pretrain_epochs", "pretrain_seed")

# stream ids for numpy SeedSequence (fixed ints, never Python's hash())
_S_PRETRAIN, _S_INIT, _S_ORDER, _S_HEAD = 1, 2, 3, 4


def settings_of(ctx_settings: Mapping[str, Any]) -> dict[str, Any]:
    """The synthetic family's settings: ``ctx_settings["synthetic"]`` over the defaults."""
    given = ctx_settings.get("synthetic") or {}
    s = dict(DEFAULT_SETTINGS)
    for k in DEFAULT_SETTINGS:
        if k in given:
            s[k] = given[k]
    try:
        for k in ("hidden", "small_hidden"):
            v = s[k]
            s[k] = tuple(int(w) for w in (v.split(",") if isinstance(v, str) else v))
        for k in _INT:
            s[k] = int(s[k])
        s["pretrain_lr"] = float(s["pretrain_lr"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"synthetic settings: {e}") from None
    if len(s["hidden"]) < 1 or min(s["hidden"] + s["small_hidden"]) < 1 or s["batch_size"] < 1:
        raise ConfigError(f"synthetic settings: bad widths or batch size in {s}")
    return s


def _lr(ctx: RunContext) -> float:
    if "lr" not in ctx.hparams:
        raise ConfigError(f"synthetic: hyperparameter 'lr' missing (got {dict(ctx.hparams)})")
    try:
        return float(ctx.hparams["lr"])
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic: lr={ctx.hparams['lr']!r} is not a number") from None


def eval_roles(dataset: Dataset) -> list[str]:
    return [r for r in dataset.splits if not r.startswith("pretrain")]


# ---------------------------------------------------------------- jitted helpers
# Eager flax calls compile every primitive separately; one jit per (model, shape) is far
# cheaper on CPU. Models are hashable (frozen dataclasses), so they are static arguments.
def _init(model, seed_seq: list[int], *inputs):
    """Parameters of ``model`` drawn with numpy from ``seed_seq``: kernels LeCun normal
    (untruncated, std 1/sqrt(fan_in)), biases zero. Only shapes come from flax
    (``eval_shape``: nothing is compiled; jax.random's init compiles for seconds on CPU)."""
    shapes = jax.eval_shape(
        lambda k: model.init(k, *inputs)["params"], jax.ShapeDtypeStruct((2,), jnp.uint32)
    )
    flat = traverse_util.flatten_dict(shapes)
    rng = np.random.default_rng(np.random.SeedSequence(seed_seq))
    out = {}
    for path in sorted(flat):
        shape = flat[path].shape
        if path[-1] == "kernel":
            w = rng.standard_normal(shape) / np.sqrt(shape[0])
        else:
            w = np.zeros(shape)
        out[path] = jnp.asarray(np.asarray(w, dtype=np.float32))
    return traverse_util.unflatten_dict(out)


@functools.partial(jax.jit, static_argnums=0)
def _mlp_probs_and_states(model: MLP, params, x):
    logits, states = model.apply({"params": params}, x, return_layers=True)
    return training.mean_probs(logits), tuple(states)


@functools.partial(jax.jit, static_argnums=0)
def _heads_probs(model: LeviHeads, params, x, states):
    return training.mean_probs(model.apply({"params": params}, x, states))


def _concat_roles(dataset: Dataset, roles, kind: str) -> tuple[jnp.ndarray, list[int]]:
    """All eval roles' inputs in one array (one compiled forward pass), and the cut points."""
    arrays = [getattr(dataset.splits[r], kind)["x"] for r in roles]
    return jnp.asarray(np.concatenate(arrays)), list(np.cumsum([len(a) for a in arrays])[:-1])


def _split_rows(a, cuts, roles) -> dict[str, Any]:
    return dict(zip(roles, np.split(np.asarray(a), cuts)))


# ---------------------------------------------------------------- the large model
def _mlp(s, num_classes) -> MLP:
    return MLP(hidden=s["hidden"], num_classes=num_classes)


def _mlp_apply(model: MLP):
    return lambda p, batch: model.apply({"params": p}, batch["x"])


def _data(split) -> dict[str, jnp.ndarray]:
    return {"x": jnp.asarray(split.large["x"]), "y": jnp.asarray(split.labels)}


_PRETRAINED: dict[Any, Any] = {}


def pretrained_params(dataset: Dataset, s: Mapping[str, Any]):
    """The pre-trained large net: a pure function of the dataset and the pre-training settings."""
    key = (
        dataset.fingerprint,
        str(dataset.info.get("options")),
        s["hidden"],
        s["pretrain_epochs"],
        s["pretrain_lr"],
        s["pretrain_seed"],
        s["batch_size"],
    )
    if key not in _PRETRAINED:
        split = dataset.splits["pretrain"]
        model = _mlp(s, dataset.num_classes)
        params = _init(model, [s["pretrain_seed"], _S_PRETRAIN], jnp.asarray(split.large["x"][:1]))
        idx = training.batch_indices(
            len(split), s["batch_size"], s["pretrain_epochs"], [s["pretrain_seed"], _S_PRETRAIN]
        )
        params, losses, bad = training.fit(
            _mlp_apply(model), params, _data(split), idx, s["pretrain_lr"], cache_key=("mlp", model)
        )
        if bad:
            raise RuntimeError("pre-training of the synthetic large model diverged")
        _PRETRAINED[key] = params
    return _PRETRAINED[key]


def ht_trainable(n_hidden: int) -> Callable[[tuple[str, ...]], bool]:
    """Half-tuning: the last half of the hidden layers (``layer_i``, i >= L - L//2) + head."""
    first = n_hidden - n_hidden // 2

    def trainable(path: tuple[str, ...]) -> bool:
        name = path[0]
        return name == "head" or (name.startswith("layer_") and int(name[6:]) >= first)

    return trainable


TRAINABLE: dict[str, Callable[[int], Callable[[tuple[str, ...]], bool] | None]] = {
    "ft": lambda n: None,
    "fs": lambda n: None,
    "lp_ft": lambda n: None,
    "lp": lambda n: (lambda path: path[0] == "head"),
    "ht": ht_trainable,
}


def _predict_mlp(model: MLP, params, dataset: Dataset) -> dict[str, np.ndarray]:
    roles = eval_roles(dataset)
    x, cuts = _concat_roles(dataset, roles, "large")
    return _split_rows(_mlp_probs_and_states(model, params, x)[0], cuts, roles)


def train_mlp(ctx: RunContext, method: str, init: str, seed: int | None = None, lr=None):
    """ft / fs / lp / ht / lp_ft: one code path; only the init and the optimizer mask differ."""
    s = settings_of(ctx.settings)
    seed = ctx.seed if seed is None else seed
    lr = _lr(ctx) if lr is None else lr
    ds = ctx.dataset
    model = _mlp(s, ds.num_classes)
    train = ds.splits["train"]
    if init == "random":
        params = _init(model, [seed, _S_INIT], jnp.asarray(train.large["x"][:1]))
    elif init == "pretrained":
        params = pretrained_params(ds, s)
    elif init == "pretrained_new_head":
        params = dict(pretrained_params(ds, s))
        fresh = _init(model, [seed, _S_HEAD], jnp.asarray(train.large["x"][:1]))
        params["head"] = fresh["head"]
    elif init == "lp":
        params = training.load_params(ctx.deps["lp"])
    else:  # pragma: no cover
        raise ValueError(init)
    idx = training.batch_indices(len(train), s["batch_size"], s["epochs"], [seed, _S_ORDER])
    trainable = TRAINABLE[method](len(s["hidden"]))
    params, losses, bad = training.fit(
        _mlp_apply(model), params, _data(train), idx, lr, trainable, cache_key=("mlp", model)
    )
    training.save_params(ctx.workdir, params, {"method": method, "lr": lr, "seed": seed})
    return RunOutput(
        predictions=_predict_mlp(model, params, ds),
        diverged=bad,
        extras=_loss_extras(losses, bad),
    )


def _loss_extras(losses: np.ndarray, bad: bool) -> dict[str, Any]:
    finite = losses[np.isfinite(losses)]
    return {
        "steps": int(len(losses)),
        "final_loss": float(finite[-1]) if len(finite) and not bad else None,
        "first_loss": float(finite[0]) if len(finite) else None,
    }


@implements("ft", FAMILY)
def ft(ctx: RunContext) -> RunOutput:
    return train_mlp(ctx, "ft", "pretrained")


@implements("fs", FAMILY)
def fs(ctx: RunContext) -> RunOutput:
    return train_mlp(ctx, "fs", "random")


@implements("lp", FAMILY)
def lp(ctx: RunContext) -> RunOutput:
    return train_mlp(ctx, "lp", "pretrained_new_head")


@implements("ht", FAMILY)
def ht(ctx: RunContext) -> RunOutput:
    return train_mlp(ctx, "ht", "pretrained")


@implements("lp_ft", FAMILY)
def lp_ft(ctx: RunContext) -> RunOutput:
    return train_mlp(ctx, "lp_ft", "lp")


@implements("a1", FAMILY)
def a1(ctx: RunContext) -> RunOutput:
    """A1: the selected ft averaged with an ft of another seed (seed + 1000) at the same lr."""
    info = training.load_run_info(ctx.deps["ft"])
    other = train_mlp(ctx, "ft", "pretrained", seed=ctx.seed + 1000, lr=float(info["lr"]))
    mine = ensembles.load(ctx.deps["ft"])
    preds = {r: (mine[r] + other.predictions[r]) / 2 for r in other.predictions}
    return RunOutput(predictions=preds, diverged=other.diverged, extras={"lr": info["lr"]})


@implements("ft_zeroshot", FAMILY)
def ft_zeroshot(ctx: RunContext) -> RunOutput:
    """WiSE-FT: (1-a) * (pre-trained body + lp head) + a * ft weights, a chosen on id_val."""
    from levi_core.methods.catalog import WISE_ALPHAS
    from levi_core.metrics import compute

    s = settings_of(ctx.settings)
    ds = ctx.dataset
    model = _mlp(s, ds.num_classes)
    zero = training.load_params(ctx.deps["lp"])
    fine = training.load_params(ctx.deps["ft"])
    val = ds.splits["id_val"]
    scores, best = {}, None
    for a in WISE_ALPHAS:
        p = jax.tree_util.tree_map(lambda z, f: (1 - a) * z + a * f, zero, fine)
        probs = _mlp_probs_and_states(model, p, jnp.asarray(val.large["x"]))[0]
        scores[str(a)] = compute(ds.metric, np.asarray(probs), val.labels)
        if best is None or scores[str(a)] > scores[str(best)]:  # first best, a ascending
            best = a
    p = jax.tree_util.tree_map(lambda z, f: (1 - best) * z + best * f, zero, fine)
    return RunOutput(
        predictions=_predict_mlp(model, p, ds), extras={"alpha": best, "id_val_by_alpha": scores}
    )


# ---------------------------------------------------------------- LEVI and its ablations
def layer_states(params, dataset: Dataset, s) -> dict[str, tuple[jnp.ndarray, ...]]:
    """role -> the output of each layer of the frozen large net (hidden layers, then logits)."""
    model = _mlp(s, dataset.num_classes)
    roles = eval_roles(dataset)
    x, cuts = _concat_roles(dataset, roles, "large")
    states = [_split_rows(st, cuts, roles) for st in _mlp_probs_and_states(model, params, x)[1]]
    return {r: tuple(jnp.asarray(st[r]) for st in states) for r in roles}


def _heads_apply(model: LeviHeads):
    return lambda p, batch: model.apply({"params": p}, batch["x"], batch["states"])


def train_heads(
    ctx: RunContext,
    large_params,
    use_small: bool = True,
    layers: tuple[int, ...] | None = None,
    n_heads: int = 1,
    tag: str = "levi",
) -> RunOutput:
    """Train a ``LeviHeads`` on the frozen large net's layer states (1-based ``layers``; None:
    all; empty: no large model at all)."""
    s = settings_of(ctx.settings)
    ds = ctx.dataset
    lr = _lr(ctx)
    roles = eval_roles(ds)
    if layers == ():
        states = {r: () for r in roles}
    else:
        all_states = layer_states(large_params, ds, s)
        pick = range(1, len(s["hidden"]) + 2) if layers is None else layers
        for k in pick:
            if not 1 <= k <= len(s["hidden"]) + 1:
                raise ConfigError(
                    f"synthetic: layer {k} does not exist; the large net has layers "
                    f"1..{len(s['hidden']) + 1}"
                )
        states = {r: tuple(all_states[r][k - 1] for k in pick) for r in roles}
    model = LeviHeads(
        small_hidden=s["small_hidden"],
        adapter_hidden=s["adapter_hidden"],
        num_classes=ds.num_classes,
        use_small=use_small,
        n_heads=n_heads,
    )
    train = ds.splits["train"]
    x = {r: jnp.asarray(ds.splits[r].small["x"]) for r in roles}
    params = _init(model, [ctx.seed, _S_INIT], x["train"][:1], tuple(st[:1] for st in states["train"]))
    data = {"x": x["train"], "states": states["train"], "y": jnp.asarray(train.labels)}
    idx = training.batch_indices(len(train), s["batch_size"], s["epochs"], [ctx.seed, _S_ORDER])
    params, losses, bad = training.fit(
        _heads_apply(model), params, data, idx, lr, cache_key=("heads", model)
    )
    training.save_params(ctx.workdir, params, {"method": tag, "lr": lr, "seed": ctx.seed})
    x_all, cuts = _concat_roles(ds, roles, "small")
    n_states = len(states["train"])
    states_all = tuple(jnp.concatenate([states[r][j] for r in roles]) for j in range(n_states))
    preds = _split_rows(_heads_probs(model, params, x_all, states_all), cuts, roles)
    extras = _loss_extras(losses, bad)
    extras["heads"] = int(len(states["train"]) or n_heads)
    return RunOutput(predictions=preds, diverged=bad, extras=extras)


def _large(ctx: RunContext, source: str):
    if source == "pretrained":
        return pretrained_params(ctx.dataset, settings_of(ctx.settings))
    if source not in ctx.deps:
        raise ConfigError(f"synthetic: this method needs the selected {source!r} run (deps)")
    return training.load_params(ctx.deps[source])


@implements("levi", FAMILY)
def levi(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, _large(ctx, "ht"), tag="levi")


@implements("levi/pretrained", FAMILY)
def levi_pretrained(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, _large(ctx, "pretrained"), tag="levi/pretrained")


@implements("levi/ft", FAMILY)
def levi_ft(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, _large(ctx, "ft"), tag="levi/ft")


@implements("a3", FAMILY)
def a3(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, _large(ctx, "pretrained"), use_small=False, tag="a3")


@implements("a4", FAMILY)
def a4(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, None, layers=(), n_heads=1, tag="a4")


@implements("a5", FAMILY)
def a5(ctx: RunContext) -> RunOutput:
    n = len(settings_of(ctx.settings)["hidden"]) + 1  # as many heads as LEVI has
    return train_heads(ctx, None, layers=(), n_heads=n, tag="a5")


@implements("layer/<k>", FAMILY)
def layer_k(ctx: RunContext, k: str) -> RunOutput:
    return train_heads(
        ctx, _large(ctx, "pretrained"), use_small=False, layers=(int(k),), tag=f"layer/{k}"
    )


ensembles.register_for(FAMILY)
