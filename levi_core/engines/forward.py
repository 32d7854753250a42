"""The large model's forward pass as pure functions of (module, config, parameters, inputs).

Both engines that run a transformer backbone use them: ``TransformerEngine`` (the whole model)
and ``half.FrozenLower`` (ht's tuned upper blocks on the stored output of the frozen lower
half). They hold no engine state, so neither engine module needs the other's internals.

* ``select_states`` / ``upper_states``: which hidden states are the layer states (the
  embedding output, then one per block, the last one final-normed for pre-LN families).
* ``_backbone_call``, ``_pooled``, ``_forward``: the whole model, from token ids, images or a
  stored boundary (``{"h": ...}``); ``compute_cast`` runs it in the compute dtype.
* ``_lower``, ``_top``, ``_forward_top``: the lower blocks up to the boundary, and the upper
  blocks from it.
* ``trim_padding``, ``distinct_rows``, ``gather_rows``: the row bookkeeping of an evaluation
  pass (each distinct example once, text batches cut to their longest row).

The jitted functions keep their names: a function's name is part of the key of JAX's
persistent compilation cache, so renaming one would recompile every stored program.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from levi_core.backbones.outputs import default_pooling, pool


def select_states(hidden_states: tuple, config) -> list:
    """Embedding output + one state per block (pre-LN: the last one final-normed)."""
    L = config.num_layers
    hs = list(hidden_states)
    if len(hs) == L + 2:  # T5, ViT: [emb, block_1..block_L, final_ln]
        return hs[:L] + [hs[L + 1]]
    return hs[: L + 1]  # BERT: [emb, block_1..block_L]


def compute_cast(tree, dtype: str):
    """Floating leaves of ``tree`` in the compute dtype: the bfloat16 option runs the backbone
    on bfloat16 copies of float32 parameters (gradients reach the float32 originals through the
    cast, so the optimizer state stays float32)."""
    if dtype == "float32":
        return tree
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _backbone_call(module, config, bparams, batch, dtype: str = "float32", **blocks):
    bparams = compute_cast(bparams, dtype)
    if "h" in batch:  # the tuned blocks of ht, from the stored boundary (engines.half)
        return module.apply({"params": bparams}, None, batch.get("mask"),
                            hidden=compute_cast(batch["h"], dtype), **blocks)
    if "image" in batch:
        x = batch["image"].astype(jnp.float32) / 255.0
        x = (x - 0.5) / 0.5
        size = config.image_size
        if x.shape[1] != size or x.shape[2] != size:
            x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
        return module.apply({"params": bparams}, compute_cast(x, dtype), **blocks)
    return module.apply({"params": bparams}, batch["ids"], batch["mask"], **blocks)


def _pooled(module, config, bparams, batch, dtype: str = "float32"):
    """[S, B, D] pooled layer states (float32 whatever the compute dtype)."""
    out = _backbone_call(module, config, bparams, batch, dtype)
    kind = default_pooling(config.family)
    return jnp.stack([pool(h.astype(jnp.float32), out.mask, kind)
                      for h in select_states(out.hidden_states, config)])


# Text batches are cut to their longest row rounded up to this: few distinct shapes (one
# compiled program each), little padding.
SEQ_MULTIPLE = 16


def trim_padding(batch: dict, multiple: int = SEQ_MULTIPLE) -> dict:
    """A text batch (``ids``, ``mask`` [..., T]; hidden states ``h`` [..., T, D]) without its
    all-padding positions beyond the longest row, rounded up to ``multiple``. Padding keys are
    masked out of attention and pooling, so the numbers do not change (up to float rounding);
    images pass unchanged."""
    if "mask" not in batch:
        return batch
    mask = np.asarray(batch["mask"])
    T = mask.shape[-1]
    used = np.flatnonzero(mask.reshape(-1, T).any(axis=0))
    keep = min(T, max(multiple, -(-(int(used[-1]) + 1 if used.size else 1) // multiple) * multiple))
    if keep == T:
        return batch
    return {k: (v[..., :keep] if k in ("ids", "mask") else v[..., :keep, :] if k == "h" else v)
            for k, v in batch.items()}


def distinct_rows(example_ids, xs):
    """Each distinct example once across splits.

    ``example_ids``: per split, [N_i] ids; ``xs``: per split, the input arrays. Returns
    ``(src_split [U], src_row [U], inverse)``: the U distinct examples (first occurrence) and,
    per split, [N_i] indices into them. An id names one example in a dataset; should two
    splits hold different inputs under one id, every row counts as distinct instead."""
    ids = np.concatenate([np.asarray(i) for i in example_ids])
    split_of = np.concatenate([np.full(len(i), k, np.int32) for k, i in enumerate(example_ids)])
    row_of = np.concatenate([np.arange(len(i), dtype=np.int64) for i in example_ids])
    sizes = np.cumsum([0] + [len(i) for i in example_ids])
    _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    if len(first) < len(ids):
        rep = first[inv]  # the representative of every row
        dup = np.flatnonzero(rep != np.arange(len(ids)))
        for key in xs[0]:
            a = np.stack([np.asarray(xs[split_of[j]][key][row_of[j]]) for j in rep[dup]])
            b = np.stack([np.asarray(xs[split_of[j]][key][row_of[j]]) for j in dup])
            if not np.array_equal(a, b):
                first, inv = np.arange(len(ids)), np.arange(len(ids))
                break
    # distinct examples in order of first appearance (deterministic batches)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first, inv = first[order], rank[inv.reshape(-1)]
    return (split_of[first], row_of[first],
            [inv[sizes[k]: sizes[k + 1]] for k in range(len(example_ids))])


def gather_rows(xs, split_idx: np.ndarray, row_idx: np.ndarray) -> dict:
    """Rows ``row_idx[i]`` of split ``split_idx[i]``, stacked in that order."""
    out = {}
    for key in xs[0]:
        first = np.asarray(xs[0][key])
        arr = np.empty((len(row_idx),) + first.shape[1:], first.dtype)
        for k in np.unique(split_idx):
            m = split_idx == k
            arr[m] = np.asarray(xs[k][key])[row_idx[m]]
        out[key] = arr
    return out


@functools.partial(jax.jit, static_argnums=(0, 1, 2), static_argnames=("dtype",))
def _forward(module, config, head: nn.Module, params, batch, dtype: str = "float32"):
    states = _pooled(module, config, params["body"], batch, dtype)
    return head.apply({"params": params["head"]}, states[-1]), states


def upper_states(hidden_states: tuple, config, k: int) -> list:
    """States ``k + 1 .. L`` from a run of blocks ``k .. L - 1`` (``hidden_states`` = its input,
    each block, then the final norm for pre-LN families), as ``select_states`` picks them."""
    L = config.num_layers
    hs = list(hidden_states)
    if len(hs) == L - k + 2:  # T5, ViT: the last state is the final-normed one
        return hs[1: L - k] + [hs[-1]]
    return hs[1:]


def _pool_all(hidden_states, mask, config):
    kind = default_pooling(config.family)
    return jnp.stack([pool(h.astype(jnp.float32), mask, kind) for h in hidden_states])


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _lower(module, config, k: int, dtype: str, bparams, batch):
    """The boundary [B, T, D] (float32) and pooled states ``0 .. k`` [k + 1, B, D]."""
    out = _backbone_call(module, config, bparams, batch, dtype, stop=k)
    return out.hidden_states[-1].astype(jnp.float32), _pool_all(out.hidden_states, out.mask, config)


def _top(module, config, k: int, dtype: str, bparams, batch):
    return _backbone_call(module, config, bparams, batch, dtype, start=k)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _forward_top(module, config, head, k: int, dtype: str, params, batch):
    out = _top(module, config, k, dtype, params["body"], batch)
    states = _pool_all(upper_states(out.hidden_states, config, k), out.mask, config)
    return head.apply({"params": params["head"]}, states[-1]), states
