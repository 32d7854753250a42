"""LEVI's small task models and adapting layers (paper D.2, E.8): one definition each, used
both to train (``levi_core.methods``) and to count costs (``levi_core.costs``).

* ``RecSmall`` (recommendation): one embedding table per categorical input (``vocab_sizes``;
  row 0 is the unknown id, learned like any other row), concatenated, then an MLP
  (``hidden`` = 512-256, ReLU). Multi-valued inputs (genres [N, 6], title tokens [N, 12]) are the
  mean of their positions' embeddings; 0 is both padding and unknown there, as in the loaders.
* ``ConvSmall`` (vision): four 3x3 convolutions (32-64-64-64), each followed by batch norm,
  ReLU and 2x2 max pooling, then averaged over space (``pool="global"``, the default) or
  flattened (``pool="flatten"``, D.2's literal wording). uint8 images are scaled to [0, 1] first.
* ``MLPSmall`` (the synthetic experiment, E.8): an MLP (``hidden`` = 32-32, ReLU) on the dense
  features ``x``.
* ``TaskHeads``: everything LEVI trains. The small model's vector ``v``; adapting layer ``j``
  is an MLP with one hidden layer (``adapter_hidden``) on ``concat(state_j, v)`` and outputs
  ``n_out`` values. Returns ``[B, heads, n_out]``. Without the small model it is A3 (several
  states) or ``layer/<k>`` (one state); without states, ``n_heads`` heads on ``v`` (A4: 1,
  A5: several). ``out_bias`` initialises every output bias (the train mean rating for
  regression, so training starts at the mean predictor).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp


class RecSmall(nn.Module):
    vocab_sizes: tuple[tuple[str, int], ...]
    embed_dim: int = 32
    hidden: Sequence[int] = (512, 256)

    @nn.compact
    def __call__(self, small: Mapping[str, jnp.ndarray], train: bool = False):
        parts = []
        for name, size in self.vocab_sizes:
            e = nn.Embed(size, self.embed_dim, name=f"embed_{name}")(small[name])
            parts.append(e if e.ndim == 2 else e.mean(axis=1))
        v = jnp.concatenate(parts, axis=-1)
        for i, width in enumerate(self.hidden):
            v = nn.relu(nn.Dense(width, name=f"mlp_{i}")(v))
        return v


class ConvSmall(nn.Module):
    features: Sequence[int] = (32, 64, 64, 64)
    pool: str = "global"  # "global": mean over space; "flatten": every position (D.2 literal)

    @nn.compact
    def __call__(self, small: Mapping[str, jnp.ndarray], train: bool = False):
        x = small["image"].astype(jnp.float32) / 255.0
        for i, f in enumerate(self.features):
            x = nn.Conv(f, (3, 3), padding="SAME", name=f"conv_{i}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{i}")(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="SAME")
        if self.pool == "global":
            return x.mean(axis=(1, 2))
        return x.reshape(x.shape[0], -1)


class MLPSmall(nn.Module):
    hidden: Sequence[int] = (32, 32)

    @nn.compact
    def __call__(self, small: Mapping[str, jnp.ndarray], train: bool = False):
        v = small["x"]
        for i, width in enumerate(self.hidden):
            v = nn.relu(nn.Dense(width, name=f"small_{i}")(v))
        return v


class TaskHeads(nn.Module):
    small: nn.Module | None
    adapter_hidden: int
    n_out: int
    n_heads: int = 1  # used only when no states are given (A4, A5)
    out_bias: float = 0.0

    @nn.compact
    def __call__(self, small_inputs, states: Sequence[jnp.ndarray] = (), train: bool = False):
        v = self.small(small_inputs, train) if self.small is not None else None
        if states:
            inputs = [jnp.concatenate([s, v], axis=-1) if v is not None else s for s in states]
        else:
            inputs = [v] * self.n_heads
        bias_init = nn.initializers.constant(self.out_bias)
        outs = []
        for j, inp in enumerate(inputs):
            h = nn.relu(nn.Dense(self.adapter_hidden, name=f"adapter_{j}_hidden")(inp))
            outs.append(nn.Dense(self.n_out, bias_init=bias_init, name=f"adapter_{j}_out")(h))
        return jnp.stack(outs, axis=1)
