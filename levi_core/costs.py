"""Parameters and inference FLOPs of every method row (the paper's Tables 3, 15 and 16), offline.

Everything is computed from configs alone: parameter counts from ``jax.eval_shape`` of the
modules, FLOPs from XLA's cost analysis of the compiled forward pass (lowered on
``ShapeDtypeStruct`` parameters, so no weights and no random init are needed), and, beside
them, an analytic count of matmul / convolution multiply-adds.

Convention (printed with every table, see ``CONVENTION``):
  * ``macs_analytic``: multiply-adds of the matrix products and convolutions only (attention
    scores and attention-weighted sums included; norms, activations, softmax, embedding
    look-ups, pooling and additions excluded). This is the convention of Rao et al. (2021),
    whose "17.5 GFLOPs" for ViT-B/16 at 224 are multiply-adds.
  * ``flops_analytic`` = 2 x ``macs_analytic``.
  * ``flops_xla``: XLA's ``cost_analysis()['flops']`` of the compiled forward pass at batch 1.
    XLA counts a dot or convolution as 2 x multiply-adds (checked in the tests) and also counts
    elementwise work (softmax, GELU, norms), so ``flops_xla`` is slightly above
    ``flops_analytic`` (about 1.6% for ViT-B/16). Layers are unrolled (no ``scan``), because XLA
    counts a loop body once.

Per example, at the stated input size: T5 and BERT at ``seq_len`` tokens (default 64, about a
tokenized MovieLens sentence of the paper's D.1), ViT at its image size (224 x 224).

T5 is reported two ways: ``encoder`` (what every method here runs: the encoder and its pooled
states) and ``encoder+decoder`` (the published seq2seq model, as the paper's "60M parameters"
counts it: encoder, decoder of ``decoder_len`` target tokens (default 1: the label token), and the
LM head, which v1.0 ties to the shared embedding and v1.1 does not). The decoder is never built
here; its parameters and multiply-adds are analytic, and ``flops_xla`` of ``encoder+decoder``
is XLA's encoder count plus 2 x the decoder's analytic multiply-adds (marked in ``notes``).

Method rows follow the method catalog (``levi_core.methods.catalog``), one rule per kind or per
method (``RULES_BY_KIND``, ``RULES``). A composite (ensemble) costs the sum of its
members in training parameters, inference parameters and FLOPs; WiSE-FT (``ft_zeroshot``)
trains its members (lp, lp_ft) but infers with one interpolated model. LEVI's parts follow the paper's D.2:
the small model (recommendation: embeddings of the categorical features + MLP 512-256;
vision: four 3x3 convolutions 32-64-64-64 each with batch norm, ReLU and 2x2 max pooling,
flattened) and one adapting layer per large-model layer used (an MLP with one hidden layer of
256 (rec) or 1024 (vision) units on [pooled layer state ; small-model vector]). Batch-norm
running statistics are state, not parameters, and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from levi_core.backbones.config import T5Config, ViTConfig, get_config
from levi_core.backbones.weights import count_params
from levi_core.large_costs import (  # noqa: F401  (the large model's numbers, re-exported)
    LargeModel, T5DecoderCost, _sds, backbone_macs, backbone_xla_flops, half_params, large_model,
    lora_params, t5_decoder_cost, xla_flops,
)
from levi_core.errors import ConfigError
from levi_core.method_kinds import UNCOSTED, Kind
from levi_core.models.small import ConvSmall, RecSmall, TaskHeads

CONVENTION = (
    "macs_analytic = multiply-adds of matmuls and convolutions (attention included; norms, "
    "activations, softmax, lookups excluded); flops_analytic = 2 x macs_analytic; flops_xla = "
    "XLA cost_analysis()['flops'] of the compiled forward at batch 1, which counts a dot as "
    "2 x multiply-adds and also counts elementwise work. All per example."
)

# Figures quoted by the paper, printed beside ours.
REFERENCES = {
    "t5-small": {"params": 60e6, "source": "paper D.2: T5x-small has 60M parameters"},
    "vit-b16-224-in21k": {
        "params": 86e6,
        "macs": 17.5e9,
        "source": "paper D.2: ViT-base 86M parameters; Rao et al. 2021 (DynamicViT): 17.5 G "
                  "multiply-adds ('GFLOPs') for ViT-B/16 at 224 x 224",
    },
}

# Vocabulary sizes of the small model's embedding tables for MovieLens 100K (the paper's D.1
# features: user id, user age, user occupation, user zipcode, movie title, movie id), counted in
# the ml-100k files: 943 users, 61 distinct ages, 21 occupations, 795 zip codes, 1,664 distinct
# titles, 1,682 movies.
MOVIELENS_100K_VOCAB = {
    "user_id": 943, "user_age": 61, "occupation": 21, "zipcode": 795,
    "movie_title": 1664, "movie_id": 1682,
}

@dataclass
class Cost:
    """Costs of one part or one method row. FLOPs and MACs per example."""

    trainable_params: int = 0
    inference_params: int = 0
    flops_xla: float = 0.0
    macs_analytic: float = 0.0
    members: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def flops_analytic(self) -> float:
        return 2.0 * self.macs_analytic

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(
            self.trainable_params + other.trainable_params,
            self.inference_params + other.inference_params,
            self.flops_xla + other.flops_xla,
            self.macs_analytic + other.macs_analytic,
            self.members + other.members,
            self.notes + [n for n in other.notes if n not in self.notes],
        )

    def as_dict(self) -> dict:
        return {
            "trainable_params": int(self.trainable_params),
            "inference_params": int(self.inference_params),
            "flops_xla": float(self.flops_xla),
            "flops_analytic": float(self.flops_analytic),
            "macs_analytic": float(self.macs_analytic),
            "members": list(self.members),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------- LEVI's small parts
# The modules are the ones LEVI trains (levi_core.models.small): one definition, so the cost
# tables cannot drift from what is trained.
def _module_cost(module: nn.Module, args: tuple, macs: float) -> tuple[Cost, Any]:
    """Cost of ``module(*args)`` (args: ShapeDtypeStruct pytrees; ``train=False``)."""
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), args)
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *zeros, False))
    flops = xla_flops(lambda v, *a: module.apply(v, *a, False), _sds(variables), *args)
    out = jax.eval_shape(lambda v, *a: module.apply(v, *a, False), variables, *args)
    n = count_params(variables["params"])
    return Cost(n, n, flops, macs), out


def small_model(task: str, *, rec_vocab: Mapping[str, int] | None = None, embed_dim: int = 32,
                small_hidden: Sequence[int] = (512, 256),
                small_conv: Sequence[int] = (32, 64, 64, 64), small_pool: str = "global") -> nn.Module:
    """LEVI's small model as trained (``RecSmall`` / ``ConvSmall``)."""
    if task == "rec":
        vocab = tuple(sorted((rec_vocab or MOVIELENS_100K_VOCAB).items()))
        return RecSmall(vocab_sizes=vocab, embed_dim=embed_dim, hidden=tuple(small_hidden))
    if task == "vision":
        return ConvSmall(features=tuple(small_conv), pool=small_pool)
    raise ConfigError(f"unknown task {task!r}; expected 'rec' or 'vision'")


def small_model_cost(task: str, *, rec_vocab: Mapping[str, int] | None = None, embed_dim: int = 32,
                     small_hidden: Sequence[int] = (512, 256),
                     small_conv: Sequence[int] = (32, 64, 64, 64), small_pool: str = "global",
                     image_size: int = 224, channels: int = 3) -> tuple[Cost, int]:
    """The small model's cost and the width of the vector it gives the adapting layers."""
    module = small_model(task, rec_vocab=rec_vocab, embed_dim=embed_dim,
                         small_hidden=small_hidden, small_conv=small_conv, small_pool=small_pool)
    if task == "rec":
        vocab = dict(module.vocab_sizes)
        widths = [len(vocab) * embed_dim, *small_hidden]
        macs = sum(a * b for a, b in zip(widths, widths[1:]))
        inputs = {k: jax.ShapeDtypeStruct((1,), jnp.int32) for k in vocab}
    else:
        macs, h, cin = 0, image_size, channels
        for f in small_conv:
            macs += h * h * 9 * cin * f
            h, cin = h // 2, f
        inputs = {"image": jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.uint8)}
    cost, out = _module_cost(module, (inputs,), macs)
    return cost, int(out.shape[-1])


def mlp_head_cost(d_in: int, hidden: int, outputs: int) -> Cost:
    """One adapting layer (or an ablation's head): ``TaskHeads`` with one input of ``d_in``."""
    module = TaskHeads(small=None, adapter_hidden=hidden, n_out=outputs)
    cost, _ = _module_cost(module, ({}, (jax.ShapeDtypeStruct((1, d_in), jnp.float32),)),
                           d_in * hidden + hidden * outputs)
    return cost


def linear_head_cost(d_in: int, outputs: int) -> Cost:
    n = d_in * outputs + outputs
    x = jax.ShapeDtypeStruct((1, d_in), jnp.float32)
    module = nn.Dense(outputs)
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(x.shape)))
    return Cost(n, n, xla_flops(lambda v, a: module.apply(v, a), _sds(variables), x), d_in * outputs)


# ------------------------------------------------------------------------------ method rows
@dataclass
class Parts:
    """What every method row of one backbone is built from: the large model, its linear head,
    LEVI's small model and adapting layers (with and without the small model's vector), the
    small model's own head, and the notes every row carries."""

    lm: LargeModel
    head: Cost
    small: Cost
    adapters: Cost
    adapters_large_only: Cost
    small_head: Cost
    n_adapt: int
    adapt_hidden: int
    lora_rank: int
    notes: list[str]

    def model(self, trainable: int, name: str) -> Cost:
        """One large model with a linear head, ``trainable`` of its parameters trained."""
        c = Cost(0, self.lm.params, self.lm.flops_xla, self.lm.macs, notes=self.notes) + self.head
        c.trainable_params = trainable
        c.members = (name,)
        return c


# A rule costs one method: rule(its declaration, the parts, row) where ``row(name)`` is the cost
# of another method (its dependencies, or a method it is compared with).
Rule = Callable[[Any, Parts, Callable[[str], Cost]], Cost]


def _large(m, p: Parts, row) -> Cost:
    """A large-model training: the large model + head, its tuning mode's parameters trained."""
    tuned = {"all": p.lm.params, "half": p.lm.half_params, "lora": p.lm.lora_params}[m.tuning]
    return p.model(tuned + p.head.trainable_params, m.name)


def _members_sum(m, p: Parts, row) -> Cost:
    """A prediction ensemble costs the sum of its members (its dependencies) in everything."""
    out = row(m.depends_on[0])
    for d in m.depends_on[1:]:
        out = out + row(d)
    return out


def _lp_ft(m, p: Parts, row) -> Cost:
    c = _large(m, p, row)
    c.notes = p.notes + ["lp_ft: the lp stage trains a subset (the head) of the ft stage's parameters"]
    return c


def _lora(m, p: Parts, row) -> Cost:
    c = _large(m, p, row)
    c.notes = p.notes + [f"lora: rank {p.lora_rank} on q and v; merged for inference"]
    return c


def _a1(m, p: Parts, row) -> Cost:
    c = row("ft") + row("ft")  # the selected ft and the second ft its job trains
    c.members = ("ft(seed a)", "ft(seed b)")
    return c


def _ft_zeroshot(m, p: Parts, row) -> Cost:
    lp_ft, ft = row("lp_ft"), row("ft")
    return Cost(lp_ft.trainable_params, ft.inference_params, ft.flops_xla, ft.macs_analytic,
                ("lp", "lp_ft"), p.notes + ["ft_zeroshot: trains lp and lp_ft (lp's head is a subset "
                                            "of lp_ft's parameters), infers with one interpolated model"])


def _lp(m, p: Parts, row) -> Cost:
    return p.model(p.head.trainable_params, m.name)


def _levi(m, p: Parts, row) -> Cost:
    """LEVI's small parts on a large model; its training counts the tuning stage of the large
    model it is built on (its dependency, with that stage's head; none for the pre-trained)."""
    parts = p.small + p.adapters
    stage = row(m.depends_on[0]) if m.depends_on else None
    return Cost(parts.trainable_params + (stage.trainable_params if stage else 0),
                p.lm.params + parts.inference_params,
                p.lm.flops_xla + parts.flops_xla, p.lm.macs + parts.macs_analytic,
                (m.name,), p.notes + [f"levi: small model + {p.n_adapt} adapting layers "
                                      f"({p.adapt_hidden} hidden) on a large model; its training "
                                      "counts the large model's own tuning stage (with that stage's head)"])


def _a3(m, p: Parts, row) -> Cost:
    ad = p.adapters_large_only
    return Cost(row("ht").trainable_params + ad.trainable_params, p.lm.params + ad.inference_params,
                p.lm.flops_xla + ad.flops_xla, p.lm.macs + ad.macs_analytic, ("a3",),
                p.notes + ["a3: adapting layers on the ht large model's layers, no small model"])


def _a4(m, p: Parts, row) -> Cost:
    c = p.small + p.small_head
    c.members = ("a4",)
    return c


def _a5(m, p: Parts, row) -> Cost:
    c = p.small + _times(p.small_head, p.n_adapt)
    c.members = ("a5",)
    c.notes = [f"a5: small model, shared bottom, {p.n_adapt} heads averaged"]
    return c


# The cost rules, keyed from the catalog's declarations: by kind where one rule fits the kind,
# by name where a method's cost genuinely differs (a name's rule wins). A method of a kind in
# ``UNCOSTED`` has no row; any other method without a rule fails (``method_costs``).
RULES_BY_KIND: dict[Kind, Rule] = {Kind.TRAINS_LARGE: _large, Kind.COMPOSITE: _members_sum}
RULES: dict[str, Rule] = {
    "lp_ft": _lp_ft, "lora": _lora, "a1": _a1, "ft_zeroshot": _ft_zeroshot, "lp": _lp,
    "levi": _levi, "levi/pretrained": _levi, "levi/ft": _levi, "levi/lora": _levi,
    "a3": _a3, "a4": _a4, "a5": _a5,
}


def costed(catalog: Sequence) -> list[str]:
    """The names of the declarations that get a cost row (every kind but ``UNCOSTED``), in order."""
    return [m.name for m in catalog if m.kind not in UNCOSTED]


def rule_for(m) -> Rule:
    """The cost rule of a method's declaration; a ConfigError when it has none."""
    rule = RULES.get(m.name) or RULES_BY_KIND.get(m.kind)
    if rule is None or m.kind in UNCOSTED:
        raise ConfigError(f"no cost rule for method {m.name!r} (kind {getattr(m.kind, 'value', m.kind)}): "
                          f"add one to levi_core.costs (RULES_BY_KIND for its kind, or RULES for the "
                          f"method), or declare it of a kind the cost tables leave out "
                          f"({', '.join(k.value for k in UNCOSTED)})")
    return rule


def method_costs(
    backbone: str,
    catalog: Sequence,
    *,
    task: str | None = None,
    seq_len: int = 64,
    scope: str = "encoder",
    decoder_len: int = 1,
    num_outputs: int | None = None,
    rec_vocab: Mapping[str, int] | None = None,
    embed_dim: int = 32,
    small_hidden: Sequence[int] = (512, 256),
    small_conv: Sequence[int] = (32, 64, 64, 64),
    small_pool: str = "global",
    adapter_hidden: int | None = None,
    levi_layers: int | None = None,
    lora_rank: int = 8,
    methods: Sequence[str] | None = None,
) -> dict[str, Cost]:
    """Costs of each method row for one backbone preset.

    Args:
      backbone: preset name (``t5-small``, ``vit-b16-224-in21k``, ``minilm-l6``, tiny ones).
      catalog: the method declarations (``levi_core.methods.catalog.METHODS``: name, kind,
        tuning, dependencies), passed in so that this module, which a method runs, does not
        import the methods package.
      task: ``rec`` (text backbones; default) or ``vision`` (ViT; default).
      seq_len: tokens per example for text backbones.
      scope: ``encoder`` or (T5 only) ``encoder+decoder``.
      num_outputs: head outputs; default 1 for rec (rating regression), 1000 for vision
        (ImageNet classes).
      rec_vocab: embedding table sizes of the rec small model (default MovieLens 100K).
      embed_dim: width of each rec embedding (the paper does not state it; default 32).
      small_hidden / small_conv / adapter_hidden: LEVI's widths (default: the paper's D.2).
      levi_layers: large-model layers with an adapting layer; default: every block.
      lora_rank: rank of LoRA on q and v.
      methods: the rows to return (default: every costed method of ``catalog``, in its order).

    Raises ConfigError for a method without a cost rule (``rule_for``) or not in ``catalog``.
    """
    config = get_config(backbone)
    task = task or ("vision" if isinstance(config, ViTConfig) else "rec")
    k = num_outputs or (1000 if task == "vision" else 1)
    lm = large_model(config, backbone, seq_len, lora_rank, scope, decoder_len)
    n_adapt = levi_layers if levi_layers is not None else lm.num_layers
    adapt_hidden = adapter_hidden or (1024 if task == "vision" else 256)

    small, small_dim = small_model_cost(
        task, rec_vocab=rec_vocab, embed_dim=embed_dim, small_hidden=small_hidden,
        small_conv=small_conv, small_pool=small_pool, image_size=getattr(config, "image_size", 224), channels=getattr(config, "channels", 3))
    parts = Parts(
        lm=lm, head=linear_head_cost(lm.hidden, k), small=small,
        adapters=_times(mlp_head_cost(lm.hidden + small_dim, adapt_hidden, k), n_adapt),
        adapters_large_only=_times(mlp_head_cost(lm.hidden, adapt_hidden, k), n_adapt),
        small_head=mlp_head_cost(small_dim, adapt_hidden, k), n_adapt=n_adapt,
        adapt_hidden=adapt_hidden, lora_rank=lora_rank, notes=list(lm.notes))

    declared = {m.name: m for m in catalog}
    rows: dict[str, Cost] = {}

    def row(name: str) -> Cost:
        if name not in rows:
            if name not in declared:
                raise ConfigError(f"no cost rule for method {name!r}: not a method of the catalog "
                                  f"passed; costed: {', '.join(costed(catalog))}")
            m = declared[name]
            rows[name] = rule_for(m)(m, parts, row)
        return rows[name]

    return {m: row(m) for m in (costed(catalog) if methods is None else methods)}


def _times(c: Cost, n: int) -> Cost:
    return Cost(c.trainable_params * n, c.inference_params * n, c.flops_xla * n, c.macs_analytic * n)


FLATTEN_SCOPE = "encoder, LEVI's CNN flattened (D.2 literal)"


def cost_table(backbone: str, catalog: Sequence, **kwargs) -> dict:
    """Everything a table needs for one backbone and the methods of ``catalog``, JSON-able: the rows of each scope (T5: encoder
    and encoder+decoder; ViT: encoder with LEVI's CNN globally pooled, the default, and
    ``FLATTEN_SCOPE`` with it flattened as D.2 literally says), the large model alone, the
    settings, the convention and references."""
    config = get_config(backbone)
    scopes = ["encoder", "encoder+decoder"] if isinstance(config, T5Config) else ["encoder"]
    seq_len = kwargs.get("seq_len", 64)
    out: dict[str, Any] = {
        "backbone": backbone,
        "convention": CONVENTION,
        "input": (f"{config.image_size}x{config.image_size} image" if isinstance(config, ViTConfig)
                  else f"{seq_len} tokens"),
        "settings": {k: v for k, v in kwargs.items() if k != "methods"},
        "references": REFERENCES.get(backbone, {}),
        "scopes": {},
    }
    variants = [(scope, {}) for scope in scopes]
    if isinstance(config, ViTConfig) and "small_pool" not in kwargs:
        # D.2's literal reading ("flattened"), shown beside the default so the difference is seen
        variants.append((FLATTEN_SCOPE, {"small_pool": "flatten"}))
    for name, extra in variants:
        scope = "encoder" if name == FLATTEN_SCOPE else name
        lm = large_model(config, backbone, seq_len, kwargs.get("lora_rank", 8), scope,
                         kwargs.get("decoder_len", 1))
        rows = method_costs(backbone, catalog, scope=scope, **kwargs, **extra)
        out["scopes"][name] = {
            "large_model": {"params": lm.params, "flops_xla": lm.flops_xla, "macs_analytic": lm.macs,
                            "flops_analytic": 2 * lm.macs, "notes": list(lm.notes)},
            "rows": {m: c.as_dict() for m, c in rows.items()},
        }
    return out
