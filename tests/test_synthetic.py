"""The synthetic (Appendix E.8) dataset and its methods: generator statistics, determinism,
the LEVI loss, optimizer masks, divergence, composites, the method catalog."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from levi_core.api import load_predictions, train_and_evaluate  # noqa: E402
from levi_core.data import load_dataset  # noqa: E402
from levi_core.data.synthetic import DEFAULTS  # noqa: E402
from levi_core.errors import ConfigError  # noqa: E402
from levi_core.methods import get_impl, get_method, method_names  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# small and fast: the science is the same, only the sizes shrink
DS = "synthetic:n=400"
SETTINGS = {
    "hidden": [16, 16],
    "small_hidden": [8],
    "adapter_hidden": 8,
    "epochs": 4,
    "batch_size": 80,
    "pretrain_epochs": 10,
    "pretrain_lr": 1e-2,
}


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


# ---------------------------------------------------------------- the generator
@pytest.mark.parametrize("rho", [0.9, 0.7])
def test_generator_correlations_follow_the_stated_model(rho):
    ds = load_dataset(f"synthetic:rho={rho}")
    mu, dx, sig = DEFAULTS["x_signal"], DEFAULTS["x_dim"], DEFAULTS["s_noise"]
    # the docstring's model: corr(x_j, y) = mu / sqrt(mu^2 + 1);
    # corr(s, y) = (2 rho - 1) / sqrt(1 + sig^2) for a present feature
    cx = mu / math.sqrt(mu**2 + 1)
    cs = (2 * rho - 1) / math.sqrt(1 + sig**2)
    tol = 4 / math.sqrt(2000)  # four standard errors
    for role, split in ds.splits.items():
        X, y = split.small["x"], split.labels
        assert X.shape[1] == dx + 2
        for j in range(dx):
            assert abs(_corr(X[:, j], y) - cx) < tol * 1.5, (role, j)
        s1, s2 = X[:, dx], X[:, dx + 1]
        if role == "pretrain":
            assert abs(_corr(s1, y) - cs) < tol
            assert np.all(s2 == 0)  # s2 absent from pre-training
        elif role == "ood/test":
            assert abs(_corr(s1, y)) < tol and abs(_corr(s2, y)) < tol
            assert s1.std() > 0.9 and s2.std() > 0.9  # present, just uninformative
        else:  # the fine-tuning distribution
            assert np.all(s1 == 0)  # s1 absent, as in Lemma 2's x = [0, x2]
            assert abs(_corr(s2, y) - cs) < tol * (2 if role == "id_val" else 1)


def test_spurious_feature_is_more_predictive_than_x_in_training_data():
    ds = load_dataset("synthetic")
    dx = DEFAULTS["x_dim"]
    for role, col in (("pretrain", dx), ("train", dx + 1)):
        X, y = ds.splits[role].small["x"], ds.splits[role].labels
        acc_s = np.mean((X[:, col] > 0) == (y == 1))
        acc_x = np.mean((X[:, :dx].sum(1) > 0) == (y == 1))
        rho, sig = DEFAULTS["rho"], DEFAULTS["s_noise"]
        expect_s = rho * _phi(1 / sig) + (1 - rho) * (1 - _phi(1 / sig))
        expect_x = _phi(DEFAULTS["x_signal"] * math.sqrt(dx))
        assert abs(acc_s - expect_s) < 0.035 and abs(acc_x - expect_x) < 0.035
        assert acc_s > acc_x
    # ... and useless on the test set
    X, y = ds.splits["ood/test"].small["x"], ds.splits["ood/test"].labels
    assert abs(np.mean((X[:, dx + 1] > 0) == (y == 1)) - 0.5) < 0.05


def test_splits_sizes_roles_and_data_seed():
    ds = load_dataset("synthetic")
    sizes = {r: len(s) for r, s in ds.splits.items()}
    assert sizes == {"pretrain": 2000, "train": 1600, "id_val": 400, "id_test": 2000, "ood/test": 2000}
    assert not set(ds.splits["train"].example_ids) & set(ds.splits["id_val"].example_ids)
    assert ds.task == "classification" and ds.metric == "accuracy" and ds.num_classes == 2
    for s in ds.splits.values():
        assert s.small["x"].dtype == np.float32 and np.array_equal(s.small["x"], s.large["x"])
    assert load_dataset("synthetic").fingerprint == ds.fingerprint
    other = load_dataset("synthetic:data_seed=1")
    assert other.fingerprint != ds.fingerprint
    # rho only moves the spurious columns: x and y stay the same draw
    r7 = load_dataset("synthetic:rho=0.7")
    assert np.array_equal(r7.splits["train"].labels, ds.splits["train"].labels)
    assert np.array_equal(r7.splits["train"].small["x"][:, :4], ds.splits["train"].small["x"][:, :4])
    assert not np.array_equal(r7.splits["train"].small["x"][:, 5], ds.splits["train"].small["x"][:, 5])


@pytest.mark.parametrize(
    "ds_id, needle",
    [
        ("synthetic:rh=0.7", "unknown option 'rh'"),
        ("synthetic:rho=abc", "rho='abc' must be a number"),
        ("synthetic:rho=1.5", "must lie in [0, 1]"),
        ("synthetic:n=2.5", "must be an integer"),
        ("synthetic:absent=maybe", "'zero' or 'noise'"),
        ("synthetic:rho=nan", "must be a number"),
        ("synthetic:rho", "not key=value"),
    ],
)
def test_bad_options_are_config_errors(ds_id, needle):
    with pytest.raises(ConfigError) as e:
        load_dataset(ds_id)
    assert needle in str(e.value)


def test_absent_noise_option():
    ds = load_dataset("synthetic:absent=noise,n=2000")
    s1 = ds.splits["train"].small["x"][:, 4]
    assert s1.std() > 0.9 and abs(_corr(s1, ds.splits["train"].labels)) < 0.1


# ---------------------------------------------------------------- the methods
def _cfg(method, lr=1e-2, seed=0):
    return {
        "dataset": DS,
        "method": method,
        "seed": seed,
        "hparams": {} if lr is None else {"lr": lr},
        "settings": {"tabular": SETTINGS},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small run of each base method, shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for m in ("ft", "fs", "ht", "lp", "levi/pretrained", "lp_ft"):
        wd = root / m.replace("/", "_")
        deps = {"lp": out["lp"][0]} if m == "lp_ft" else {}
        out[m] = (wd, train_and_evaluate(_cfg(m, lr=1e-1 if m == "lp" else 1e-2), wd, deps))
    return out


def test_runs_predict_probabilities_for_every_non_pretrain_role(runs):
    ds = load_dataset(DS)
    for m, (wd, rec) in runs.items():
        assert rec["state"] == "done", m
        preds = load_predictions(wd)
        assert set(preds) == {"train", "id_val", "id_test", "ood/test"}
        for role, p in preds.items():
            assert p.shape == (len(ds.splits[role]), 2)
            assert np.allclose(p.sum(1), 1, atol=1e-5)
        assert rec["metrics"]["train"]["accuracy"] > 60, (m, rec["metrics"])  # it learnt


def test_same_config_gives_identical_predictions_in_a_fresh_process(runs, tmp_path):
    wd = tmp_path / "again"
    code = (
        "import json, sys; from levi_core.api import train_and_evaluate; "
        f"train_and_evaluate(json.loads(sys.argv[1]), {str(wd)!r})"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    subprocess.run(
        [sys.executable, "-c", code, json.dumps(_cfg("levi/pretrained"))], check=True, env=env, cwd=ROOT
    )
    a, b = load_predictions(runs["levi/pretrained"][0]), load_predictions(wd)
    for role in a:
        assert np.array_equal(a[role], b[role]), role
    # and the in-process memoised pre-training gives the same ft as a second call
    wd2 = tmp_path / "ft2"
    train_and_evaluate(_cfg("ft"), wd2)
    a, b = load_predictions(runs["ft"][0]), load_predictions(wd2)
    assert all(np.array_equal(a[r], b[r]) for r in a)
    # a different seed is a different run
    wd3 = tmp_path / "ft_seed1"
    train_and_evaluate(_cfg("ft", seed=1), wd3)
    assert not np.array_equal(load_predictions(wd3)["ood/test"], a["ood/test"])


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_levi_loss_is_the_mean_of_per_head_losses():
    import jax.numpy as jnp

    from levi_core import training
    from levi_core.engines.mlp import numpy_init
    from levi_core.models.small import MLPSmall, TaskHeads

    rng = np.random.default_rng(0)
    n, heads = 50, 3
    x = rng.standard_normal((n, 6)).astype(np.float32)
    states = tuple(rng.standard_normal((n, d)).astype(np.float32) for d in (5, 4, 2))
    y = rng.integers(0, 2, n).astype(np.int32)
    model = TaskHeads(small=MLPSmall(hidden=(8,)), adapter_hidden=8, n_out=2)
    params = numpy_init(model, [0, 0], {"x": x[:1]}, tuple(s[:1] for s in states))
    logits = np.asarray(model.apply({"params": params}, {"x": x}, states), np.float64)
    assert logits.shape == (n, heads, 2)

    def ce(lg):  # one head's mean cross-entropy, in numpy
        lg = lg - lg.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(lg).sum(1)) - lg[np.arange(n), y]))

    per_head = [ce(logits[:, j]) for j in range(heads)]
    assert len(set(np.round(per_head, 4))) == heads  # heads differ, so the check has teeth
    want = float(np.mean(per_head))
    got = float(training.multihead_ce(jnp.asarray(logits), jnp.asarray(y)))
    assert abs(got - want) < 1e-6
    # the trainer optimises exactly this: its first recorded loss (before any update) is it
    def apply(p, extra, b):
        return model.apply({"params": p}, {"x": b["x"]}, (b["s0"], b["s1"], b["s2"])), extra

    data = {"x": x, "s0": states[0], "s1": states[1], "s2": states[2], "y": y}
    _, _, losses, bad = training.fit(apply, params, {}, data, np.arange(n)[None, :], 1e-2,
                                     "classification")
    assert not bad and abs(float(losses[0]) - want) < 1e-5
    # the prediction is the mean of the heads' probabilities
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.allclose(np.asarray(training.mean_probs(jnp.asarray(logits))), probs.mean(1), atol=1e-6)


def test_optimizer_masks_train_only_what_they_should(runs):
    from levi_core import training

    engine = _engine(SETTINGS)
    pre = engine.start("pretrained", 0)
    pre = {**pre["body"], "head": pre["head"]}

    def changed(method):
        saved = training.load_params(runs[method][0])
        p = {**saved.get("body", {}), **({"head": saved["head"]} if "head" in saved else {})}
        return {
            layer: not all(np.array_equal(np.asarray(p[layer][k]), np.asarray(pre[layer][k])) for k in p[layer])
            for layer in p
        }

    # ht saves what it trained: the last half of the 2 hidden layers (layer_1) + head
    assert changed("ht") == {"layer_1": True, "head": True}
    assert changed("lp") == {"head": True}  # a new head on the frozen net
    assert changed("ft") == {"layer_0": True, "layer_1": True, "head": True}


def _engine(tabular):
    from levi_core.engines import engine_for
    from levi_core.methods.registry import RunContext
    from levi_core.settings import Settings

    ds = load_dataset(DS)
    return engine_for(RunContext(ds, 0, {}, Settings.from_mapping({"tabular": tabular}), None))


def test_ht_mask_names_the_last_half():
    for hidden, want in (((8, 8), {1}), ((8, 8, 8), {2}), ((8, 8, 8, 8), {2, 3})):
        engine = _engine({**SETTINGS, "hidden": hidden})
        params = engine.start("random", 0)
        labels = engine.labels(params, "half")
        trains = {k for k, v in labels["body"].items() if v["kernel"] == "train"}
        assert trains == {f"layer_{i}" for i in want}
        assert labels["head"]["bias"] == "train"


@pytest.mark.parametrize("lr", [float("inf"), float("nan")])
def test_non_finite_loss_ends_as_diverged(tmp_path, lr):
    rec = train_and_evaluate(_cfg("fs", lr=lr), tmp_path)
    assert rec["state"] == "diverged"
    rec = train_and_evaluate(_cfg("levi/pretrained", lr=lr), tmp_path / "levi")
    assert rec["state"] == "diverged"


def test_composites_and_dependent_methods(runs, tmp_path):
    deps = {m: runs[m][0] for m in ("ft", "fs", "lp", "ht", "lp_ft")}
    rec = train_and_evaluate(_cfg("ft_fs", lr=None), tmp_path / "ftfs", {"ft": deps["ft"], "fs": deps["fs"]})
    got = load_predictions(tmp_path / "ftfs")
    a, b = load_predictions(deps["ft"]), load_predictions(deps["fs"])
    for role in got:
        assert np.allclose(got[role], (a[role] + b[role]) / 2)
    assert rec["state"] == "done"
    rec = train_and_evaluate(_cfg("levi"), tmp_path / "levi", {"ht": deps["ht"]})
    assert rec["state"] == "done" and rec["extras"]["heads"] == 3
    rec = train_and_evaluate(_cfg("ft_zeroshot", lr=None), tmp_path / "wise",
                             {"lp": deps["lp"], "lp_ft": deps["lp_ft"]})
    alpha = rec["extras"]["alpha"]
    scores = rec["extras"]["id_val_by_alpha"]
    assert set(scores) == {str(round(0.1 * i, 1)) for i in range(11)}  # WiSE-FT's grid, 0 to 1
    assert scores[str(alpha)] == max(scores.values()) == rec["metrics"]["id_val"]["accuracy"]
    # a3 runs on LEVI's own large model (the selected ht run), without the small model
    rec = train_and_evaluate(_cfg("a3"), tmp_path / "a3", {"ht": deps["ht"]})
    assert rec["state"] == "done" and rec["extras"]["heads"] == 3
    rec = train_and_evaluate(_cfg("ft_robust", lr=None), tmp_path / "rob", {"ft": deps["ft"], "lp": deps["lp"]})
    assert rec["state"] == "done" and len(rec["extras"]["temperatures"]) == 2
    with pytest.raises(ConfigError, match="needs the selected 'ht' run"):
        train_and_evaluate(_cfg("levi"), tmp_path / "nodeps")


def test_catalog_declares_the_design_methods_consistently():
    names = set(method_names())
    for m in names:
        meth = get_method(m)
        assert set(meth.depends_on) <= names, m
        if meth.composite:
            assert not meth.grid, m
    assert get_method("lp").grid["lr"] != get_method("ft").grid["lr"]
    assert get_method("levi").depends_on == ("ht",)
    # layer/<k> is made on demand and runs on synthetic
    assert get_method("layer/2").name == "layer/2"
    assert callable(get_impl("layer/2", "synthetic"))
    with pytest.raises(ConfigError):
        get_method("layer/two")
    from levi_core.methods import Method, register_method

    register_method(Method("declared_only", "a method declared without an implementation"))
    with pytest.raises(ConfigError, match="no implementation"):
        get_impl("declared_only", "synthetic")


def test_lora_needs_a_transformer(tmp_path):
    with pytest.raises(ConfigError, match="transformer"):
        train_and_evaluate(_cfg("lora"), tmp_path)
