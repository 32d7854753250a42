"""Gradient accumulation for a model with batch norm: each micro-batch is normalised by its own
statistics and the running statistics pass from one micro-batch to the next (what data-parallel
training without synchronised batch norm does); the step's gradient is the mean of the parts'."""

from __future__ import annotations

import pytest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from levi_core import training


class _BNModel(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(4)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(1)(nn.relu(x))


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_a_batch_norm_model_splits_into_micro_batches_with_their_own_statistics():
    model = _BNModel()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=8).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), x, False)
    params, extra = variables["params"], {"batch_stats": variables["batch_stats"]}

    def apply_fn(p, ex, batch):
        out, new = model.apply({"params": p, **ex}, batch["x"], True, mutable=["batch_stats"])
        return out[:, None, :], dict(new)

    lr = 0.1
    got_p, got_ex, _, bad = training.fit(apply_fn, params, extra, {"x": x, "y": y},
                                         np.arange(8, dtype=np.int32)[None], lr, "regression",
                                         "sgd", micro_batches=2, optimize=False)
    assert not bad

    # by hand: the halves one after the other, the statistics carried, the gradients averaged
    def loss(p, ex, xb, yb):
        out, new = apply_fn(p, ex, {"x": xb})
        return training.task_loss(out, yb, "regression"), new

    (_, ex1), g1 = jax.value_and_grad(loss, has_aux=True)(params, extra, x[:4], y[:4])
    (_, ex2), g2 = jax.value_and_grad(loss, has_aux=True)(params, ex1, x[4:], y[4:])
    grads = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, g1, g2)
    tx = training.make_optimizer("sgd")
    updates, _ = tx.update(grads, tx.init(params), params)
    want_p = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: -lr * u, updates))
    for a, b in zip(jax.tree_util.tree_leaves(got_p), jax.tree_util.tree_leaves(want_p)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got_ex), jax.tree_util.tree_leaves(ex2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # and not the whole batch's statistics: one update over all 8 rows moves them elsewhere
    (_, ex_all), _ = jax.value_and_grad(loss, has_aux=True)(params, extra, x, y)
    mean_split = np.asarray(got_ex["batch_stats"]["BatchNorm_0"]["mean"])
    mean_whole = np.asarray(ex_all["batch_stats"]["BatchNorm_0"]["mean"])
    assert not np.allclose(mean_split, mean_whole)


def test_the_split_is_recorded_as_batch_norm_per_micro_batch():
    split = training.BatchSplit(4, 10, 40, 20, True, batch_norm=True)
    assert split.describe() == "gradient accumulation over 4 micro-batches (batch norm per micro-batch)"
    assert training.BatchSplit(1, 10, 10, 20, True).describe() == "none"


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_an_unrolled_run_takes_the_same_steps_as_a_looped_one():
    """``fit(unroll=k)``: chunks of k steps as straight-line programs (the vision heads' way
    around slow convolutions in a CPU loop body) give the looped run's parameters and losses."""
    rng = np.random.default_rng(1)
    data = {"x": rng.normal(size=(40, 3)).astype(np.float32),
            "y": rng.normal(size=40).astype(np.float32)}
    model = _BNModel()
    v = model.init(jax.random.PRNGKey(0), data["x"][:2], False)

    def apply_fn(p, ex, batch):
        out, new = model.apply({"params": p, **ex}, batch["x"], True, mutable=["batch_stats"])
        return out[:, None, :], dict(new)

    idx = training.batch_indices(40, 4, 1, [0])  # 10 steps: chunks of 4, 4 and 2 (+2 no-ops)
    runs = [training.fit(apply_fn, v["params"], {"batch_stats": v["batch_stats"]}, data, idx,
                         0.05, "regression", "adam", optimize=False, unroll=u) for u in (0, 4)]
    for a, b in zip(jax.tree_util.tree_leaves(runs[0][:2]), jax.tree_util.tree_leaves(runs[1][:2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=1e-5)
    assert len(runs[1][2]) == 10
