"""Verdicts on the paper's claims (../shared/paper/CLAIMS.md) from reproduced numbers.

Each checker reads a TableResult and returns a Verdict: ``supported``, ``contradicted``,
``partly supported`` (some parts hold, some do not) or ``undecided`` (cells missing). The
detail line always shows the numbers the verdict was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.collect import TableResult

SUPPORTED, CONTRADICTED, PARTLY, UNDECIDED = "supported", "contradicted", "partly supported", "undecided"

# C15: "each within a few points of the paper's figure". We read "a few" as 5 accuracy points.
C15_TOLERANCE = 5.0


@dataclass(frozen=True)
class Verdict:
    claim: str
    statement: str
    status: str
    detail: str


def _means(result: TableResult, column: str, methods: list[str]) -> dict[str, float] | None:
    out = {}
    for m in methods:
        mean = result.cell(m, column).mean
        if mean is None:
            return None
        out[m] = mean
    return out


def c15(result: TableResult) -> Verdict:
    statement = ("Synthetic E.8: test accuracy FT 68.9, FS 69.5, LEVI 75.5 (ordering LEVI > FS >= FT; "
                 f"each within {C15_TOLERANCE:g} points of the paper)")
    rows = {"ft": "FT", "fs": "FS", "levi/pretrained": "LEVI"}
    means = _means(result, "ood", list(rows))
    if means is None:
        return Verdict("C15", statement, UNDECIDED, "missing cells: run `bench run synthetic`")
    order_ok = means["levi/pretrained"] > means["fs"] >= means["ft"]
    paper = {m: result.spec.paper[(m, "ood")] for m in rows}
    gaps = {m: means[m] - paper[m] for m in rows}
    close = all(abs(g) <= C15_TOLERANCE for g in gaps.values())
    nums = ", ".join(f"{rows[m]} {means[m]:.1f} (paper {paper[m]:.1f}, {gaps[m]:+.1f})" for m in rows)
    order = "ordering LEVI > FS >= FT holds" if order_ok else "ordering LEVI > FS >= FT does not hold"
    near = "all within tolerance" if close else "not all within tolerance"
    status = SUPPORTED if order_ok and close else (PARTLY if order_ok or close else CONTRADICTED)
    return Verdict("C15", statement, status, f"{nums}; {order}; {near}")


def c16(result: TableResult) -> Verdict:
    statement = ("Appendix B: the fine-tuned model [1,1,1,1,1] has a larger test error than the "
                 "pre-trained [1,1,1,0,0] and the from-scratch [0,0,1,1,1] models")
    rec = result.extras.get(("linear_toy", "linear_example"))
    if rec is None:
        return Verdict("C16", statement, UNDECIDED, "missing: run `bench run synthetic`")
    ex = rec.get("extras") or {}
    models = ex.get("models") or {}
    holds = ex.get("c16_finetune_worse_than_both")
    if holds is None or not models:
        return Verdict("C16", statement, UNDECIDED, "the linear example's record has no verdict")
    nums = ", ".join(f"{LINEAR_NAMES.get(k, k)} {m['mse']}" for k, m in models.items())
    return Verdict("C16", statement, SUPPORTED if holds else CONTRADICTED,
                   f"exact mean squared test errors: {nums}")


LINEAR_NAMES = {"pretrain": "pre-trained", "scratch": "from-scratch", "finetune": "fine-tuned",
                "true": "true"}


CHECKERS: dict[str, Callable[[TableResult], Verdict]] = {"C15": c15, "C16": c16}


def verdicts(result: TableResult) -> list[Verdict]:
    return [CHECKERS[c](result) for c in result.spec.claims if c in CHECKERS]
