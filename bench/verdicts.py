"""How a claim's verdict is drawn: the Verdict record, its statuses, and the per-shift rule.

Every comparison goes through ``levi_core.metrics`` (``better``, ``sort_key``): which value is
better is the metric's declared direction, never a test of the metric's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from levi_core.metrics import sort_key

from bench.collect import TableResult
from bench.sections import Shift

SUPPORTED, CONTRADICTED, PARTLY, UNDECIDED = "supported", "contradicted", "partly supported", "undecided"


@dataclass(frozen=True)
class Verdict:
    claim: str
    statement: str
    status: str
    detail: str


def status_of(outcomes: list[bool]) -> str:
    """Supported when every part holds, contradicted when none, partly otherwise."""
    if not outcomes:
        return UNDECIDED
    return SUPPORTED if all(outcomes) else CONTRADICTED if not any(outcomes) else PARTLY


def best_of(metric: str, values: dict[str, float]) -> str:
    """The key of the best value in the metric's direction (the first one on ties)."""
    return min(values, key=lambda k: sort_key(metric, values[k]))


def fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"


Check = Callable[[dict, dict, str, Shift], tuple[bool, str]]


def per_shift(result: TableResult, statement: str, claim: str, methods: list[str], check: Check,
              shifts: list[str] | None = None) -> Verdict:
    """Apply ``check(id_means, ood_means, metric, shift)`` to every shift of the table's grid
    whose cells exist.

    The verdict is supported when it holds on every shift with numbers, contradicted when on
    none, partly supported otherwise; shifts without cells are listed as undecided.
    """
    grid = result.spec.grid
    outcomes, details, missing = [], [], []
    active = {c.key for c in grid.columns_for(result.preset)} if grid else set()
    for shift in grid.shifts if grid else ():
        if shifts is not None and shift.key not in shifts:
            continue
        if f"{shift.key}/id" not in active:
            details.append(f"{shift.label}: not part of preset {result.preset}")
            continue
        ids = {m: result.mean(m, f"{shift.key}/id") for m in methods}
        oods = {m: result.mean(m, f"{shift.key}/ood") for m in methods}
        if any(v is None for v in list(ids.values()) + list(oods.values())):
            missing.append(shift.label)
            continue
        ok, why = check(ids, oods, shift.metric, shift)
        outcomes.append(ok)
        details.append(f"{shift.label}: {'holds' if ok else 'fails'} ({why})")
    if missing:
        details.append(f"undecided (missing cells): {', '.join(missing)}")
    return Verdict(claim, statement, status_of(outcomes), "; ".join(details))


__all__ = ["Verdict", "SUPPORTED", "CONTRADICTED", "PARTLY", "UNDECIDED", "status_of", "best_of",
           "fmt", "per_shift"]
