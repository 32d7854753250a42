"""``bench plan`` and the batch split it chooses: gradient accumulation gives the full batch's
update, the split is the fewest micro-batches that fit, and the plan's figures agree with what
can be counted or measured on this CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from levi_core import training
from levi_core.backbones import build_module, get_config, init_backbone
from levi_core.backbones.outputs import masked_mean
from levi_core.errors import ConfigError


def _tiny_text_step():
    config = get_config("bert-tiny")
    module = build_module(config)
    body = init_backbone(config, 0)[1]
    # a random head: a constant kernel would sum a layer norm's output, whose gradient is 0
    kernel = jax.random.normal(jax.random.PRNGKey(1), (config.hidden_size, 1)) * 0.2
    params = {"body": body, "head": {"kernel": kernel, "bias": jnp.zeros((1,))}}

    def apply_fn(p, extra, batch):
        h = module.apply({"params": p["body"]}, batch["ids"], batch["mask"]).last
        pooled = masked_mean(h, batch["mask"])
        return (pooled @ p["head"]["kernel"] + p["head"]["bias"])[:, None, :], extra

    rng = np.random.default_rng(0)
    n, T = 16, 12
    mask = (np.arange(T)[None] < rng.integers(4, T + 1, n)[:, None]).astype(np.int32)
    data = {"ids": (rng.integers(1, config.vocab_size, (n, T)) * mask).astype(np.int32),
            "mask": mask, "y": rng.normal(3.0, 1.0, n).astype(np.float32)}
    return apply_fn, params, data


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_micro_batched_step_equals_full_batch_step(optimizer):
    apply_fn, params, data = _tiny_text_step()
    idx = np.arange(16, dtype=np.int32)[None]  # one step over the whole batch of 16
    out = {}
    for k in (1, 4):
        p, _, losses, bad = training.fit(apply_fn, params, {}, data, idx, 1e-2, "regression",
                                         optimizer, micro_batches=k, optimize=False)
        assert not bad
        out[k] = (p, losses)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(out[1][0]), jax.tree_util.tree_leaves(params)))
    assert moved > 1e-4  # the step did something
    # SGD moves each parameter by lr x its gradient: float32 rounding of the summed parts.
    # Adam's first step is lr x g / (|g| + eps): elements whose gradient is near eps turn
    # rounding into up to a small fraction of lr, so its tolerance is stated against lr.
    atol = 1e-6 if optimizer == "sgd" else 1e-2 * 1e-2
    for a, b in zip(jax.tree_util.tree_leaves(out[1][0]), jax.tree_util.tree_leaves(out[4][0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)
    np.testing.assert_allclose(out[1][1], out[4][1], rtol=1e-5)


def test_micro_batches_must_divide_the_batch():
    apply_fn, params, data = _tiny_text_step()
    with pytest.raises(ConfigError, match="divisor of the batch size 16"):
        training.fit(apply_fn, params, {}, data, np.arange(16, dtype=np.int32)[None], 1e-2,
                     "regression", micro_batches=3)


def test_choose_split_takes_the_fewest_micro_batches_that_fit():
    # a step of 10 fixed + 90 activation bytes at batch 512: activations shrink as 1 / k
    peak = lambda k: 10 + 90 // k  # noqa: E731
    assert training.choose_split(peak, 512, None).micro_batches == 1
    assert training.choose_split(peak, 512, 100).micro_batches == 1
    s = training.choose_split(peak, 512, 40)
    assert (s.micro_batches, s.fits, s.peak_unsplit) == (4, True, 100)
    assert "4 micro-batches" in s.describe()
    s = training.choose_split(peak, 512, 5)  # the fixed part alone is over: never fits
    assert not s.fits and s.micro_batches > 1


def test_parse_bytes():
    assert training.parse_bytes("80GB") == 80 * 10**9
    assert training.parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    assert training.parse_bytes("4096") == 4096
    with pytest.raises(ConfigError, match="e.g. 80GB"):
        training.parse_bytes("eighty")
