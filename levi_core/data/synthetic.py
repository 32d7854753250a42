"""The paper's Appendix E.8 synthetic spurious-feature experiment, as a dataset.

Three generated datasets of ``n`` (2,000) points each share a binary label ``y`` and one
transferable feature block ``x``; two spurious features ``s1`` and ``s2`` change roles:

==============  ==========================  ===========================  ======================
dataset         x (transferable)            s1 (pre-training spurious)   s2 (fine-tuning spur.)
==============  ==========================  ===========================  ======================
pre-training    correlated with y           agrees with y w.p. ``rho1``  absent (0)
fine-tuning     correlated with y           absent (0)                   agrees w.p. ``rho2``
test (OOD)      correlated with y           independent of y             independent of y
==============  ==========================  ===========================  ======================

Generative model (``sgn = 2y - 1``, ``y ~ Bernoulli(1/2)``):

* ``x = x_signal * sgn + N(0, I_{x_dim})``: the same law in every dataset, so x is the feature
  that transfers. With the defaults (``x_signal=0.5``, ``x_dim=4``) the Bayes accuracy of x
  alone is ``Phi(x_signal * sqrt(x_dim)) = Phi(1) = 84.1%``.
* a *present* spurious feature is ``s = z + s_noise * N(0, 1)`` with ``z = sgn`` with
  probability ``rho`` and ``z = -sgn`` otherwise. With ``rho=0.9`` and ``s_noise=0.5`` the
  accuracy of s alone is ``0.9 * Phi(2) + 0.1 * (1 - Phi(2)) = 88.2%``; on the test set
  ``rho = 1/2``, i.e. s is present with the same marginal but carries no information on y.
* an *absent* spurious feature is the constant 0 (``absent=zero``, the default), as in the
  paper's Lemma 2 where the fine-tuning data is ``x = [0, x2]``: gradient descent then never
  touches the first-layer weights that read it, so what the pre-trained net learnt about s1
  survives fine-tuning (Corollary 3). ``absent=noise`` instead draws it with ``rho = 1/2``.

Why these strengths (chosen a priori, before any model was trained; never tuned on test
accuracy): Lemma 1 needs the spurious feature to be *useful on the training distribution*, so
each spurious feature is made more predictive there than the transferable one (88% > 84%),
which makes an ERM learner lean on it; x is kept clearly informative (84%) so that a learner
that ignores s1 and s2 has something to gain on the test set; the test set removes every
spurious correlation, as in E.8 ("only x is correlated with y"). One strength ``rho`` is used
for both spurious features so a single knob sweeps "how spurious" the setting is
(``rho=0.5``: no spurious correlation at all).

Options (from the dataset id, e.g. ``synthetic:rho=0.7,data_seed=1``; all have defaults):
  rho (0.9), rho1, rho2 (default: rho), x_dim (4), x_signal (0.5), s_noise (0.5),
  absent (``zero`` | ``noise``), n (2000: points per generated set), val_frac (0.2),
  data_seed (0: the data, never the model seed).

Split roles: ``pretrain`` (the n pre-training points; only the pre-training of the large
model reads it), ``train`` / ``id_val`` (a fixed ``1 - val_frac`` / ``val_frac`` = 80/20 split of
the n fine-tuning points), ``id_test`` (another n points from the fine-tuning distribution),
``ood/test`` (the n test points). Inputs: ``small = large = {"x": float32 [N, x_dim + 2]}`` with
columns ``[x_1 .. x_{x_dim}, s1, s2]`` (the "large model" is the pre-trained MLP).
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np

from levi_core.data.base import Dataset, Split, register_dataset
from levi_core.data.common import DatasetOptions
from levi_core.errors import ConfigError
from levi_core.settings import coerce, type_hints

@dataclasses.dataclass(frozen=True)
class SyntheticOptions(DatasetOptions):
    """The options of a ``synthetic`` dataset id (see the module docstring); each field's
    annotation is how its text is read. ``parse_options`` reads them (with this dataset's own
    messages and range checks)."""

    rho: float = 0.9
    rho1: float | None = None
    rho2: float | None = None
    x_dim: int = 4
    x_signal: float = 0.5
    s_noise: float = 0.5
    absent: str = "zero"
    n: int = 2000
    val_frac: float = 0.2
    data_seed: int = 0


DEFAULTS: dict[str, object] = SyntheticOptions().resolved()
_HINTS = type_hints(SyntheticOptions)
# independent random streams, one per generated set
_STREAMS = {"pretrain": 0, "finetune": 1, "id_test": 2, "test": 3}


def parse_options(options: dict[str, str]) -> dict[str, object]:
    """Validate the id's string options and return the full, typed option dict."""
    out = dict(DEFAULTS)
    for key, raw in options.items():
        if key not in DEFAULTS:
            raise ConfigError(
                f"synthetic: unknown option {key!r}; known options: {', '.join(DEFAULTS)}"
            )
        number = float in (_HINTS[key], *typing.get_args(_HINTS[key]))
        try:
            val = coerce(_HINTS[key], raw)
            if number and not math.isfinite(val):
                raise ValueError
        except ValueError:
            kind = "a number" if number else "an integer"
            raise ConfigError(f"synthetic: option {key}={raw!r} must be {kind}") from None
        out[key] = val
    for key in ("rho", "rho1", "rho2"):
        v = out[key]
        if v is not None and not 0.0 <= v <= 1.0:  # type: ignore[operator]
            raise ConfigError(f"synthetic: {key}={v} must lie in [0, 1] (a probability)")
    if out["rho1"] is None:
        out["rho1"] = out["rho"]
    if out["rho2"] is None:
        out["rho2"] = out["rho"]
    if out["x_dim"] < 1:  # type: ignore[operator]
        raise ConfigError(f"synthetic: x_dim={out['x_dim']} must be >= 1")
    if out["n"] < 20:  # type: ignore[operator]
        raise ConfigError(f"synthetic: n={out['n']} must be >= 20")
    if out["s_noise"] < 0 or out["x_signal"] < 0:  # type: ignore[operator]
        raise ConfigError("synthetic: s_noise and x_signal must be >= 0")
    if not 0.0 < out["val_frac"] < 1.0:  # type: ignore[operator]
        raise ConfigError(f"synthetic: val_frac={out['val_frac']} must lie in (0, 1)")
    if out["data_seed"] < 0:  # type: ignore[operator]
        raise ConfigError(f"synthetic: data_seed={out['data_seed']} must be >= 0")
    if out["absent"] not in ("zero", "noise"):
        raise ConfigError(f"synthetic: absent={out['absent']!r} must be 'zero' or 'noise'")
    return out


def generate(kind: str, opts: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one set: ``kind`` in pretrain | finetune | id_test | test. Returns (features, y)."""
    n = int(opts["n"])  # type: ignore[arg-type]
    rng = np.random.default_rng(np.random.SeedSequence([int(opts["data_seed"]), _STREAMS[kind]]))
    y = rng.integers(0, 2, size=n).astype(np.int32)
    sgn = (2.0 * y - 1.0)[:, None]
    x_dim = int(opts["x_dim"])  # type: ignore[arg-type]
    x = float(opts["x_signal"]) * sgn + rng.standard_normal((n, x_dim))  # type: ignore[arg-type]
    # the agreement probability of (s1, s2) with y; None = absent from this set
    rho_s1, rho_s2 = {
        "pretrain": (opts["rho1"], None),
        "finetune": (None, opts["rho2"]),
        "id_test": (None, opts["rho2"]),
        "test": (0.5, 0.5),
    }[kind]
    cols = [x]
    for rho in (rho_s1, rho_s2):
        # draw every stream regardless of presence, so options never shift other features
        agree = rng.random(n)
        noise = rng.standard_normal(n)
        if rho is None and opts["absent"] == "zero":
            cols.append(np.zeros((n, 1)))
            continue
        r = 0.5 if rho is None else float(rho)  # type: ignore[arg-type]
        z = np.where(agree < r, sgn[:, 0], -sgn[:, 0])
        cols.append((z + float(opts["s_noise"]) * noise)[:, None])  # type: ignore[arg-type]
    return np.concatenate(cols, axis=1).astype(np.float32), y


def feature_names(opts: dict[str, object]) -> list[str]:
    return [f"x{i + 1}" for i in range(int(opts["x_dim"]))] + ["s1", "s2"]  # type: ignore[arg-type]


def _split(prefix: str, idx: np.ndarray, feats: np.ndarray, y: np.ndarray) -> Split:
    f = feats[idx]
    return Split(
        example_ids=np.array([f"{prefix}-{i:05d}" for i in idx]),
        labels=y[idx],
        small={"x": f},
        large={"x": f},
    )


@register_dataset("synthetic", modality="tabular", options=SyntheticOptions)
def load_synthetic(options: dict[str, str], data_dir: str | None = None) -> Dataset:
    opts = parse_options(options)
    n = int(opts["n"])  # type: ignore[arg-type]
    sets = {k: generate(k, opts) for k in _STREAMS}
    rng = np.random.default_rng(np.random.SeedSequence([int(opts["data_seed"]), 99]))
    perm = rng.permutation(n)
    n_val = int(round(float(opts["val_frac"]) * n))  # type: ignore[arg-type]
    all_idx = np.arange(n)
    splits = {
        "pretrain": _split("pretrain", all_idx, *sets["pretrain"]),
        "train": _split("finetune", np.sort(perm[n_val:]), *sets["finetune"]),
        "id_val": _split("finetune", np.sort(perm[:n_val]), *sets["finetune"]),
        "id_test": _split("idtest", all_idx, *sets["id_test"]),
        "ood/test": _split("test", all_idx, *sets["test"]),
    }
    canonical = ",".join(f"{k}={opts[k]}" for k in DEFAULTS)
    return Dataset(
        name="synthetic",
        task="classification",
        metric="accuracy",
        splits=splits,
        num_classes=2,
        shift=(
            "spurious features: s1 predicts y in pre-training only, s2 in fine-tuning only; "
            "the test set keeps only the transferable x"
        ),
        info={"options": canonical, "features": feature_names(opts), **{k: opts[k] for k in DEFAULTS}},
    )
