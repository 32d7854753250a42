"""What trains and how weights combine: optimizer masks, LoRA, weight interpolation.

Freezing is an optimizer mask over parameter names (as in big_vision), never a separate code
path: the model and its forward pass are the same for ``ft``, ``ht``, ``lp`` and ``lora``; only
which leaves the optimizer updates differs.

Convention: the full parameter tree of a model has its backbone under one top-level key
(``backbone`` by default); every other top-level entry is "head" (the task head, or LEVI's
small model and adapting layers). Backbone blocks are named ``block_{i}`` and the final norm
``final_ln`` in every family.

Modes:
  * ``all``  - everything (``ft``, ``fs``);
  * ``half`` - the last half of the blocks (index >= num_layers // 2, so the larger half when
    odd), the final norm, and the head (``ht``). Embeddings and T5's relative position bias
    (kept in block 0 by T5) stay frozen;
  * ``head`` - the head only (``lp``, and LEVI on a frozen backbone);
  * ``lora`` - the LoRA adapters and the head (``lora``);
  * ``none`` - nothing (evaluation).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from levi_core.errors import ConfigError

MODES = ("all", "half", "head", "lora", "none")
_BLOCK = re.compile(r"^block_(\d+)$")


def _path_names(path) -> tuple[str, ...]:
    out = []
    for p in path:
        out.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
    return tuple(out)


def is_trainable(names: tuple[str, ...], mode: str, num_layers: int,
                 backbone_key: str | None = "backbone") -> bool:
    """Whether the parameter at ``names`` trains under ``mode``. With ``backbone_key=None``
    the whole tree is the backbone (no head)."""
    if mode not in MODES:
        raise ConfigError(f"unknown tuning mode {mode!r}; expected one of {MODES}")
    if backbone_key is not None:
        if not names or names[0] != backbone_key:
            return mode != "none"
        names = names[1:]
    if mode == "all":
        return True
    if mode in ("head", "none"):
        return False
    if mode == "lora":
        return any(n.startswith("lora_") for n in names)
    # half
    if names and names[0] == "final_ln":
        return True
    m = _BLOCK.match(names[0]) if names else None
    return bool(m) and int(m.group(1)) >= num_layers // 2


def trainable_mask(params: Any, mode: str, num_layers: int,
                   backbone_key: str | None = "backbone") -> Any:
    """A tree of bools shaped like ``params`` (True = trains)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: is_trainable(_path_names(p), mode, num_layers, backbone_key), params)


def mode_labels(params: Any, mode: str, num_layers: int,
                backbone_key: str | None = "backbone") -> Any:
    """The optimizer mask of ``levi_core.training.make_optimizer``: ``"train"`` / ``"freeze"``
    per leaf (frozen leaves get zero updates and no optimizer state)."""
    return jax.tree_util.tree_map(lambda t: "train" if t else "freeze",
                                  trainable_mask(params, mode, num_layers, backbone_key))


def count_trainable(params: Any, mode: str, num_layers: int,
                    backbone_key: str | None = "backbone") -> int:
    mask = trainable_mask(params, mode, num_layers, backbone_key)
    return int(sum(x.size for x, m in zip(jax.tree_util.tree_leaves(params),
                                          jax.tree_util.tree_leaves(mask)) if m))


# ------------------------------------------------------------------------------------ LoRA
def add_lora(params: dict, config, seed: int = 0) -> dict:
    """Add LoRA adapters (A ~ N(0, 1/r^2), B = 0) to every attention of a backbone param tree
    that has none, for a config with ``lora_rank > 0``. The model's output is unchanged."""
    r = config.lora_rank
    if r <= 0:
        raise ConfigError("add_lora needs a config with lora_rank > 0")
    key = jax.random.PRNGKey(seed)
    out = jax.tree_util.tree_map(lambda x: x, params)  # shallow structural copy

    def visit(node):
        nonlocal key
        for k, v in node.items():
            if isinstance(v, dict):
                if "qkv" in v and "out" in v and "lora_q_a" not in v:
                    d, three_inner = v["qkv"]["kernel"].shape
                    inner = three_inner // 3
                    v = dict(v)
                    for which in ("q", "v"):
                        key, sub = jax.random.split(key)
                        v[f"lora_{which}_a"] = jax.random.normal(sub, (d, r), jnp.float32) / r
                        v[f"lora_{which}_b"] = jnp.zeros((r, inner), jnp.float32)
                    node[k] = v
                else:
                    node[k] = dict(v)
                    visit(node[k])

    out = dict(out)
    visit(out)
    return out


def merge_lora(params: dict, config) -> dict:
    """Fold every adapter into its fused qkv kernel: q += A_q B_q * alpha / r (and v), drop the
    adapters. Use the result with the same config and ``lora_rank=0``."""
    scale = config.lora_alpha / config.lora_rank if config.lora_rank else 0.0

    def visit(node):
        out = {}
        for k, v in node.items():
            if isinstance(v, dict) and "lora_q_a" in v:
                kernel = v["qkv"]["kernel"]
                inner = kernel.shape[1] // 3
                dq = v["lora_q_a"] @ v["lora_q_b"] * scale
                dv = v["lora_v_a"] @ v["lora_v_b"] * scale
                kernel = kernel.at[:, :inner].add(dq).at[:, 2 * inner:].add(dv)
                new = {n: w for n, w in v.items() if not n.startswith("lora_")}
                new["qkv"] = dict(v["qkv"], kernel=kernel)
                out[k] = visit(new)
            elif isinstance(v, dict):
                out[k] = visit(v)
            else:
                out[k] = v
        return out

    return visit(params)


# ---------------------------------------------------------------------------- interpolation
def interpolate(params_a: Any, params_b: Any, alpha: float) -> Any:
    """WiSE-FT: ``(1 - alpha) * a + alpha * b`` leaf by leaf (alpha=0 gives a, 1 gives b).

    The trees must have the same structure and shapes (``ft_zeroshot`` puts the pre-trained
    backbone with the ``lp`` head at a, the fine-tuned model at b)."""
    sa, sb = jax.tree_util.tree_structure(params_a), jax.tree_util.tree_structure(params_b)
    if sa != sb:
        raise ConfigError(f"cannot interpolate parameter trees of different structure: {sa} vs {sb}")

    def mix(a, b):
        if a.shape != b.shape:
            raise ConfigError(f"cannot interpolate leaves of shapes {a.shape} and {b.shape}")
        return (1.0 - alpha) * a + alpha * b

    return jax.tree_util.tree_map(mix, params_a, params_b)
