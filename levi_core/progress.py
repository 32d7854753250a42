"""What a running job shows and measures: progress bars per phase, and seconds per phase.

A whole-split job spends many minutes in one phase (extracting the large model's states,
training it, evaluating it) and must not be silent while it does:

* ``bar(label, total)``: a tqdm bar on a terminal (stderr); off a terminal (logs, Ray workers,
  whose stderr Ray relays to the driver) one line when the phase starts, one line every
  ``LEVI_PROGRESS_EVERY`` seconds (default 30) with the count, rate and ETA, and one when it
  ends, so a log shows a steady pace instead of a redrawn bar. Lines name the job
  (``set_job``). ``label=None`` shows nothing (tests, inner loops). ``LEVI_PROGRESS=0`` turns
  every bar off, ``=1`` forces bars on.
* ``listen(fn)``: ``fn(event)`` hears each phase entered and, every few seconds, a bar's count:
  the worker keeps the job's heartbeat file (``bench status``'s running jobs) up to date with it.
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
from typing import Any, Callable, Mapping

_PHASES: dict[str, float] = defaultdict(float)
_ACTIVE: list[str] = []
_clock = time.monotonic  # tests replace it
EVERY_ENV = "LEVI_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0
NOTIFY_S = 5.0  # how often listeners hear a bar's count
_JOB = [""]
_LISTENERS: list[Callable[[Mapping[str, Any]], None]] = []


def every_s() -> float:
    """Seconds between two progress lines in a log (``LEVI_PROGRESS_EVERY``)."""
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def set_job(text: str) -> None:
    """Name the running job in every progress line (several jobs share one driver's log)."""
    _JOB[0] = text


def listen(fn: Callable[[Mapping[str, Any]], None]) -> Callable[[], None]:
    """Call ``fn(event)`` on each phase entered and bar progress; returns the way to stop."""
    _LISTENERS.append(fn)
    return lambda: _LISTENERS.remove(fn) if fn in _LISTENERS else None


def _notify(**event: Any) -> None:
    for fn in list(_LISTENERS):
        try:
            fn(event)
        except Exception:  # noqa: BLE001 - reporting progress must never fail the job
            pass


def duration(seconds: float) -> str:
    """``42s``, ``4m34s``, ``2h05m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def status(label: str, n: int, total: int | None, unit: str, elapsed: float) -> str:
    """``forward: 12,000/79,569 examples (15%), 210 examples/s, ETA 5m21s``."""
    parts = [f"{n:,}/{total:,} {unit}s ({100 * n / total:.0f}%)" if total else f"{n:,} {unit}s"]
    rate = n / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        parts.append(f"{rate:,.{0 if rate >= 10 else 1}f} {unit}s/s")
        if total and n < total:
            parts.append(f"ETA {duration((total - n) / rate)}")
    return f"{label}: " + ", ".join(parts)


def _prefix() -> str:
    return f"[levi] {_JOB[0]} | " if _JOB[0] else "[levi] "


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
        self.t0 = self.last = _clock()
        self.every = every_s()
        if label:
            print(f"{_prefix()}{label}: {total if total is not None else '?'} {unit}s", file=sys.stderr,
                  flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = _clock()
        if self.label and self.every and now - self.last >= self.every:
            self.last = now
            post = f" ({self.post})" if self.post else ""
            print(_prefix() + status(self.label, self.n, self.total, self.unit, now - self.t0) + post,
                  file=sys.stderr, flush=True)

    def set_postfix_str(self, s: str) -> None:
        self.post = s

    def close(self) -> None:
        if self.label:
            post = f" ({self.post})" if self.post else ""
            print(f"{_prefix()}{self.label}: done, {self.n} {self.unit}s in "
                  f"{_clock() - self.t0:.1f}s{post}", file=sys.stderr, flush=True)


class _Told:
    """A bar that also tells the listeners its count, every ``NOTIFY_S`` seconds."""

    def __init__(self, inner, label: str, total: int | None, unit: str):
        self.inner, self.label, self.total, self.unit = inner, label, total, unit
        self.n = 0
        self.t0 = self.last = _clock()
        _notify(bar=label, n=0, total=total, unit=unit, elapsed=0.0)

    def update(self, n: int = 1) -> None:
        self.inner.update(n)
        self.n += n
        now = _clock()
        if _LISTENERS and now - self.last >= NOTIFY_S:
            self.last = now
            _notify(bar=self.label, n=self.n, total=self.total, unit=self.unit, elapsed=now - self.t0)

    def set_postfix_str(self, s: str) -> None:
        self.inner.set_postfix_str(s)

    def close(self) -> None:
        self.inner.close()
        _notify(bar=None)


@contextlib.contextmanager
def bar(label: str | None, total: int | None = None, unit: str = "it"):
    """A progress bar for one phase (see the module docstring)."""
    if label and _enabled():
        from tqdm import tqdm

        b = tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True,
                 mininterval=1.0, file=sys.stderr)
    else:
        b = _Quiet(label, total, unit)
    if label:
        b = _Told(b, label, total, unit)
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
    _notify(phase=name)
    try:
        yield
    finally:
        _ACTIVE.pop()
        if outer is not None:
            _notify(phase=outer)
        dt = time.perf_counter() - t0
        _PHASES[name] += dt
        if outer is not None:
            _PHASES[outer] -= dt


def reset() -> None:
    _PHASES.clear()


def timings() -> dict[str, float]:
    """Seconds per phase since the last ``reset()``, rounded."""
    return {k: round(v, 3) for k, v in sorted(_PHASES.items()) if abs(v) > 1e-4}
