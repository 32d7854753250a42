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
* The forward pass itself (``select_states``, ``trim_padding``, ``distinct_rows``, the
  compiled ``_forward``) is made of pure functions in ``levi_core.engines.forward``, shared
  with ``levi_core.engines.half``; this module holds the engine's state and caches.
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
from levi_core.backbones.outputs import default_pooling
from levi_core.backbones.tokenization import tokenizer_for
from levi_core.data.base import Dataset, fingerprint_splits
from levi_core.engines.base import FS_SEED_OFFSET, S_HEAD, S_INIT, Engine, batches, init_jit, take
from levi_core.engines.forward import _forward, _pooled, distinct_rows, gather_rows, trim_padding
from levi_core.engines.half import FrozenLower
from levi_core.errors import ConfigError
from levi_core.models.small import ConvSmall, RecSmall

_PRETRAINED: dict[Any, Any] = {}
_TOKENIZED: dict[Any, Any] = {}


class TransformerEngine(Engine):
    # a backbone step is costly and its program is shared by every learning rate and seed of a
    # grid (and cached on disk), so XLA's optimisations pay for their compile time even on
    # short runs; the MLP engine keeps the length rule (``training.OPTIMIZE_STEPS``), since
    # its short synthetic runs amplify the optimised code's different rounding
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
        return FrozenLower.for_engine(self, mode)

    def train_data(self) -> dict[str, np.ndarray]:
        return {**self.inputs("train"), "y": self.ds.splits["train"].labels}

    def apply(self, params, extra, batch):
        states = _pooled(self.module, self.config, params["body"], batch, self.compute_dtype)
        return self.head.apply({"params": params["head"]}, states[-1])[:, None, :], extra

    # ------------------------------------------------------------ computation
    def predict(self, params, roles, keep_states_in: Path | None = None, parts: Path | None = None):
        return self.predict_with(self.forward_roles, params, roles, keep_states_in, parts)

    def predict_with(self, forward_roles, params, roles, keep_states_in: Path | None = None,
                     parts: Path | None = None):
        """Predictions of ``roles`` from ``forward_roles(params, roles, want_states)`` (this
        engine's, or ht's upper blocks on its stored lower half: ``half.FrozenLower``) and, with
        ``keep_states_in``, their layer states written there for dependants to read. With
        ``parts`` (a folder named for these ``params``), an interrupted pass resumes from its
        finished chunks."""
        res = forward_roles(params, roles, keep_states_in is not None, parts=parts)
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

    def states_key(self, states: str, fingerprint: str, **fields) -> dict[str, Any]:
        """The fields that name a set of layer states of this backbone: their
        ``features.cache_key`` is the name of the cache entry on disk, and a job that keeps a
        trained model's states records them beside the states for its readers to check.

        ``states`` says which:

        * ``"pretrained"``: the fixed pre-trained model's pooled states
          (``<cache_dir>/features/``, ``_pretrained_states``), named by its checkpoint;
        * ``"boundary"``: ht's stored lower half (``<cache_dir>/boundary/``, ``engines.half``),
          named by the checkpoint; ``fields`` add the block ``boundary=k`` and the ``roles``;
        * ``"workdir"``: the pooled states a trained model's job writes into its own folder
          (``features.json``), named by backbone and weights (the job folder names the rest);
        * ``"trained"``: a trained model's pooled states computed later into
          ``<cache_dir>/trained_states/`` (``_trained_states``): the ``"workdir"`` fields and
          the compute dtype; ``fields`` add its parameters' digest ``params`` and the ``roles``.

        ``fingerprint`` names the data (the splits whose states these are). The field sets
        differ by history, not by design: a field added to a key names every existing entry
        anew, so each kept the fields it had (the pre-trained states name the compute dtype
        only when it is not float32: their key predates the option). ``tests/test_state_keys.py``
        pins the resulting names."""
        s = self.s
        key: dict[str, Any] = {}
        if states in ("pretrained", "boundary"):
            key["checkpoint"] = self.checkpoint
        elif states in ("workdir", "trained"):
            key.update(backbone=s.backbone, weights=s.weights)
        else:
            raise ValueError(f"unknown kind of layer states {states!r}")
        key["fingerprint"] = fingerprint
        if states != "boundary":
            key["pooling"] = default_pooling(self.config.family)
        key["max_len"] = s.max_len
        if states != "workdir" and (states != "pretrained" or self.compute_dtype != "float32"):
            key["compute_dtype"] = self.compute_dtype
        return {**key, **fields}

    def _feature_meta(self) -> dict[str, Any]:
        """What a trained model's job records beside the layer states it keeps."""
        return self.states_key("workdir", self.ds.fingerprint)

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
        def compute(missing, parts=None):
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
                    self.cache_dir, self.states_key("pretrained", fingerprint), group, compute,
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
            st = {}
            if (folder / feature_cache.FEATURES_META).is_file():
                st = feature_cache.read_workdir_states(folder, self._feature_meta())
            missing = [r for r in roles if r not in st]
            if missing:  # a run on a draw kept no training rows' states (or, older, none)
                st.update(feature_cache.read_workdir_states(
                    self._trained_states(folder, missing), self._feature_meta()))
        return {r: [np.asarray(a, np.float32) for a in st[r]] for r in roles}

    def _trained_states(self, dep: Path, roles) -> Path:
        """The layer states of ``roles`` of a trained model whose job did not keep them (a run
        on a draw of the training split predicts no training rows, ``prediction_roles``, so it
        keeps the evaluated roles' states only): computed once per trained model (keyed by its
        parameters' bytes and the roles) into the feature cache, by one job while the others
        wait, and read from there by every dependant (each LEVI learning rate)."""
        import hashlib
        import os
        import shutil
        import tempfile

        digest = hashlib.sha256((dep / training.PARAMS_FILE).read_bytes()).hexdigest()[:24]
        key = feature_cache.cache_key(self.states_key("trained", self.ds.fingerprint, params=digest,
                                                      roles=list(roles)))
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
                    run.predict(params, list(roles), keep_states_in=tmp,
                                parts=root / f"{key}.parts")
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
