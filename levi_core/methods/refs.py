"""Reference rows for rating regression (not ranked): how far is each method from the obvious?

* ``ref/mean``: the ID-train mean rating ``mu`` for every example.
* ``ref/user_bias``: ``mu + b_u``, ``b_u = sum_{train ratings of u} (r - mu) / (n_u + lam)``.
* ``ref/user_movie_bias``: ``mu + b_u + b_i`` (``i`` the movie, Amazon: the product), the
  regularised least-squares baseline predictor (Koren 2008, eq. 2) fitted by alternating
  closed-form updates: ``b_i = sum (r - mu - b_u) / (n_i + lam)``, then
  ``b_u = sum (r - mu - b_i) / (n_u + lam)``, ``SWEEPS`` = 10 sweeps (converged well before).

``lam`` = settings ``text.ref_reg`` (default 10). The user and item inputs are the ones the
dataset declares (``Dataset.entities``). Ids never seen in training are 0 in every
split (the loaders map them so) and get bias 0: the prediction falls back to ``mu`` (+ the
other known bias). Fitted on ``train`` only; predictions for every role.
"""

from __future__ import annotations

import numpy as np

from levi_core.errors import ConfigError
from levi_core.methods.registry import RunContext, RunOutput, implements

SWEEPS = 10


def _bias(ids: np.ndarray, resid: np.ndarray, size: int, lam: float) -> np.ndarray:
    s = np.bincount(ids, weights=resid, minlength=size)
    n = np.bincount(ids, minlength=size)
    b = s / (n + lam)
    b[0] = 0.0  # unknown
    return b


def fit_biases(user: np.ndarray, item: np.ndarray | None, y: np.ndarray, lam: float,
               n_user: int, n_item: int, sweeps: int = SWEEPS):
    """(mu, b_user, b_item or None) on training ids and ratings."""
    y = np.asarray(y, np.float64)
    mu = float(y.mean())
    bu = _bias(user, y - mu, n_user, lam)
    bi = None
    if item is not None:
        bi = np.zeros(n_item)
        for _ in range(sweeps):
            bi = _bias(item, y - mu - bu[user], n_item, lam)
            bu = _bias(user, y - mu - bi[item], n_user, lam)
    return mu, bu, bi


def _ref(ctx: RunContext, kind: str) -> RunOutput:
    ds = ctx.dataset
    if ds.task != "regression" or not {"user", "item"} <= set(ds.entities):
        raise ConfigError(f"ref/* rows are for rating regression with declared user and item "
                          f"inputs; {ds.name!r} is {ds.task} with entities {dict(ds.entities)}")
    lam = float(ctx.settings.text.ref_reg)
    train = ds.splits["train"]
    uk, ik = ds.entities["user"], ds.entities["item"]
    n_user = max(int(ds.vocab_sizes.get(uk, 0)), max(int(s.small[uk].max()) for s in ds.splits.values()) + 1)
    n_item = max(int(ds.vocab_sizes.get(ik, 0)), max(int(s.small[ik].max()) for s in ds.splits.values()) + 1)
    if kind == "mean":
        mu = float(np.mean(train.labels))
        preds = {r: np.full(len(s), mu) for r, s in ds.splits.items()}
        return RunOutput(predictions=preds, extras={"mu": mu})
    item = train.small[ik] if kind == "user_movie_bias" else None
    mu, bu, bi = fit_biases(train.small[uk], item, train.labels, lam, n_user, n_item)
    preds = {}
    for r, s in ds.splits.items():
        p = mu + bu[s.small[uk]]
        if bi is not None:
            p = p + bi[s.small[ik]]
        preds[r] = p
    return RunOutput(predictions=preds, extras={"mu": mu, "lambda": lam})


for _kind in ("mean", "user_bias", "user_movie_bias"):
    implements(f"ref/{_kind}")(lambda ctx, k=_kind: _ref(ctx, k))
