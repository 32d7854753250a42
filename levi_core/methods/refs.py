"""Reference rows for rating regression (not ranked): how far is each method from the obvious?

* ``ref/mean``: the ID-train mean rating ``mu`` for every example.
* ``ref/user_bias``: ``mu + b_u``, ``b_u = sum_{train ratings of u} (r - mu) / (n_u + lam)``.
* ``ref/user_movie_bias``: ``mu + b_u + b_i`` (``i`` the movie, Amazon: the product), the
  regularised least-squares baseline predictor (Koren 2008, eq. 2) fitted by alternating
  closed-form updates: ``b_i = sum (r - mu - b_u) / (n_i + lam)``, then
  ``b_u = sum (r - mu - b_i) / (n_u + lam)``, ``SWEEPS`` = 10 sweeps (converged well before).

* ``ref/mf``: biased matrix factorisation (Funk-SVD), its size, regulariser and epochs chosen on id_val
  (below).

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


def _check_rating_task(ds) -> None:
    if ds.task != "regression" or not {"user", "item"} <= set(ds.entities):
        raise ConfigError(f"ref/* rows are for rating regression with declared user and item "
                          f"inputs; {ds.name!r} is {ds.task} with entities {dict(ds.entities)}")


def _sizes(ds, key: str) -> int:
    """The table size of an entity input (its vocabulary, or the largest id seen + 1)."""
    return max(int(ds.vocab_sizes.get(key, 0)), max(int(s.small[key].max()) for s in ds.splits.values()) + 1)


def _ref(ctx: RunContext, kind: str) -> RunOutput:
    ds = ctx.dataset
    _check_rating_task(ds)
    lam = float(ctx.settings.text.ref_reg)
    train = ds.splits["train"]
    uk, ik = ds.entities["user"], ds.entities["item"]
    n_user, n_item = _sizes(ds, uk), _sizes(ds, ik)
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


# ---------------------------------------------------------------- biased matrix factorisation
# ``ref/mf``: the classic biased MF ("Funk-SVD", Koren, Bell & Volinsky 2009, eq. 5):
# ``r_ui ~ mu + b_u + b_i + p_u . q_i``, fitted by minibatch Adam on
# ``mean (r - r_hat)^2 + lam * mean(|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` over the batch's
# ratings. Its size (factors), regulariser and epoch count are chosen on id_val: each
# (factors, lam) of ``MF_GRID`` trains up to ``MF_EPOCHS`` epochs, scored on id_val after each
# (the best epoch's weights kept, patience ``MF_PATIENCE``), and the best of them is kept.
# An id never seen in training (0: every OOD movie under the genre shift) has no factors and no
# bias: its prediction falls back to mu + the other entity's bias, like the bias references.
# The regulariser's range reaches well past the whole split's best (0.02-0.1) because a draw of
# a few thousand ratings wants far more shrinkage; a grid whose best point sits on its edge
# would hand the methods a weaker reference than a library's defaults. The epoch cap only
# stops a run that early stopping has not: smaller draws take more epochs of fewer steps.
MF_GRID = tuple((factors, lam) for factors in (16, 64) for lam in (0.02, 0.1, 0.3, 1.0))
MF_EPOCHS, MF_PATIENCE, MF_BATCH, MF_LR = 100, 3, 256, 3e-3


def _mf_predict(params, mu, u, i):
    import jax.numpy as jnp

    known_u = (u != 0).astype(jnp.float32)
    known_i = (i != 0).astype(jnp.float32)
    dot = jnp.sum(params["p"][u] * params["q"][i], axis=-1) * known_u * known_i
    return mu + params["bu"][u] * known_u + params["bi"][i] * known_i + dot


_MF_PROGRAMS: dict = {}


def _mf_programs():
    """``(epoch, predict)``, compiled once per process (per shape): a fresh ``jax.jit`` per
    grid point would trace and compile again, and an eager prediction compiles op by op."""
    if not _MF_PROGRAMS:
        import jax
        import optax

        _MF_PROGRAMS["epoch"] = _mf_epoch_fn(optax.adam(MF_LR))
        program = jax.jit(_mf_predict)

        def predict(params, mu, u, i):  # padded to a power of two: a few shapes, a few compiles
            n = len(u)
            size = 1 << max(10, (n - 1).bit_length())
            pad = lambda a: np.pad(np.asarray(a), (0, size - n))  # noqa: E731 - id 0: unknown
            return np.asarray(program(params, mu, pad(u), pad(i)))[:n]

        _MF_PROGRAMS["predict"] = predict
    return _MF_PROGRAMS["epoch"], _MF_PROGRAMS["predict"]


def _mf_epoch_fn(tx):
    import jax
    import jax.numpy as jnp

    def epoch(params, opt_state, mu, lam, u, i, y):  # u, i, y: [steps, batch]
        def loss_fn(p, bu, bi, by):
            err = _mf_predict(p, mu, bu, bi) - by
            reg = (jnp.sum(p["p"][bu] ** 2, -1) + jnp.sum(p["q"][bi] ** 2, -1)
                   + p["bu"][bu] ** 2 + p["bi"][bi] ** 2)
            return jnp.mean(err ** 2) + lam * jnp.mean(reg)

        def step(carry, batch):
            p, st = carry
            loss, g = jax.value_and_grad(loss_fn)(p, *batch)
            upd, st = tx.update(g, st, p)
            return (jax.tree_util.tree_map(lambda a, b: a + b, p, upd), st), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (u, i, y))
        return params, opt_state, losses.mean()

    return jax.jit(epoch)


def fit_mf(u, i, y, val, n_user: int, n_item: int, factors: int, lam: float, seed: int):
    """One (factors, lam) point: ``(params, best id_val RMSE, best epoch, epochs run)``; ``val``
    = (users, items, ratings) of id_val."""
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, factors]))
    params = {"p": jnp.asarray(rng.normal(0, 0.1, (n_user, factors)), jnp.float32),
              "q": jnp.asarray(rng.normal(0, 0.1, (n_item, factors)), jnp.float32),
              "bu": jnp.zeros(n_user, jnp.float32), "bi": jnp.zeros(n_item, jnp.float32)}
    mu = jnp.float32(np.mean(y))
    st = optax.adam(MF_LR).init(params)
    epoch, predict = _mf_programs()
    n = len(y)
    per = n // MF_BATCH
    best = (np.inf, params, 0)
    run = 0
    for e in range(MF_EPOCHS):
        order = rng.permutation(n)[: per * MF_BATCH].reshape(per, MF_BATCH)
        params, st, _ = epoch(params, st, mu, jnp.float32(lam), jnp.asarray(u[order]),
                              jnp.asarray(i[order]), jnp.asarray(y[order], jnp.float32))
        run = e + 1
        pred = predict(params, mu, val[0], val[1])
        score = float(np.sqrt(np.mean((pred - val[2]) ** 2)))
        if score < best[0]:
            best = (score, params, run)
        elif run - best[2] >= MF_PATIENCE:
            break
    return best[1], best[0], best[2], run


@implements("ref/mf")
def ref_mf(ctx: RunContext) -> RunOutput:
    import jax.numpy as jnp

    ds = ctx.dataset
    _check_rating_task(ds)
    uk, ik = ds.entities["user"], ds.entities["item"]
    n_user, n_item = _sizes(ds, uk), _sizes(ds, ik)
    tr, va = ds.splits["train"], ds.splits["id_val"]
    u, i, y = tr.small[uk], tr.small[ik], np.asarray(tr.labels, np.float64)
    val = (va.small[uk], va.small[ik], np.asarray(va.labels, np.float64))
    tried, best = {}, None
    for factors, lam in MF_GRID:
        params, score, best_epoch, run = fit_mf(u, i, y, val, n_user, n_item, factors, lam, ctx.seed)
        tried[f"{factors}/{lam}"] = {"id_val_rmse": round(score, 5), "best_epoch": best_epoch,
                                     "epochs_run": run}
        if best is None or score < best[0]:
            best = (score, params, factors, lam, best_epoch)
    _, params, factors, lam, best_epoch = best
    mu = jnp.float32(np.mean(y))
    predict = _mf_programs()[1]
    preds = {r: np.asarray(predict(params, mu, s.small[uk], s.small[ik]), np.float64)
             for r, s in ds.splits.items()}
    return RunOutput(predictions=preds, extras={"factors": factors, "lambda": lam,
                                                "best_epoch": best_epoch, "grid": tried})
