"""T5 encoder (v1.0 and v1.1) returning every layer's hidden state.

Pre-norm blocks with RMS norm; attention without score scaling and with a learned relative
position bias (bidirectional buckets) that is computed once, from the parameters T5 keeps in its
first block, and added in every block. The feed-forward is ReLU (v1.0) or gated GELU with the
tanh approximation (v1.1). Blocks are unrolled Python loops, not ``scan``: XLA's cost analysis
counts a loop body once, and the cost tables read it.

Parameters: ``embed/embedding``, ``rel_bias/embedding`` [buckets, H], ``block_{i}/ln_attn``,
``block_{i}/attn/{qkv,out}``, ``block_{i}/ln_ff``, ``block_{i}/ff/{wi | wi_0, wi_1, wo}``,
``final_ln``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from levi_core.backbones.config import T5Config
from levi_core.backbones.layers import Dense, gradient_barrier, RMSNorm, SelfAttention, dense_init, mask_bias
from levi_core.backbones.outputs import BackboneOutput


def relative_position_buckets(q_len: int, k_len: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """T5's bidirectional bucketing of (key - query) offsets: [q_len, k_len] int32.

    Half the buckets for each direction; within one, exact buckets for small offsets and
    logarithmically wider ones up to ``max_distance``. Computed in numpy at trace time (the
    sequence length is static), so it costs nothing at run time.
    """
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    half = num_buckets // 2
    ret = (rel > 0).astype(np.int32) * half
    n = np.abs(rel)
    max_exact = half // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        large = max_exact + (
            np.log(np.maximum(n, 1).astype(np.float32) / max_exact)
            / math.log(max_distance / max_exact)
            * (half - max_exact)
        ).astype(np.int32)
    large = np.minimum(large, half - 1)
    return (ret + np.where(is_small, n, large)).astype(np.int32)


class T5FeedForward(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x):
        c = self.config
        init = dense_init(c.d_model ** -0.5)
        if c.ff == "relu":
            h = jax.nn.relu(Dense(c.d_ff, use_bias=False, kernel_init=init, name="wi")(x))
        elif c.ff == "gated-gelu":
            g = jax.nn.gelu(Dense(c.d_ff, use_bias=False, kernel_init=init, name="wi_0")(x),
                            approximate=True)
            h = g * Dense(c.d_ff, use_bias=False, kernel_init=init, name="wi_1")(x)
        else:
            raise ValueError(f"unknown T5 feed-forward {c.ff!r}")
        return Dense(c.d_model, use_bias=False, kernel_init=dense_init(c.d_ff ** -0.5),
                        name="wo")(h)


class T5Block(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x, bias):
        c = self.config
        h = RMSNorm(c.eps, name="ln_attn")(x)
        x = x + SelfAttention(
            c.num_heads, c.d_kv, use_bias=False, scale_scores=False, lora_rank=c.lora_rank,
            lora_alpha=c.lora_alpha, init_std=c.d_model ** -0.5, name="attn",
        )(h, bias)
        h = RMSNorm(c.eps, name="ln_ff")(x)
        return x + T5FeedForward(c, name="ff")(h)


class T5Encoder(nn.Module):
    """``__call__(ids [B, T] int, mask [B, T] or None) -> BackboneOutput``; ``start``/``stop``/
    ``hidden`` run a slice of the blocks (see ``levi_core.backbones.outputs``)."""

    config: T5Config

    @nn.compact
    def __call__(self, ids: jnp.ndarray | None, mask: jnp.ndarray | None = None, *, start: int = 0,
                 stop: int | None = None, hidden: jnp.ndarray | None = None) -> BackboneOutput:
        c = self.config
        shape = hidden.shape[:2] if start else ids.shape
        if mask is None:
            mask = jnp.ones(shape, jnp.int32)
        t = shape[1]
        if start:
            x = hidden  # the output of block start - 1
        else:
            x = nn.Embed(c.vocab_size, c.d_model, embedding_init=dense_init(1.0), name="embed")(ids)
        rel = nn.Embed(c.rel_buckets, c.num_heads, embedding_init=dense_init(c.d_model ** -0.5),
                       name="rel_bias")
        buckets = relative_position_buckets(t, t, c.rel_buckets, c.rel_max_distance)
        bias = jnp.transpose(rel(jnp.asarray(buckets)), (2, 0, 1))[None]  # [1, H, T, T]
        bias = bias + mask_bias(mask)
        states = [x]
        for i in range(start, c.num_layers if stop is None else stop):
            x = T5Block(c, name=f"block_{i}")(gradient_barrier(x), bias)
            states.append(x)
        if stop is None or stop == c.num_layers:
            states.append(RMSNorm(c.eps, name="final_ln")(x))
        return BackboneOutput(hidden_states=tuple(states), mask=mask.astype(jnp.int32))
