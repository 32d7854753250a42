"""Vision transformer returning every layer's hidden state.

As in google/vit-base-patch16-224-in21k: non-overlapping patches embedded by one linear map
(a convolution with stride = kernel = patch, written as a reshape and a matmul), a CLS token,
learned position embeddings, pre-LN blocks with exact GELU, and a final LayerNorm. The
checkpoint's pooler (dense + tanh on CLS) is not part of the backbone: no method here reads it.

Inputs are NHWC float images (already normalised the way the checkpoint expects; for the
in21k ViT that is (x - 0.5) / 0.5).

Parameters: ``patch_embed``, ``cls``, ``pos_embed``, ``block_{i}/{ln_attn, attn/{qkv,out},
ln_mlp, mlp_in, mlp_out}``, ``final_ln``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from levi_core.backbones.config import ViTConfig
from levi_core.backbones.layers import Dense, gradient_barrier, gelu_exact, SelfAttention, dense_init, layer_norm
from levi_core.backbones.outputs import BackboneOutput


def patchify(images: jnp.ndarray, patch: int) -> jnp.ndarray:
    """[B, H, W, C] -> [B, N, patch * patch * C], patches in row-major order, pixels (py, px, c)."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


class ViTBlock(nn.Module):
    config: ViTConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        h = layer_norm(c.eps, "ln_attn")(x)
        x = x + SelfAttention(c.num_heads, c.hidden // c.num_heads, lora_rank=c.lora_rank,
                              lora_alpha=c.lora_alpha, name="attn")(h, None)
        h = layer_norm(c.eps, "ln_mlp")(x)
        h = gelu_exact(Dense(c.mlp_dim, kernel_init=dense_init(), name="mlp_in")(h))
        return x + Dense(c.hidden, kernel_init=dense_init(), name="mlp_out")(h)


class ViT(nn.Module):
    """``__call__(images [B, H, W, C], mask=None) -> BackboneOutput`` (mask: all ones);
    ``start``/``stop``/``hidden`` run a slice of the blocks (see ``levi_core.backbones.outputs``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, images: jnp.ndarray | None, mask: jnp.ndarray | None = None, *, start: int = 0,
                 stop: int | None = None, hidden: jnp.ndarray | None = None) -> BackboneOutput:
        c = self.config
        if start:
            x = hidden  # the output of block start - 1
        else:
            x = self._embed(images)
        states = [x]
        for i in range(start, c.num_layers if stop is None else stop):
            x = ViTBlock(c, name=f"block_{i}")(gradient_barrier(x))
            states.append(x)
        if stop is None or stop == c.num_layers:
            states.append(layer_norm(c.eps, "final_ln")(x))
        return BackboneOutput(hidden_states=tuple(states), mask=jnp.ones(x.shape[:2], jnp.int32))

    def _embed(self, images):
        c = self.config
        if images.shape[1:] != (c.image_size, c.image_size, c.channels):
            raise ValueError(
                f"ViT expects NHWC images of shape [B, {c.image_size}, {c.image_size}, "
                f"{c.channels}], got {tuple(images.shape)}"
            )
        b = images.shape[0]
        x = Dense(c.hidden, kernel_init=dense_init(), name="patch_embed")(
            patchify(images, c.patch_size))
        cls = self.param("cls", dense_init(), (1, 1, c.hidden))
        pos = self.param("pos_embed", dense_init(), (1, c.seq_len, c.hidden))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.hidden)).astype(x.dtype), x], axis=1)
        return x + pos
