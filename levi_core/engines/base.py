"""The model-engine interface: what a method needs from a large model, whatever it is.

Every method is written once (``levi_core.methods.standard``, ``levi_core.methods.levi``)
against this interface; an engine implements it for one kind of large model:

* ``MLPEngine`` (``tabular``): the 3-layer network of the paper's E.8, pre-trained in-process;
* ``TransformerEngine`` (``text``, ``vision``): T5 / BERT / ViT backbones with a Dense head.

Parameters are always ``{"body": ..., "head": ...}`` (the head is what ``lp`` trains). An engine
owns how its parameters are initialised (so that each family's numbers stay reproducible),
how inputs become batches, every layer's states, and its tuning modes as optimizer masks.

Layer states are indexed ``0..L``: state 0 is the input side (the embedding output of a
transformer; the raw features of the MLP), state ``k`` the k-th layer. LEVI and A3 read states
``1..L`` (``levi_layers``), ``layer/<k>`` reads state k, ``lp``'s head reads ``head_state``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import numpy as np

from levi_core.data.base import Dataset
from levi_core.errors import ConfigError
from levi_core.training import COMPILER_OPTIONS

# numpy SeedSequence / PRNG streams: fixed ints, never Python's hash()
S_PRETRAIN, S_INIT, S_ORDER, S_HEAD, S_UNK = 1, 2, 3, 4, 5  # (6: the training draw, data.base)
FS_SEED_OFFSET = 10_000


class Engine:
    """The interface (and shared helpers). Attributes set by each engine:

    ``ds`` (the dataset), ``task``, ``n_out``, ``num_layers`` (L), ``head_state``,
    ``optimizer``, ``batch_size``, ``eval_batch_size``, ``epochs``, ``head_epochs``,
    ``adapter_hidden``, ``levi_layers`` (the states LEVI and A3 adapt; default ``1..L``),
    ``unknown_id_frac``, ``cache_key`` (hashable: identifies ``apply``).
    """

    ds: Dataset
    task: str
    n_out: int
    num_layers: int
    head_state: int
    optimizer: str
    batch_size: int
    eval_batch_size: int
    epochs: int
    head_epochs: int
    adapter_hidden: int
    levi_layers: tuple[int, ...]
    unknown_id_frac: float = 0.0
    train_examples: int | None = None  # large-model training on a seeded draw of the train split
    head_patience: int | None = None  # heads: early stopping on id_val (None: fixed epochs)
    # large-model training compiled with XLA's optimisations: True, or None to decide by the
    # run's length (``training.OPTIMIZE_STEPS``)
    optimize_large: bool | None = None
    cache_key: Any

    # ------------------------------------------------------------ parameters
    def start(self, kind: str, seed: int):
        """Where training starts: ``pretrained`` (ft, ht, lora) or ``random`` (fs)."""
        raise NotImplementedError

    def new_head(self, seed: int):
        """A fresh head (lp), on ``state[head_state]``."""
        raise NotImplementedError

    def with_head(self, head):
        """The pre-trained body with ``head`` (lp_ft's start, WiSE-FT's zero-shot end)."""
        raise NotImplementedError

    def add_lora(self, params, seed: int):
        raise ConfigError(f"lora needs a transformer backbone, not a {type(self).__name__}")

    def labels(self, params, mode: str):
        """The optimizer mask of a tuning mode (None: everything trains)."""
        raise NotImplementedError

    def init_module(self, module: nn.Module, seed: int, *inputs) -> dict:
        """Variables of a module trained on top of this engine (LEVI's heads)."""
        raise NotImplementedError

    def load_trained(self, workdir: Path):
        """The model a training job saved (only its trained leaves are on disk)."""
        raise NotImplementedError

    # ------------------------------------------------------------ computation
    def apply(self, params, extra, batch):
        """[B, 1, O] outputs for training, and the (unchanged) extra state."""
        raise NotImplementedError

    def train_data(self) -> dict[str, np.ndarray]:
        """The large model's training inputs and ``y``."""
        raise NotImplementedError

    def predict(self, params, roles, keep_states_in: Path | None = None,
                parts: Path | None = None) -> dict[str, np.ndarray]:
        """Predictions per role; with ``keep_states_in``, the layer states are kept there for
        dependants (``layer_states(dep)``); with ``parts``, a long pass keeps its finished
        chunks there and resumes from them (engines whose passes are short ignore it)."""
        raise NotImplementedError

    def layer_states(self, source: str, deps: Mapping[str, Path]) -> dict[str, list]:
        """role -> states ``0..L`` ([N, D] each) of the frozen large model ``source``:
        ``pretrained`` or the name of a dependency whose selected run trained it."""
        raise NotImplementedError

    def small_model(self) -> nn.Module:
        raise NotImplementedError

    def small_inputs(self, role: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def frozen_lower(self, mode: str):
        """A shortcut for a tuning mode whose lower layers are frozen (``ht``): an object with
        ``data()``, ``apply``, ``cache_key`` and ``predict(params, roles, keep_states_in)``
        used in place of the engine's, or None (no shortcut: the full model runs)."""
        return None

    def trim_batch(self, batch: dict) -> dict:
        """A batch (or a chunk of stacked batches) with padding the model does not read cut
        off; the identity unless an engine pads its inputs (text)."""
        return batch

    def unknown_keys(self) -> list[str]:
        """Small-model inputs that are categorical ids (row 0 = unknown)."""
        return []

    # ------------------------------------------------------------ shared helpers
    def out_bias(self) -> float:
        """Output bias of new heads: the train mean rating for regression, so training
        starts at the mean predictor."""
        if self.task == "regression":
            return float(np.mean(self.ds.splits["train"].labels))
        return 0.0

    def batch_order(self, seed: int, epochs: int) -> np.ndarray:
        from levi_core.training import batch_indices

        return batch_indices(len(self.ds.splits["train"]), self.batch_size, epochs, [seed, S_ORDER])

    def large_order(self, seed: int) -> np.ndarray:
        """Minibatches of a large-model run: ``epochs`` passes over the training split (under
        ``train_examples`` the api has already cut it to the seed's draw,
        ``levi_core.data.base.with_train_draw``)."""
        return self.batch_order(seed, self.epochs)

    @property
    def prediction_roles(self) -> list[str]:
        """The roles a large-model run predicts: every evaluated role, but the training split
        when the run trained on a draw of it (scoring 72,914 mostly unseen training rows per
        run would cost more than the training; dependants that need the training rows' states
        compute them once per selected model, ``layer_states``)."""
        roles = list(self.ds.eval_roles)
        return [r for r in roles if r != "train"] if self.train_examples is not None else roles

    def selector(self, predict) -> Callable[[], Any] | None:
        """A factory of ``training.EpochSelect`` for a heads run (None without
        ``head_patience``): ``predict(params, extra, role)`` gives predictions, scored on
        ``id_val`` in the metric's direction after every epoch."""
        if self.head_patience is None or "id_val" not in self.ds.splits:
            return None
        from levi_core import metrics, training

        labels = self.ds.splits["id_val"].labels
        sign = 1.0 if metrics.lower_is_better(self.ds.metric) else -1.0
        n = len(self.ds.splits["train"])
        per_epoch = max(1, n // max(1, min(self.batch_size, n)))

        def score(params, extra):
            return sign * metrics.compute(self.ds.metric, predict(params, extra, "id_val"), labels)

        return lambda: training.EpochSelect(per_epoch, score, self.head_patience)

    def check_layer(self, k: int) -> None:
        if not 0 <= k <= self.num_layers:
            raise ConfigError(f"layer {k} does not exist: the large model has states "
                              f"0..{self.num_layers}")


def batches(n: int, bs: int):
    for i in range(0, n, bs):
        yield i, min(i + bs, n)


def take(arrays: Mapping[str, np.ndarray], lo: int, hi: int, bs: int) -> dict[str, np.ndarray]:
    """Rows lo:hi, padded to bs rows (one static shape, one compilation)."""
    out = {}
    for k, a in arrays.items():
        part = np.asarray(a[lo:hi])
        if hi - lo < bs:
            part = np.concatenate([part, np.zeros((bs - (hi - lo),) + part.shape[1:], part.dtype)])
        out[k] = part
    return out


def replace_unknown(batch: dict, keys, frac: float, seed: int, step: int) -> dict:
    """Each categorical id in ``keys`` becomes 0 (unknown) with probability ``frac``; the draw
    is a pure function of (seed, step), so row 0 of every embedding table is trained and
    ids unseen in training (0, as the loaders map them) get a trained row."""
    if frac <= 0 or not keys:
        return batch
    rng = np.random.default_rng(np.random.SeedSequence([seed, S_UNK, step]))
    out = dict(batch)
    for k in keys:
        a = batch[k]
        out[k] = np.where(rng.random(a.shape) < frac, 0, a).astype(a.dtype)
    return out


def init_jit(module, key, *inputs) -> dict:
    """``module.init(key, *inputs)`` as one compiled program per (module, shapes) in a process.

    Flax runs ``init`` eagerly, op by op, and every op of a new shape is compiled on its own,
    so initialising a heads model is mostly compiling; one program per model compiles once.
    Trailing Python flags (``train=False``) stay static."""
    arrays = list(inputs)
    flags = []
    while arrays and isinstance(arrays[-1], (bool, int, type(None))):
        flags.insert(0, arrays.pop())
    return _init_program(module, key, tuple(arrays), tuple(flags))


# run once per job: compiled without XLA's backend optimisations, as short training runs are
@functools.partial(jax.jit, static_argnums=(0, 3), compiler_options=COMPILER_OPTIONS)
def _init_program(module, key, arrays, flags):
    return module.init(key, *arrays, *flags)


@functools.partial(jax.jit, static_argnums=0)
def apply_heads(model, variables, small, states):
    return model.apply(variables, small, states, train=False)
