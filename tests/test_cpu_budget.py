"""The pieces of the whole-split CPU preset: the large-model training draw, early stopping of
heads on id_val, the stratified evaluation sample, seed-0 selection reused by later seeds,
states of a selected model computed by its dependants, ref/mf and the budget note."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toy_family  # noqa: F401  (registers dataset `toy` and methods toy_*)
from bench import presets
from bench.executors import LocalExecutor
from bench.jobs import FROM_SEED0, plan, reuses_seed0
from bench.ledger import Ledger
from bench.runner import run_jobs, seed0_context
from bench.specs import Column, MetricGrid, TableSpec
from levi_core import training
from levi_core.data.base import Dataset, Split, load_dataset
from levi_core.errors import ConfigError
from levi_core.methods import refs
from levi_core.settings import Settings, settings_dict


# ------------------------------------------------------------------ settings
def test_new_text_settings_are_left_out_of_records_at_their_default():
    d = settings_dict(Settings().text)
    assert "train_examples" not in d and "head_patience" not in d
    s = Settings.from_mapping({"text": {"train_examples": "100", "head_patience": 2}})
    assert s.text.train_examples == 100 and settings_dict(s.text)["head_patience"] == 2
    for bad in ({"train_examples": 0}, {"head_patience": -1}):
        with pytest.raises(ConfigError, match="positive integer"):
            Settings.from_mapping({"text": bad})


# ------------------------------------------------------------------ early stopping
def _linear_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)).astype(np.float32)
    data = {"x": x, "y": y}

    def apply_fn(p, extra, batch):
        return (batch["x"] @ p["w"])[:, None, None], extra

    return data, apply_fn, {"w": jnp.zeros(4)}


def test_epoch_select_returns_the_best_epochs_weights_and_stops_on_patience():
    data, apply_fn, p0 = _linear_problem()
    idx = training.batch_indices(256, 32, 10, [0, 3])  # 8 steps per epoch, 10 epochs
    wanted = 3  # a score that is best after epoch 3, worse afterwards
    sel = training.EpochSelect(8, lambda p, ex, c=iter(range(100)): abs(next(c) + 1 - wanted), 2)
    p, _, losses, bad = training.fit(apply_fn, p0, {}, data, idx, 0.05, "regression", select=sel)
    assert not bad and sel.best_epoch == wanted and len(sel.scores) == wanted + 2
    assert len(losses) == 8 * (wanted + 2)  # stopped after two epochs without improvement
    ref, _, _, _ = training.fit(apply_fn, p0, {}, data, idx[: 8 * wanted], 0.05, "regression")
    np.testing.assert_array_equal(np.asarray(p["w"]), np.asarray(ref["w"]))
    assert sel.extras()["best_epoch"] == wanted


def test_fit_without_select_is_unchanged_by_epoch_chunking():
    data, apply_fn, p0 = _linear_problem()
    idx = training.batch_indices(256, 32, 3, [0, 3])
    a = training.fit(apply_fn, p0, {}, data, idx, 0.05, "regression")
    sel = training.EpochSelect(8, lambda p, ex: 0.0, patience=100)  # never stops, last = best?
    b = training.fit(apply_fn, p0, {}, data, idx, 0.05, "regression", select=sel)
    np.testing.assert_array_equal(a[2], b[2])  # same steps, same losses
    assert sel.best_epoch == 1  # ties keep the first best


# ------------------------------------------------------------------ data and draws
def test_max_ood_limits_each_ood_set_and_max_eval_the_id_sets():
    full = load_dataset("movielens:fixture=1")
    ds = load_dataset("movielens:fixture=1,max_eval=40,max_ood=10")
    assert len(ds.splits["train"]) == len(full.splits["train"])
    for role, split in ds.splits.items():
        cap = None if role == "train" else 10 if role.startswith("ood/") else 40
        if cap is not None:
            assert len(split) == min(cap, len(full.splits[role]))
    with pytest.raises(ConfigError, match="max_ood"):
        load_dataset("movielens:fixture=1,max_ood=x")


def test_every_method_of_a_seed_learns_from_the_same_draw_and_seeds_differ():
    """Under ``train_examples`` the api hands every job of a seed the same training rows
    (large-model trainings, heads and references alike); evaluation splits are untouched and
    small-model ids seen only outside the draw become unknown."""
    from levi_core.data.base import with_train_draw
    from levi_core.engines import engine_for
    from levi_core.methods.registry import RunContext

    full = load_dataset("movielens:fixture=1")
    a, b, c = (with_train_draw(full, s, 50) for s in (0, 0, 1))
    ids = [x.splits["train"].example_ids for x in (a, b, c)]
    assert len(ids[0]) == 50 and np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[0], ids[2])
    assert set(ids[0]) <= set(full.splits["train"].example_ids)
    for role in full.splits:
        if role != "train":
            assert np.array_equal(a.splits[role].example_ids, full.splits[role].example_ids)
            assert np.array_equal(a.splits[role].labels, full.splits[role].labels)
    seen = set(a.splits["train"].small["user_id"]) | {0}
    assert set(a.splits["id_test"].small["user_id"]) <= seen
    assert with_train_draw(full, 0, None) is full and with_train_draw(full, 0, 10 ** 9) is full
    s = Settings.from_mapping({"text": {**presets.PRESETS["smoke"].settings["text"],
                                        "train_examples": 50, "epochs": 2}})
    e = engine_for(RunContext(a, 0, {}, s, None))
    order = e.large_order(0)
    assert set(np.unique(order)) <= set(range(50)) and order.shape[1] == e.batch_size
    assert "train" not in e.prediction_roles and "id_val" in e.prediction_roles


# ------------------------------------------------------------------ seed-0 selection
SPEC = TableSpec(
    name="toy", title="Toy", caption="Toy table.",
    sections=(MetricGrid(rows=("toy_fit", "toy_ens"),
                         columns=(Column("id", "ID RMSE", "toy", "id_test", "rmse"),
                                  Column("ood", "OOD RMSE", "toy", "ood/mean", "rmse"))),),
)


def test_later_seeds_reuse_the_learning_rate_selected_on_seed_0(tmp_path, monkeypatch):
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(smoke, select_on_seed0=("toy_fit",)))
    jobs = plan(SPEC, "smoke")
    fit = [j for j in jobs if j.method == "toy_fit"]
    assert sorted((j.seed, reuses_seed0(j)) for j in fit) == [(0, False)] * 3 + [(1, True), (2, True)]
    assert all(j.hparams_dict == {"lr": FROM_SEED0} for j in fit if j.seed)
    ledger = Ledger(tmp_path / "smoke")
    summary = run_jobs(jobs, SPEC, "smoke", LocalExecutor(), ledger, out=open(os.devnull, "w"))
    assert summary.states["done"] == len(jobs) and not summary.blocked
    seed0 = [ledger.read(j.id) for j in fit if j.seed == 0]
    best = min(seed0, key=lambda r: r["metrics"]["id_val"]["rmse"])["job"]["hparams"]
    for j in fit:
        if j.seed:
            rec = ledger.read(j.id)
            assert rec["extras"]["hparams_from_seed0"] == best
            assert set(rec["deps"]) == {"@seed0"}


def test_a_later_seed_without_seed_0_in_the_plan_is_blocked_with_the_fix(tmp_path, monkeypatch):
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(smoke, select_on_seed0=("toy_fit",)))
    jobs = [j for j in plan(SPEC, "smoke") if j.seed == 1 and j.method == "toy_fit"]
    summary = run_jobs(jobs, SPEC, "smoke", LocalExecutor(), Ledger(tmp_path / "smoke"),
                       out=open(os.devnull, "w"))
    assert summary.blocked and "--seeds 0" in summary.blocked[0]


def test_a_later_seed_run_alone_reads_seed_0s_finished_selection(tmp_path, monkeypatch):
    """`bench run --seeds 0`, then `--seeds 1` by itself: seed 1 takes seed 0's selected
    hyperparameters from the results folder instead of refusing; before seed 0 has run there,
    it is blocked with the fix."""
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(presets.PRESETS, "smoke", dataclasses.replace(smoke, select_on_seed0=("toy_fit",)))
    every = [j for j in plan(SPEC, "smoke") if j.method == "toy_fit"]
    seed0 = [j for j in every if j.seed == 0]
    seed1 = [j for j in every if j.seed == 1]
    context = seed0_context(seed1, every)
    assert context == seed0
    ledger, quiet = Ledger(tmp_path / "smoke"), open(os.devnull, "w")
    early = run_jobs(seed1, SPEC, "smoke", LocalExecutor(), ledger, out=quiet, context=context)
    assert early.ran == 0 and len(early.blocked) == 1
    assert "have not all finished in this results folder: run --seeds 0 first" in early.blocked[0]
    # part of seed 0's grid is no selection: still blocked
    first, rest = seed0[:1], seed0[1:]
    assert run_jobs(first, SPEC, "smoke", LocalExecutor(), ledger, out=quiet).states["done"] == len(first)
    partial = run_jobs(seed1, SPEC, "smoke", LocalExecutor(), ledger, out=quiet, context=context)
    assert partial.ran == 0 and "have not all finished" in partial.blocked[0]
    assert run_jobs(seed0, SPEC, "smoke", LocalExecutor(), ledger, out=quiet).states["done"] == len(rest)
    later = run_jobs(seed1, SPEC, "smoke", LocalExecutor(), ledger, out=quiet, context=context)
    assert later.states["done"] == 1 and not later.blocked
    best = min((ledger.read(j.id) for j in seed0), key=lambda r: r["metrics"]["id_val"]["rmse"])
    rec = ledger.read(seed1[0].id)
    assert rec["extras"]["hparams_from_seed0"] == best["job"]["hparams"]
    assert rec["deps"] == {"@seed0": best["job_id"]}
    again = run_jobs(seed1, SPEC, "smoke", LocalExecutor(), ledger, out=quiet, context=context)
    assert again.skipped == 1 and again.ran == 0  # kept, not run again
    assert seed0_context(every, every) == []  # seed 0 planned: nothing to read from outside


# ------------------------------------------------------------------ ref/mf
def _low_rank_ratings(seed=0, users=60, items=50, rank=3, n=2400):
    rng = np.random.default_rng(seed)
    pu, qi = rng.normal(size=(users, rank)), rng.normal(size=(items, rank))
    u = rng.integers(1, users, n)
    i = rng.integers(1, items, n)
    y = np.clip(3.0 + 0.6 * np.sum(pu[u] * qi[i], axis=1) + rng.normal(0, 0.2, n), 1, 5)
    return u.astype(np.int32), i.astype(np.int32), y.astype(np.float32)


def test_mf_learns_interactions_that_the_bias_model_cannot():
    u, i, y = _low_rank_ratings()
    tr, va = slice(0, 2000), slice(2000, None)
    params, score, best_epoch, run = refs.fit_mf(u[tr], i[tr], y[tr], (u[va], i[va], y[va]), 60, 50,
                                                 8, 0.02, seed=0)
    mu, bu, bi = refs.fit_biases(u[tr], i[tr], y[tr], 10.0, 60, 50)
    bias_rmse = float(np.sqrt(np.mean((mu + bu[u[va]] + bi[i[va]] - y[va]) ** 2)))
    assert 1 <= best_epoch <= run and score < 0.8 * bias_rmse
    # unknown ids (0) get no factors and no bias: mu + the known side's bias
    pred = refs._mf_predict(params, jnp.float32(3.0), jnp.asarray([0, 5]), jnp.asarray([7, 0]))
    np.testing.assert_allclose(np.asarray(pred), [3.0 + float(params["bi"][7]),
                                                  3.0 + float(params["bu"][5])], rtol=1e-6)


def test_ref_mf_runs_on_the_movielens_fixture(tmp_path):
    from levi_core.api import train_and_evaluate

    out = train_and_evaluate({"dataset": "movielens:fixture=1", "method": "ref/mf", "seed": 0,
                              "hparams": {}, "settings": {}}, tmp_path)
    assert out["state"] == "done"
    assert (out["extras"]["factors"], out["extras"]["lambda"]) in refs.MF_GRID
    assert len(out["extras"]["grid"]) == len(refs.MF_GRID)


def test_max_val_samples_id_val_only():
    """The cpu preset scores every id_test and OOD example but samples id_val (read after
    every epoch of every head)."""
    full = load_dataset("movielens:fixture=1")
    ds = load_dataset("movielens:fixture=1,max_val=7")
    assert len(ds.splits["id_val"]) == 7
    for role in full.splits:
        if role != "id_val":
            assert len(ds.splits[role]) == len(full.splits[role])
    assert ds.info["subsample"]["max_val"] == 7
