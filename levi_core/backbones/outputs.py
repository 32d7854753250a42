"""What a backbone returns, and the pooling shared by every method that reads it.

LEVI, ``lp``, ``a3`` and ``layer/<k>`` all read pooled hidden states of *several* layers, so a
backbone returns every layer's hidden state, not only the last one, together with the mask that
says which positions are real tokens. Pooling lives here, once, so that all methods pool a layer
the same way (masked mean for text; CLS or mean of the patch tokens for ViT).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import struct


# Every backbone's ``__call__`` also takes ``start``, ``stop`` and ``hidden`` (keywords): it then
# runs blocks ``start .. stop - 1`` only, from ``hidden`` (the output of block ``start - 1``)
# when ``start > 0``, and returns ``hidden_states`` = that input, then each block run, then the
# final norm (pre-LN families) when the last block ran. Half-tuning computes the frozen blocks
# once (``stop``) and trains the others on their output (``start``); the defaults run it all.


@struct.dataclass
class BackboneOutput:
    """Every layer's hidden state.

    Attributes:
      hidden_states: tuple of [B, T, D] arrays: the embedding output, then each block's output
        in order, then (T5, ViT: pre-LN models) the final-normed output. BERT is post-LN, so its
        last block output is already normed and there is no extra entry.
        ``len(hidden_states) == config.num_hidden_states``.
      mask: [B, T] int32, 1 for a real token (or patch / CLS), 0 for padding.
    """

    hidden_states: tuple
    mask: jnp.ndarray

    @property
    def last(self) -> jnp.ndarray:
        return self.hidden_states[-1]


def masked_mean(h: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean over real tokens: [B, T, D], [B, T] -> [B, D] (sentence-transformers' pooling)."""
    m = mask.astype(h.dtype)[..., None]
    return (h * m).sum(axis=-2) / jnp.maximum(m.sum(axis=-2), 1e-9)


def cls_pool(h: jnp.ndarray) -> jnp.ndarray:
    """The first (CLS) token: [B, T, D] -> [B, D]."""
    return h[..., 0, :]


def patch_mean(h: jnp.ndarray) -> jnp.ndarray:
    """Mean of the patch tokens, leaving out CLS (ViT "gap" pooling): [B, T, D] -> [B, D]."""
    return h[..., 1:, :].mean(axis=-2)


POOLINGS = ("mean", "cls", "patch_mean")


def pool(h: jnp.ndarray, mask: jnp.ndarray, kind: str = "mean") -> jnp.ndarray:
    """Pool one layer. ``kind``: ``mean`` (masked mean), ``cls`` or ``patch_mean``."""
    if kind == "mean":
        return masked_mean(h, mask)
    if kind == "cls":
        return cls_pool(h)
    if kind == "patch_mean":
        return patch_mean(h)
    raise ValueError(f"unknown pooling {kind!r}; expected one of {POOLINGS}")


def pool_layers(
    out: BackboneOutput, kind: str = "mean", layers: Sequence[int] | None = None
) -> jnp.ndarray:
    """Pool every layer (or the listed indices of ``hidden_states``): -> [L, B, D]."""
    hs = out.hidden_states if layers is None else [out.hidden_states[i] for i in layers]
    return jnp.stack([pool(h, out.mask, kind) for h in hs])


def default_pooling(family: str) -> str:
    """Text: masked mean (as sentence-transformers and the paper's T5 features); ViT: CLS."""
    return "cls" if family == "vit" else "mean"
