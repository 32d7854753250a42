"""The synthetic experiment's "large" network (the paper's E.8).

``MLP`` is a 3-layer network (hidden layers ``layer_0 .. layer_{L-1}``, then ``head``); it can
return the output of every layer, which is what LEVI, ``lp``, ``a3`` and ``layer/<k>`` read
from a frozen large model. LEVI's heads are ``levi_core.models.small.TaskHeads``.
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
