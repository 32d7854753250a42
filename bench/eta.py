"""The time a run has left, from how long each kind of job took.

A table mixes jobs that take a tenth of a second (an ensemble of two stored predictions) with
jobs that take half an hour (a large model's training and evaluation), so "elapsed time per
finished job x jobs left" swings by an order of magnitude with the order jobs happen to finish
in. Here each job is weighted by the mean duration of finished jobs of its method (on its
dataset where known), read from the records of this run and of earlier runs in the same
results folder; the run's own pace (weighted work done per second of wall clock, which counts
its parallel workers) turns the weighted work left into seconds.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from bench.jobs import Job


class Durations:
    """Mean seconds of finished jobs by (dataset, method) and by method."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, list[float]] = defaultdict(list)

    def add(self, job: Job, record: Mapping[str, Any]) -> None:
        secs = (record.get("timings") or {}).get("total_s")
        if isinstance(secs, (int, float)) and secs >= 0:
            self._by_key[(job.dataset, job.method)].append(float(secs))
            self._by_key[(job.method,)].append(float(secs))

    def expected(self, job: Job) -> float | None:
        """Seconds ``job`` is expected to take; None when no job of its method has finished."""
        for key in ((job.dataset, job.method), (job.method,)):
            if self._by_key.get(key):
                values = self._by_key[key]
                return sum(values) / len(values)
        return None


def seconds_left(done: Iterable[Job], left: Iterable[Job], elapsed: float,
                 durations: Durations) -> float | None:
    """Wall-clock seconds the ``left`` jobs should take, at the pace the ``done`` ones (this
    run's, over ``elapsed`` seconds) went; a method with no finished job counts as the mean
    of the known ones. None when nothing is known to weigh with."""
    known = [d for d in (durations.expected(j) for j in done) if d is not None]
    if not known or sum(known) <= 0 or elapsed <= 0:
        return None
    fallback = sum(known) / len(known)
    work_left = sum(durations.expected(j) or fallback for j in left)
    return elapsed * work_left / sum(known)
