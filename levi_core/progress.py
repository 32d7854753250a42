"""What a running job shows and measures: progress bars per phase, and seconds per phase.

A whole-split job spends many minutes in one phase (extracting the large model's states,
training it, evaluating it) and must not be silent while it does:

* ``bar(label, total)``: a tqdm bar on a terminal (stderr); off a terminal (logs, Ray workers)
  one line when the phase starts and one when it ends, with its duration, so logs stay short.
  ``label=None`` shows nothing (tests, inner loops). ``LEVI_PROGRESS=0`` turns every bar off,
  ``=1`` forces bars on.
* ``phase(name)``: adds the seconds spent inside it to the job's per-phase totals
  (``timings()``), which ``api.train_and_evaluate`` writes into the record
  (``timings.phases``: ``features``, ``train_large``, ``evaluate``, ``train_heads``, ...), so
  the budget of a preset is visible per phase (``bench status --timings``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import defaultdict

_PHASES: dict[str, float] = defaultdict(float)
_ACTIVE: list[str] = []


def _enabled() -> bool:
    flag = os.environ.get("LEVI_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return sys.stderr.isatty()


class _Quiet:
    """The bar's interface without drawing: a line at the start and at the end of a phase."""

    def __init__(self, label: str | None, total: int | None, unit: str):
        self.label, self.total, self.unit = label, total, unit
        self.n = 0
        self.post = ""
        self.t0 = time.perf_counter()
        if label:
            print(f"[levi] {label}: {total if total is not None else '?'} {unit}s", file=sys.stderr,
                  flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str) -> None:
        self.post = s

    def close(self) -> None:
        if self.label:
            post = f" ({self.post})" if self.post else ""
            print(f"[levi] {self.label}: done, {self.n} {self.unit}s in "
                  f"{time.perf_counter() - self.t0:.1f}s{post}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def bar(label: str | None, total: int | None = None, unit: str = "it"):
    """A progress bar for one phase (see the module docstring)."""
    if label and _enabled():
        from tqdm import tqdm

        b = tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True,
                 mininterval=1.0, file=sys.stderr)
    else:
        b = _Quiet(label, total, unit)
    try:
        yield b
    finally:
        b.close()


@contextlib.contextmanager
def phase(name: str):
    """Count the seconds inside into phase ``name`` (nested phases count only in the inner
    one, so the phases of a job add up to at most its run time)."""
    outer = _ACTIVE[-1] if _ACTIVE else None
    t0 = time.perf_counter()
    _ACTIVE.append(name)
    try:
        yield
    finally:
        _ACTIVE.pop()
        dt = time.perf_counter() - t0
        _PHASES[name] += dt
        if outer is not None:
            _PHASES[outer] -= dt


def reset() -> None:
    _PHASES.clear()


def timings() -> dict[str, float]:
    """Seconds per phase since the last ``reset()``, rounded."""
    return {k: round(v, 3) for k, v in sorted(_PHASES.items()) if abs(v) > 1e-4}
