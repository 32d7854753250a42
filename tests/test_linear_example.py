"""The Appendix B / Table 6 linear example (claim C16), exact arithmetic."""

from __future__ import annotations

import json
import os
from fractions import Fraction as F

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from levi_core import linear_example as lx  # noqa: E402
from levi_core.api import train_and_evaluate  # noqa: E402

X = np.array([[float(v) for v in x] for x, _ in lx.FINETUNE_POINTS])
Y = np.array([float(y) for _, y in lx.FINETUNE_POINTS])


def test_fits_interpolate_and_match_the_paper():
    m = lx.models()
    for name in ("finetune", "scratch"):
        w = m[name]
        assert all(lx.dot(w, x) == y for x, y in lx.FINETUNE_POINTS), name  # exact fit
    # the paper's stated weights (Appendix B)
    assert m["finetune"] == tuple(F(v) for v in (1, 1, 1, 1, 1))
    assert m["scratch"] == tuple(F(v) for v in (0, 0, 1, 1, 1))


def test_fits_are_where_gradient_descent_goes():
    """Plain float gradient descent on the squared loss, from w_pretrain and from zero."""
    for w0, name in ((lx.W_PRETRAIN, "finetune"), ((F(0),) * 5, "scratch")):
        w = np.array([float(v) for v in w0])
        for _ in range(20000):
            w -= 0.5 * X.T @ (X @ w - Y) / len(Y)
        assert np.allclose(w, [float(v) for v in lx.models()[name]], atol=1e-8), name


def test_min_norm_fit_is_the_nearest_solution():
    # any other interpolating point w + d with X d = 0 is farther from w0
    w0 = lx.W_PRETRAIN
    w = lx.min_norm_fit(w0)
    null = F(1), F(-1), F(0), F(0), F(0)  # X has zeros in columns 1, 2
    assert all(lx.dot(x, null) == 0 for x, _ in lx.FINETUNE_POINTS)
    for t in (F(1, 2), F(-3)):
        other = tuple(a + t * b for a, b in zip(w, null))
        d0 = sum((a - b) ** 2 for a, b in zip(w, w0))
        d1 = sum((a - b) ** 2 for a, b in zip(other, w0))
        assert d1 > d0


def test_our_test_points_satisfy_the_papers_description():
    xs = np.array([[float(v) for v in x] for x, _ in lx.TEST_POINTS])
    ys = np.array([float(y) for _, y in lx.TEST_POINTS])
    assert len(ys) == 4
    assert np.allclose(xs @ np.array([0, 1, 1, 1, 0.0]), ys)  # w_true has zero error
    for col in (0, 4):  # y uncorrelated with x1 and x5 (sample correlation exactly 0)
        assert abs(np.corrcoef(xs[:, col], ys)[0, 1]) < 1e-12
        assert xs[:, col].std() > 0


def test_errors_and_c16_verdict_agree_with_an_independent_computation():
    res = lx.evaluate()
    xs = np.array([[float(v) for v in x] for x, _ in lx.TEST_POINTS])
    ys = np.array([float(y) for _, y in lx.TEST_POINTS])
    mse = {}
    for name, w in (("pretrain", [1, 1, 1, 0, 0]), ("scratch", [0, 0, 1, 1, 1]), ("finetune", [1, 1, 1, 1, 1])):
        err = (xs @ np.array(w, float) - ys) ** 2
        assert np.allclose([float(e) for e in res[name]["sq_errors"]], err)
        mse[name] = err.mean()
        assert float(res[name]["mse"]) == mse[name]
    assert res["true"]["mse"] == 0
    assert lx.c16_verdict(res) == (mse["finetune"] > max(mse["pretrain"], mse["scratch"]))
    assert lx.c16_verdict(res)


def test_report_is_json_and_exact():
    rep = lx.report()
    back = json.loads(json.dumps(rep))
    assert F(back["models"]["finetune"]["mse"]) == lx.evaluate()["finetune"]["mse"]
    assert back["test_corr_numerator_y_x1"] == "0" and back["test_corr_numerator_y_x5"] == "0"
    assert back["c16_finetune_worse_than_both"] is True
    assert "ours" in back["test_points_source"]


def test_linear_example_runs_as_a_job(tmp_path):
    rec = train_and_evaluate(
        {"dataset": "linear_toy", "method": "linear_example", "seed": 0, "hparams": {}, "settings": {}},
        tmp_path,
    )
    assert rec["state"] == "done"
    m = rec["metrics"]["ood/test"]
    assert m["mse_finetune"] > m["mse_pretrain"] and m["mse_finetune"] > m["mse_scratch"]
    assert m["mse_true"] == 0
    assert rec["extras"]["c16_finetune_worse_than_both"] is True
    json.dumps(rec)
