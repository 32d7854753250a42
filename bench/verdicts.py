"""How a claim's verdict is drawn: the Verdict record, its statuses, tests on differences that
count only beyond their uncertainty, and the per-shift rule with its coverage.

A claim rests on tests of the form "A is better than B on a column" (or "better than B minus
a tolerance"): the difference ``A - B`` with its uncertainty (``bench.uncertainty``: seed
spread and a paired bootstrap over evaluation examples). A test *holds* when A's advantage
exceeds the threshold by more than ``t(0.975, df)`` standard errors (df: ``bench.uncertainty``), *fails* when it falls short by more than that, and is *open* otherwise (the line says by how much the difference falls short).
Tests combine with ``at_least(k, ...)`` (``all_of``, ``any_of``): it holds when k hold, fails
when fewer than k can still hold, and is open otherwise. So a verdict is only ``supported`` or
``contradicted`` when every difference it rests on is larger than its uncertainty.

Every comparison goes through ``levi_core.metrics`` (direction of each metric), never a test of
the metric's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from levi_core.methods.catalog import label

from bench.metric_format import metric as metric_format
from bench.sections import Shift
from bench.uncertainty import Gap, Noise

SUPPORTED, CONTRADICTED, PARTLY, UNDECIDED = "supported", "contradicted", "partly supported", "undecided"
ILLUSTRATED, NOT_ILLUSTRATED = "illustrated", "not illustrated"
HOLDS, FAILS, OPEN = "holds", "fails", "undecided"


@dataclass(frozen=True)
class Test:
    """``a`` better than ``b`` on a column by more than ``threshold`` (metric units, in the
    better direction; negative: a tolerance), decided against its uncertainty."""

    a: str
    b: str
    column: str
    gap: Gap | None
    threshold: float = 0.0

    @property
    def margin(self) -> float | None:
        """By how much the advantage of ``a`` exceeds the threshold (negative: falls short)."""
        return None if self.gap is None else self.gap.advantage - self.threshold

    @property
    def uncertainty(self) -> float | None:
        """``t(0.975, df)`` standard errors: how large ``|margin|`` must be to count."""
        return None if self.gap is None or self.gap.se is None else self.gap.critical * self.gap.se

    @property
    def state(self) -> str:
        if self.uncertainty is None:
            return OPEN
        if self.margin > self.uncertainty:
            return HOLDS
        return FAILS if self.margin < -self.uncertainty else OPEN

    @property
    def shortfall(self) -> float | None:
        """How much larger ``|margin|`` would have to be to count (0 when it counts)."""
        if self.uncertainty is None:
            return None
        return max(0.0, self.uncertainty - abs(self.margin))

    def text(self) -> str:
        g = self.gap
        if g is None:
            return f"{label(self.a)} or {label(self.b)} has no value on {self.column}"
        m = metric_format(g.metric)
        s = f"{label(g.a)} - {label(g.b)} = {m.diff(g.diff, sign=True)} {g.unit}"
        if self.threshold:
            bound = -self.threshold if m.lower_is_better else self.threshold
            s += f" (needs {'<' if m.lower_is_better else '>'} {m.diff(bound, sign=True)})"
        if self.uncertainty is None:
            return s + f", undecidable ({g.basis})"
        if self.state == OPEN:
            return (s + f", within its uncertainty ±{m.diff(self.uncertainty)} ({g.basis}); "
                    f"short by {m.diff(self.shortfall)}")
        return s + f" ± {m.diff(self.uncertainty)}"


@dataclass(frozen=True)
class Outcome:
    """A test or a combination of tests: its state, a line saying why, the tests beneath."""

    state: str
    why: str
    tests: tuple[Test, ...] = ()
    name: str = ""  # a named part of a claim: its line shows whatever its state


def test(noise: Noise, a: str, b: str, column: str, threshold: float = 0.0) -> Outcome:
    t = Test(a, b, column, noise.gap(a, b, column), threshold)
    return Outcome(t.state, t.text(), (t,))


def at_least(k: int, parts: Sequence[Outcome], name: str = "") -> Outcome:
    """Holds when at least ``k`` parts hold, fails when fewer than ``k`` can still hold (the
    open ones included), open otherwise."""
    by = {s: [p for p in parts if p.state == s] for s in (HOLDS, FAILS, OPEN)}
    state = (HOLDS if len(by[HOLDS]) >= k else FAILS if len(by[HOLDS]) + len(by[OPEN]) < k else OPEN)
    tests = tuple(t for p in parts for t in p.tests)
    why_parts = parts if any(p.name for p in parts) else by[state]
    if state == HOLDS and len(why_parts) > 1 and all(len(p.tests) == 1 for p in why_parts):
        weakest = min(why_parts, key=lambda p: _strength(p.tests[0]))
        why = f"{len(why_parts)} of {len(parts)} beyond their uncertainty; the closest: {weakest.why}"
    else:
        why = "; ".join(p.why for p in why_parts[:4])
        if len(why_parts) > 4:
            why += f"; and {len(why_parts) - 4} more"
    if name:
        why = f"{name}: {state} ({why})"
    return Outcome(state, why, tests, name)


def all_of(parts: Sequence[Outcome], name: str = "") -> Outcome:
    return at_least(len(parts), parts, name)


def any_of(parts: Sequence[Outcome], name: str = "") -> Outcome:
    return at_least(1, parts, name)


def fact(ok: bool, why: str) -> Outcome:
    """A deterministic part (costs, exact arithmetic): no uncertainty."""
    return Outcome(HOLDS if ok else FAILS, why)


def _strength(t: Test) -> float:
    return abs(t.margin) / t.uncertainty if t.uncertainty else float("inf")


@dataclass(frozen=True)
class Verdict:
    claim: str
    statement: str
    status: str
    detail: str
    evidence: tuple[Test, ...] = field(default=(), repr=False)  # the differences it rests on


def status_from(states: Sequence[str]) -> str:
    """Supported when every part holds, contradicted when every part fails, partly when some
    hold and some fail; undecided when a part is open (and not already partly) or none."""
    if not states:
        return UNDECIDED
    if HOLDS in states and FAILS in states:
        return PARTLY
    if OPEN in states:
        return UNDECIDED
    return SUPPORTED if FAILS not in states else CONTRADICTED




def uncertainty_note(tests: Sequence[Test], shown: str = "") -> str:
    """How the ± of the decided tests shown in ``shown`` was estimated (an open test's line
    says it itself)."""
    bases = sorted({t.gap.basis for t in tests
                    if t.gap is not None and t.state != OPEN and t.text() in shown})
    if not bases:
        return ""
    return ("± is the seed part of the difference's standard error at t(0.975, seeds - 1) and "
            f"its bootstrap part at 1.96, combined in quadrature ({'; '.join(bases)})")


def verdict(claim: str, statement: str, status: str, details: Sequence[str],
            tests: Sequence[Test] = ()) -> Verdict:
    text = "; ".join(details)
    note = uncertainty_note(tests, text)
    return Verdict(claim, statement, status, f"{text}; {note}" if note else text, tuple(tests))


class ShiftView:
    """One shift's columns for a check: means and tests on ``id`` and ``ood``."""

    def __init__(self, noise: Noise, shift: Shift):
        self.noise, self.shift, self.metric = noise, shift, shift.metric

    def column(self, which: str) -> str:
        return f"{self.shift.key}/{which}"

    def mean(self, method: str, which: str) -> float | None:
        return self.noise.result.mean(method, self.column(which))

    def cell(self, value: float | None) -> str:
        """A mean (or a seed std) of this shift's metric as the table's cells show it."""
        return metric_format(self.metric).cell(value)

    def test(self, a: str, b: str, which: str, threshold: float = 0.0) -> Outcome:
        return test(self.noise, a, b, self.column(which), threshold)

    def beats_all(self, method: str, others: Sequence[str], which: str) -> Outcome:
        return all_of([self.test(method, o, which) for o in others if o != method])


Check = Callable[[ShiftView], Outcome]


def per_shift(noise: Noise, statement: str, claim: str, methods: Sequence[str], check: Check,
              shifts: list[str] | None = None) -> Verdict:
    """Apply ``check`` to every shift of the table's grid (those named in ``shifts``).

    Supported when it holds on every shift the claim is about; when some of them were not run
    (not part of the preset, or no records yet) and it holds on the rest, "supported on k of n
    shifts" says which ran. Contradicted when it fails on every shift that ran, partly supported
    when it holds on some and fails on others, undecided when a shift is open (within noise)
    or none ran.
    """
    result = noise.result
    grid = result.spec.grid
    # A row the claim compares that the table lacks (a --methods filter, or a grid without it)
    # leaves the claim open: comparing the rows that remain would answer another question.
    absent = [m for m in dict.fromkeys(methods)
              if grid is None or m not in (*grid.rows_for(result.preset),
                                           *grid.references_for(result.preset))]
    if absent:
        return Verdict(claim, statement, UNDECIDED,
                       f"cannot decide: this table has no row for {', '.join(absent)} (a --methods "
                       f"filter, or a preset without it); report the whole table to decide")
    wanted = [s for s in (grid.shifts if grid else ()) if shifts is None or s.key in shifts]
    active = {c.key for c in grid.columns_for(result.preset)} if grid else set()
    states, details, tests, not_run, missing = [], [], [], [], []
    for shift in wanted:
        if f"{shift.key}/id" not in active:
            not_run.append(shift.label)
            continue
        view = ShiftView(noise, shift)
        if any(view.mean(m, w) is None for m in methods for w in ("id", "ood")):
            missing.append(shift.label)
            continue
        o = check(view)
        states.append(o.state)
        tests += o.tests
        details.append(f"{shift.label}: {o.state}" + (f" ({o.why})" if o.why else ""))
    status = status_from(states)
    if not_run:
        details.append(f"not run under preset {result.preset}: {', '.join(not_run)}")
    if missing:
        details.append(f"no results yet (`{result.run_command}`): "
                       f"{', '.join(missing)}")
    if status == SUPPORTED and (not_run or missing):
        why = ("the others not run under this preset" if not missing
               else "the others have no results yet" if not not_run
               else "the others not run under this preset or without results yet")
        status = f"supported on {len(states)} of {len(wanted)} shifts ({why})"
    return verdict(claim, statement, status, details, tests)


__all__ = ["Verdict", "Test", "Outcome", "SUPPORTED", "CONTRADICTED", "PARTLY", "UNDECIDED",
           "ILLUSTRATED", "NOT_ILLUSTRATED", "HOLDS", "FAILS", "OPEN", "status_from",
           "test", "at_least", "all_of", "any_of", "fact", "verdict",
           "ShiftView", "per_shift"]
