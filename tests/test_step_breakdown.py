"""The step breakdown's attribution of XLA operations to parts of the model."""

import collections

import jax
import numpy as np
import pytest

from bench.benchmarks import speed
from bench.benchmarks import step_breakdown as sb
from levi_core.backbones import get_config, init_backbone


@pytest.mark.parametrize("op_name, expected", [
    ("jit(step)/jvp(Bert)/block_0/attn/qkv/dot_general", ("linear layers", "forward")),
    ("jit(step)/transpose(jvp(Bert))/block_0/ff_out/dot_general", ("linear layers", "backward")),
    ("jit(step)/jvp(Bert)/block_0/attn/attention_core/jvp(bqhd,bkhd->bhqk)/dot_general",
     ("attention core", "forward")),
    ("jit(step)/transpose(jvp(Bert))/block_0/gelu/mul", ("activation", "backward")),
    ("jit(step)/jvp(Bert)/block_3/ln_ff/reduce_sum", ("norms", "forward")),
    ("jit(step)/transpose(jvp(Bert))/embed_word/scatter-add", ("embeddings", "backward")),
    ("jit(step)/jvp(Bert)/embed_ln/sub", ("norms", "forward")),
    ("jit(step)/jvp(Bert)/add", ("rest of the model", "forward")),
    ("jit(step)/sqrt", ("optimizer", "optimizer")),
])
def test_part_of(op_name, expected):
    assert sb.part_of(op_name) == expected


@pytest.mark.parametrize("name", ["bert-tiny", "vit-tiny"])
def test_a_real_step_attributes_attention_activation_and_norms(name):
    """Every part the breakdown reports is found in a compiled step, through the named scopes
    of ``layers.SelfAttention`` and ``layers.gelu_exact``: were a scope lost, its part would
    silently read zero."""
    config = get_config(name)
    inputs, mask = speed._inputs(config, 2, 16, np.random.default_rng(0))
    _, params, _ = init_backbone(config, 0)
    *_, step, tree, state, args = speed.jax_step_parts(config, params, inputs, mask)
    names = sb._op_names(jax.jit(step).lower(tree, state, *args).compile().as_text())
    parts = collections.Counter(sb.part_of(op) for op in names.values() if op)
    for part in ("linear layers", "attention core", "activation", "norms"):
        assert parts[(part, "forward")] > 0 and parts[(part, "backward")] > 0, (part, parts)
    assert parts[("optimizer", "optimizer")] > 0
