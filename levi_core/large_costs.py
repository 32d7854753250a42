"""The large models' numbers for the cost tables: parameters, half-tuning and LoRA parameters,
multiply-adds (analytic) and XLA flops of the compiled forward pass; T5's decoder analytically.
``levi_core.costs`` combines them into method rows (its docstring states the conventions)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax

from levi_core.backbones.config import BackboneConfig, T5Config, ViTConfig
from levi_core.backbones.weights import build_module, count_params, dummy_inputs, param_shapes
from levi_core.errors import ConfigError


# ------------------------------------------------------------------------------ XLA helpers
def xla_flops(fn, *args) -> float:
    """XLA's flop count of ``fn`` compiled on ``args`` (arrays or ShapeDtypeStructs)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
        cost = cost[0]
    if not cost or "flops" not in cost:
        raise RuntimeError("this jax backend gives no 'flops' in cost_analysis()")
    return float(cost["flops"])


def _sds(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


# ---------------------------------------------------------------------------- large models
def backbone_macs(config: BackboneConfig, seq_len: int = 64) -> float:
    """Analytic multiply-adds of one forward pass of the backbone, per example."""
    if isinstance(config, ViTConfig):
        t, d = config.seq_len, config.hidden
        patch = config.num_patches * config.patch_size ** 2 * config.channels * d
        per_block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * config.mlp_dim
        return float(patch + config.num_layers * per_block)
    t = seq_len
    if isinstance(config, T5Config):
        d, inner = config.d_model, config.inner_dim
        ff = (2 if config.ff == "relu" else 3) * t * d * config.d_ff
    else:
        d = inner = config.hidden
        ff = 2 * t * d * config.intermediate
    per_block = t * d * 3 * inner + 2 * t * t * inner + t * inner * d + ff
    return float(config.num_layers * per_block)


@functools.lru_cache(maxsize=32)
def backbone_xla_flops(config: BackboneConfig, seq_len: int = 64) -> float:
    """XLA's flops of the backbone forward (every hidden state returned), per example."""
    module = build_module(config)
    x = dummy_inputs(config, 1, seq_len)
    return xla_flops(lambda p, *x: module.apply({"params": p}, *x).hidden_states,
                     _sds(param_shapes(config)), *x)


def lora_params(config: BackboneConfig, rank: int) -> int:
    """LoRA adapter parameters on q and v of every encoder self-attention."""
    d = config.hidden_size
    inner = config.inner_dim if isinstance(config, T5Config) else d
    return config.num_layers * 2 * (d * rank + rank * inner)


def half_params(config: BackboneConfig) -> int:
    """Parameters of the last half of the blocks + the final norm (``ht``'s backbone part)."""
    from levi_core.backbones.tuning import count_trainable

    return count_trainable(param_shapes(config), "half", config.num_layers, backbone_key=None)


@dataclass(frozen=True)
class T5DecoderCost:
    params: int
    half_params: int
    lora_params: int
    macs: float


def t5_decoder_cost(config: T5Config, enc_len: int, dec_len: int = 1, lora_rank: int = 8) -> T5DecoderCost:
    """Analytic parameters and multiply-adds of T5's decoder stack and LM head.

    Per block: self-attention (q, k, v, o), cross-attention (q, o on the decoder tokens; k, v on
    the ``enc_len`` encoder states), the feed-forward, three RMS norms; block 0 holds the
    decoder's relative position bias; then a final norm and the LM head (tied to the shared
    embedding in v1.0: no extra parameters, but its multiply-adds count).
    """
    d, inner, f = config.d_model, config.inner_dim, config.d_ff
    n_ff = 2 if config.ff == "relu" else 3
    block = 8 * d * inner + n_ff * d * f + 3 * d
    n = config.num_decoder_layers
    lm_head = 0 if config.tied_lm_head else config.vocab_size * d
    params = n * block + config.rel_buckets * config.num_heads + d + lm_head
    half = (n - n // 2) * block + d
    lora = n * 4 * (d * lora_rank + lora_rank * inner)
    t, s = dec_len, enc_len
    per_block = (
        t * d * 3 * inner + 2 * t * t * inner + t * inner * d  # self-attention
        + t * d * inner + s * d * 2 * inner + 2 * t * s * inner + t * inner * d  # cross-attention
        + n_ff * t * d * f
    )
    macs = n * per_block + t * d * config.vocab_size
    return T5DecoderCost(params, half, lora, float(macs))


@dataclass(frozen=True)
class LargeModel:
    """The large model's numbers that method rows combine."""

    name: str
    scope: str  # "encoder" (what methods run) or "encoder+decoder" (T5's published model)
    params: int
    half_params: int
    lora_params: int
    flops_xla: float
    macs: float
    hidden: int
    num_layers: int
    notes: tuple[str, ...] = ()


def large_model(config: BackboneConfig, name: str, seq_len: int = 64, lora_rank: int = 8,
                scope: str = "encoder", decoder_len: int = 1) -> LargeModel:
    params = count_params(param_shapes(config))
    macs = backbone_macs(config, seq_len)
    lm = LargeModel(name, "encoder", params, half_params(config), lora_params(config, lora_rank),
                    backbone_xla_flops(config, seq_len), macs, config.hidden_size, config.num_layers)
    if scope == "encoder":
        return lm
    if scope != "encoder+decoder" or not isinstance(config, T5Config):
        raise ConfigError(f"scope {scope!r} is not available for {name}")
    dec = t5_decoder_cost(config, seq_len, decoder_len, lora_rank)
    return LargeModel(
        name, scope, lm.params + dec.params, lm.half_params + dec.half_params,
        lm.lora_params + dec.lora_params, lm.flops_xla + 2 * dec.macs, lm.macs + dec.macs,
        lm.hidden, lm.num_layers,
        notes=(f"decoder ({decoder_len} target token(s), LM head included) counted analytically; "
               "flops_xla = XLA encoder + 2 x analytic decoder multiply-adds",),
    )
