"""The standard and generalisation baselines, written once for every model engine.

* ``ft``, ``ht``, ``fs``, ``lp_ft``, ``lora``: one code path (``train_large``); only the start
  (``pretrained``, ``random`` for fs, the selected lp head for lp_ft, LoRA adapters for lora)
  and the tuning mode (an optimizer mask: ``all``, ``half``, ``lora``) differ. Each writes its
  trained leaves (``params.npz`` + ``run.json``) and, for ``ft``, ``ht`` and ``lora``, keeps
  its layer states for the LEVI variants built on it.
* ``lp``: a fresh head on the frozen pre-trained model's ``head_state``, trained on its
  cached states (it equals training the whole model with everything but the head frozen).
* ``ft_zeroshot`` (WiSE-FT): ``(1-a) * (pre-trained body + selected lp head) + a * selected
  lp_ft`` (fine-tuned from that head), every weight interpolated; ``a`` in ``WISE_ALPHAS``
  chosen on ``id_val`` in the metric's direction (first best).
* ``a1``: the selected ``ft`` averaged with a second ``ft`` trained in the job at ``seed + 1000``
  with the selected ``lr``.
* ``ft_fs``, ``ft_robust``, ``a2``: prediction ensembles (``levi_core.methods.ensembles``).
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from levi_core import progress, training
from levi_core.engines import engine_for
from levi_core.methods import ensembles, grids
from levi_core.methods.catalog import LARGE_GRIDS, METHODS, WISE_ALPHAS, tuning_of
from levi_core.methods.registry import Kind, RunContext, RunOutput, implements
from levi_core.metrics import better, compute

# The catalog's large-model trainings over a grid of their own, each with its tuning mode (the
# optimizer mask); a1 trains its second ft through ``train_large(ctx, "ft")`` (below).
MODES = {name: tuning_of(name) for name in LARGE_GRIDS}
# The large models whose layer states a method trained on them reads (LEVI's variants, A3).
KEEPS_STATES = tuple(name for name in MODES
                     if any(name in m.depends_on for m in METHODS if m.kind is Kind.TRAINS_SMALL))
# runs of fewer steps restart from scratch when killed: they are minutes at most
CHECKPOINT_MIN_STEPS = 200


def train_large(ctx: RunContext, method: str, seed: int | None = None, lr: float | None = None,
                write: bool = True) -> RunOutput:
    e = engine_for(ctx)
    seed = ctx.seed if seed is None else seed
    lr = ctx.lr if lr is None else lr
    if method == "lp_ft":
        params = e.with_head(training.load_params(ctx.deps["lp"])["head"])
    else:
        params = e.start("random" if method == "fs" else "pretrained", seed)
    if method == "lora":
        params = e.add_lora(params, seed)
    labels = e.labels(params, MODES[method])
    # ht: the frozen lower half's output computed once per dataset, only the tuned blocks run
    with progress.phase("features"):  # ht: builds the boundary the first time
        run = e.frozen_lower(MODES[method]) or e
    data = run.data() if run is not e else e.train_data()
    order = e.large_order(seed)
    split = batch_split(run.apply, params, data, order, e, labels)
    with progress.phase("train_large"):
        params, _, losses, bad = training.fit(
            run.apply, params, {}, data, order, lr, e.task, e.optimizer, labels,
            cache_key=run.cache_key, prepare=e.trim_batch, progress=f"{method} lr={lr:g} train",
            optimize=e.optimize_large, micro_batches=split.micro_batches,
            checkpoint=train_checkpoint(ctx, order))
    # the layer states of every role the run predicts are kept for the LEVI variants built on
    # it (the evaluation computes them anyway); a run on a draw predicts no training rows, and
    # its dependants compute only those, once per selected model (``layer_states``)
    keep = ctx.workdir if write and method in KEEPS_STATES else None
    with progress.phase("evaluate"):
        preds = run.predict(params, e.prediction_roles, keep_states_in=keep,
                            parts=evaluation_parts(ctx, params, order))
    if write:
        training.save_params(ctx.workdir, training.trained_leaves(params, labels), {
            "method": method, "lr": lr, "seed": seed, "mode": MODES[method],
            "lora_rank": int(method == "lora") and getattr(e.s, "lora_rank", 0)})
    extras = training.loss_extras(losses, bad)
    extras.update(split.extras())
    extras["trainable_params"] = training.count_params(params, labels)
    extras["train_examples"] = len(np.unique(order)) if len(order) else 0
    return RunOutput(predictions=preds, diverged=bad, extras=extras)


def train_checkpoint(ctx: RunContext, order: np.ndarray) -> training.TrainCheckpoint | None:
    """A checkpoint for a run long enough to be worth resuming, where the harness gives a
    folder that outlives the attempt; short runs (tests, smoke tables) keep one chunk."""
    if ctx.resume_dir is None or len(order) < CHECKPOINT_MIN_STEPS:
        return None
    return training.TrainCheckpoint(Path(ctx.resume_dir) / "train_large")


def evaluation_parts(ctx: RunContext, params, order: np.ndarray) -> Path | None:
    """Where a checkpointed run's evaluation keeps its finished chunks, named by the trained
    parameters' bytes, so that a pass resumed on another machine (other rounding, other
    parameters) never mixes its chunks with this one's."""
    if train_checkpoint(ctx, order) is None:
        return None
    return Path(ctx.resume_dir) / "evaluate" / training.params_digest(params)


def batch_split(apply_fn, params, data, order, e, labels) -> training.BatchSplit:
    """How a large model's training step fits the device (``training.plan_split``)."""
    return training.plan_split(apply_fn, params, {}, data, order, e.task, e.optimizer, labels)


for _m in MODES:
    implements(_m)(lambda ctx, m=_m: train_large(ctx, m))


@implements("lp")
def lp(ctx: RunContext) -> RunOutput:
    e = engine_for(ctx)
    with progress.phase("features"):
        states = e.layer_states("pretrained", ctx.deps)
    feats = {r: np.asarray(st[e.head_state], np.float32) for r, st in states.items()}
    head = e.new_head(ctx.seed)
    dense = nn.Dense(e.n_out)

    def apply_fn(p, extra, batch):
        return dense.apply({"params": p["head"]}, batch["f"])[:, None, :], extra

    data = {"f": feats["train"], "y": ctx.dataset.splits["train"].labels}

    def predict(params, _extra, role):
        return training.to_prediction(np.asarray(
            dense.apply({"params": params["head"]}, jnp.asarray(feats[role])))[:, None, :], e.task)

    def train(lrs):
        with progress.phase("train_heads"):
            runs = training.fit_grid(apply_fn, {"head": head}, {}, data,
                                     e.batch_order(ctx.seed, e.head_epochs), lrs, e.task,
                                     e.optimizer, cache_key=("lp", dense),
                                     select=e.selector(predict), progress="lp train")
        members = []
        for lr, (params, _, losses, bad, *sel) in zip(lrs, runs):
            preds = {r: predict(params, None, r) for r in feats}
            extras = training.loss_extras(losses, bad)
            if sel:
                extras.update(sel[0].extras())
            members.append(grids.Member(
                RunOutput(predictions=preds, diverged=bad, extras=extras),
                params, {"method": "lp", "lr": lr, "seed": ctx.seed}))
        return members

    return grids.run(ctx, "lp", train)


@implements("ft_zeroshot")
def ft_zeroshot(ctx: RunContext) -> RunOutput:
    from levi_core.backbones.tuning import interpolate

    e = engine_for(ctx)
    ds = ctx.dataset
    zero = e.with_head(training.load_params(ctx.deps["lp"])["head"])
    fine = e.load_trained(ctx.deps["lp_ft"])
    scores, best = {}, None
    for a in WISE_ALPHAS:
        pred = e.predict(interpolate(zero, fine, a), ["id_val"])["id_val"]
        scores[str(a)] = compute(ds.metric, pred, ds.splits["id_val"].labels)
        if np.isfinite(scores[str(a)]) and (best is None or better(ds.metric, scores[str(a)], scores[str(best)])):
            best = a  # first best, a ascending
    best = 1.0 if best is None else best
    with progress.phase("evaluate"):
        preds = e.predict(interpolate(zero, fine, best), e.prediction_roles)
    return RunOutput(predictions=preds, extras={"alpha": best, "id_val_by_alpha": scores})


@implements("a1")
def a1(ctx: RunContext) -> RunOutput:
    info = training.load_run_info(ctx.deps["ft"])
    other = train_large(ctx, "ft", seed=ctx.seed + 1000, lr=float(info["lr"]), write=False)
    mine = ensembles.load(ctx.deps["ft"])
    preds = {r: (mine[r] + other.predictions[r]) / 2 for r in other.predictions}
    return RunOutput(predictions=preds, diverged=other.diverged,
                     extras={"lr": info["lr"], "second_seed": ctx.seed + 1000})


ensembles.register()
