"""BERT encoder (as in MiniLM-L6) returning every layer's hidden state.

Post-LN blocks: ``LN(x + attention(x))`` then ``LN(x + FF(x))`` with exact GELU; the embedding
is word + absolute position + token type, then LayerNorm. The checkpoint's pooler is not part of
the backbone (sentence-transformers, and every method here, mean-pool the tokens instead).

Parameters: ``embed_word``, ``embed_pos``, ``embed_type``, ``embed_ln``,
``block_{i}/{attn/{qkv,out}, ln_attn, ff_in, ff_out, ln_ff}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from levi_core.backbones.config import BertConfig
from levi_core.backbones.layers import Dense, gradient_barrier, gelu_exact, SelfAttention, dense_init, layer_norm, mask_bias
from levi_core.backbones.outputs import BackboneOutput


class BertBlock(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, bias):
        c = self.config
        a = SelfAttention(c.num_heads, c.hidden // c.num_heads, lora_rank=c.lora_rank,
                          lora_alpha=c.lora_alpha, name="attn")(x, bias)
        x = layer_norm(c.eps, "ln_attn")(x + a)
        h = gelu_exact(Dense(c.intermediate, kernel_init=dense_init(), name="ff_in")(x))
        h = Dense(c.hidden, kernel_init=dense_init(), name="ff_out")(h)
        return layer_norm(c.eps, "ln_ff")(x + h)


class Bert(nn.Module):
    """``__call__(ids [B, T], mask [B, T] or None, token_types [B, T] or None) -> BackboneOutput``.

    ``start``/``stop``/``hidden`` run a slice of the blocks (see ``levi_core.backbones.outputs``):
    half-tuning computes the frozen lower blocks once and trains on their output."""

    config: BertConfig

    @nn.compact
    def __call__(self, ids: jnp.ndarray | None, mask: jnp.ndarray | None = None,
                 token_types: jnp.ndarray | None = None, *, start: int = 0, stop: int | None = None,
                 hidden: jnp.ndarray | None = None) -> BackboneOutput:
        c = self.config
        if start:
            x = hidden  # the output of block start - 1
            if mask is None:
                mask = jnp.ones(x.shape[:2], jnp.int32)
        else:
            b, t = ids.shape
            if t > c.max_positions:
                raise ValueError(f"sequence length {t} exceeds max_positions {c.max_positions}")
            if mask is None:
                mask = jnp.ones(ids.shape, jnp.int32)
            if token_types is None:
                token_types = jnp.zeros(ids.shape, jnp.int32)
            x = nn.Embed(c.vocab_size, c.hidden, embedding_init=dense_init(), name="embed_word")(ids)
            pos = self.param("embed_pos", dense_init(), (c.max_positions, c.hidden))
            typ = self.param("embed_type", dense_init(), (c.type_vocab_size, c.hidden))
            x = x + pos[None, :t] + jnp.take(typ, token_types, axis=0)
            x = layer_norm(c.eps, "embed_ln")(x)
        bias = mask_bias(mask)
        states = [x]
        for i in range(start, c.num_layers if stop is None else stop):
            x = BertBlock(c, name=f"block_{i}")(gradient_barrier(x), bias)
            states.append(x)
        return BackboneOutput(hidden_states=tuple(states), mask=mask.astype(jnp.int32))
