"""Hugging Face safetensors -> Flax parameter trees, without torch.

Each family has a list of rules: one Flax parameter built from one or more checkpoint tensors
(q, k and v go into one fused ``qkv`` kernel; PyTorch's [out, in] linear weights are transposed;
ViT's patch convolution becomes a matmul over flattened (py, px, c) patches). Every checkpoint
tensor's expected shape is derived from the config, so a wrong checkpoint fails with a
``WeightsError`` that names the tensor, its expected shape and the shape found; a tensor the
rules do not use and that is not on the family's known-unused list (poolers, T5's decoder) is an
error too, so a silently ignored weight cannot happen.

Both the checkpoint names on the hub (``encoder.layer.N.attention.attention.query`` for ViT) and
the names transformers 5 writes (``layers.N.attention.q_proj``) are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from levi_core.backbones.config import BackboneConfig, BertConfig, T5Config, ViTConfig
from levi_core.errors import WeightsError


@dataclass(frozen=True)
class Rule:
    """Flax parameter at ``path`` = ``fn(*tensors)`` of the checkpoint tensors ``sources``,
    whose shapes must be ``shapes``."""

    path: tuple[str, ...]
    sources: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    fn: Callable[..., np.ndarray]


def _ident(x):
    return x


def _t(x):
    return x.T


def _qkv_kernel(q, k, v):
    return np.concatenate([q.T, k.T, v.T], axis=1)


def _qkv_bias(q, k, v):
    return np.concatenate([q, k, v])


def _linear(path, name, d_out, d_in, bias=True) -> list[Rule]:
    rules = [Rule(path + ("kernel",), (f"{name}.weight",), ((d_out, d_in),), _t)]
    if bias:
        rules.append(Rule(path + ("bias",), (f"{name}.bias",), ((d_out,),), _ident))
    return rules


def _norm(path, name, d, bias=True, key="weight") -> list[Rule]:
    rules = [Rule(path + ("scale",), (f"{name}.{key}",), ((d,),), _ident)]
    if bias:
        rules.append(Rule(path + ("bias",), (f"{name}.bias",), ((d,),), _ident))
    return rules


def _attention(path, q, k, v, o, d, inner, bias=True) -> list[Rule]:
    rules = [Rule(path + ("qkv", "kernel"), (f"{q}.weight", f"{k}.weight", f"{v}.weight"),
                  ((inner, d),) * 3, _qkv_kernel)]
    if bias:
        rules.append(Rule(path + ("qkv", "bias"), (f"{q}.bias", f"{k}.bias", f"{v}.bias"),
                          ((inner,),) * 3, _qkv_bias))
    return rules + _linear(path + ("out",), o, d, inner, bias)


# --------------------------------------------------------------------------------------- T5
def t5_rules(c: T5Config) -> list[Rule]:
    d, inner = c.d_model, c.inner_dim
    rules = [
        Rule(("embed", "embedding"), ("shared.weight",), ((c.vocab_size, d),), _ident),
        Rule(("rel_bias", "embedding"),
             ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",),
             ((c.rel_buckets, c.num_heads),), _ident),
    ]
    for i in range(c.num_layers):
        p, s = (f"block_{i}",), f"encoder.block.{i}.layer"
        a = f"{s}.0.SelfAttention"
        rules += _norm(p + ("ln_attn",), f"{s}.0.layer_norm", d, bias=False)
        rules += _attention(p + ("attn",), f"{a}.q", f"{a}.k", f"{a}.v", f"{a}.o", d, inner, bias=False)
        rules += _norm(p + ("ln_ff",), f"{s}.1.layer_norm", d, bias=False)
        f = f"{s}.1.DenseReluDense"
        if c.ff == "relu":
            rules += _linear(p + ("ff", "wi"), f"{f}.wi", c.d_ff, d, bias=False)
        else:
            rules += _linear(p + ("ff", "wi_0"), f"{f}.wi_0", c.d_ff, d, bias=False)
            rules += _linear(p + ("ff", "wi_1"), f"{f}.wi_1", c.d_ff, d, bias=False)
        rules += _linear(p + ("ff", "wo"), f"{f}.wo", d, c.d_ff, bias=False)
    rules += _norm(("final_ln",), "encoder.final_layer_norm", d, bias=False)
    return rules


def _t5_prepare(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # The shared embedding is stored once; some files keep only the encoder's alias of it.
    if "shared.weight" not in t and "encoder.embed_tokens.weight" in t:
        t["shared.weight"] = t["encoder.embed_tokens.weight"]
    t.pop("encoder.embed_tokens.weight", None)
    return t


_T5_UNUSED = (r"^decoder\.", r"^lm_head\.")


# -------------------------------------------------------------------------------------- ViT
def _patch_kernel(w):  # [D, C, P, P] -> [(py, px, c), D]
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def vit_rules(c: ViTConfig) -> list[Rule]:
    d, p = c.hidden, c.patch_size
    rules = [
        Rule(("patch_embed", "kernel"), ("embeddings.patch_embeddings.projection.weight",),
             ((d, c.channels, p, p),), _patch_kernel),
        Rule(("patch_embed", "bias"), ("embeddings.patch_embeddings.projection.bias",), ((d,),), _ident),
        Rule(("cls",), ("embeddings.cls_token",), ((1, 1, d),), _ident),
        Rule(("pos_embed",), ("embeddings.position_embeddings",), ((1, c.seq_len, d),), _ident),
    ]
    for i in range(c.num_layers):
        b, s = (f"block_{i}",), f"encoder.layer.{i}"
        a = f"{s}.attention.attention"
        rules += _norm(b + ("ln_attn",), f"{s}.layernorm_before", d)
        rules += _attention(b + ("attn",), f"{a}.query", f"{a}.key", f"{a}.value",
                            f"{s}.attention.output.dense", d, d)
        rules += _norm(b + ("ln_mlp",), f"{s}.layernorm_after", d)
        rules += _linear(b + ("mlp_in",), f"{s}.intermediate.dense", c.mlp_dim, d)
        rules += _linear(b + ("mlp_out",), f"{s}.output.dense", d, c.mlp_dim)
    rules += _norm(("final_ln",), "layernorm", d)
    return rules


# transformers 5 names -> hub names (the inverse of its ViTModel conversion mapping).
_VIT_RENAMES = [
    (r"^layers\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
    (r"^layers\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
    (r"^layers\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
]


def _vit_prepare(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in t.items():
        k = re.sub(r"^vit\.", "", k)
        for pat, rep in _VIT_RENAMES:
            k, n = re.subn(pat, rep, k)
            if n:
                break
        out[k] = v
    return out


_VIT_UNUSED = (r"^pooler\.", r"^classifier\.")


# ------------------------------------------------------------------------------------- BERT
def bert_rules(c: BertConfig) -> list[Rule]:
    d = c.hidden
    rules = [
        Rule(("embed_word", "embedding"), ("embeddings.word_embeddings.weight",),
             ((c.vocab_size, d),), _ident),
        Rule(("embed_pos",), ("embeddings.position_embeddings.weight",), ((c.max_positions, d),), _ident),
        Rule(("embed_type",), ("embeddings.token_type_embeddings.weight",),
             ((c.type_vocab_size, d),), _ident),
    ] + _norm(("embed_ln",), "embeddings.LayerNorm", d)
    for i in range(c.num_layers):
        b, s = (f"block_{i}",), f"encoder.layer.{i}"
        a = f"{s}.attention.self"
        rules += _attention(b + ("attn",), f"{a}.query", f"{a}.key", f"{a}.value",
                            f"{s}.attention.output.dense", d, d)
        rules += _norm(b + ("ln_attn",), f"{s}.attention.output.LayerNorm", d)
        rules += _linear(b + ("ff_in",), f"{s}.intermediate.dense", c.intermediate, d)
        rules += _linear(b + ("ff_out",), f"{s}.output.dense", d, c.intermediate)
        rules += _norm(b + ("ln_ff",), f"{s}.output.LayerNorm", d)
    return rules


def _bert_prepare(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in t.items():
        k = re.sub(r"^bert\.", "", k)
        # Very old BERT checkpoints call LayerNorm parameters gamma / beta.
        k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k)
        k = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)
        out[k] = v
    return out


_BERT_UNUSED = (r"^pooler\.", r"^embeddings\.position_ids$", r"^cls\.")


_FAMILIES: dict[str, tuple] = {
    "t5": (t5_rules, _t5_prepare, _T5_UNUSED),
    "vit": (vit_rules, _vit_prepare, _VIT_UNUSED),
    "bert": (bert_rules, _bert_prepare, _BERT_UNUSED),
}


def rules_for(config: BackboneConfig) -> list[Rule]:
    return _FAMILIES[config.family][0](config)


def convert(tensors: Mapping[str, np.ndarray], config: BackboneConfig, source: str = "checkpoint") -> dict:
    """Checkpoint tensors (name -> array) -> nested Flax params (numpy float32).

    Raises WeightsError naming the first missing tensor or wrong shape, or listing tensors that
    no rule uses. ``source`` (a file path) goes into the messages.
    """
    rules_fn, prepare, unused = _FAMILIES[config.family]
    t = prepare(dict(tensors))
    params: dict = {}
    used: set[str] = set()
    for rule in rules_fn(config):
        arrays = []
        for name, shape in zip(rule.sources, rule.shapes):
            if name not in t:
                raise WeightsError(
                    f"{source}: tensor {name!r} (shape {shape}) is missing; is this a "
                    f"{config.family} checkpoint of the configured size ({_describe(config)})?"
                )
            a = np.asarray(t[name])
            if tuple(a.shape) != tuple(shape):
                raise WeightsError(
                    f"{source}: tensor {name!r} has shape {tuple(a.shape)}, expected {tuple(shape)} "
                    f"for the configured {config.family} ({_describe(config)})"
                )
            arrays.append(a.astype(np.float32))
            used.add(name)
        node = params
        for key in rule.path[:-1]:
            node = node.setdefault(key, {})
        node[rule.path[-1]] = np.ascontiguousarray(rule.fn(*arrays))
    extra = sorted(k for k in t if k not in used and not any(re.search(p, k) for p in unused))
    if extra:
        shown = ", ".join(repr(k) for k in extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise WeightsError(
            f"{source}: {len(extra)} tensor(s) not used by the configured {config.family} "
            f"({_describe(config)}): {shown}; the checkpoint has more layers or another architecture"
        )
    return params


# How each rule's function is undone: Flax value -> the checkpoint tensors, given their shapes.
_INVERSE: dict[Callable, Callable] = {
    _ident: lambda a, shapes: [a],
    _t: lambda a, shapes: [a.T],
    _qkv_kernel: lambda a, shapes: [x.T for x in np.split(a, 3, axis=1)],
    _qkv_bias: lambda a, shapes: np.split(a, 3),
    _patch_kernel: lambda a, shapes: [a.reshape(shapes[0][2], shapes[0][3], shapes[0][1], -1)
                                      .transpose(3, 2, 0, 1)],
}


def export(params: Mapping, config: BackboneConfig) -> dict[str, np.ndarray]:
    """Flax params -> checkpoint tensors under the hub's names (the inverse of ``convert``), so
    weights trained here are an ordinary Hugging Face checkpoint (``transformers``' ViTModel
    reads the ViT's) and load back through the same checked path as downloaded ones. LoRA
    parameters have no checkpoint name and are an error."""
    out: dict[str, np.ndarray] = {}
    for rule in rules_for(config):
        node = params
        for key in rule.path:
            node = node[key]
        tensors = _INVERSE[rule.fn](np.asarray(node, np.float32), rule.shapes)
        for name, shape, t in zip(rule.sources, rule.shapes, tensors):
            if tuple(t.shape) != tuple(shape):  # an inverse bug, never a user error
                raise AssertionError(f"export: {name} has shape {t.shape}, expected {shape}")
            out[name] = np.ascontiguousarray(t)
    return out


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file into numpy arrays (no torch). bfloat16 files need ml_dtypes."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # corrupt or truncated file, or a git-lfs pointer
        raise WeightsError(f"cannot read {path} as safetensors ({type(e).__name__}: {e})") from None


def _describe(c: BackboneConfig) -> str:
    if isinstance(c, T5Config):
        return f"d_model={c.d_model}, layers={c.num_layers}, heads={c.num_heads}, d_ff={c.d_ff}, ff={c.ff}"
    if isinstance(c, ViTConfig):
        return f"hidden={c.hidden}, layers={c.num_layers}, patch={c.patch_size}, image={c.image_size}"
    return f"hidden={c.hidden}, layers={c.num_layers}, vocab={c.vocab_size}"
