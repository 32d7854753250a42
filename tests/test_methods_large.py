"""Methods on real backbones (tiny random ones here): every method end to end through
``train_and_evaluate`` on the MovieLens fixture with bert-tiny, a few on the retinopathy fixture
with vit-tiny; masks, LEVI's loss, the feature cache, divergence, unknown ids, reference rows."""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from levi_core import features, training
from levi_core.api import load_predictions, train_and_evaluate
from levi_core.data.base import load_dataset
from levi_core.engines import engine_for
from levi_core.engines.base import replace_unknown
from levi_core.methods.registry import RunContext
from levi_core.settings import Settings

# a small cut of the fixture keeps the whole file fast (compiles dominate anyway)
ML = "movielens:fixture=1,max_train=384,max_eval=96"
RET = "retinopathy:fixture=1,image_size=32"


def settings(cache_dir, **text):
    """A job's settings mapping; the cache folder travels beside it (``_run``)."""
    return {
        "text": {"backbone": "bert-tiny", "weights": "random", "max_len": 32, "epochs": 1,
                 "batch_size": 64, "small_hidden": (16, 8), "adapter_hidden": 8, "embed_dim": 4,
                 "lora_rank": 2, **text},
        "vision": {"backbone": "vit-tiny", "weights": "random", "batch_size": 8, "epochs": 1,
                   "small_conv": (4, 4, 4, 4), "adapter_hidden": 8, "lora_rank": 2},
        "_cache": str(cache_dir),
    }


def _engine(dataset, sett):
    ds = load_dataset(dataset)
    typed = Settings.from_mapping({k: v for k, v in sett.items() if k != "_cache"})
    return engine_for(RunContext(ds, 0, {}, typed, None, cache_dir=sett["_cache"])), ds


COMPOSITE = {"ft_zeroshot", "ft_fs", "ft_robust", "a1", "a2", "ref/mean", "ref/user_bias",
             "ref/user_movie_bias", "ref/mf"}
# (method, deps) in dependency order
PLAN = [
    ("ft", ()), ("ht", ()), ("lp", ()), ("fs", ()), ("lora", ()), ("lp_ft", ("lp",)),
    ("ft_zeroshot", ("lp", "lp_ft")), ("ft_fs", ("ft", "fs")), ("ft_robust", ("ft", "lp")),
    ("levi", ("ht",)), ("levi/pretrained", ()), ("levi/ft", ("ft",)), ("levi/lora", ("lora",)),
    ("a1", ("ft",)), ("a3", ("ht",)), ("a4", ()), ("a2", ("ft", "a4")), ("a5", ()), ("layer/1", ()),
    ("ref/mean", ()), ("ref/user_bias", ()), ("ref/user_movie_bias", ()), ("ref/mf", ()),
]


def _run(dataset, method, root, sett, deps=(), lr=1e-3, seed=0, workdirs=None):
    wd = root / method.replace("/", "_")
    cfg = {"dataset": dataset, "method": method, "seed": seed,
           "hparams": {} if method in COMPOSITE else {"lr": lr},
           "settings": {k: v for k, v in sett.items() if k != "_cache"}, "cache_dir": sett["_cache"]}
    rec = train_and_evaluate(cfg, wd, {d: workdirs[d] for d in deps} if workdirs else {})
    return rec, wd


@pytest.fixture(scope="module")
def movielens_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    sett = settings(root / "cache")
    n0 = len(features.BUILDS)
    recs, wds = {}, {}
    for method, deps in PLAN:
        recs[method], wds[method] = _run(ML, method, root, sett, deps, workdirs=wds)
    return recs, wds, len(features.BUILDS) - n0, root, sett


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_every_method_runs_on_movielens(movielens_runs):
    recs, wds, _, _, _ = movielens_runs
    ds = load_dataset(ML)
    for method, _ in PLAN:
        rec = recs[method]
        assert rec["state"] == "done", method
        assert rec["metric"] == "rmse"
        preds = load_predictions(wds[method])
        assert set(preds) == set(ds.splits), method  # every role, train included
        for role, p in preds.items():
            assert p.shape == (len(ds.splits[role]),), (method, role)
            assert np.all(np.isfinite(p)), (method, role)
        assert all(0.3 < m["rmse"] < 3.0 for m in rec["metrics"].values()), method
    # LEVI has one adapting layer per block of bert-tiny (2); a5 as many heads
    assert recs["levi"]["extras"]["heads"] == 2 and recs["a5"]["extras"]["heads"] == 2
    assert recs["ft_zeroshot"]["extras"]["alpha"] in [round(0.1 * i, 1) for i in range(11)]
    assert len(recs["ft_zeroshot"]["extras"]["id_val_by_alpha"]) == 11
    # fs is not the stand-in "pre-trained" init; ft is
    assert recs["fs"]["metrics"]["id_val"] != recs["ft"]["metrics"]["id_val"]
    # the reference rows improve on train in order: mean > user bias > user + movie bias
    tr = [recs[f"ref/{k}"]["metrics"]["train"]["rmse"] for k in ("mean", "user_bias", "user_movie_bias")]
    assert tr[0] > tr[1] > tr[2]


def test_feature_cache_computed_once_and_reused(movielens_runs):
    _, wds, builds, root, sett = movielens_runs
    ds = load_dataset(ML)
    # lp, levi/pretrained, a3 and layer/1 read the pre-trained states: built once per role
    assert builds == len(ds.splits)
    n0 = len(features.BUILDS)
    rec, _ = _run(ML, "layer/2", root, sett, lr=1e-2)
    assert rec["state"] == "done" and len(features.BUILDS) == n0  # read from the cache
    # fine-tuned models wrote their own states for LEVI: [S, N, D] with S = layers + 1
    engine, _ = _engine(ML, sett)
    st = features.read_workdir_states(wds["ht"], engine._feature_meta())
    assert st["train"].shape == (3, len(ds.splits["train"]), 32)
    assert set(st) == set(ds.splits)


def test_ht_and_lp_checkpoints_hold_only_what_trains(movielens_runs):
    _, wds, _, _, _ = movielens_runs
    ht = training.load_params(wds["ht"])
    assert set(ht) == {"body", "head"}
    assert set(ht["body"]) == {"block_1"}  # bert-tiny: 2 blocks, the last half is block_1
    assert set(training.load_params(wds["lp"])) == {"head"}
    lora = training.load_params(wds["lora"])
    flat = jax.tree_util.tree_flatten_with_path(lora["body"])[0]
    assert flat and all("lora_" in str(path[-1]) for path, _ in flat)


def test_ht_mask_freezes_bit_identically(tmp_path):
    engine, ds = _engine(ML, settings(tmp_path))
    params = engine.start("pretrained", 0)
    for mode, trained in (("half", {"block_1", "head"}), ("head", {"head"})):
        labels = engine.labels(params, mode)
        new, _, losses, bad = training.fit(
            engine.apply, params, {}, engine.train_data(), engine.batch_order(0, 1), 1e-2,
            "regression", "adam", labels)
        assert not bad and len(losses) > 3
        flat_old = {k: np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
        for path, v in jax.tree_util.tree_flatten_with_path(new)[0]:
            names = {str(getattr(p, "key", p)) for p in path}
            top = "head" if "head" in names else next(n for n in names if n.startswith(("block_", "embed")))
            same = np.array_equal(np.asarray(v), flat_old[path])
            assert same == (top not in trained), (mode, path)


def test_levi_loss_is_mean_of_per_head_losses():
    rng = np.random.default_rng(0)
    out = jnp.asarray(rng.normal(size=(7, 3, 1)), jnp.float32)
    y = jnp.asarray(rng.normal(size=7), jnp.float32)
    per_head = [float(jnp.mean((out[:, j, 0] - y) ** 2)) for j in range(3)]
    assert float(training.task_loss(out, y, "regression")) == pytest.approx(np.mean(per_head), rel=1e-6)
    logits = jnp.asarray(rng.normal(size=(7, 3, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, size=7))
    ce = [float(jnp.mean(-jax.nn.log_softmax(logits[:, j])[jnp.arange(7), labels])) for j in range(3)]
    assert float(training.task_loss(logits, labels, "classification")) == pytest.approx(np.mean(ce), rel=1e-5)
    # the prediction is the mean of the heads
    np.testing.assert_allclose(training.to_prediction(np.asarray(out), "regression"),
                               np.asarray(out, np.float64)[..., 0].mean(1), rtol=1e-12)


def test_diverging_lr_gives_diverged(tmp_path):
    rec, _ = _run(ML, "levi/pretrained", tmp_path, settings(tmp_path / "cache"), lr=1e30)
    assert rec["state"] == "diverged"
    assert rec["extras"]["diverged_at"] is not None


def test_unknown_ids_train_row_zero_deterministically(tmp_path):
    batch = {"small.user_id": np.arange(1, 1001, dtype=np.int32)}
    a = replace_unknown(batch, ["small.user_id"], 0.05, 3, 7)
    b = replace_unknown(batch, ["small.user_id"], 0.05, 3, 7)
    np.testing.assert_array_equal(a["small.user_id"], b["small.user_id"])
    assert 20 < int((a["small.user_id"] == 0).sum()) < 90
    # row 0 of the user table: never trained without replacement (Adam: zero grad, zero step),
    # trained with it; every OOD movie of the genre shift maps to it
    rows = {}
    for frac, lr in ((0.0, 1e-3), (0.0, 1e-2), (0.2, 1e-3)):
        sett = settings(tmp_path / "cache", unknown_id_frac=frac)
        _, wd = _run(ML, "a4", tmp_path / f"{frac}_{lr}", sett, lr=lr)
        rows[frac, lr] = np.asarray(training.load_params(wd)["params"]["small"]["embed_user_id"]["embedding"][0])
    np.testing.assert_array_equal(rows[0.0, 1e-3], rows[0.0, 1e-2])
    assert not np.array_equal(rows[0.2, 1e-3], rows[0.0, 1e-3])
    ds = load_dataset(ML)
    assert np.all(ds.splits["ood/sci-fi"].small["movie_id"] == 0)


def test_deterministic_given_config_and_seed(tmp_path):
    sett = settings(tmp_path / "cache")
    _, w1 = _run(ML, "a5", tmp_path / "a", sett)
    _, w2 = _run(ML, "a5", tmp_path / "b", sett)
    p1, p2 = load_predictions(w1), load_predictions(w2)
    for r in p1:
        np.testing.assert_array_equal(p1[r], p2[r])


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_vision_methods_on_retinopathy(tmp_path):
    sett = settings(tmp_path / "cache")
    ds = load_dataset(RET)
    wds = {}
    for method, deps in (("ft", ()), ("lp", ()), ("levi/pretrained", ()),
                         ("lp_ft", ("lp",)), ("ft_zeroshot", ("lp", "lp_ft")),
                         ("ft_robust", ("ft", "lp"))):
        rec, wds[method] = _run(RET, method, tmp_path, sett, deps, lr=1e-2, workdirs=wds)
        assert rec["state"] == "done" and rec["metric"] == "accuracy", method
        preds = load_predictions(wds[method])
        for role, p in preds.items():
            assert p.shape == (len(ds.splits[role]), ds.num_classes)
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    assert rec["extras"]["temperatures"]


def test_amazon_with_t5_states(tmp_path):
    sett = settings(tmp_path / "cache", backbone="t5-tiny")
    ds = load_dataset("amazon:fixture=1")
    for method in ("levi/pretrained", "ref/user_movie_bias"):
        rec, wd = _run("amazon:fixture=1", method, tmp_path, sett)
        assert rec["state"] == "done" and set(load_predictions(wd)) == set(ds.splits)
    assert rec["extras"]["lambda"] == 10.0


def test_imagenet_a_and_r_are_scored_on_their_200_class_subsets():
    from levi_core.metrics import compute

    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    labels = np.array([2, 2])
    assert compute("accuracy", scores, labels) == 0.0  # argmax over all classes: 1, 0
    assert compute("accuracy", scores, labels, classes=[0, 2]) == 50.0  # best of {0, 2}: 2, 0
    assert compute("accuracy", scores, labels, classes=[2]) == 100.0


def test_dependants_compute_the_states_a_run_did_not_keep(movielens_runs, tmp_path):
    """A run on a draw of the training split keeps no layer states; its dependants compute the
    selected model's states once (feature cache) and get what the run would have kept."""
    import shutil

    _, wds, _, root, sett = movielens_runs
    e, ds = _engine(ML, sett)
    for m in ("ht", "ft"):
        bare = tmp_path / m
        bare.mkdir()
        for f in (training.PARAMS_FILE, training.RUN_FILE):
            shutil.copy(wds[m] / f, bare / f)
        kept = e.layer_states(m, {m: wds[m]})
        lazy = e.layer_states(m, {m: bare})
        again = e.layer_states(m, {m: bare})  # read back from the cache
        for r in ds.eval_roles:
            for a, b, c in zip(kept[r], lazy[r], again[r]):
                np.testing.assert_allclose(a, b, atol=2e-3)
                np.testing.assert_array_equal(b, c)
        assert not (bare / features.FEATURES_META).exists()  # the dependency folder is untouched


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_a_run_on_a_draw_keeps_its_evaluated_states_and_levi_computes_only_the_training_rows(tmp_path):
    """Under ``train_examples`` an ht run predicts every role but the training split and keeps
    those roles' layer states (its evaluation computes them anyway); LEVI on it reads them and
    computes only the drawn training rows' states, once, into the feature cache."""
    sett = settings(tmp_path / "cache", train_examples=128)
    rec, wd = _run(ML, "ht", tmp_path, sett)
    assert rec["state"] == "done"
    from levi_core.data.base import with_train_draw

    ds = with_train_draw(load_dataset(ML), 0, 128)  # the seed's draw, as the job saw it
    typed = Settings.from_mapping({k: v for k, v in sett.items() if k != "_cache"})
    e = engine_for(RunContext(ds, 0, {}, typed, None, cache_dir=sett["_cache"]))
    kept = features.read_workdir_states(wd, e._feature_meta())
    assert set(kept) == set(ds.eval_roles) - {"train"}
    st = e.layer_states("ht", {"ht": wd})
    assert set(st) == set(ds.eval_roles) and len(st["train"][0]) == len(ds.splits["train"])
    for r in kept:  # read back as the run kept them, not recomputed
        np.testing.assert_array_equal(np.stack(st[r]), kept[r].astype(np.float32))
    built = list((tmp_path / "cache" / "trained_states").glob("*/" + features.FEATURES_FILE))
    assert len(built) == 1
    with np.load(built[0]) as z:
        assert z.files == ["train"]  # the training rows only
    # and they are the model's states: the same as computing every role from the bare weights
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in (training.PARAMS_FILE, training.RUN_FILE):
        (bare / f).write_bytes((wd / f).read_bytes())
    full = e.layer_states("ht", {"ht": bare})
    for r in ds.eval_roles:
        np.testing.assert_allclose(np.stack(full[r]), np.stack(st[r]), atol=2e-3)
