"""Flax MLPs: the synthetic experiment's "large" network and LEVI's heads.

``MLP`` is the 3-layer network of the paper's E.8 (hidden layers ``layer_0 .. layer_{L-1}``,
then ``head``); it can return the output of every layer, which is what LEVI, ``lp``, ``a3`` and
``layer/<k>`` read from a frozen large model.

``LeviHeads`` is everything LEVI trains (Sec. 4 of the paper): a small MLP trained from scratch
on the small inputs gives one vector; adapting layer ``j`` (``adapter_j``, an MLP with one hidden
layer) reads ``concat(state_j, small vector)`` and outputs logits. It returns logits of shape
``[N, heads, classes]``. Without the small model (``use_small=False``) it is ablation A3 (or
``layer/<k>`` with one state); without states it puts ``n_heads`` heads on the small vector
(A4 with one head, A5 with several).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x, return_layers: bool = False):
        states = []
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"layer_{i}")(x))
            states.append(x)
        logits = nn.Dense(self.num_classes, name="head")(x)
        states.append(logits)
        return (logits, states) if return_layers else logits


class LeviHeads(nn.Module):
    small_hidden: Sequence[int]
    adapter_hidden: int
    num_classes: int
    use_small: bool = True
    n_heads: int = 1  # used only when no states are given (A4, A5)

    @nn.compact
    def __call__(self, x, states: Sequence[jnp.ndarray] = ()):
        v = None
        if self.use_small:
            v = x
            for i, width in enumerate(self.small_hidden):
                v = nn.relu(nn.Dense(width, name=f"small_{i}")(v))
        inputs = (
            [v] * self.n_heads
            if not states
            else [jnp.concatenate([s, v], axis=-1) if v is not None else s for s in states]
        )
        logits = []
        for j, inp in enumerate(inputs):
            h = nn.relu(nn.Dense(self.adapter_hidden, name=f"adapter_{j}_hidden")(inp))
            logits.append(nn.Dense(self.num_classes, name=f"adapter_{j}_out")(h))
        return jnp.stack(logits, axis=1)
