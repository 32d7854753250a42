"""Every method for the real dataset families, on a large pre-trained backbone.

One code path for ``movielens`` / ``amazon`` (text backbone; rating regression: one output,
MSE loss, RMSE; predictions [N] floats) and ``retinopathy`` / ``imagenet`` (vision backbone;
classification: softmax cross-entropy; predictions = probabilities [N, C]). The family only
picks the modality (``ctx.settings["text"]`` or ``["vision"]``) and the task.

Settings (per modality, defaults in ``TEXT_DEFAULTS`` / ``VISION_DEFAULTS``): ``backbone``,
``weights`` (``pretrained``: ``load_backbone``; ``random``: ``init_backbone(config, seed=0)``,
a fixed stand-in "pre-trained" model for smoke runs), ``weights_dir``, ``max_len``,
``optimizer`` (adam | sgd with momentum 0.9), ``epochs`` (large-model training),
``head_epochs`` (methods that train only on cached features: lp, levi*, a3-a5, layer/<k>;
default ``epochs``), ``lora_rank``, ``small_hidden`` / ``embed_dim`` (rec small model),
``small_conv`` (vision small model), ``adapter_hidden``, ``unknown_id_frac``,
``eval_batch_size``. Batch size: ``settings["batch_size"][family]`` for text,
``settings["vision"]["batch_size"]`` for vision. ``settings["cache_dir"]``: the feature cache.

The large model is ``{"backbone": ..., "head": Dense(n_out)}`` on the pooled final state
(masked mean for text, CLS for ViT). Freezing is the optimizer mask of
``levi_core.backbones.tuning``: ``ft``/``fs``/``lp_ft`` ``all``, ``ht`` ``half``, ``lora``
``lora``. Heads' output biases start at the train mean rating (regression), kernels at flax's
default, so one short epoch starts from the mean predictor instead of 0.

Layer states: ``select_states`` keeps the embedding output, then one state per block: each
block's output, except that for pre-LN backbones (T5, ViT) the last block's state is the
final-normed output (what the head reads). ``S = num_layers + 1`` states; state 0 is the
embedding output, state k the k-th block. LEVI, ``a3`` use states 1..L (one adapting layer
per block: 6 for MiniLM / T5-small, 12 for ViT-B); ``layer/<k>`` uses state k (0..L); ``lp``
uses state L (the same pooled vector the large model's head reads, so its head plugs into the
full model for ``lp_ft`` and ``ft_zeroshot``).

Methods:
* ``ft``, ``ht``, ``fs``, ``lp_ft``, ``lora``: train the large model (``fs`` from
  ``init_backbone(config, 10000 + seed)``); write ``params.npz`` (the trained leaves only, flattened,
  no pickle; the frozen rest is the pre-trained model named in ``run.json``) and, for ``ft``,
  ``ht``, ``lora``, the pooled states of every role (``features.npz``) for LEVI.
* ``lp``: a Dense head on cached pre-trained features.
* ``ft_zeroshot``: WiSE-FT between (pre-trained backbone + selected ``lp`` head) and the
  selected ``ft`` model; ``a`` in {0, 0.1, ..., 1} chosen on ``id_val`` inside the job.
* ``levi`` (large model = selected ``ht``), ``levi/pretrained``, ``levi/ft``, ``levi/lora``:
  ``TaskHeads`` with the small model on states 1..L. Loss: the mean over heads of the per-head
  loss; prediction: the mean of the heads.
* ``a1``: the selected ``ft`` averaged with a second ``ft`` trained inside the job at
  ``seed + 1000`` with the selected ``lr`` (as the synthetic family).
* ``a3``: adapting layers on states 1..L, no small model; ``a4``: small model, one head;
  ``a5``: small model, ``L`` heads averaged; ``layer/<k>``: one adapting-layer MLP on state k.
* ``ft_fs``, ``ft_robust``, ``a2``: ``levi_core.methods.ensembles``.
* ``ref/mean``, ``ref/user_bias``, ``ref/user_movie_bias`` (rec only): see ``levi_core.methods.refs``.

Cold start (rec): ids never seen in training are 0 (the loaders do this). While training a
small model, each categorical id of a batch is replaced by 0 with probability
``unknown_id_frac`` (default 0.05), drawn from ``SeedSequence([seed, 5])``, so row 0 of every
table is trained (``replace_unknown``).

Determinism: parameters from ``jax.random.PRNGKey`` of fixed seeds, batch orders and id
replacement from numpy ``SeedSequence([seed, stream])``; CPU XLA is deterministic.
Divergence: a non-finite loss or parameter stops training; the last finite parameters are kept
and the job reports ``diverged``.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from levi_core import features as feature_cache
from levi_core import training
from levi_core.backbones import build_module, get_config, get_preset, init_backbone, load_backbone
from levi_core.backbones import tuning
from levi_core.backbones.outputs import default_pooling, pool
from levi_core.data.base import Dataset
from levi_core.errors import ConfigError
from levi_core.methods import ensembles
from levi_core.methods.registry import RunContext, RunOutput, implements
from levi_core.models.small import ConvSmall, RecSmall, TaskHeads

FAMILIES = {"movielens": "text", "amazon": "text", "retinopathy": "vision", "imagenet": "vision"}
TEXT_DEFAULTS: dict[str, Any] = {
    "backbone": "t5-small", "weights": "pretrained", "weights_dir": None, "max_len": 128,
    "optimizer": "adam", "epochs": 1, "head_epochs": None, "lora_rank": 8,
    "small_hidden": (512, 256), "embed_dim": 32, "adapter_hidden": 256,
    "unknown_id_frac": 0.05, "eval_batch_size": None,
}
VISION_DEFAULTS: dict[str, Any] = {
    "backbone": "vit-b16-224-in21k", "weights": "pretrained", "weights_dir": None,
    "optimizer": "sgd", "batch_size": 512, "epochs": 1, "head_epochs": None, "lora_rank": 8,
    "small_conv": (32, 64, 64, 64), "adapter_hidden": 1024, "eval_batch_size": None,
    "max_len": None,
}
# numpy SeedSequence streams
_S_ORDER, _S_INIT, _S_UNK, _S_HEAD = 3, 2, 5, 4
FS_SEED_OFFSET = 10_000


# ------------------------------------------------------------------ settings
def resolve_settings(ctx: RunContext, family: str) -> dict[str, Any]:
    modality = FAMILIES[family]
    s = dict(TEXT_DEFAULTS if modality == "text" else VISION_DEFAULTS)
    given = ctx.settings.get(modality) or {}
    s.update({k: v for k, v in given.items()})
    s["modality"] = modality
    s["family"] = family
    if modality == "text":
        bs = (ctx.settings.get("batch_size") or {}).get(family, s.get("batch_size", 200))
    else:
        bs = s.get("batch_size", 512)
    try:
        s["batch_size"] = int(bs)
        for k in ("epochs", "adapter_hidden", "lora_rank"):
            s[k] = int(s[k])
        s["head_epochs"] = int(s["head_epochs"]) if s.get("head_epochs") is not None else s["epochs"]
        s["max_len"] = int(s["max_len"]) if s.get("max_len") else None
        for k in ("small_hidden", "small_conv"):
            if k in s:
                v = s[k]
                s[k] = tuple(int(w) for w in (v.split(",") if isinstance(v, str) else v))
        s["embed_dim"] = int(s.get("embed_dim", 32))
        s["unknown_id_frac"] = float(s.get("unknown_id_frac", 0.05))
        s["eval_batch_size"] = int(s["eval_batch_size"] or max(s["batch_size"], 256))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{family} settings: {e}") from None
    if s["weights"] not in ("pretrained", "random"):
        raise ConfigError(f"settings[{modality!r}]['weights'] must be pretrained or random, got {s['weights']!r}")
    if s["optimizer"] not in ("adam", "sgd"):
        raise ConfigError(f"settings[{modality!r}]['optimizer'] must be adam or sgd, got {s['optimizer']!r}")
    if not 0.0 <= s["unknown_id_frac"] < 1.0:
        raise ConfigError("unknown_id_frac must be in [0, 1)")
    cfg = get_config(s["backbone"])
    if (modality == "vision") != (cfg.family == "vit"):
        raise ConfigError(f"backbone {s['backbone']!r} does not read {modality} inputs ({family})")
    if modality == "text" and s["max_len"] is None:
        raise ConfigError("text settings need max_len")
    s["cache_dir"] = ctx.settings.get("cache_dir")
    return s


def _lr(ctx: RunContext) -> float:
    try:
        return float(ctx.hparams["lr"])
    except KeyError:
        raise ConfigError(f"hyperparameter 'lr' missing (got {dict(ctx.hparams)})") from None
    except (TypeError, ValueError):
        raise ConfigError(f"lr={ctx.hparams['lr']!r} is not a number") from None


def roles_of(ds: Dataset) -> list[str]:
    return list(ds.splits)


def n_out(ds: Dataset) -> int:
    return 1 if ds.task == "regression" else int(ds.num_classes)


def out_bias(ds: Dataset) -> float:
    return float(np.mean(ds.splits["train"].labels)) if ds.task == "regression" else 0.0


# ------------------------------------------------------------------ backbone
_PRETRAINED: dict[Any, Any] = {}


def pretrained(s: Mapping[str, Any]):
    """(module, params, config) of the fixed pre-trained backbone (memoised per process)."""
    key = (s["backbone"], s["weights"], str(s.get("weights_dir")))
    if key not in _PRETRAINED:
        if s["weights"] == "pretrained":
            _PRETRAINED[key] = load_backbone(s["backbone"], s.get("weights_dir"))
        else:
            _PRETRAINED[key] = init_backbone(get_config(s["backbone"]), seed=0)
    return _PRETRAINED[key]


def checkpoint_id(s: Mapping[str, Any]) -> str:
    return f"{s['backbone']}:{s['weights']}" + (":seed0" if s["weights"] == "random" else "")


class HashTokenizer:
    """For random-weight test backbones without tokenizer files: lower-cased words (``\\w+``),
    each mapped to ``3 + crc32(word) % (vocab - 3)``; ``[CLS]`` = 1 first, ``[SEP]`` = 2 last,
    padding 0; truncated to ``max_length``. Deterministic across processes (crc32, not hash())."""

    def __init__(self, vocab_size: int, max_length: int):
        self.vocab, self.max_length = int(vocab_size), int(max_length)

    def __call__(self, texts, max_length=None):
        L = max_length or self.max_length
        ids = np.zeros((len(texts), L), np.int32)
        mask = np.zeros((len(texts), L), np.int32)
        for i, t in enumerate(texts):
            words = re.findall(r"\w+", str(t).lower())
            row = [1] + [3 + zlib.crc32(w.encode()) % (self.vocab - 3) for w in words][: L - 2] + [2]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


_TOKENIZED: dict[Any, Any] = {}


def tokenizer(s: Mapping[str, Any]):
    preset = get_preset(s["backbone"])
    if preset.hub_repo is None and preset.package is None:
        return HashTokenizer(preset.config.vocab_size, s["max_len"])
    from levi_core.backbones.tokenization import load_tokenizer

    return load_tokenizer(s["backbone"], s.get("weights_dir"), s["max_len"])


def large_inputs(ds: Dataset, role: str, s: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The backbone's inputs for a split: ``{"ids", "mask"}`` (tokenized once per process) or
    ``{"image"}`` (uint8)."""
    split = ds.splits[role]
    if s["modality"] == "vision":
        return {"image": np.asarray(split.large["image"])}
    key = (s["backbone"], s["max_len"], ds.fingerprint, role)
    if key not in _TOKENIZED:
        ids, mask = tokenizer(s)(list(split.large["text"]), s["max_len"])
        _TOKENIZED[key] = {"ids": ids, "mask": mask}
    return _TOKENIZED[key]


def select_states(hidden_states: tuple, config) -> list:
    """Embedding output + one state per block (pre-LN: the last one final-normed)."""
    L = config.num_layers
    hs = list(hidden_states)
    if len(hs) == L + 2:  # T5, ViT: [emb, block_1..block_L, final_ln]
        return hs[:L] + [hs[L + 1]]
    return hs[: L + 1]  # BERT: [emb, block_1..block_L]


def _backbone_call(module, config, bparams, batch):
    if "image" in batch:
        x = batch["image"].astype(jnp.float32) / 255.0
        x = (x - 0.5) / 0.5
        S = config.image_size
        if x.shape[1] != S or x.shape[2] != S:
            x = jax.image.resize(x, (x.shape[0], S, S, x.shape[3]), "bilinear")
        return module.apply({"params": bparams}, x)
    return module.apply({"params": bparams}, batch["ids"], batch["mask"])


def _pooled(module, config, bparams, batch):
    """[S, B, D] pooled states and the pooled final state."""
    out = _backbone_call(module, config, bparams, batch)
    kind = default_pooling(config.family)
    states = [pool(h, out.mask, kind) for h in select_states(out.hidden_states, config)]
    return jnp.stack(states)


class LargeModel:
    """Backbone + Dense head, as pure functions of ``{"backbone": ..., "head": ...}``."""

    def __init__(self, config, nout: int):
        self.config = config
        self.module = build_module(config)
        self.head = nn.Dense(nout)
        self.nout = nout

    def __hash__(self):
        return hash((self.config, self.nout))

    def __eq__(self, other):
        return isinstance(other, LargeModel) and (self.config, self.nout) == (other.config, other.nout)

    def logits(self, params, batch, train=False):
        states = _pooled(self.module, self.config, params["backbone"], batch)
        return self.head.apply({"params": params["head"]}, states[-1])[:, None, :]  # [B, 1, O]

    def init_head(self, seed: int, dim: int, bias: float):
        p = self.head.init(jax.random.PRNGKey(seed), jnp.zeros((1, dim), jnp.float32))["params"]
        return {"kernel": p["kernel"], "bias": jnp.full_like(p["bias"], bias)}


@functools.partial(jax.jit, static_argnums=0)
def _large_eval(model: LargeModel, params, batch):
    states = _pooled(model.module, model.config, params["backbone"], batch)
    out = model.head.apply({"params": params["head"]}, states[-1])
    return out, states


@functools.partial(jax.jit, static_argnums=(0, 1))
def _states_eval(module, config, bparams, batch):
    return _pooled(module, config, bparams, batch)


def _batches(n: int, bs: int):
    for i in range(0, n, bs):
        yield i, min(i + bs, n)


def _take(arrays: Mapping[str, np.ndarray], lo: int, hi: int, bs: int) -> dict[str, np.ndarray]:
    """Rows lo:hi, padded to bs rows (one static shape, one compilation)."""
    out = {}
    for k, a in arrays.items():
        part = a[lo:hi]
        if hi - lo < bs:
            pad = np.zeros((bs - (hi - lo),) + part.shape[1:], part.dtype)
            part = np.concatenate([part, pad])
        out[k] = part
    return out


def run_large(model: LargeModel, params, ds: Dataset, s, roles, want_states: bool):
    """Predictions (and pooled states) of the large model on ``roles``."""
    preds, states = {}, {}
    bs = s["eval_batch_size"]
    for role in roles:
        x = large_inputs(ds, role, s)
        n = len(ds.splits[role])
        outs, sts = [], []
        for lo, hi in _batches(n, bs):
            o, st = _large_eval(model, params, _take(x, lo, hi, bs))
            outs.append(np.asarray(o)[: hi - lo])
            if want_states:
                sts.append(np.asarray(st, dtype=np.float32)[:, : hi - lo].astype(np.float16))
        preds[role] = _to_prediction(np.concatenate(outs)[:, None, :], ds)
        if want_states:
            states[role] = np.concatenate(sts, axis=1)
    return preds, states


def compute_states(module, config, bparams, ds: Dataset, s, roles) -> dict[str, np.ndarray]:
    bs = s["eval_batch_size"]
    out = {}
    for role in roles:
        x = large_inputs(ds, role, s)
        n = len(ds.splits[role])
        parts = [np.asarray(_states_eval(module, config, bparams, _take(x, lo, hi, bs)))[:, : hi - lo]
                 for lo, hi in _batches(n, bs)]
        out[role] = np.concatenate(parts, axis=1)
    return out


def pretrained_states(ds: Dataset, s, roles=None) -> dict[str, np.ndarray]:
    """[S, N, D] pooled states of the frozen pre-trained backbone, through the feature cache."""
    roles = roles_of(ds) if roles is None else roles
    config = get_config(s["backbone"])
    key = {"checkpoint": checkpoint_id(s), "fingerprint": ds.fingerprint,
           "pooling": default_pooling(config.family), "max_len": s["max_len"]}

    def compute(missing):
        module, params, cfg = pretrained(s)
        return compute_states(module, cfg, params, ds, s, missing)

    return feature_cache.cached_states(s.get("cache_dir"), key, roles, compute)


def _feature_meta(ds: Dataset, s) -> dict[str, Any]:
    config = get_config(s["backbone"])
    return {"fingerprint": ds.fingerprint, "pooling": default_pooling(config.family),
            "max_len": s["max_len"], "backbone": s["backbone"], "weights": s["weights"]}


def dep_states(ctx: RunContext, dep: str, s) -> dict[str, np.ndarray]:
    if dep not in ctx.deps:
        raise ConfigError(f"this method needs the selected {dep!r} run (deps)")
    return feature_cache.read_workdir_states(ctx.deps[dep], _feature_meta(ctx.dataset, s))


# ------------------------------------------------------------------ losses, training
def task_loss(out: jnp.ndarray, y: jnp.ndarray, task: str) -> jnp.ndarray:
    """Mean over heads of the per-head mean loss; ``out`` [B, H, O]."""
    if task == "regression":
        return jnp.mean(jnp.mean((out[..., 0] - y[:, None]) ** 2, axis=0))
    return training.multihead_ce(out, y.astype(jnp.int32))


def _to_prediction(out: np.ndarray, ds: Dataset) -> np.ndarray:
    """[N, H, O] -> the prediction: mean of heads (regression values; class probabilities)."""
    out = np.asarray(out, np.float64)
    if ds.task == "regression":
        return out[..., 0].mean(axis=1)
    e = np.exp(out - out.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).mean(axis=1)


def _base_tx(name: str) -> optax.GradientTransformation:
    """The optimizer without its learning rate (applied in the step, so lr is a runtime value
    and one compiled step serves every lr of the grid)."""
    return optax.scale_by_adam() if name == "adam" else optax.trace(decay=0.9)


_STEPS: dict[Any, Callable] = {}


def _make_step(key, apply_fn, task, optimizer, labels):
    if key in _STEPS:
        return _STEPS[key]
    base = _base_tx(optimizer)
    tx = base if labels is None else optax.multi_transform(
        {"train": base, "freeze": optax.set_to_zero()}, labels)

    def step(params, extra, opt_state, batch, lr):
        def loss_fn(p):
            out, new_extra = apply_fn(p, extra, batch)
            return task_loss(out, batch["y"], task), new_extra

        (loss, new_extra), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt_state = tx.update(g, opt_state, params)
        upd = jax.tree_util.tree_map(lambda u: -lr * u, upd)
        new = optax.apply_updates(params, upd)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(new)]))
        return new, new_extra, opt_state, loss, finite

    fn = (jax.jit(step), tx)
    _STEPS[key] = fn
    return fn


def fit(apply_fn, params, extra, data: Mapping[str, np.ndarray], n: int, s, lr: float, seed: int,
        epochs: int, task: str, labels=None, cache_key=None, transform=None):
    """Minibatch training (python loop over one jitted step). ``data`` rows are gathered on the
    host; ``transform(batch, step)`` may edit a batch (unknown-id replacement).

    Returns ``(params, extra, losses, diverged)``; on divergence the last finite params."""
    idx = training.batch_indices(n, s["batch_size"], epochs, [seed, _S_ORDER])
    label_key = None if labels is None else tuple(sorted(traverse_util.flatten_dict(labels).items()))
    key = None if cache_key is None else (cache_key, task, s["optimizer"], label_key)
    step, tx = _make_step(key, apply_fn, task, s["optimizer"], labels) if key is not None else \
        _make_step(object(), apply_fn, task, s["optimizer"], labels)
    opt_state = tx.init(params)
    losses, bad = [], False
    lr_arr = jnp.float32(lr)
    for t, rows in enumerate(idx):
        batch = {k: v[rows] for k, v in data.items()}
        if transform is not None:
            batch = transform(batch, t)
        new, new_extra, new_opt, loss, finite = step(params, extra, opt_state, batch, lr_arr)
        loss = float(loss)
        if not (bool(finite) and np.isfinite(loss)):
            bad = True
            losses.append(float("nan"))
            break
        params, extra, opt_state = new, new_extra, new_opt
        losses.append(loss)
    return params, extra, np.asarray(losses, np.float64), bad


def _loss_extras(losses: np.ndarray, bad: bool) -> dict[str, Any]:
    finite = losses[np.isfinite(losses)]
    return {"steps": int(len(losses)), "diverged_at": int(len(losses)) if bad else None,
            "first_loss": float(finite[0]) if len(finite) else None,
            "final_loss": float(finite[-1]) if len(finite) and not bad else None}


def _trained_leaves(params, labels) -> dict:
    flat = traverse_util.flatten_dict(params)
    if labels is None:
        return params
    lab = traverse_util.flatten_dict(labels)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if lab[k] == "train"})


def _labels(params, mode: str, num_layers: int):
    mask = tuning.trainable_mask(params, mode, num_layers)
    return jax.tree_util.tree_map(lambda t: "train" if t else "freeze", mask)


# ------------------------------------------------------------------ large-model methods
MODES = {"ft": "all", "fs": "all", "lp_ft": "all", "ht": "half", "lora": "lora"}
WRITES_FEATURES = ("ft", "ht", "lora")


def train_large(ctx: RunContext, family: str, method: str, seed: int | None = None,
                lr: float | None = None, write: bool = True) -> RunOutput:
    """ft / ht / fs / lp_ft / lora: one code path; init and optimizer mask differ."""
    s = resolve_settings(ctx, family)
    ds = ctx.dataset
    seed = ctx.seed if seed is None else seed
    lr = _lr(ctx) if lr is None else lr
    module, bparams, config = pretrained(s)
    if method == "fs":
        # seed 10000 + seed: never the seed-0 draw that stands in for "pre-trained" weights
        _, bparams, config = init_backbone(config, seed=FS_SEED_OFFSET + seed)
    if method == "lora":
        if s["lora_rank"] <= 0:
            raise ConfigError("lora needs settings lora_rank > 0")
        config = get_config(s["backbone"], lora_rank=s["lora_rank"])
        bparams = tuning.add_lora(bparams, config, seed)
    model = LargeModel(config, n_out(ds))
    if method == "lp_ft":
        head = training.load_params(ctx.deps["lp"])["head"]
    else:
        head = model.init_head(seed * 1000 + _S_HEAD, config.hidden_size, out_bias(ds))
    params = {"backbone": bparams, "head": head}
    mode = MODES[method]
    labels = None if mode == "all" else _labels(params, mode, config.num_layers)
    train = ds.splits["train"]
    data = {**large_inputs(ds, "train", s), "y": train.labels}

    def apply_fn(p, extra, batch):
        return model.logits(p, batch, train=True), extra

    params, _, losses, bad = fit(apply_fn, params, {}, data, len(train), s, lr, seed, s["epochs"],
                                 ds.task, labels, cache_key=("large", model))
    want = write and method in WRITES_FEATURES
    preds, states = run_large(model, params, ds, s, roles_of(ds), want_states=want)
    if write:
        training.save_params(ctx.workdir, _trained_leaves(params, labels), {
            "method": method, "lr": lr, "seed": seed, "backbone": s["backbone"],
            "weights": s["weights"], "mode": mode, "lora_rank": config.lora_rank})
        if want:
            feature_cache.write_workdir_states(ctx.workdir, states, _feature_meta(ds, s))
    extras = _loss_extras(losses, bad)
    extras["trainable_params"] = tuning.count_trainable(params, mode, config.num_layers)
    return RunOutput(predictions=preds, diverged=bad, extras=extras)


def lp(ctx: RunContext, family: str) -> RunOutput:
    """A Dense head on the cached pooled final state of the frozen pre-trained backbone."""
    s = resolve_settings(ctx, family)
    ds = ctx.dataset
    lr = _lr(ctx)
    states = pretrained_states(ds, s)
    config = get_config(s["backbone"])
    model = LargeModel(config, n_out(ds))
    head = model.init_head(ctx.seed * 1000 + _S_HEAD, config.hidden_size, out_bias(ds))
    feats = {r: states[r][-1].astype(np.float32) for r in states}
    dense = model.head

    def apply_fn(p, extra, batch):
        return dense.apply({"params": p["head"]}, batch["f"])[:, None, :], extra

    train = ds.splits["train"]
    params, _, losses, bad = fit(apply_fn, {"head": head}, {}, {"f": feats["train"], "y": train.labels},
                                 len(train), s, lr, ctx.seed, s["head_epochs"], ds.task,
                                 cache_key=("lp", dense, n_out(ds)))
    preds = {r: _to_prediction(np.asarray(dense.apply({"params": params["head"]}, jnp.asarray(f)))[:, None, :], ds)
             for r, f in feats.items()}
    training.save_params(ctx.workdir, params, {"method": "lp", "lr": lr, "seed": ctx.seed,
                                               "backbone": s["backbone"], "weights": s["weights"]})
    return RunOutput(predictions=preds, diverged=bad, extras=_loss_extras(losses, bad))


def ft_zeroshot(ctx: RunContext, family: str) -> RunOutput:
    """WiSE-FT: (1-a) * (pre-trained backbone + lp head) + a * ft, a chosen on id_val."""
    from levi_core.methods.catalog import WISE_ALPHAS
    from levi_core.metrics import LOWER_IS_BETTER, compute

    s = resolve_settings(ctx, family)
    ds = ctx.dataset
    _, bparams, config = pretrained(s)
    zero = {"backbone": bparams, "head": training.load_params(ctx.deps["lp"])["head"]}
    fine = training.load_params(ctx.deps["ft"])
    model = LargeModel(config, n_out(ds))
    lower = LOWER_IS_BETTER[ds.metric]
    scores, best = {}, None
    for a in WISE_ALPHAS:
        p = tuning.interpolate(zero, fine, a)
        pred = run_large(model, p, ds, s, ["id_val"], want_states=False)[0]["id_val"]
        scores[str(a)] = compute(ds.metric, pred, ds.splits["id_val"].labels)
        if np.isfinite(scores[str(a)]) and (
                best is None or (scores[str(a)] < scores[str(best)] if lower else scores[str(a)] > scores[str(best)])):
            best = a  # first best, a ascending
    best = 1.0 if best is None else best
    preds, _ = run_large(model, tuning.interpolate(zero, fine, best), ds, s, roles_of(ds), False)
    return RunOutput(predictions=preds, extras={"alpha": best, "id_val_by_alpha": scores})


def a1(ctx: RunContext, family: str) -> RunOutput:
    """A1: the selected ft averaged with a second ft at seed + 1000 and the selected lr."""
    info = training.load_run_info(ctx.deps["ft"])
    other = train_large(ctx, family, "ft", seed=ctx.seed + 1000, lr=float(info["lr"]), write=False)
    mine = ensembles.load(ctx.deps["ft"])
    preds = {r: (mine[r] + other.predictions[r]) / 2 for r in other.predictions}
    return RunOutput(predictions=preds, diverged=other.diverged,
                     extras={"lr": info["lr"], "second_seed": ctx.seed + 1000})


# ------------------------------------------------------------------ LEVI and the heads methods
def small_model(ds: Dataset, s) -> nn.Module:
    if s["modality"] == "vision":
        return ConvSmall(features=s["small_conv"])
    return RecSmall(vocab_sizes=tuple((k, int(v)) for k, v in sorted(ds.vocab_sizes.items())),
                    embed_dim=s["embed_dim"], hidden=s["small_hidden"])


def replace_unknown(batch: dict, keys, frac: float, seed: int, step: int) -> dict:
    """Each categorical id in ``keys`` becomes 0 (unknown) with probability ``frac``; the draw
    is a pure function of (seed, step)."""
    if frac <= 0 or not keys:
        return batch
    rng = np.random.default_rng(np.random.SeedSequence([seed, _S_UNK, step]))
    out = dict(batch)
    for k in keys:
        a = batch[k]
        out[k] = np.where(rng.random(a.shape) < frac, 0, a).astype(a.dtype)
    return out


@functools.partial(jax.jit, static_argnums=0)
def _heads_eval(model: TaskHeads, variables, small, states):
    return model.apply(variables, small, states, train=False)


def train_heads(ctx: RunContext, family: str, states: dict[str, np.ndarray] | None,
                layers: tuple[int, ...], use_small: bool, n_heads: int, tag: str) -> RunOutput:
    """Train ``TaskHeads`` on cached states (``layers`` are state indices; empty: none)."""
    s = resolve_settings(ctx, family)
    ds = ctx.dataset
    lr = _lr(ctx)
    roles = roles_of(ds)
    if layers:
        S = next(iter(states.values())).shape[0]
        for k in layers:
            if not 0 <= k < S:
                raise ConfigError(f"layer {k} does not exist: the large model has states 0..{S - 1}")
    st = {r: tuple(np.asarray(states[r][k], np.float32) for k in layers) if layers else () for r in roles}
    small = small_model(ds, s) if use_small else None
    model = TaskHeads(small=small, adapter_hidden=s["adapter_hidden"], n_out=n_out(ds),
                      n_heads=n_heads, out_bias=out_bias(ds))
    small_in = {r: dict(ds.splits[r].small) for r in roles} if use_small else {r: {} for r in roles}
    train = ds.splits["train"]
    init_small = {k: jnp.asarray(v[:2]) for k, v in small_in["train"].items()}
    variables = model.init(jax.random.PRNGKey(ctx.seed * 1000 + _S_INIT), init_small,
                           tuple(jnp.asarray(a[:2]) for a in st["train"]), False)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    data = {**{f"small.{k}": v for k, v in small_in["train"].items()},
            **{f"state.{j}": a for j, a in enumerate(st["train"])}, "y": train.labels}
    n_states = len(st["train"])
    small_keys = sorted(small_in["train"])

    def apply_fn(p, ex, batch):
        sm = {k: batch[f"small.{k}"] for k in small_keys}
        sts = tuple(batch[f"state.{j}"] for j in range(n_states))
        if ex:
            out, upd = model.apply({"params": p, **ex}, sm, sts, train=True, mutable=list(ex))
            return out, upd
        return model.apply({"params": p}, sm, sts, train=True), ex

    unk_keys = [f"small.{k}" for k in small_keys if k in ds.vocab_sizes] if use_small else []
    transform = (lambda b, t: replace_unknown(b, unk_keys, s["unknown_id_frac"], ctx.seed, t)) \
        if unk_keys and s["unknown_id_frac"] > 0 else None
    params, extra, losses, bad = fit(apply_fn, params, extra, data, len(train), s, lr, ctx.seed,
                                     s["head_epochs"], ds.task, cache_key=("heads", model, n_states, tuple(small_keys)),
                                     transform=transform)
    preds = {}
    bs = s["eval_batch_size"]
    for r in roles:
        n = len(ds.splits[r])
        arrays = {**{f"small.{k}": v for k, v in small_in[r].items()},
                  **{f"state.{j}": a for j, a in enumerate(st[r])}}
        if not arrays:  # pragma: no cover (a model always reads something)
            raise ConfigError("a heads model with neither small model nor states")
        outs = []
        for lo, hi in _batches(n, bs):
            b = _take(arrays, lo, hi, bs)
            o = _heads_eval(model, {"params": params, **extra},
                            {k: b[f"small.{k}"] for k in small_keys},
                            tuple(b[f"state.{j}"] for j in range(n_states)))
            outs.append(np.asarray(o)[: hi - lo])
        preds[r] = _to_prediction(np.concatenate(outs), ds)
    training.save_params(ctx.workdir, {"params": params, **extra},
                         {"method": tag, "lr": lr, "seed": ctx.seed})
    extras = _loss_extras(losses, bad)
    extras["heads"] = n_states or n_heads
    extras["layers"] = list(layers)
    extras["trainable_params"] = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
    return RunOutput(predictions=preds, diverged=bad, extras=extras)


def _num_layers(s) -> int:
    return get_config(s["backbone"]).num_layers


def levi_on(ctx: RunContext, family: str, source: str, tag: str) -> RunOutput:
    s = resolve_settings(ctx, family)
    states = pretrained_states(ctx.dataset, s) if source == "pretrained" else dep_states(ctx, source, s)
    L = _num_layers(s)
    return train_heads(ctx, family, states, tuple(range(1, L + 1)), True, 1, tag)


def a3(ctx: RunContext, family: str) -> RunOutput:
    s = resolve_settings(ctx, family)
    L = _num_layers(s)
    return train_heads(ctx, family, pretrained_states(ctx.dataset, s), tuple(range(1, L + 1)),
                       False, 1, "a3")


def a4(ctx: RunContext, family: str) -> RunOutput:
    return train_heads(ctx, family, None, (), True, 1, "a4")


def a5(ctx: RunContext, family: str) -> RunOutput:
    L = _num_layers(resolve_settings(ctx, family))
    return train_heads(ctx, family, None, (), True, L, "a5")


def layer_k(ctx: RunContext, family: str, k: str) -> RunOutput:
    s = resolve_settings(ctx, family)
    return train_heads(ctx, family, pretrained_states(ctx.dataset, s), (int(k),), False, 1, f"layer/{k}")


# ------------------------------------------------------------------ registration
def _register(family: str) -> None:
    for m in ("ft", "ht", "fs", "lp_ft", "lora"):
        implements(m, family)(functools.partial(lambda ctx, m, f: train_large(ctx, f, m), m=m, f=family))
    implements("lp", family)(lambda ctx, f=family: lp(ctx, f))
    implements("ft_zeroshot", family)(lambda ctx, f=family: ft_zeroshot(ctx, f))
    implements("a1", family)(lambda ctx, f=family: a1(ctx, f))
    implements("levi", family)(lambda ctx, f=family: levi_on(ctx, f, "ht", "levi"))
    implements("levi/pretrained", family)(lambda ctx, f=family: levi_on(ctx, f, "pretrained", "levi/pretrained"))
    implements("levi/ft", family)(lambda ctx, f=family: levi_on(ctx, f, "ft", "levi/ft"))
    implements("levi/lora", family)(lambda ctx, f=family: levi_on(ctx, f, "lora", "levi/lora"))
    implements("a3", family)(lambda ctx, f=family: a3(ctx, f))
    implements("a4", family)(lambda ctx, f=family: a4(ctx, f))
    implements("a5", family)(lambda ctx, f=family: a5(ctx, f))
    implements("layer/<k>", family)(lambda ctx, k, f=family: layer_k(ctx, f, k))
    ensembles.register_for(family)


for _family in FAMILIES:
    _register(_family)
