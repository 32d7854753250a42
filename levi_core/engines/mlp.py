"""``MLPEngine``: the synthetic experiment's 3-layer network (the paper's E.8) as a large model.

* Pre-training is a pure function of the dataset and the settings (``pretrain_seed``,
  ``pretrain_epochs``, ``pretrain_lr``, ``hidden``, ``batch_size``): it does not depend on the
  job's seed, as the paper's real experiments fine-tune one fixed checkpoint, so every job
  recomputes the same network (memoised within a process; no disk cache).
* Parameters are initialised with numpy from ``SeedSequence([seed, stream])`` (LeCun-normal
  kernels drawn in sorted parameter-path order, zero biases), so a job is bit-reproducible in a
  fresh process and the init compiles nothing.
* ``ft`` starts from the whole pre-trained net (its head included: the pre-training task has
  the same label); ``lp`` trains a fresh head on the last hidden layer; ``ht`` trains the last
  half of the hidden layers (``layer_i``, ``i >= L - L // 2``) and the head.
* Layer states: 0 = the raw features, 1..L = the output of each layer (the hidden layers, then
  the logits); LEVI reads 1..L (the raw input is not a pre-trained view: the small model
  already reads it). A dependency's states are recomputed from its saved parameters.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from levi_core import training
from levi_core.data.base import Dataset
from levi_core.engines.base import S_HEAD, S_INIT, S_PRETRAIN, Engine
from levi_core.errors import ConfigError
from levi_core.models.mlp import MLP
from levi_core.models.small import MLPSmall

_PRETRAINED: dict[Any, Any] = {}


def numpy_init(module: nn.Module, seed_seq: list[int], *inputs) -> dict:
    """Parameters of ``module`` drawn with numpy from ``seed_seq``: kernels LeCun normal
    (untruncated, std 1/sqrt(fan_in)), biases zero. Only shapes come from flax
    (``eval_shape``: nothing is compiled, where jax.random's init compiles a program per
    parameter shape)."""
    shapes = jax.eval_shape(lambda k: module.init(k, *inputs)["params"],
                            jax.ShapeDtypeStruct((2,), jnp.uint32))
    flat = traverse_util.flatten_dict(shapes)
    rng = np.random.default_rng(np.random.SeedSequence(seed_seq))
    out = {}
    for path in sorted(flat):
        shape = flat[path].shape
        w = rng.standard_normal(shape) / np.sqrt(shape[0]) if path[-1] == "kernel" else np.zeros(shape)
        out[path] = jnp.asarray(np.asarray(w, dtype=np.float32))
    return traverse_util.unflatten_dict(out)


@functools.partial(jax.jit, static_argnums=0)
def _logits_and_states(model: MLP, params, x):
    logits, states = model.apply({"params": params}, x, return_layers=True)
    return logits, tuple(states)


def _split(p) -> dict:
    return {"body": {k: v for k, v in p.items() if k != "head"}, "head": p["head"]}


def _join(p) -> dict:
    return {**p["body"], "head": p["head"]}


class MLPEngine(Engine):
    def __init__(self, ds: Dataset, s, cache_dir: str | None = None):
        if "pretrain" not in ds.splits:
            raise ConfigError(f"{ds.name}: the MLP engine needs a 'pretrain' split")
        self.ds, self.s = ds, s
        self.task = ds.task
        self.n_out = int(ds.num_classes)
        self.model = MLP(hidden=s.hidden, num_classes=self.n_out)
        self.num_layers = len(s.hidden) + 1
        self.head_state = len(s.hidden)
        self.optimizer = "adam"
        self.batch_size = s.batch_size
        self.eval_batch_size = max(len(sp) for sp in ds.splits.values())
        self.epochs = self.head_epochs = s.epochs
        self.adapter_hidden = s.adapter_hidden
        self.levi_layers = tuple(range(1, self.num_layers + 1))
        self.cache_key = ("mlp", self.model)
        self._x1 = jnp.asarray(ds.splits["train"].large["x"][:1])

    # ------------------------------------------------------------ parameters
    def _pretrained(self):
        s, ds = self.s, self.ds
        key = (ds.fingerprint, str(ds.info.get("options")), s.hidden, s.pretrain_epochs,
               s.pretrain_lr, s.pretrain_seed, s.batch_size)
        if key not in _PRETRAINED:
            split = ds.splits["pretrain"]
            params = numpy_init(self.model, [s.pretrain_seed, S_PRETRAIN], self._x1)
            idx = training.batch_indices(len(split), s.batch_size, s.pretrain_epochs,
                                         [s.pretrain_seed, S_PRETRAIN])
            data = {"x": np.asarray(split.large["x"]), "y": np.asarray(split.labels)}
            params, _, _, bad = training.fit(self._apply_flat, params, {}, data, idx,
                                             s.pretrain_lr, self.task, cache_key=("mlp-flat", self.model))
            if bad:
                raise RuntimeError("pre-training of the synthetic large model diverged")
            _PRETRAINED[key] = params
        return _PRETRAINED[key]

    def _apply_flat(self, p, extra, batch):
        return self.model.apply({"params": p}, batch["x"])[:, None, :], extra

    def start(self, kind: str, seed: int):
        if kind == "random":
            return _split(numpy_init(self.model, [seed, S_INIT], self._x1))
        return _split(self._pretrained())

    def new_head(self, seed: int):
        return numpy_init(self.model, [seed, S_HEAD], self._x1)["head"]

    def with_head(self, head):
        return {"body": _split(self._pretrained())["body"], "head": head}

    def labels(self, params, mode: str):
        if mode == "all":
            return None
        if mode != "half":
            raise ConfigError(f"the MLP engine has no tuning mode {mode!r}")
        first = len(self.s.hidden) - len(self.s.hidden) // 2

        def trainable(path):
            return path[0] == "head" or int(path[1][len("layer_"):]) >= first

        return training.path_labels(params, trainable)

    def init_module(self, module: nn.Module, seed: int, *inputs) -> dict:
        return {"params": numpy_init(module, [seed, S_INIT], *inputs)}

    def load_trained(self, workdir: Path):
        return training.merge(self.start("pretrained", 0), training.load_params(workdir))

    # ------------------------------------------------------------ computation
    def apply(self, params, extra, batch):
        return self._apply_flat(_join(params), extra, batch)

    def train_data(self) -> dict[str, np.ndarray]:
        train = self.ds.splits["train"]
        return {"x": np.asarray(train.large["x"]), "y": np.asarray(train.labels)}

    def _forward(self, params, roles):
        x = np.concatenate([self.ds.splits[r].large["x"] for r in roles])
        cuts = list(np.cumsum([len(self.ds.splits[r]) for r in roles])[:-1])
        logits, states = _logits_and_states(self.model, _join(params), jnp.asarray(x))
        split = lambda a: dict(zip(roles, np.split(np.asarray(a), cuts)))  # noqa: E731
        return split(logits), [split(x)] + [split(s) for s in states]

    def predict(self, params, roles, keep_states_in: Path | None = None, parts: Path | None = None):
        logits, _ = self._forward(params, list(roles))
        return {r: training.to_prediction(l[:, None, :], self.task) for r, l in logits.items()}

    def layer_states(self, source: str, deps: Mapping[str, Path]) -> dict[str, list]:
        if source == "pretrained":
            params = _split(self._pretrained())
        elif source in deps:
            params = self.load_trained(deps[source])
        else:
            raise ConfigError(f"this method needs the selected {source!r} run (deps)")
        roles = self.ds.eval_roles
        _, states = self._forward(params, roles)
        return {r: [st[r] for st in states] for r in roles}

    def small_model(self) -> nn.Module:
        return MLPSmall(hidden=self.s.small_hidden)

    def small_inputs(self, role: str) -> dict[str, np.ndarray]:
        return {"x": np.asarray(self.ds.splits[role].small["x"])}
