"""The engine's work-saving paths give the numbers of the plain ones: each distinct example
run once across splits, text batches cut to their longest row, and the feature-cache claim
(one builder per entry set, waiters read its result, an abandoned claim is taken over)."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from levi_core import features
from levi_core.data.base import load_dataset
from levi_core.engines import engine_for
from levi_core.engines.base import batches, take
from levi_core.engines.forward import _forward, distinct_rows, trim_padding
from levi_core.methods.registry import RunContext
from levi_core.settings import Settings

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

ML = "movielens:fixture=1,max_train=384,max_eval=96"


def _engine(max_len=64, **text):
    ds = load_dataset(ML)
    typed = Settings.from_mapping({"text": {"backbone": "bert-tiny", "weights": "random",
                                            "max_len": max_len, "eval_batch_size": 40, **text}})
    return engine_for(RunContext(ds, 0, {}, typed, None)), ds


def test_distinct_rows_maps_every_row_to_its_example():
    ids = [np.array([5, 1, 2]), np.array([2, 7]), np.array([7, 5])]
    xs = [{"a": np.array(i) * 10} for i in ids]
    split, row, inv = distinct_rows(ids, xs)
    assert len(split) == 4  # 5, 1, 2, 7
    for k, i in enumerate(ids):
        got = np.array([xs[split[u]]["a"][row[u]] for u in inv[k]])
        np.testing.assert_array_equal(got, xs[k]["a"])
    # one id, two different inputs: every row counts as distinct
    xs[1]["a"][0] = -1
    split, _, _ = distinct_rows(ids, xs)
    assert len(split) == 7


def test_trim_padding_cuts_to_longest_row_rounded():
    mask = np.zeros((3, 64), np.int32)
    mask[0, :20] = mask[1, :5] = 1
    cut = trim_padding({"ids": mask * 3, "mask": mask, "y": np.ones(3)}, multiple=16)
    assert cut["mask"].shape == (3, 32) and cut["y"].shape == (3,)
    assert trim_padding({"image": np.zeros((1, 4, 4, 3))})["image"].shape == (1, 4, 4, 3)


def test_forward_roles_equals_plain_per_role_forward():
    e, ds = _engine()
    params = {"body": e.pretrained_body(), "head": e.new_head(0)}
    got = e.forward_roles(params, ds.eval_roles, True)
    all_ood = np.concatenate([ds.splits[r].example_ids for r in ds.eval_roles if r.startswith("ood")])
    assert len(np.unique(all_ood)) < len(all_ood), "the fixture's OOD sets should overlap"
    bs = e.eval_batch_size
    for role in ds.eval_roles:
        x = e.inputs(role)
        outs, sts = [], []
        for lo, hi in batches(len(ds.splits[role]), bs):  # the plain path: full padding, in order
            o, st = _forward(e.module, e.config, e.head, params, take(x, lo, hi, bs))
            outs.append(np.asarray(o)[: hi - lo])
            sts.append(np.asarray(st)[:, : hi - lo])
        np.testing.assert_allclose(got[role][0], np.concatenate(outs), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got[role][1].astype(np.float32), np.concatenate(sts, axis=1),
                                   rtol=2e-3, atol=2e-3)  # float16 storage


def test_one_builder_per_cache_entry_others_wait(tmp_path):
    calls, results = [], {}

    def compute(missing):
        calls.append(list(missing))
        time.sleep(0.5)
        return {r: np.full((2, 3, 4), len(r), np.float32) for r in missing}

    def job(k):
        results[k] = features.cached_states(tmp_path, {"checkpoint": "x"}, ["train", "id_val"], compute)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [["train", "id_val"]]
    for k in range(3):
        np.testing.assert_array_equal(results[k]["train"], np.full((2, 3, 4), 5, np.float16))
    assert not list((tmp_path / "features").glob("*.lock"))


def test_abandoned_claim_is_taken_over(tmp_path):
    lock = tmp_path / "features" / f"{features.cache_key({'checkpoint': 'x'})}.lock"
    lock.parent.mkdir(parents=True)
    # a dead holder on this host
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": 2 ** 22 + 12345, "token": "t"}))
    out = features.cached_states(tmp_path, {"checkpoint": "x"}, ["train"],
                                 lambda m: {r: np.zeros((1, 2, 2)) for r in m})
    assert out["train"].shape == (1, 2, 2) and not lock.exists()
    # a live holder that stopped refreshing its claim long ago
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "u"}))
    old = time.time() - features.STALE_S - 5
    os.utime(lock, (old, old))
    out = features.cached_states(tmp_path, {"checkpoint": "x"}, ["id_val"],
                                 lambda m: {r: np.zeros((1, 2, 2)) for r in m})
    assert out["id_val"].shape == (1, 2, 2) and not lock.exists()


@pytest.mark.parametrize("dataset,modality,backbone", [
    (ML, "text", "t5-tiny"), (ML, "text", "bert-tiny"),  # pre-LN and post-LN
    ("retinopathy:fixture=1,image_size=32", "vision", "vit-tiny")])
def test_ht_on_the_cached_lower_half_equals_the_full_model(tmp_path, dataset, modality, backbone):
    """ht with a cache folder trains only the tuned blocks on the stored boundary; without one
    the whole model runs: same predictions and layer states up to float rounding."""
    from levi_core.api import load_predictions, train_and_evaluate

    sett = {modality: {"backbone": backbone, "weights": "random", "epochs": 1,
                       "batch_size": 64 if modality == "text" else 8, "eval_batch_size": 40,
                       **({"max_len": 64} if modality == "text" else {})}}
    got = {}
    for name, cache in (("full", None), ("cached", str(tmp_path / "cache"))):
        wd = tmp_path / name
        train_and_evaluate({"dataset": dataset, "method": "ht", "seed": 0, "hparams": {"lr": 1e-3},
                            "settings": sett, "cache_dir": cache}, wd)
        got[name] = (load_predictions(wd), np.load(wd / features.FEATURES_FILE))
    assert list((tmp_path / "cache" / "boundary").glob("*/h.npy")), "the boundary was not stored"
    (pf, sf), (pc, sc) = got["full"], got["cached"]
    for role in pf:
        np.testing.assert_allclose(pc[role], pf[role], rtol=0, atol=1e-4)
    for k in sf.files:
        np.testing.assert_allclose(sc[k].astype(np.float32), sf[k].astype(np.float32), atol=5e-3)


def test_bfloat16_compute_matches_float32_within_tolerance(tmp_path):
    """compute_dtype=bfloat16 (float32 parameters and optimizer state): pooled states within
    3e-2 of float32 relative to their scale, and after an ft epoch predictions within 2e-2
    (ratings 1-5) of the float32 run; the parameters it saves stay float32."""
    from levi_core.api import load_predictions, train_and_evaluate

    states = {}
    for dtype in ("float32", "bfloat16"):
        e, ds = _engine(compute_dtype=dtype)
        params = {"body": e.pretrained_body(), "head": e.new_head(0)}
        states[dtype] = e.forward_roles(params, ["id_val"], True)["id_val"][1].astype(np.float32)
    scale = np.abs(states["float32"]).max()
    assert np.abs(states["bfloat16"] - states["float32"]).max() <= 3e-2 * scale
    preds = {}
    for dtype in ("float32", "bfloat16"):
        wd = tmp_path / dtype
        sett = {"text": {"backbone": "bert-tiny", "weights": "random", "max_len": 64, "epochs": 1,
                         "batch_size": 64, "compute_dtype": dtype}}
        train_and_evaluate({"dataset": ML, "method": "ft", "seed": 0, "hparams": {"lr": 1e-3},
                            "settings": sett, "cache_dir": None}, wd)
        preds[dtype] = load_predictions(wd)
        with np.load(wd / "params.npz") as z:
            assert all(z[k].dtype == np.float32 for k in z.files)
    for role in preds["float32"]:
        assert np.abs(preds["bfloat16"][role] - preds["float32"][role]).max() <= 2e-2


def test_head_grid_in_one_program_equals_separate_runs(tmp_path):
    """lp and levi/pretrained told their grid (two learning rates) train both in one vmapped
    program; each job's predictions, parameters and loss figures equal a job run alone."""
    from levi_core.api import load_predictions, train_and_evaluate

    sett = {"text": {"backbone": "bert-tiny", "weights": "random", "max_len": 32, "epochs": 1,
                     "batch_size": 64, "small_hidden": (16, 8), "adapter_hidden": 8, "embed_dim": 4}}
    grid = [{"lr": 1e-2}, {"lr": 1e-3}]
    for method in ("lp", "levi/pretrained"):
        for point in grid:
            res = {}
            for name, g in (("alone", None), ("grid", grid)):
                wd = tmp_path / name / method.replace("/", "_") / str(point["lr"])
                res[name] = (train_and_evaluate(
                    {"dataset": ML, "method": method, "seed": 0, "hparams": point, "settings": sett,
                     "cache_dir": str(tmp_path / name / "cache"), "grid": g}, wd), wd)
            (ra, wa), (rg, wg) = res["alone"], res["grid"]
            for role, p in load_predictions(wa).items():
                np.testing.assert_allclose(load_predictions(wg)[role], p, rtol=0, atol=1e-5)
            with np.load(wa / "params.npz") as za, np.load(wg / "params.npz") as zg:
                for k in za.files:
                    np.testing.assert_allclose(zg[k], za[k], rtol=0, atol=1e-5)
            assert rg["extras"]["steps"] == ra["extras"]["steps"]
            assert abs(rg["extras"]["final_loss"] - ra["extras"]["final_loss"]) < 1e-5
    assert len(list((tmp_path / "grid" / "cache" / "grids").glob("*/done"))) == 2


def test_pretrained_states_through_a_stored_boundary_equal_the_full_model(tmp_path, monkeypatch):
    """Once an ht job stored the frozen lower half, the pre-trained model's layer states run
    the upper blocks only on it (the full forward is not called): same states up to the
    float16 they are stored in. Without a boundary the full model runs."""
    from levi_core.api import train_and_evaluate
    from levi_core.engines import transformer
    from levi_core.engines.half import FrozenLower

    sett = {"text": {"backbone": "bert-tiny", "weights": "random", "epochs": 1, "batch_size": 64,
                     "eval_batch_size": 40, "max_len": 64}}
    cache = tmp_path / "cache"
    ds = load_dataset(ML)
    typed = Settings.from_mapping(sett)
    plain = engine_for(RunContext(ds, 0, {}, typed, None)).layer_states("pretrained", {})
    assert FrozenLower.if_stored(engine_for(RunContext(ds, 0, {}, typed, None, cache_dir=str(cache)))) is None
    assert not (cache / "boundary").exists(), "a table without ht must not build a boundary"
    train_and_evaluate({"dataset": ML, "method": "ht", "seed": 0, "hparams": {"lr": 1e-3},
                        "settings": sett, "cache_dir": str(cache)}, tmp_path / "ht")
    assert list((cache / "boundary").glob("*/h.npy")), "the ht job stored no boundary"

    def full_forward(*a, **k):
        raise AssertionError("the full model ran although the lower half is stored")

    monkeypatch.setattr(transformer, "_forward", full_forward)
    engine = engine_for(RunContext(ds, 0, {}, typed, None, cache_dir=str(cache)))
    cached = engine.layer_states("pretrained", {})
    assert set(cached) == set(plain)
    for role in plain:
        assert len(cached[role]) == len(plain[role]) == engine.num_layers + 1
        for a, b in zip(cached[role], plain[role]):
            np.testing.assert_allclose(a, b, atol=5e-3, rtol=0)


def test_joined_rows_gather_across_parts_and_pad_the_narrower_one():
    from levi_core.engines.half import JoinedRows

    a = np.arange(2 * 2 * 1, dtype=np.float32).reshape(2, 2, 1) + 1  # 2 rows, 2 tokens
    b = np.arange(3 * 4 * 1, dtype=np.float32).reshape(3, 4, 1) + 100  # 3 rows, 4 tokens
    j = JoinedRows([a, b])
    assert len(j) == 5 and j.shape == (5, 4, 1)
    got = j[np.array([0, 2, 4])]
    np.testing.assert_array_equal(got[0, :2], a[0])
    np.testing.assert_array_equal(got[0, 2:], 0)  # the narrower part is padded with zeros
    np.testing.assert_array_equal(got[1], b[0])
    np.testing.assert_array_equal(got[2], b[2])


def test_the_seeds_draws_share_the_boundarys_evaluation_part(tmp_path):
    """Under a per-seed training draw each seed's ht builds only its drawn rows: the
    evaluation part is built once and read by the next seed, and ht trains and predicts the
    same through it as through a boundary of its own."""
    from levi_core.api import load_predictions, train_and_evaluate

    sett = {"text": {"backbone": "bert-tiny", "weights": "random", "epochs": 1, "batch_size": 32,
                     "eval_batch_size": 40, "max_len": 64, "train_examples": 96}}
    shared = tmp_path / "shared"
    preds = {}
    for seed in (0, 1):
        wd = tmp_path / f"seed{seed}"
        train_and_evaluate({"dataset": ML, "method": "ht", "seed": seed, "hparams": {"lr": 1e-3},
                            "settings": sett, "cache_dir": str(shared)}, wd)
        preds[seed] = load_predictions(wd)
    parts = sorted(p.parent.name for p in (shared / "boundary").glob("*/index.npz"))
    assert len(parts) == 3  # seed 0's and seed 1's training rows, one evaluation part
    # seed 1 alone, with a cache of its own: the same numbers as with seed 0's evaluation part
    alone = tmp_path / "alone"
    train_and_evaluate({"dataset": ML, "method": "ht", "seed": 1, "hparams": {"lr": 1e-3},
                        "settings": sett, "cache_dir": str(tmp_path / "own")}, alone)
    for role, p in load_predictions(alone).items():
        np.testing.assert_allclose(preds[1][role], p, rtol=0, atol=1e-5)
