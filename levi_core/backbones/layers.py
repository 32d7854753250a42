"""Building blocks shared by the T5, ViT and BERT modules: attention (with LoRA), norms.

Self-attention keeps query, key and value in one fused kernel ``qkv`` of shape
[D, 3 * H * d_head] (columns: all of q, then k, then v). One matmul instead of three is faster on
XLA:CPU, and the converter builds the fused kernel from the checkpoint's three tensors.

LoRA (Hu et al. 2021) adds ``(x @ A) @ B * alpha / r`` to the query and value projections:
parameters ``lora_q_a`` [D, r], ``lora_q_b`` [r, H * d_head] and the same for ``v``. B starts at
zero, so a freshly added adapter leaves the model unchanged. ``tuning.merge_lora`` folds the
adapters into ``qkv`` for inference at no extra cost.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

NEG_INF = float(jnp.finfo(jnp.float32).min)


@jax.custom_vjp
def matmul(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """``x @ w`` ([..., K] x [K, N]) with a backward pass written as two plain matrix products.

    Why: autodiff writes the weight gradient as a dot contracting the batch and token
    dimensions of ``x`` and ``g`` together, which XLA:CPU runs far below its matmul rate; the
    same product written as ``x.reshape(-1, K).T @ g.reshape(-1, N)`` runs at it
    (``bench/benchmarks/step_breakdown.py`` measures both). The input gradient contracts ``g``
    with ``w``'s last dimension directly: materialising ``w.T`` first is no faster alone and
    costs a copy per matmul inside a large step.
    """
    return jnp.dot(x, w)


def _matmul_fwd(x, w):
    return jnp.dot(x, w), (x, w)


def _matmul_bwd(res, g):
    x, w = res
    dx = jax.lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    dw = jnp.dot(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]))
    return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Dense(nn.Module):
    """``nn.Dense`` with the same parameters (``kernel`` [in, out], ``bias``), through ``matmul``."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        y = matmul(x, kernel)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _attention_autodiff(q, k, v, bias):
    """softmax(q k^T + bias) v per head; q, k, v [B, T, H, d], bias broadcast to [B, H, T, T]."""
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    if bias is not None:
        scores = scores + bias
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)


@jax.custom_vjp
def attention_core(q, k, v, bias):
    """``_attention_autodiff`` with a faster forward pass and the same gradient (float32).

    Why: ``jax.nn.dot_product_attention`` computes the same values (equal to the last bit on
    MiniLM's shapes) in half the time of the plain einsums on XLA:CPU (jaxlib 0.10: 5.5 vs
    10.9 ms for a batch of 32 x 64 tokens x 12 heads), which is what feature extraction and
    evaluation run; but its gradient is slower (15.1 vs 13.8 ms), so under differentiation
    the plain einsums and their autodiff run instead."""
    return jax.nn.dot_product_attention(q, k, v, bias=bias, scale=1.0)


def _attention_fwd(q, k, v, bias):
    return jax.vjp(_attention_autodiff, q, k, v, bias)  # (output, vjp: a pytree of residuals)


def _attention_bwd(vjp, g):
    return vjp(g)


attention_core.defvjp(_attention_fwd, _attention_bwd)


@jax.custom_vjp
def gradient_barrier(x: jnp.ndarray) -> jnp.ndarray:
    """The identity, whose gradient XLA must materialise instead of fusing it onward.

    Why: with residual connections, the gradient entering block ``i`` is the gradient entering
    block ``i + 1`` plus elementwise terms (a layer norm's backward, the residual add). XLA:CPU
    (jaxlib 0.10.2) fuses that chain through every block above and copies the fused chain into
    each block's consumers, so block 0 recomputes the elementwise backward of all the blocks
    above it: on ViT-B/16 the layer norms' backward measured 482 ms of a 3.9 s step, 131 ms with
    this barrier on each block's input (``bench/benchmarks/step_breakdown.py``).

    How: XLA drops ``optimization_barrier`` before fusing, but never fuses into a conditional.
    The predicate is data-dependent so that it is not folded away: a finite gradient passes
    through unchanged (same values, to the bit); one whose first element is NaN comes back
    all NaN, a run that has already diverged. The forward pass is the identity.
    """
    return x


def _gradient_barrier_fwd(x):
    return x, None


def _gradient_barrier_bwd(_, g):  # see gradient_barrier's docstring
    first = g.reshape(-1)[0]
    return (jax.lax.cond(first == first, lambda a: a, lambda a: jnp.full_like(a, jnp.nan), g),)


gradient_barrier.defvjp(_gradient_barrier_fwd, _gradient_barrier_bwd)


def gelu_exact(x: jnp.ndarray) -> jnp.ndarray:
    """GELU with the exact normal CDF, written with ``erf`` as PyTorch does. Same values as
    ``jax.nn.gelu(approximate=False)`` (which goes through ``erfc``), about 3% less CPU per
    MiniLM fine-tuning step on XLA:CPU."""
    with jax.named_scope("gelu"):  # names its ops for profiles (bench/benchmarks/step_breakdown.py)
        return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))).astype(x.dtype))


def dense_init(std: float = 0.02):
    return nn.initializers.normal(stddev=std)


def mask_bias(mask: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """[B, T] 1/0 mask -> [B, 1, 1, T] additive bias (0 for real keys, float32 min for padding)."""
    return ((1.0 - mask.astype(dtype)) * NEG_INF)[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv kernel and optional LoRA on q and v.

    Attributes:
      num_heads, head_dim: H and d_head; the inner width is H * d_head (T5 v1.1 has
        inner width != model width).
      use_bias: BERT and ViT have biases, T5 has none.
      scale_scores: divide scores by sqrt(d_head) (BERT, ViT); T5 folds the scale into its init.
      lora_rank, lora_alpha: LoRA on q and v when rank > 0.
    """

    num_heads: int
    head_dim: int
    use_bias: bool = True
    scale_scores: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    init_std: float = 0.02

    @nn.compact
    def __call__(self, x: jnp.ndarray, bias: jnp.ndarray | None) -> jnp.ndarray:
        b, t, d = x.shape
        h, hd = self.num_heads, self.head_dim
        inner = h * hd
        qkv = Dense(3 * inner, use_bias=self.use_bias, kernel_init=dense_init(self.init_std),
                       name="qkv")(x)
        qkv = qkv.reshape(b, t, 3, h, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.lora_rank > 0:
            q = q + self._lora("q", x, inner).reshape(b, t, h, hd)
            v = v + self._lora("v", x, inner).reshape(b, t, h, hd)
        with jax.named_scope("attention_core"):  # for profiles, as gelu_exact's
            ctx = self._core(q, k, v, bias).reshape(b, t, inner)
        return Dense(d, use_bias=self.use_bias, kernel_init=dense_init(self.init_std),
                        name="out")(ctx)

    def _core(self, q, k, v, bias):
        """softmax(q k^T / sqrt(d) + bias) v; q, k, v [B, T, H, d] -> [B, T, H, d]."""
        if self.scale_scores:
            q = q * (1.0 / jnp.sqrt(jnp.float32(self.head_dim))).astype(q.dtype)
        if bias is not None and bias.dtype != q.dtype:  # bfloat16 compute: keep the scores
            # bfloat16, and the float32 mask finite there (an all-padding row must not be NaN)
            bias = jnp.maximum(bias, jnp.finfo(q.dtype).min).astype(q.dtype)
        if q.dtype == jnp.float32:
            return attention_core(q, k, v, bias)
        return _attention_autodiff(q, k, v, bias)

    def _lora(self, which: str, x: jnp.ndarray, inner: int) -> jnp.ndarray:
        d = x.shape[-1]
        a = self.param(f"lora_{which}_a", nn.initializers.normal(stddev=1.0 / self.lora_rank),
                       (d, self.lora_rank))
        bm = self.param(f"lora_{which}_b", nn.initializers.zeros, (self.lora_rank, inner))
        return (x @ a) @ bm * (self.lora_alpha / self.lora_rank)


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, no bias."""

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        return (x * jax.lax.rsqrt(var + self.eps)).astype(x.dtype) * scale


def layer_norm(eps: float, name: str) -> nn.LayerNorm:
    """LayerNorm with the two-pass variance (E[(x - mean)^2]) that PyTorch uses: flax's default
    fast variance (E[x^2] - mean^2) drifts from the reference on large activations."""
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)
