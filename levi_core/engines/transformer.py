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
  ``lora``. ``ht`` with a cache folder trains and predicts on the stored output of its frozen
  lower half (``levi_core.engines.half``).
* No repeated work: predictions and layer states run each distinct example once across
  splits (``forward_roles``); text batches are cut to their longest row (``trim_padding``),
  evaluation in length order; ``compute_dtype`` bfloat16 runs the backbone on bfloat16 copies
  of its float32 parameters.
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
from levi_core import progress, training
from levi_core.backbones import build_module, get_config, get_preset, init_backbone, load_backbone, tuning
from levi_core.backbones.outputs import default_pooling, pool
from levi_core.backbones.tokenization import tokenizer_for
from levi_core.data.base import Dataset, fingerprint_splits
from levi_core.engines.base import FS_SEED_OFFSET, S_HEAD, S_INIT, Engine, batches, init_jit, take
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


class TransformerEngine(Engine):
    # a backbone step costs milliseconds and its program is shared by every learning rate and
    # seed of a grid (and cached on disk), so XLA's optimisations pay for their compile time
    # even on short runs (smoke Table 1: 82 -> 71 s); the MLP engine keeps the length rule,
    # since its short synthetic runs amplify the optimised code's different rounding
    optimize_large = True

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
        self.batch_size = s.train_batch_size(ds.batch_size)
        self.eval_batch_size = s.eval_batch(self.batch_size)
        self.epochs = s.epochs
        self.head_epochs = s.head_epochs if s.head_epochs is not None else s.epochs
        self.adapter_hidden = s.adapter_hidden
        self.levi_layers = tuple(s.levi_layers) or tuple(range(1, self.num_layers + 1))
        self.unknown_id_frac = s.unknown_id_frac
        self.train_examples = s.train_examples
        self.head_patience = s.head_patience
        self.module = build_module(self.config)
        self.head = nn.Dense(self.n_out)
        self.compute_dtype = s.compute_dtype
        self.cache_key = ("transformer", self.config, self.n_out, self.compute_dtype)

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
        p = init_jit(self.head, jax.random.PRNGKey(seed * 1000 + S_HEAD),
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
        self.cache_key = ("transformer", self.config, self.n_out, self.compute_dtype)
        return {**params, "body": tuning.add_lora(params["body"], self.config, seed)}

    def labels(self, params, mode: str):
        if mode == "all":
            return None
        return tuning.mode_labels(params, mode, self.config.num_layers, backbone_key="body")

    def init_module(self, module: nn.Module, seed: int, *inputs) -> dict:
        return dict(init_jit(module, jax.random.PRNGKey(seed * 1000 + S_INIT), *inputs))

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

    def trim_batch(self, batch: dict) -> dict:
        """Text: cut to the longest row, rounded up (``trim_padding``): training chunks run
        at their own length instead of ``max_len``."""
        return trim_padding(batch)

    def frozen_lower(self, mode: str):
        """Half-tuning from the frozen lower blocks' output, computed once per dataset and
        shared by every ``ht`` run (``levi_core.engines.half``); None where it does not apply."""
        from levi_core.engines.half import FrozenLower

        return FrozenLower.for_engine(self, mode)

    def train_data(self) -> dict[str, np.ndarray]:
        return {**self.inputs("train"), "y": self.ds.splits["train"].labels}

    def apply(self, params, extra, batch):
        states = _pooled(self.module, self.config, params["body"], batch, self.compute_dtype)
        return self.head.apply({"params": params["head"]}, states[-1])[:, None, :], extra

    # ------------------------------------------------------------ computation
    def predict(self, params, roles, keep_states_in: Path | None = None):
        res = self.forward_roles(params, roles, keep_states_in is not None)
        preds = {r: training.to_prediction(out[:, None, :], self.task) for r, (out, _) in res.items()}
        if keep_states_in is not None:
            feature_cache.write_workdir_states(keep_states_in, {r: st for r, (_, st) in res.items()},
                                               self._feature_meta())
        return preds

    def forward_role(self, params, role: str, want_states: bool):
        """(outputs [N, O], states [S, N, D] float16 or None) of one role."""
        return self.forward_roles(params, [role], want_states)[role]

    def forward_roles(self, params, roles, want_states: bool, label: str | None = None,
                      parts: Path | None = None) -> dict[str, tuple]:
        """role -> (outputs [N, O], states [S, N, D] float16 or None), every distinct example
        run once: MovieLens' OOD sets share thousands of ratings, and an example id names one
        example whichever split holds it (``distinct_rows``). Text rows go through in order of
        length, each batch cut to its longest row (``trim_padding``), so that evaluation batches
        carry little padding; states are float16, the precision they are stored in. With
        ``parts``, finished chunks are kept there and an interrupted pass resumes from them
        (``features.run_in_chunks``)."""
        roles = list(roles)
        xs = [self.inputs(r) for r in roles]
        src_role, src_row, inverse = distinct_rows(
            [self.ds.splits[r].example_ids for r in roles], xs)
        n = len(src_role)
        order = np.arange(n)
        if "mask" in xs[0]:  # length buckets: similar lengths share a batch
            lengths = np.concatenate([x["mask"].sum(axis=1) for x in xs])
            starts = np.cumsum([0] + [len(x["mask"]) for x in xs])[:-1]
            order = np.argsort(lengths[starts[src_role] + src_row], kind="stable")
        bs = self.eval_batch_size
        fn = functools.partial(_forward, self.module, self.config, self.head, params,
                               dtype=self.compute_dtype)
        out_u, st_u = None, None
        label = label or ("forward" if n > 20 * bs else None)  # a bar only for long passes
        if parts is not None:  # a chunk's rows depend on these: another pass, another folder
            parts = Path(parts) / f"n{n}-bs{bs}-c{feature_cache.chunk_size(bs)}-s{int(want_states)}"

        def compute(c_lo: int, c_hi: int) -> dict[str, np.ndarray]:
            outs, sts = [], []
            for lo, hi in batches(c_hi - c_lo, bs):
                sel = order[c_lo + lo:c_lo + hi]
                batch = trim_padding(take(gather_rows(xs, src_role[sel], src_row[sel]), 0, hi - lo, bs))
                o, st = fn(batch)
                pbar.update(hi - lo)
                outs.append(np.asarray(o)[: hi - lo])
                if want_states:
                    sts.append(np.asarray(st)[:, : hi - lo].astype(feature_cache.STORE_DTYPE))
            return {"out": np.concatenate(outs), **({"states": np.concatenate(sts, axis=1)}
                                                    if want_states else {})}

        def place(c_lo: int, c_hi: int, arrays) -> None:
            nonlocal out_u, st_u
            sel = order[c_lo:c_hi]
            o = arrays["out"]
            if out_u is None:
                out_u = np.zeros((n,) + o.shape[1:], o.dtype)
            out_u[sel] = o
            if want_states:
                st = arrays["states"]
                if st_u is None:
                    st_u = np.zeros((st.shape[0], n, st.shape[2]), feature_cache.STORE_DTYPE)
                st_u[:, sel] = st

        with progress.bar(label, total=n, unit="example") as pbar:
            feature_cache.run_in_chunks(parts, n, feature_cache.chunk_size(bs), compute, place,
                                        reused=pbar.update)
        if out_u is None:  # no rows at all
            out_u = np.zeros((0, self.n_out), np.float32)
        return {r: (out_u[inverse[i]], st_u[:, inverse[i]] if want_states else None)
                for i, r in enumerate(roles)}

    def _feature_meta(self) -> dict[str, Any]:
        return {"fingerprint": self.ds.fingerprint, "pooling": default_pooling(self.config.family),
                "max_len": self.s.max_len, "backbone": self.s.backbone,
                "weights": self.s.weights}

    @property
    def checkpoint(self) -> str:
        """Names the fixed pre-trained weights in cache keys (random ones: the seed-0 draw)."""
        s = self.s
        name = f"{s.backbone}:{s.weights}" + (":seed0" if s.weights == "random" else "")
        if s.weights == "pretrained" and get_preset(s.backbone).bundled:
            # weights this project builds can be rebuilt: their content names them
            from levi_core.backbones.weights import weights_identity

            name += ":" + weights_identity(s.backbone, s.weights_dir)["sha256"][:16]
        return name

    def _pretrained_states(self, roles) -> dict[str, np.ndarray]:
        """The frozen pre-trained model's states of ``roles``, cached. The training split and
        the evaluation splits are keyed apart (each by the fingerprint of its own splits): under
        a per-seed training draw (``with_train_draw``) the seeds share the evaluation entries
        and only the training rows are computed per seed."""
        s = self.s
        key = {"checkpoint": self.checkpoint,
               "pooling": default_pooling(self.config.family), "max_len": s.max_len}
        if self.compute_dtype != "float32":  # float32 entries keep the key they always had
            key["compute_dtype"] = self.compute_dtype

        def compute(missing, parts=None):
            from levi_core.engines.half import FrozenLower

            params = {"body": self.pretrained_body(), "head": self.new_head(0)}
            # an ht job's stored lower half holds states 0..k already: run the upper blocks only
            run = FrozenLower.if_stored(self) or self
            return {r: st for r, (_, st) in
                    run.forward_roles(params, missing, True, parts=parts).items()}

        out = {}
        for group in ([r for r in roles if r == "train"], [r for r in roles if r != "train"]):
            if group:
                fingerprint = fingerprint_splits({r: self.ds.splits[r] for r in group})
                out.update(feature_cache.cached_states(
                    self.cache_dir, {**key, "fingerprint": fingerprint}, group, compute,
                    resumable=True))
        return {r: out[r] for r in roles}

    def layer_states(self, source: str, deps: Mapping[str, Path]) -> dict[str, list]:
        roles = self.ds.eval_roles
        if source == "pretrained":
            st = self._pretrained_states(roles)
        else:
            if source not in deps:
                raise ConfigError(f"this method needs the selected {source!r} run (deps)")
            folder = Path(deps[source])
            if not (folder / feature_cache.FEATURES_META).is_file():
                folder = self._trained_states(folder, roles)
            st = feature_cache.read_workdir_states(folder, self._feature_meta())
        return {r: [np.asarray(a, np.float32) for a in st[r]] for r in roles}

    def _trained_states(self, dep: Path, roles) -> Path:
        """The layer states of a trained model whose job did not keep them (a run on a draw of
        the training split predicts no training rows, ``prediction_roles``): computed once per
        trained model (keyed by its parameters' bytes) into the feature cache, by one job while
        the others wait, and read from there by every dependant (each LEVI learning rate)."""
        import hashlib
        import os
        import shutil
        import tempfile

        digest = hashlib.sha256((dep / training.PARAMS_FILE).read_bytes()).hexdigest()[:24]
        key = feature_cache.cache_key({"params": digest, **self._feature_meta(),
                                       "compute_dtype": self.compute_dtype, "roles": list(roles)})
        root = Path(self.cache_dir) / "trained_states" if self.cache_dir else dep / "states"
        folder = root / key

        def build():
            info = training.load_run_info(dep)
            params = self.load_trained(dep)
            run = self.frozen_lower(info.get("mode", "all")) or self
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=key + ".", dir=root))
            try:
                with progress.phase("features"):
                    run.predict(params, list(roles), keep_states_in=tmp)
                os.replace(tmp, folder)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

        done = lambda: (folder / feature_cache.FEATURES_META).is_file()  # noqa: E731
        feature_cache.build_once(root / f"{key}.lock", done, build)
        return folder

    def small_model(self) -> nn.Module:
        if self.modality == "vision":
            return ConvSmall(features=self.s.small_conv, pool=self.s.small_pool)
        return RecSmall(vocab_sizes=tuple((k, int(v)) for k, v in sorted(self.ds.vocab_sizes.items())),
                        embed_dim=self.s.embed_dim, hidden=self.s.small_hidden)

    def small_inputs(self, role: str) -> dict[str, np.ndarray]:
        return dict(self.ds.splits[role].small)

    def unknown_keys(self) -> list[str]:
        return sorted(k for k in self.ds.splits["train"].small if k in self.ds.vocab_sizes)
