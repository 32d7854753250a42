"""``TransformerEngine``: T5 / BERT (text) and ViT (vision) backbones with a Dense head.

* Inputs: text rows are tokenized once per process (the backbone's tokenizer; a hash tokenizer
  for random test backbones); images are uint8, scaled to [-1, 1] and resized to the
  backbone's image size inside the compiled program.
* The large model is ``{"body": backbone, "head": Dense(n_out)}`` on the pooled final state
  (masked mean for text, CLS for ViT). The fixed "pre-trained" model is ``load_backbone``
  (``weights=pretrained``) or ``init_backbone(config, seed=0)`` (``weights=random``, smoke runs);
  ``fs`` starts from ``init_backbone(config, 10000 + seed)``. Heads: flax's default kernel init
  from ``PRNGKey(seed * 1000 + 4)`` and the output bias at the train mean rating.
* Layer states (``select_states``): the embedding output, then one per block, the last one
  final-normed for pre-LN backbones (T5, ViT): ``L + 1`` pooled states. States of the
  pre-trained model go through the feature cache (``levi_core.features``); a fine-tuned model's
  are written by the job that trained it into its own folder.
* Tuning modes are ``levi_core.backbones.tuning`` masks: ``all``, ``half`` (ht), ``head``,
  ``lora``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from levi_core import features as feature_cache
from levi_core import training
from levi_core.backbones import build_module, get_config, init_backbone, load_backbone, tuning
from levi_core.backbones.outputs import default_pooling, pool
from levi_core.backbones.tokenization import tokenizer_for
from levi_core.data.base import Dataset
from levi_core.engines.base import FS_SEED_OFFSET, S_HEAD, S_INIT, Engine, batches, take
from levi_core.errors import ConfigError
from levi_core.models.small import ConvSmall, RecSmall

_PRETRAINED: dict[Any, Any] = {}
_TOKENIZED: dict[Any, Any] = {}


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
        size = config.image_size
        if x.shape[1] != size or x.shape[2] != size:
            x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
        return module.apply({"params": bparams}, x)
    return module.apply({"params": bparams}, batch["ids"], batch["mask"])


def _pooled(module, config, bparams, batch):
    """[S, B, D] pooled layer states."""
    out = _backbone_call(module, config, bparams, batch)
    kind = default_pooling(config.family)
    return jnp.stack([pool(h, out.mask, kind) for h in select_states(out.hidden_states, config)])


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _forward(module, config, head: nn.Module, params, batch):
    states = _pooled(module, config, params["body"], batch)
    return head.apply({"params": params["head"]}, states[-1]), states


class TransformerEngine(Engine):
    def __init__(self, ds: Dataset, s, cache_dir: str | None = None):
        self.ds, self.s, self.cache_dir = ds, s, cache_dir
        self.modality = ds.modality
        self.config = get_config(s.backbone)
        if (self.modality == "vision") != (self.config.family == "vit"):
            raise ConfigError(f"backbone {s.backbone!r} does not read {self.modality} inputs "
                              f"({ds.name}); set settings {self.modality}.backbone")
        if self.modality == "text" and not s.max_len:
            raise ConfigError("text settings need max_len")
        self.task = ds.task
        self.n_out = 1 if ds.task == "regression" else int(ds.num_classes)
        self.num_layers = self.head_state = self.config.num_layers
        self.optimizer = s.optimizer
        self.batch_size = int(s.batch_size or ds.batch_size or 200)
        self.eval_batch_size = int(s.eval_batch_size or max(self.batch_size, 256))
        self.epochs = s.epochs
        self.head_epochs = s.head_epochs if s.head_epochs is not None else s.epochs
        self.adapter_hidden = s.adapter_hidden
        self.levi_layers = tuple(s.levi_layers) or tuple(range(1, self.num_layers + 1))
        self.unknown_id_frac = getattr(s, "unknown_id_frac", 0.0)
        self.module = build_module(self.config)
        self.head = nn.Dense(self.n_out)
        self.cache_key = ("transformer", self.config, self.n_out)

    # ------------------------------------------------------------ parameters
    def pretrained_body(self):
        s = self.s
        key = (s.backbone, s.weights, str(s.weights_dir))
        if key not in _PRETRAINED:
            if s.weights == "pretrained":
                _PRETRAINED[key] = load_backbone(s.backbone, s.weights_dir)[1]
            else:
                _PRETRAINED[key] = init_backbone(self.config, seed=0)[1]
        return _PRETRAINED[key]

    def new_head(self, seed: int):
        p = self.head.init(jax.random.PRNGKey(seed * 1000 + S_HEAD),
                           jnp.zeros((1, self.config.hidden_size), jnp.float32))["params"]
        return {"kernel": p["kernel"], "bias": jnp.full_like(p["bias"], self.out_bias())}

    def start(self, kind: str, seed: int):
        if kind == "random":
            body = init_backbone(self.config, seed=FS_SEED_OFFSET + seed)[1]
        else:
            body = self.pretrained_body()
        return {"body": body, "head": self.new_head(seed)}

    def with_head(self, head):
        return {"body": self.pretrained_body(), "head": head}

    def add_lora(self, params, seed: int):
        if self.s.lora_rank <= 0:
            raise ConfigError(f"lora needs settings {self.modality}.lora_rank > 0")
        self.config = get_config(self.s.backbone, lora_rank=self.s.lora_rank)
        self.module = build_module(self.config)
        self.cache_key = ("transformer", self.config, self.n_out)
        return {**params, "body": tuning.add_lora(params["body"], self.config, seed)}

    def labels(self, params, mode: str):
        if mode == "all":
            return None
        return tuning.mode_labels(params, mode, self.config.num_layers, backbone_key="body")

    def init_module(self, module: nn.Module, seed: int, *inputs) -> dict:
        return dict(module.init(jax.random.PRNGKey(seed * 1000 + S_INIT), *inputs))

    def load_trained(self, workdir: Path):
        info = training.load_run_info(workdir)
        base = self.start("pretrained", 0)
        if info.get("lora_rank"):
            base = self.add_lora(base, int(info["seed"]))
        return training.merge(base, training.load_params(workdir))

    # ------------------------------------------------------------ inputs
    def inputs(self, role: str) -> dict[str, np.ndarray]:
        """``{"ids", "mask"}`` (tokenized once per process) or ``{"image"}`` (uint8)."""
        split = self.ds.splits[role]
        if self.modality == "vision":
            return {"image": np.asarray(split.large["image"])}
        key = (self.s.backbone, self.s.max_len, self.ds.fingerprint, role)
        if key not in _TOKENIZED:
            tok = tokenizer_for(self.s.backbone, self.s.weights_dir, self.s.max_len)
            ids, mask = tok(list(split.large["text"]), self.s.max_len)
            _TOKENIZED[key] = {"ids": ids, "mask": mask}
        return _TOKENIZED[key]

    def train_data(self) -> dict[str, np.ndarray]:
        return {**self.inputs("train"), "y": self.ds.splits["train"].labels}

    def apply(self, params, extra, batch):
        states = _pooled(self.module, self.config, params["body"], batch)
        return self.head.apply({"params": params["head"]}, states[-1])[:, None, :], extra

    # ------------------------------------------------------------ computation
    def predict(self, params, roles, keep_states_in: Path | None = None):
        preds, states = {}, {}
        for role in roles:
            out, st = self.forward_role(params, role, keep_states_in is not None)
            preds[role] = training.to_prediction(out[:, None, :], self.task)
            if st is not None:
                states[role] = st
        if keep_states_in is not None:
            feature_cache.write_workdir_states(keep_states_in, states, self._feature_meta())
        return preds

    def forward_role(self, params, role: str, want_states: bool):
        n = len(self.ds.splits[role])
        fn = functools.partial(_forward, self.module, self.config, self.head, params)
        outs, sts = [], []
        x = self.inputs(role)
        for lo, hi in batches(n, self.eval_batch_size):
            o, st = fn(take(x, lo, hi, self.eval_batch_size))
            outs.append(np.asarray(o)[: hi - lo])
            if want_states:
                sts.append(np.asarray(st, np.float32)[:, : hi - lo])
        return np.concatenate(outs), (np.concatenate(sts, axis=1) if want_states else None)

    def _feature_meta(self) -> dict[str, Any]:
        return {"fingerprint": self.ds.fingerprint, "pooling": default_pooling(self.config.family),
                "max_len": getattr(self.s, "max_len", None), "backbone": self.s.backbone,
                "weights": self.s.weights}

    def _pretrained_states(self, roles) -> dict[str, np.ndarray]:
        s = self.s
        checkpoint = f"{s.backbone}:{s.weights}" + (":seed0" if s.weights == "random" else "")
        key = {"checkpoint": checkpoint, "fingerprint": self.ds.fingerprint,
               "pooling": default_pooling(self.config.family), "max_len": getattr(s, "max_len", None)}

        def compute(missing):
            params = {"body": self.pretrained_body(), "head": self.new_head(0)}
            return {r: self.forward_role(params, r, True)[1] for r in missing}

        return feature_cache.cached_states(self.cache_dir, key, roles, compute)

    def layer_states(self, source: str, deps: Mapping[str, Path]) -> dict[str, list]:
        roles = self.ds.eval_roles
        if source == "pretrained":
            st = self._pretrained_states(roles)
        else:
            if source not in deps:
                raise ConfigError(f"this method needs the selected {source!r} run (deps)")
            st = feature_cache.read_workdir_states(deps[source], self._feature_meta())
        return {r: [np.asarray(a, np.float32) for a in st[r]] for r in roles}

    def small_model(self) -> nn.Module:
        if self.modality == "vision":
            return ConvSmall(features=self.s.small_conv, pool=self.s.small_pool)
        return RecSmall(vocab_sizes=tuple((k, int(v)) for k, v in sorted(self.ds.vocab_sizes.items())),
                        embed_dim=self.s.embed_dim, hidden=self.s.small_hidden)

    def small_inputs(self, role: str) -> dict[str, np.ndarray]:
        return dict(self.ds.splits[role].small)

    def unknown_keys(self) -> list[str]:
        return sorted(k for k in self.ds.splits["train"].small if k in self.ds.vocab_sizes)
