"""LEVI and everything built from its parts, written once for every model engine.

LEVI (Sec. 4 of the paper) trains ``TaskHeads`` on a frozen large model: a small task model
(``engine.small_model()``: embeddings + MLP for recommendation, a CNN for images, an MLP for the
synthetic experiment) gives one vector; adapting layer ``j`` is an MLP with one hidden layer
on ``concat(state_j, small vector)``. Loss: the mean over heads of the per-head loss;
prediction: the mean of the heads. The large model's states are read once (feature cache or
the dependency's folder), so only the small parts run per step.

* ``levi`` (large model = the selected ``ht`` run, the paper's main setting),
  ``levi/pretrained``, ``levi/ft``, ``levi/lora``: states ``1..L`` and the small model.
* ``a3``: adapting layers on states ``1..L`` of the same large model as ``levi`` (the selected
  ``ht`` run), no small model: it differs from LEVI only by dropping the small model.
* ``a4``: the small model, one head; ``a5``: the small model, as many heads as LEVI has, averaged.
* ``layer/<k>``: one adapting-layer-shaped MLP head on state ``k`` of the pre-trained model.

Cold start (rec): while training, each categorical id of a batch is replaced by 0 (unknown)
with probability ``unknown_id_frac``, drawn from ``SeedSequence([seed, 5, step])``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from levi_core import progress, training
from levi_core.engines import engine_for
from levi_core.engines.base import apply_heads, batches, replace_unknown, take
from levi_core.errors import ConfigError
from levi_core.methods import grids
from levi_core.methods.registry import RunContext, RunOutput, implements
from levi_core.models.small import ConvSmall, TaskHeads


ALL = None  # ``layers`` / ``n_heads``: as many as LEVI adapts (settings ``levi_layers``)


def train_heads(ctx: RunContext, source: str | None, layers: tuple[int, ...] | None,
                use_small: bool, n_heads: int | None, tag: str) -> RunOutput:
    """Train ``TaskHeads`` on the states ``layers`` of the large model ``source`` (none when
    ``layers`` is empty; ``ALL``: LEVI's), with or without the small model; ``n_heads`` only
    counts without states (``ALL``: as many heads as LEVI has)."""
    e = engine_for(ctx)
    layers = e.levi_layers if layers is ALL else layers
    n_heads = len(e.levi_layers) if n_heads is ALL else n_heads
    ds = ctx.dataset
    roles = ds.eval_roles
    for k in layers:
        e.check_layer(k)
    with progress.phase("features"):
        states = e.layer_states(source, ctx.deps) if layers else None
    st = {r: tuple(states[r][k] for k in layers) if layers else () for r in roles}
    model = TaskHeads(small=e.small_model() if use_small else None, adapter_hidden=e.adapter_hidden,
                      n_out=e.n_out, n_heads=n_heads, out_bias=e.out_bias())
    small_in = {r: e.small_inputs(r) if use_small else {} for r in roles}
    if not small_in["train"] and not st["train"]:
        raise ConfigError("a heads model needs the small model or some layer states")
    variables = e.init_module(model, ctx.seed, {k: jnp.asarray(v[:2]) for k, v in small_in["train"].items()},
                              tuple(jnp.asarray(a[:2]) for a in st["train"]), False)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    small_keys = sorted(small_in["train"])
    n_states = len(st["train"])

    def arrays(role):
        return {**{f"small.{k}": v for k, v in small_in[role].items()},
                **{f"state.{j}": a for j, a in enumerate(st[role])}}

    def unpack(batch):
        return ({k: batch[f"small.{k}"] for k in small_keys},
                tuple(batch[f"state.{j}"] for j in range(n_states)))

    def apply_fn(p, ex, batch):
        sm, sts = unpack(batch)
        if ex:
            return model.apply({"params": p, **ex}, sm, sts, train=True, mutable=list(ex))
        return model.apply({"params": p}, sm, sts, train=True), ex

    unk = [f"small.{k}" for k in e.unknown_keys()] if use_small else []
    frac = e.unknown_id_frac
    transform = (lambda b, t: replace_unknown(b, unk, frac, ctx.seed, t)) if unk and frac > 0 else None
    data = {**arrays("train"), "y": ds.splits["train"].labels}
    start, start_extra = params, extra

    def predict(params, extra, role):
        bs = e.eval_batch_size
        x = arrays(role)
        outs = []
        for lo, hi in batches(len(ds.splits[role]), bs):
            sm, sts = unpack(take(x, lo, hi, bs))
            outs.append(np.asarray(apply_heads(model, {"params": params, **extra}, sm, sts))[: hi - lo])
        return training.to_prediction(np.concatenate(outs), e.task)

    def evaluate(params, extra):
        return {r: predict(params, extra, r) for r in roles}

    def train(lrs):
        order = e.batch_order(ctx.seed, e.head_epochs)
        split = training.plan_split(apply_fn, start, start_extra, data, order, e.task, e.optimizer)
        with progress.phase("train_heads"):
            runs = training.fit_grid(
                apply_fn, start, start_extra, data, order, lrs,
                e.task, e.optimizer, cache_key=("heads", model, n_states, tuple(small_keys)),
                transform=transform, select=e.selector(predict), progress=f"{tag} train",
                micro_batches=split.micro_batches,
                # convolutions run far slower inside a loop body on CPU (``fit``'s ``unroll``)
                unroll=training.UNROLL_STEPS if isinstance(model.small, ConvSmall) else 0)
        members = []
        for lr, (params, extra, losses, bad, *sel) in zip(lrs, runs):
            extras = training.loss_extras(losses, bad)
            if sel:
                extras.update(sel[0].extras())
            if split.micro_batches > 1:
                extras.update(split.extras())
            extras.update(heads=n_states or n_heads, layers=list(layers),
                          trainable_params=int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))))
            members.append(grids.Member(
                RunOutput(predictions=evaluate(params, extra), diverged=bad, extras=extras),
                {"params": params, **extra}, {"method": tag, "lr": lr, "seed": ctx.seed}))
        return members

    return grids.run(ctx, tag, train)


LEVI_SOURCES = {"levi": "ht", "levi/pretrained": "pretrained", "levi/ft": "ft", "levi/lora": "lora"}

for _name, _source in LEVI_SOURCES.items():
    implements(_name)(lambda ctx, n=_name, src=_source: train_heads(ctx, src, ALL, True, 1, n))


@implements("a3")
def a3(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, "ht", ALL, False, 1, "a3")


@implements("a4")
def a4(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, None, (), True, 1, "a4")


@implements("a5")
def a5(ctx: RunContext) -> RunOutput:
    return train_heads(ctx, None, (), True, ALL, "a5")


@implements("layer/<k>")
def layer_k(ctx: RunContext, k: str) -> RunOutput:
    return train_heads(ctx, "pretrained", (int(k),), False, 1, f"layer/{k}")
