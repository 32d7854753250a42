"""The one trainer every method uses, its loss, its optimizer, and parameter artifacts.

* **Loss**: the mean over heads of the per-head mean loss (squared error for regression,
  cross-entropy for classification). A single-head model is the case ``heads = 1``; LEVI's loss
  (Sec. 4 of the paper, ``1/m * 1/n * sum_i sum_j l(y_i, yhat_i^(j))``) is the case ``heads = m``.
* **Optimizer**: ``make_optimizer(name, labels)``: Adam or SGD with momentum 0.9, and freezing
  as an optimizer mask over parameter names (big_vision style): ``labels`` marks each leaf
  ``train`` or ``freeze`` and frozen leaves get a zero update and no optimizer state. The
  learning rate is applied inside the step, so it is a runtime value and one compiled program
  serves every learning rate of a grid.
* **Loop**: minibatch row indices are drawn up front from the seed (``batch_indices``); batches
  are gathered on the host and run through one compiled ``lax.scan`` over a chunk of steps
  (the whole run when the data is small, a few steps at a time for images), so the same inputs
  give bit-identical parameters in any process. ``transform(batch, step)`` may edit a batch on
  the host first (the unknown-id replacement of LEVI's small model).
* **Epoch selection** (optional, ``EpochSelect``): after every epoch the model is scored on
  held-out data (``id_val``); the best epoch's parameters are returned and training stops after
  ``patience`` epochs without improvement (early stopping with the best weights kept). Without
  it every epoch runs and the last parameters are returned (the paper's fixed epoch count).
* **Divergence** (one policy): the first step whose loss or new parameters are not finite is
  not applied, training stops there (later steps are no-ops), the last finite parameters are
  returned and ``diverged`` is True; the harness records the job as ``diverged``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

PARAMS_FILE = "params.npz"
RUN_FILE = "run.json"
# XLA's backend optimisations cost compile time once per program and save time on every step,
# so they pay only on long runs: short runs (tests, smoke tables, the synthetic experiment's
# 1,000 steps) skip them, and a run of at least OPTIMIZE_STEPS steps (an epoch of the small
# model on the whole MovieLens split is one) is compiled with them. Optimised code rounds
# differently, so the threshold also keeps every smoke result as it was. ``fit(optimize=...)``
# overrides the rule: the transformer engine compiles its large-model training optimised
# whatever its length (``Engine.optimize_large``).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
OPTIMIZE_STEPS = 2000
# Host memory for one chunk of gathered batches: text batches fit hundreds of steps, a batch of
# 224 x 224 images one.
CHUNK_BYTES = 64 << 20
# Steps per straight-line program when a run is unrolled (``fit(unroll=...)``): enough to keep
# dispatch cheap, few enough that compiling stays short.
UNROLL_STEPS = 4


# ---------------------------------------------------------------- loss and predictions
def multihead_ce(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean over heads of the per-head mean cross-entropy; logits [N, C] or [N, H, C]."""
    if logits.ndim == 2:
        logits = logits[:, None, :]
    per = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.broadcast_to(labels[:, None], logits.shape[:2]))  # [N, H]
    return per.mean(axis=0).mean()


def task_loss(out: jnp.ndarray, y: jnp.ndarray, task: str) -> jnp.ndarray:
    """Mean over heads of the per-head mean loss; ``out`` [B, H, O]."""
    if task == "regression":
        return jnp.mean(jnp.mean((out[..., 0] - y[:, None]) ** 2, axis=0))
    return multihead_ce(out, y.astype(jnp.int32))


def mean_probs(logits: jnp.ndarray) -> jnp.ndarray:
    """The prediction of a (multi-head) classifier: the mean of the heads' probabilities."""
    if logits.ndim == 2:
        logits = logits[:, None, :]
    return jax.nn.softmax(logits, axis=-1).mean(axis=1)


def to_prediction(out, task: str) -> np.ndarray:
    """[N, H, O] model outputs -> the prediction: the mean of the heads (regression values;
    class probabilities)."""
    if task == "regression":
        return np.asarray(out, np.float64)[..., 0].mean(axis=1)
    return np.asarray(mean_probs(jnp.asarray(out)), np.float64)


# ---------------------------------------------------------------- optimizer
def path_labels(params, trainable: Callable[[tuple[str, ...]], bool] | None):
    """The optimizer mask: a pytree like ``params`` with ``"train"`` / ``"freeze"`` leaves."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {k: ("train" if trainable is None or trainable(k) else "freeze") for k in flat})


def make_optimizer(name: str, labels=None) -> optax.GradientTransformation:
    """Adam or SGD (momentum 0.9) without its learning rate, masked by ``labels``."""
    if name not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {name!r}")
    base = optax.scale_by_adam() if name == "adam" else optax.trace(decay=0.9)
    if labels is None:
        return base
    return optax.multi_transform({"train": base, "freeze": optax.set_to_zero()}, labels)


def trained_leaves(params, labels):
    """The leaves that train (what a run needs to save: the frozen rest is known)."""
    if labels is None:
        return params
    flat, lab = traverse_util.flatten_dict(params), traverse_util.flatten_dict(labels)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if lab[k] == "train"})


def count_params(params, labels=None) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(trained_leaves(params, labels))))


# ---------------------------------------------------------------- the loop
def batch_indices(n: int, batch_size: int, epochs: int, seed_seq: list[int]) -> np.ndarray:
    """[steps, batch] row indices: a fresh permutation per epoch (last partial batch dropped)."""
    batch_size = max(1, min(batch_size, n))
    per_epoch = n // batch_size
    rng = np.random.default_rng(np.random.SeedSequence(seed_seq))
    rows = [rng.permutation(n)[: per_epoch * batch_size] for _ in range(epochs)]
    if not rows:
        return np.zeros((0, batch_size), np.int32)
    return np.concatenate(rows).reshape(-1, batch_size).astype(np.int32)


_PROGRAMS: dict[Any, Callable] = {}


@dataclass
class EpochSelect:
    """Early stopping on held-out data: ``score(params, extra)`` (lower is better) after each
    epoch of ``steps_per_epoch`` steps; ``fit`` returns the best epoch's parameters and stops
    after ``patience`` epochs without a better score. ``fit`` fills ``scores`` (one per epoch
    run) and ``best_epoch`` (1-based)."""

    steps_per_epoch: int
    score: Callable[[Any, Any], float]
    patience: int
    scores: list = field(default_factory=list)
    best_epoch: int = 0

    def extras(self) -> dict[str, Any]:
        """What a record keeps: the chosen epoch, the epochs run and the held-out curve."""
        return {"best_epoch": self.best_epoch, "epochs_run": len(self.scores),
                "val_curve": [round(float(v), 6) for v in self.scores]}


def fit(apply_fn: Callable, params, extra, data: Mapping[str, np.ndarray], idx: np.ndarray,
        lr: float, task: str, optimizer: str = "adam", labels=None, cache_key: Any = None,
        transform: Callable | None = None, prepare: Callable | None = None,
        select: EpochSelect | None = None, progress: str | None = None,
        optimize: bool | None = None, micro_batches: int = 1,
        checkpoint: "TrainCheckpoint | None" = None, unroll: int = 0):
    """Train ``params`` on ``data`` (``{"y": labels, ...inputs}``) with minibatches ``idx``.

    ``apply_fn(params, extra, batch) -> (out [B, H, O], new_extra)`` (``extra``: mutable model
    state such as batch-norm statistics; ``{}`` when none). ``cache_key`` (hashable, identifying
    ``apply_fn``) lets repeated calls reuse the compiled program.

    ``select``: choose the epoch on held-out data (see ``EpochSelect``). ``progress``: a
    label for a progress bar over the steps (``levi_core.progress``). ``optimize``: compile
    with XLA's backend optimisations (None: when the run has at least ``OPTIMIZE_STEPS`` steps).
    ``micro_batches``: each step's batch is split into this many equal micro-batches whose
    gradients are averaged before the one optimizer update (gradient accumulation: the same
    update up to float rounding, less activation memory; see ``split_batch``).
    ``checkpoint``: keep the run's state there every few minutes and resume from it, so that a
    killed job restarts where it stopped (``TrainCheckpoint``; runs without epoch selection);
    a finished run's state is kept there too, and a later call returns it without training.
    ``unroll``: run the steps in chunks of this many, each chunk one straight-line program
    instead of a loop (0: loop). XLA's CPU backend runs convolutions inside a loop body far
    slower than outside one (``bench/benchmarks/unroll_speed.py`` measures it), so models with
    a convolutional small model train unrolled; the numbers are the same steps'.

    Returns ``(params, extra, losses [steps run] (NaN from a divergence on), diverged)``.
    """
    from levi_core.progress import bar

    optimize = len(idx) >= OPTIMIZE_STEPS if optimize is None else optimize
    check_micro_batches(micro_batches, idx.shape[1] if idx.ndim == 2 else 0, extra)
    run = _program(apply_fn, task, optimizer, labels, cache_key, grid=False, optimize=optimize,
                   micro_batches=micro_batches, unroll=bool(unroll))
    tx_state = make_optimizer(optimizer, labels).init(params)
    bad = jnp.array(False)
    losses = []
    lr_arr = jnp.float32(lr)
    per_epoch = select.steps_per_epoch if select is not None else max(1, len(idx))
    best = None
    start, max_chunk = 0, None
    if checkpoint is not None:
        if select is not None:
            raise ValueError("a training checkpoint resumes runs without epoch selection only")
        fingerprint = checkpoint.fingerprint(idx, lr, optimizer, micro_batches)
        resumed = checkpoint.load((params, extra, tx_state), fingerprint)
        if resumed is not None:
            (params, extra, tx_state), bad, done, start = resumed
            losses.append(done)
            bad = jnp.asarray(bad)
        max_chunk = checkpoint.steps_per_chunk
    if unroll:
        max_chunk = min(max_chunk or unroll, unroll)
    with bar(progress, total=len(idx), unit="step") as pbar:
        pbar.update(start)
        for lo in range(start, len(idx), per_epoch):
            pos = lo
            for n_rows, stacked, valid in _chunks(data, idx[lo: lo + per_epoch], transform,
                                                  prepare, offset=lo, max_steps=max_chunk):
                params, extra, tx_state, bad, part = run(params, extra, tx_state, bad, stacked,
                                                         valid, lr_arr)
                losses.append(np.asarray(part)[:n_rows])
                pbar.update(n_rows)
                pos += n_rows
                if checkpoint is not None and pos < len(idx) and checkpoint.due():
                    checkpoint.save((params, extra, tx_state), bad, np.concatenate(losses), pos,
                                    fingerprint)
            if select is None:
                continue
            if bool(bad):
                break
            score = float(select.score(params, extra))
            select.scores.append(score)
            if best is None or (np.isfinite(score) and not score >= best[0]):
                best = (score, params, extra)
                select.best_epoch = len(select.scores)
            pbar.set_postfix_str(f"epoch {len(select.scores)} val {score:.4g} best {best[0]:.4g}")
            if len(select.scores) - select.best_epoch >= select.patience:
                break
    if best is not None:
        params, extra = best[1], best[2]
    losses = np.concatenate(losses) if losses else np.zeros(0)
    if checkpoint is not None and start < len(idx):  # finished: kept until the job's record
        checkpoint.save((params, extra, tx_state), bad, losses, len(idx), fingerprint)
    return params, extra, losses.astype(np.float64), bool(bad)


@dataclass
class TrainCheckpoint:
    """Where a long training run keeps its state, so that a killed job resumes mid-run.

    A large model's epoch is one job of hundreds of steps; without this, a job killed near its
    end (a lost node, a session that ends) starts over. ``fit`` runs the steps in chunks of
    ``steps_per_chunk`` and, once ``every_s`` seconds have passed since the last save, writes
    the parameters, mutable model state, optimizer state, losses so far and the next step
    (atomically, one file). A later ``fit`` with the same run (same batches, learning rate,
    optimizer and split: ``fingerprint``) continues from there; any other run ignores the file.
    The same chunking is used whether or not the run was interrupted, so a resumed run's
    numbers are those of an uninterrupted one. When the run ends ``fit`` saves its final state
    once more, marked finished: a job killed later (in its evaluation) then skips the training
    instead of running it again. The harness removes the folder once the job's record is
    written; ``clear`` does so by hand.
    """

    folder: Path
    every_s: float = 300.0
    steps_per_chunk: int = 16
    _last: float = field(default=0.0, repr=False)

    FILE = "train_state.msgpack"

    @property
    def path(self) -> Path:
        return Path(self.folder) / self.FILE

    @staticmethod
    def fingerprint(idx: np.ndarray, lr: float, optimizer: str, micro_batches: int) -> str:
        import hashlib

        h = hashlib.sha256(np.ascontiguousarray(idx).tobytes())
        h.update(repr((idx.shape, float(lr), optimizer, int(micro_batches))).encode())
        return h.hexdigest()[:20]

    def due(self) -> bool:
        import time

        now = time.monotonic()
        if not self._last:
            self._last = now
        if now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def save(self, state, bad, losses: np.ndarray, step: int, fingerprint: str) -> None:
        import os

        from flax import serialization

        payload = {"state": serialization.to_state_dict(jax.device_get(state)),
                   "bad": np.asarray(bool(bad)), "losses": np.asarray(losses, np.float32),
                   "step": np.asarray(int(step)), "fingerprint": fingerprint}
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".partial")
        tmp.write_bytes(serialization.msgpack_serialize(payload))
        os.replace(tmp, self.path)

    def load(self, target, fingerprint: str):
        """``(state, bad, losses, next step)`` of a saved run of ``fingerprint``, else None."""
        from flax import serialization

        if not self.path.exists():
            return None
        try:
            payload = serialization.msgpack_restore(self.path.read_bytes())
            if payload.get("fingerprint") != fingerprint:
                return None
            state = serialization.from_state_dict(target, payload["state"])
        except Exception:  # a torn or foreign file: start over rather than fail the job
            return None
        state = jax.tree_util.tree_map(jnp.asarray, state)
        return state, bool(payload["bad"]), np.asarray(payload["losses"]), int(payload["step"])

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".partial").unlink(missing_ok=True)


def fit_grid(apply_fn: Callable, params, extra, data: Mapping[str, np.ndarray], idx: np.ndarray,
             lrs, task: str, optimizer: str = "adam", labels=None, cache_key: Any = None,
             transform: Callable | None = None, prepare: Callable | None = None,
             select: Callable[[], EpochSelect] | None = None, progress: str | None = None,
             micro_batches: int = 1, unroll: int = 0) -> list[tuple]:
    """``fit`` for several learning rates at once: one compiled program that ``vmap``s the
    training loop over the learning rates (same start, same batches), so a grid of small
    models costs about one run's dispatch and compile instead of one per point. Returns one
    ``(params, extra, losses, diverged)`` per learning rate, equal to separate ``fit`` calls up
    to float rounding (``tests/test_engine_perf.py``); divergence is tracked per member.

    ``select`` (a factory, one ``EpochSelect`` per member) trains the members one at a time,
    each with its own early stopping; the selectors are returned as each tuple's fifth item.
    ``micro_batches`` > 1 (a step over the device's memory) also trains them one at a time.
    """
    lrs = [float(lr) for lr in lrs]
    g = len(lrs)
    if select is not None:
        out = []
        for lr in lrs:
            sel = select()
            out.append(fit(apply_fn, params, extra, data, idx, lr, task, optimizer, labels,
                           cache_key, transform, prepare, sel, progress,
                           micro_batches=micro_batches, unroll=unroll) + (sel,))
        return out
    if g == 1 or micro_batches > 1 or unroll:  # the plain program, one member at a time
        return [fit(apply_fn, params, extra, data, idx, lr, task, optimizer, labels,
                    cache_key, transform, prepare, progress=progress, micro_batches=micro_batches,
                    unroll=unroll)
                for lr in lrs]
    run = _program(apply_fn, task, optimizer, labels, cache_key, grid=True,
                   optimize=len(idx) >= OPTIMIZE_STEPS)
    stack = lambda tree: jax.tree_util.tree_map(lambda a: jnp.stack([jnp.asarray(a)] * g), tree)  # noqa: E731
    tx_state = stack(make_optimizer(optimizer, labels).init(params))
    params, extra = stack(params), stack(extra)
    bad = jnp.zeros((g,), bool)
    losses = []
    lr_arr = jnp.asarray(lrs, jnp.float32)
    for n_rows, stacked, valid in _chunks(data, idx, transform, prepare):
        params, extra, tx_state, bad, part = run(params, extra, tx_state, bad, stacked, valid, lr_arr)
        losses.append(np.asarray(part)[:, :n_rows])
    losses = np.concatenate(losses, axis=1) if losses else np.zeros((g, 0))
    member = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
    return [(member(params, i), member(extra, i), losses[i].astype(np.float64), bool(bad[i]))
            for i in range(g)]


def _program(apply_fn, task: str, optimizer: str, labels, cache_key, grid: bool,
             optimize: bool = False, micro_batches: int = 1, unroll: bool = False):
    """The compiled training loop (``vmap``ped over learning rates for a grid), reused across
    calls with the same ``cache_key``, task, optimizer, mask and batch split; ``optimize``:
    with XLA's backend optimisations (long runs, ``OPTIMIZE_STEPS``)."""
    label_key = None if labels is None else tuple(sorted(traverse_util.flatten_dict(labels).items()))
    key = None if cache_key is None else (grid, cache_key, task, optimizer, label_key, optimize,
                                          micro_batches, unroll)
    run = _PROGRAMS.get(key) if key is not None else None
    if run is None:
        loop = _make_run(apply_fn, task, make_optimizer(optimizer, labels), micro_batches, unroll)
        if grid:
            loop = jax.vmap(loop, in_axes=(0, 0, 0, 0, None, None, 0))
        run = jax.jit(loop, compiler_options=None if optimize else COMPILER_OPTIONS)
        if key is not None:
            _PROGRAMS[key] = run
    return run


def _chunks(data, idx: np.ndarray, transform, prepare, offset: int = 0,
            max_steps: int | None = None):
    """``(rows, stacked batches, valid)`` per chunk of steps, gathered on the host; the last
    chunk is padded with no-op steps (``valid`` False) so that every chunk has one shape.
    ``offset``: the step number of ``idx[0]`` (what ``transform`` is told); ``max_steps``: at
    most this many steps a chunk (a checkpointed run saves between chunks)."""
    chunk = _chunk_steps(data, idx)
    if max_steps is not None:
        chunk = max(1, min(chunk, max_steps))
    for lo in range(0, len(idx), chunk):
        rows = idx[lo: lo + chunk]
        batches = [{k: v[r] for k, v in data.items()} for r in rows]
        if transform is not None:
            batches = [transform(b, offset + lo + i) for i, b in enumerate(batches)]
        valid = np.ones(chunk, bool)
        if len(rows) < chunk:
            valid[len(rows):] = False
            batches += [batches[-1]] * (chunk - len(rows))
        stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
        if prepare is not None:
            stacked = prepare(stacked)
        yield len(rows), stacked, jnp.asarray(valid)


def _chunk_steps(data: Mapping[str, np.ndarray], idx: np.ndarray) -> int:
    if len(idx) == 0:
        return 1
    per_row = sum(np.asarray(v).itemsize * int(np.prod(np.shape(v)[1:])) for v in data.values())
    per_step = max(1, per_row * idx.shape[1])
    return int(max(1, min(len(idx), CHUNK_BYTES // per_step)))


def check_micro_batches(micro_batches: int, batch_size: int, extra) -> None:
    """A batch split must be a whole number of equal micro-batches.

    A model with mutable state (batch norm) can be split too, but then it is not the full
    batch's update: each micro-batch is normalised by its own statistics, as data-parallel
    training on that many devices does without synchronised batch norm, and the running
    statistics are updated once per micro-batch (``_make_run``). ``BatchSplit.extras`` records it.
    """
    from levi_core.errors import ConfigError

    if micro_batches < 1 or (batch_size and batch_size % micro_batches):
        raise ConfigError(f"micro_batches={micro_batches} must be a positive divisor of the batch "
                          f"size {batch_size}; choose one of {divisors(batch_size)}")


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0] if n else [1]


def split_batch(batch, micro_batches: int):
    """[B, ...] leaves -> [micro_batches, B / micro_batches, ...]: consecutive rows per part."""
    return jax.tree_util.tree_map(
        lambda a: a.reshape((micro_batches, a.shape[0] // micro_batches) + a.shape[1:]), batch)


def _make_run(apply_fn, task, tx, micro_batches: int = 1, unroll: bool = False):
    def run(params, extra, opt_state, bad, batches, valid, lr):
        def loss_fn(p, ex, batch):
            out, new_ex = apply_fn(p, ex, batch)
            return task_loss(out, batch["y"], task), new_ex

        def loss_and_grads(p, ex, batch):
            if micro_batches == 1:
                return jax.value_and_grad(loss_fn, has_aux=True)(p, ex, batch)

            # equal parts: the mean of the parts' mean losses (and of their gradients) is the
            # whole batch's; only one part's activations are alive at a time
            # mutable state (batch-norm running statistics) passes from part to part
            def part(acc, b):
                (loss, new_ex), g = jax.value_and_grad(loss_fn, has_aux=True)(p, acc[2], b)
                return (acc[0] + loss, jax.tree_util.tree_map(jnp.add, acc[1], g), new_ex), None

            zero = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, p), ex)
            (loss, grads, new_ex), _ = jax.lax.scan(part, zero, split_batch(batch, micro_batches))
            scale = 1.0 / micro_batches
            return (loss * scale, new_ex), jax.tree_util.tree_map(lambda g: g * scale, grads)

        def step(carry, inputs):
            p, ex, st, bad = carry
            batch, ok_step = inputs
            (loss, new_ex), grads = loss_and_grads(p, ex, batch)
            updates, new_st = tx.update(grads, st, p)
            new_p = optax.apply_updates(p, jax.tree_util.tree_map(lambda u: -lr * u, updates))
            finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
                [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(new_p)]))
            apply = finite & ~bad & ok_step
            keep = lambda new, old: jnp.where(apply, new, old)  # noqa: E731
            carry = (jax.tree_util.tree_map(keep, new_p, p), jax.tree_util.tree_map(keep, new_ex, ex),
                     jax.tree_util.tree_map(keep, new_st, st), bad | (ok_step & ~finite))
            return carry, jnp.where(bad | ~finite, jnp.nan, loss)

        (p, ex, st, bad), losses = jax.lax.scan(step, (params, extra, opt_state, bad),
                                                (batches, valid), unroll=unroll)
        return p, ex, st, bad, losses

    return run


# ---------------------------------------------------------------- memory: the batch split
def lower_step(apply_fn, params, extra, batch, task: str, optimizer: str = "adam", labels=None,
               micro_batches: int = 1, optimize: bool = True):
    """One training step (the program ``fit`` runs, one step per chunk) lowered on abstract
    inputs: ``params``, ``extra`` and ``batch`` ([B, ...] leaves, ``y`` included) may be
    ``jax.ShapeDtypeStruct`` trees, so nothing is allocated whatever the model's size. The
    caller compiles it and reads XLA's ``cost_analysis()`` / ``memory_analysis()``; with one
    step per chunk the scan's body, which XLA counts once, runs once."""
    sds = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype)  # noqa: E731
    params = jax.tree_util.tree_map(sds, params)
    extra = jax.tree_util.tree_map(sds, extra)
    opt_state = jax.eval_shape(make_optimizer(optimizer, labels).init, params)
    stacked = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((1,) + tuple(np.shape(a)),
                                                                    a.dtype), batch)
    run = _program(apply_fn, task, optimizer, labels, None, grid=False, optimize=optimize,
                   micro_batches=micro_batches)
    return run.lower(params, extra, opt_state, jax.ShapeDtypeStruct((), bool), stacked,
                     jax.ShapeDtypeStruct((1,), bool), jax.ShapeDtypeStruct((), jnp.float32))


def peak_bytes(compiled) -> int:
    """A compiled program's device memory while it runs, from XLA's buffer assignment: its
    arguments, its outputs (less those aliased to arguments) and its temporaries."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


def parse_bytes(text: str) -> int:
    """``"80GB"``, ``"80 GiB"``, ``"512MB"`` or a plain byte count -> bytes (GB = 1e9, GiB = 2**30)."""
    from levi_core.errors import ConfigError

    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    t = str(text).strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    try:
        return int(float(num) * units[t[len(num):]])
    except (KeyError, ValueError):
        raise ConfigError(f"memory size {text!r}: give bytes or a number with GB, GiB, MB or MiB, "
                          "e.g. 80GB") from None


MEMORY_ENV = "LEVI_MAX_DEVICE_MEMORY"


def device_memory_limit() -> int | None:
    """The device memory a training step may use: ``$LEVI_MAX_DEVICE_MEMORY`` (e.g. ``80GB``),
    else the accelerator's own limit where jax reports one (GPUs), else None (CPU: the batch
    is never split, so no CPU run pays for planning)."""
    import os

    if os.environ.get(MEMORY_ENV):
        return parse_bytes(os.environ[MEMORY_ENV])
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics: no limit known
        return None
    return int(stats["bytes_limit"]) if stats.get("bytes_limit") else None


@dataclass(frozen=True)
class BatchSplit:
    """How a training step fits in device memory: ``micro_batches`` (1: no split) and the
    planned peak bytes of the chosen program (and of the unsplit one), against ``limit``."""

    micro_batches: int
    peak: int
    peak_unsplit: int
    limit: int | None
    fits: bool

    batch_norm: bool = False  # the model keeps batch-norm statistics (``check_micro_batches``)

    def describe(self) -> str:
        if self.micro_batches == 1:
            return "none"
        out = f"gradient accumulation over {self.micro_batches} micro-batches"
        if self.batch_norm:
            out += " (batch norm per micro-batch)"
        return out

    def extras(self) -> dict[str, Any]:
        return {"batch_split": self.describe(), "micro_batches": self.micro_batches,
                "planned_peak_bytes": self.peak, "device_memory_limit": self.limit}


def plan_split(apply_fn, params, extra, data: Mapping[str, np.ndarray], order: np.ndarray,
               task: str, optimizer: str, labels=None) -> BatchSplit:
    """How a training step of this model fits the device (``choose_split``): planned only where
    a memory limit is known (``$LEVI_MAX_DEVICE_MEMORY`` or the accelerator's); without one, as
    on CPU, the batch is never split and nothing is compiled for the plan."""
    limit = device_memory_limit()
    if limit is None or order.ndim != 2 or not len(order):
        return BatchSplit(1, 0, 0, limit, True)
    batch = {k: jax.ShapeDtypeStruct((order.shape[1],) + np.shape(v)[1:], np.asarray(v[:1]).dtype)
             for k, v in data.items()}

    def peak_of(k):
        return peak_bytes(lower_step(apply_fn, params, extra, batch, task, optimizer, labels,
                                     k).compile())

    split = dataclasses.replace(choose_split(peak_of, order.shape[1], limit),
                                batch_norm=bool(jax.tree_util.tree_leaves(extra)))
    if not split.fits:
        print(f"training step: planned peak {split.peak / 1e9:.1f} GB exceeds the device's "
              f"{limit / 1e9:.1f} GB even as {split.micro_batches} micro-batches; running anyway",
              flush=True)
    return split


def choose_split(peak_of: Callable[[int], int], batch_size: int, limit: int | None,
                 max_tries: int = 4) -> BatchSplit:
    """The fewest equal micro-batches whose step fits in ``limit`` bytes. ``peak_of(k)``: the
    planned peak of the step split into ``k`` (a compilation, so few are tried): a split is
    guessed from the unsplit step's temporaries (activations shrink about as 1 / k), then
    checked; if none of ``max_tries`` fits, the last one tried is returned with ``fits`` False."""
    p1 = peak_of(1)
    if limit is None or p1 <= limit:
        return BatchSplit(1, p1, p1, limit, limit is None or p1 <= limit)
    cands = [k for k in divisors(batch_size) if k > 1]
    best = BatchSplit(1, p1, p1, limit, False)
    tried = 0
    for k in cands:
        if tried >= max_tries:
            break
        if p1 / k > limit and k != cands[-1]:  # even perfect scaling would not fit
            continue
        pk = peak_of(k)
        tried += 1
        best = BatchSplit(k, pk, p1, limit, pk <= limit)
        if best.fits:
            break
    return best


def loss_extras(losses: np.ndarray, diverged: bool) -> dict[str, Any]:
    """What a record keeps of a loss curve."""
    finite = losses[np.isfinite(losses)]
    return {"steps": int(len(finite) + (1 if diverged else 0)),
            "diverged_at": int(len(finite)) if diverged else None,
            "first_loss": float(finite[0]) if len(finite) else None,
            "final_loss": float(finite[-1]) if len(finite) and not diverged else None}


# ---------------------------------------------------------------- artifacts
def save_params(workdir: Path, params, info: Mapping[str, Any] | None = None) -> None:
    flat = traverse_util.flatten_dict(jax.device_get(params), sep=".")
    np.savez(Path(workdir) / PARAMS_FILE, **{k: np.asarray(v) for k, v in flat.items()})
    if info is not None:
        (Path(workdir) / RUN_FILE).write_text(json.dumps(info, sort_keys=True))


def params_digest(params) -> str:
    """A short hash of a parameter tree's names, shapes and bytes."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(traverse_util.flatten_dict(jax.device_get(params), sep=".").items()):
        a = np.ascontiguousarray(np.asarray(v))
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def load_params(workdir: Path):
    with np.load(Path(workdir) / PARAMS_FILE) as z:
        flat = {k: jnp.asarray(z[k]) for k in z.files}
    return traverse_util.unflatten_dict(flat, sep=".")


def load_run_info(workdir: Path) -> dict[str, Any]:
    return json.loads((Path(workdir) / RUN_FILE).read_text())


def merge(base, saved):
    """``saved`` leaves over ``base`` (a run saves only what it trained)."""
    flat = traverse_util.flatten_dict(base)
    flat.update(traverse_util.flatten_dict(saved))
    return traverse_util.unflatten_dict(flat)
