"""The paper's Appendix B / Table 6 linear toy example, computed exactly with Fractions.

Setting (Appendix B): five features ``[x1, .., x5]``; x1 and x5 are spurious, x2..x4
transferable; a linear model ``y = w . x``; ``w_true = [0, 1, 1, 1, 0]``;
``w_pretrain = [1, 1, 1, 0, 0]`` (uses the pre-training spurious feature x1); three fine-tuning
points (from the paper's text) that carry the fine-tuning spurious feature x5 and never x1.

Fine-tuning and training from scratch are computed, not typed in: gradient descent on the
squared loss started at ``w0`` converges to the solution of ``X w = y`` closest to ``w0``
(``w0`` plus the minimum-norm update ``X^T (X X^T)^-1 (y - X w0)``), solved exactly here by
Gaussian elimination over the rationals. From ``w_pretrain`` this gives ``w_finetune`` and from
``0`` it gives ``w_scratch`` (the paper states [1,1,1,1,1] and [0,0,1,1,1]; the tests check that
the computation agrees).

Test points: the paper's Table 6 values are not in the text we have, so ``TEST_POINTS`` are
OURS, constructed to satisfy what the text says of them: ``y = w_true . x`` on each (w_true has
zero error), and the sample correlation of y with x1 and with x5 is exactly zero.
"""

from __future__ import annotations

from fractions import Fraction as F
from typing import Any, Sequence

Vector = tuple[F, ...]

W_TRUE: Vector = tuple(F(v) for v in (0, 1, 1, 1, 0))
W_PRETRAIN: Vector = tuple(F(v) for v in (1, 1, 1, 0, 0))

# Appendix B's three fine-tuning points (x, y)
FINETUNE_POINTS: tuple[tuple[Vector, F], ...] = (
    ((F(0), F(0), F(1, 3), F(1, 3), F(1, 3)), F(1)),
    ((F(0), F(0), F(-1, 2), F(-1, 2), F(0)), F(-1)),
    ((F(0), F(0), F(1, 2), F(1, 4), F(1, 4)), F(1)),
)

# OUR four test points (Table 6's are not given in the text): y = w_true . x exactly; x1 and
# x5 take values +1, +1, -1, -1 against labels +1, -1, +1, -1, so their sample correlation
# with y is zero; x2..x4 vary so that the transferable part is not trivial.
_TEST_X: tuple[Vector, ...] = (
    (F(1), F(1), F(0), F(0), F(1)),
    (F(1), F(0), F(-1, 2), F(-1, 2), F(1)),
    (F(-1), F(0), F(1, 2), F(1, 2), F(-1)),
    (F(-1), F(-1), F(0), F(0), F(-1)),
)


def dot(a: Sequence[F], b: Sequence[F]) -> F:
    return sum((x * y for x, y in zip(a, b)), F(0))


TEST_POINTS: tuple[tuple[Vector, F], ...] = tuple((x, dot(W_TRUE, x)) for x in _TEST_X)


def solve(a: list[list[F]], b: list[F]) -> list[F]:
    """Solve the square system ``a z = b`` exactly (Gauss-Jordan with pivoting on non-zero)."""
    n = len(a)
    m = [list(row) + [rhs] for row, rhs in zip(a, b)]
    for col in range(n):
        piv = next((r for r in range(col, n) if m[r][col] != 0), None)
        if piv is None:
            raise ValueError("singular system")
        m[col], m[piv] = m[piv], m[col]
        p = m[col][col]
        m[col] = [v / p for v in m[col]]
        for r in range(n):
            if r != col and m[r][col] != 0:
                f = m[r][col]
                m[r] = [v - f * w for v, w in zip(m[r], m[col])]
    return [m[r][n] for r in range(n)]


def min_norm_fit(w0: Sequence[F], points=FINETUNE_POINTS) -> Vector:
    """The interpolating solution of ``X w = y`` nearest to ``w0`` (where GD from w0 goes)."""
    xs = [list(x) for x, _ in points]
    ys = [y for _, y in points]
    gram = [[dot(xi, xj) for xj in xs] for xi in xs]
    resid = [y - dot(x, w0) for x, y in zip(xs, ys)]
    alpha = solve(gram, resid)
    return tuple(w0[k] + sum((alpha[i] * xs[i][k] for i in range(len(xs))), F(0)) for k in range(len(w0)))


def correlation_numerator(a: Sequence[F], b: Sequence[F]) -> F:
    """Sample covariance times n (zero iff the sample correlation is zero or undefined)."""
    ma, mb = sum(a, F(0)) / len(a), sum(b, F(0)) / len(b)
    return sum(((u - ma) * (v - mb) for u, v in zip(a, b)), F(0))


def models() -> dict[str, Vector]:
    return {
        "pretrain": W_PRETRAIN,
        "scratch": min_norm_fit((F(0),) * 5),
        "finetune": min_norm_fit(W_PRETRAIN),
        "true": W_TRUE,
    }


def evaluate(test_points=TEST_POINTS) -> dict[str, dict[str, Any]]:
    """Per model: predictions, squared errors per test point and their mean (Fractions)."""
    out = {}
    for name, w in models().items():
        preds = [dot(w, x) for x, _ in test_points]
        errs = [(p - y) ** 2 for p, (_, y) in zip(preds, test_points)]
        out[name] = {"w": w, "predictions": preds, "sq_errors": errs, "mse": sum(errs, F(0)) / len(errs)}
    return out


def c16_verdict(results: dict[str, dict[str, Any]]) -> bool:
    """C16: the fine-tuned model's test error exceeds both the pre-trained and from-scratch."""
    ft = results["finetune"]["mse"]
    return ft > results["pretrain"]["mse"] and ft > results["scratch"]["mse"]


def _s(v):
    if isinstance(v, F):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_s(u) for u in v]
    if isinstance(v, dict):
        return {k: _s(u) for k, u in v.items()}
    return v


def report() -> dict[str, Any]:
    """A JSON-able summary: Fractions as strings ("4", "1/3"), the C16 verdict."""
    res = evaluate()
    ys = [y for _, y in TEST_POINTS]
    return {
        "finetune_points": [{"x": _s(x), "y": _s(y)} for x, y in FINETUNE_POINTS],
        "test_points": [{"x": _s(x), "y": _s(y)} for x, y in TEST_POINTS],
        "test_points_source": "ours (Table 6's values are not in the paper's text)",
        "test_corr_numerator_y_x1": _s(correlation_numerator(ys, [x[0] for x, _ in TEST_POINTS])),
        "test_corr_numerator_y_x5": _s(correlation_numerator(ys, [x[4] for x, _ in TEST_POINTS])),
        "models": _s(res),
        "c16_finetune_worse_than_both": c16_verdict(res),
    }
