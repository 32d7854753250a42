"""How uncertain a difference between two methods is: seed spread plus a paired bootstrap.

A claim rests on differences such as "LEVI's OOD RMSE minus FT's". For two methods A and B on
one column of a table (a metric of a split role, or the mean over several OOD roles):

* ``d_s = A_s - B_s`` for every seed s where both have a value (the selected run of each);
  the difference is ``d = mean_s d_s`` (the difference of the table's cell means).
* Seed spread: ``se_seed = stdev_s(d_s) / sqrt(n)`` (sample std, n - 1), over n seeds.
* Paired bootstrap over evaluation examples: ``N_BOOT`` resamples of each role's example
  indices, drawn with replacement; on each resample both methods' metric (RMSE, accuracy) is
  recomputed from their stored predictions for every seed on the *same* examples, and
  ``d*`` is the mean over seeds of the per-seed differences (for a mean over several OOD roles,
  each role is resampled and the roles' metrics averaged, as the table does). The evaluation
  examples are the same for every seed, so one resample serves all seeds and both methods, and
  ``se_boot = stdev(d*)`` is the standard error of ``d`` from the choice of examples.
* Combined: ``se = sqrt(se_boot**2 + se_seed**2)``. With one seed, ``se = se_boot`` (said so);
  without usable predictions (an old record, a deleted artifact, labels that no longer match),
  ``se = se_seed`` (said so); with neither there is no estimate and nothing is decided.

A difference counts when ``|d - threshold| > Z * se`` (``Z = 1.96``, two-sided 95%). The
bootstrap draws from a generator seeded with ``BOOT_SEED`` and the role's name, so verdicts are
deterministic and every comparison on a role uses the same resamples.
"""

from __future__ import annotations

import math
import statistics
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from levi_core.metrics import lower_is_better, restrict_to_classes

from bench.collect import TableResult, role_value
from bench.sections import resolve

Z = 1.96        # a difference counts when larger than Z standard errors
N_BOOT = 400    # bootstrap resamples
BOOT_SEED = 2024
_CHUNK = 2_000_000  # resample weights held at once (resamples x examples)


@dataclass(frozen=True)
class Gap:
    """A difference ``a - b`` on one column, in the metric's units, with its uncertainty.

    ``se`` is None when it cannot be estimated (one seed and no predictions); ``basis`` says
    in words how it was estimated.
    """

    a: str
    b: str
    column: str
    metric: str
    diff: float
    se: float | None
    se_seed: float | None
    se_boot: float | None
    n_seeds: int
    n_examples: int | None
    basis: str

    @property
    def advantage(self) -> float:
        """``a`` minus ``b`` in the metric's better direction (positive: ``a`` is better)."""
        return -self.diff if lower_is_better(self.metric) else self.diff

    @property
    def unit(self) -> str:
        return "points" if self.metric == "accuracy" else self.metric.upper()


class Noise:
    """Gaps between methods of one TableResult, with predictions and labels read once."""

    def __init__(self, result: TableResult, n_boot: int = N_BOOT):
        self.result = result
        self.n_boot = n_boot
        self._datasets: dict[str, Any] = {}
        self._preds: dict[str, Any] = {}
        self._gaps: dict[tuple, Gap | None] = {}
        self._boot: dict[tuple, np.ndarray] = {}  # (job id, role, metric) -> metric per resample

    # ------------------------------------------------------------------ the columns
    def _column(self, method: str, column: str):
        cells = self.result.cells
        if (method, column) not in cells.index:
            return None
        cell = cells.loc[(method, column)]
        return resolve(self.result.preset, cell["dataset"]), cell["role"], cell["metric"]

    def gap(self, a: str, b: str, column: str) -> Gap | None:
        """``a - b`` on ``column``; None when either cell has no value."""
        key = (a, b, column)
        if key not in self._gaps:
            self._gaps[key] = self._gap(a, b, column)
        return self._gaps[key]

    def _gap(self, a: str, b: str, column: str) -> Gap | None:
        where = self._column(a, column)
        if where is None or self._column(b, column) is None:
            return None
        ds, role, metric = where
        runs = []  # (seed, record of a, record of b)
        for seed in self.result.records.seeds:
            ra, rb = (self.result.selected.get((ds, m, seed)) for m in (a, b))
            va = None if ra is None else role_value(ra, role, metric)
            vb = None if rb is None else role_value(rb, role, metric)
            if va is not None and vb is not None and math.isfinite(va) and math.isfinite(vb):
                runs.append((seed, ra, rb, va - vb))
        if not runs:
            return None
        diffs = [d for *_, d in runs]
        n = len(diffs)
        se_seed = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else None
        boot, n_examples, why_not = self._bootstrap(ds, role, metric, [(ra, rb) for _, ra, rb, _ in runs])
        seeds = f"{n} seeds" if n > 1 else "1 seed, so no seed spread"
        if boot is not None:
            se = math.sqrt(boot ** 2 + (se_seed or 0.0) ** 2)
            basis = (f"seeds and a paired bootstrap over {n_examples}" if n > 1
                     else f"a paired bootstrap over {n_examples} only ({seeds})")
        elif se_seed is not None:
            se, basis = se_seed, f"the spread of {n} seeds only ({why_not})"
        else:
            se, basis = None, f"no estimate: {seeds}, and {why_not}"
        return Gap(a, b, column, metric, statistics.fmean(diffs), se, se_seed, boot, n,
                   None if boot is None else n_examples, basis)

    # ------------------------------------------------------------------ the bootstrap
    def _bootstrap(self, ds: str, role: str, metric: str, pairs) -> tuple[float | None, str, str]:
        """(se_boot, "N examples" in words, why not) for the paired runs ``pairs``."""
        k = len(pairs)
        stats, words, why = self._stats(ds, role, metric, [p[0] for p in pairs] + [p[1] for p in pairs])
        if stats is None:
            return None, "", why
        d = (stats[:k] - stats[k:]).mean(axis=0)
        return float(np.std(d, ddof=1)), words, ""

    def _stats(self, ds: str, role: str, metric: str, records) -> tuple[np.ndarray | None, str, str]:
        """Each record's metric on the column, on every bootstrap resample ([records, N_BOOT]),
        the examples in words, and why not when predictions or labels cannot be used."""
        if role.endswith("/mean"):
            prefix = role[: -len("mean")]
            roles = sorted(set.intersection(*(
                {r for r, m in (rec.get("metrics") or {}).items() if r.startswith(prefix) and metric in m}
                for rec in records)))
        else:
            roles = [role]
        preds = []
        for rec in records:
            preds.append(self._predictions(rec["job_id"]))
            if preds[-1] is None or any(r not in preds[-1] for r in roles):
                return None, "", f"no stored predictions for {rec['job']['method']} seed {rec['job']['seed']}"
        dataset = self._dataset(ds)
        if isinstance(dataset, str):
            return None, "", dataset
        absent = [r for r in roles if r not in dataset.splits]
        if not roles or absent:
            return None, "", f"the dataset has no split {', '.join(absent) or role}"
        subsets = dataset.info.get("class_subsets") or {}
        per_role = []  # [records, resamples] metric values per role
        for r in roles:
            labels = np.asarray(dataset.splits[r].labels)
            todo = {}  # job_id -> per-example values, for records not resampled yet
            for rec, pred in zip(records, preds):
                key = (rec["job_id"], r, metric)
                if key in self._boot or rec["job_id"] in todo:
                    continue
                who = f"{rec['job']['method']} seed {rec['job']['seed']}"
                values = _per_example(metric, pred[r], labels, subsets.get(r))
                recorded = (rec.get("metrics") or {}).get(r, {}).get(metric)
                if values is None or recorded is None or not _close(
                        _aggregate(metric, values.mean()), float(recorded)):
                    return None, "", f"the stored predictions of {who} do not reproduce its recorded {r} {metric}"
                todo[rec["job_id"]] = values
            if todo:  # the same resamples for every record of the role (the generator's seed)
                stats = self._resampled(metric, np.stack(list(todo.values())), f"{ds}|{r}")
                self._boot.update({(j, r, metric): row for j, row in zip(todo, stats)})
            per_role.append(np.stack([self._boot[(rec["job_id"], r, metric)] for rec in records]))
        sizes = [len(dataset.splits[r]) for r in roles]
        words = (f"{sizes[0]} examples" if len(roles) == 1
                 else f"{sum(sizes)} examples in {len(roles)} sets")
        return np.mean(per_role, axis=0), words, ""

    def replicates(self, methods, column: str) -> tuple[np.ndarray | None, str]:
        """Bootstrap replicates of each method's mean over seeds on ``column`` ([methods,
        N_BOOT]), resampling the evaluation examples (shared by every method and seed) and the
        seeds (shared by every method), and the basis in words; (None, why) when impossible."""
        where = self._column(methods[0], column)
        if where is None:
            return None, "cells missing"
        ds, role, metric = where
        seeds = [s for s in self.result.records.seeds
                 if all(self.result.selected.get((ds, m, s)) is not None for m in methods)]
        if not seeds:
            return None, "no seed has every method"
        records = [self.result.selected[(ds, m, s)] for m in methods for s in seeds]
        stats, words, why = self._stats(ds, role, metric, records)
        if stats is None:
            if len(seeds) < 2:
                return None, f"no estimate: 1 seed, and {why}"
            values = np.array([role_value(r, role, metric) for r in records], dtype=np.float64)
            stats, basis = np.repeat(values[:, None], self.n_boot, axis=1), f"resampled seeds only ({why})"
        else:
            basis = f"resampled seeds and examples ({words})" if len(seeds) > 1 else \
                f"resampled examples only ({words}; 1 seed)"
        stats = stats.reshape(len(methods), len(seeds), self.n_boot)
        pick = np.random.default_rng([BOOT_SEED, len(seeds)]).integers(0, len(seeds), (self.n_boot, len(seeds)))
        out = np.stack([stats[:, pick[b], b].mean(axis=1) for b in range(self.n_boot)], axis=1)
        return out, basis

    def _resampled(self, metric: str, values: np.ndarray, name: str) -> np.ndarray:
        """The metric of every row of ``values`` [K, n] on N_BOOT resamples of its columns."""
        n = values.shape[1]
        rng = np.random.default_rng([BOOT_SEED, zlib.crc32(name.encode())])
        out, step = [], max(1, _CHUNK // max(n, 1))
        for start in range(0, self.n_boot, step):
            b = min(step, self.n_boot - start)
            idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]  # examples drawn
            counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
            out.append(values @ counts.T / n)
        return _aggregate(metric, np.concatenate(out, axis=1))

    def _dataset(self, ds: str):
        """The loaded dataset, or a string saying why it could not be used."""
        if ds not in self._datasets:
            from levi_core.data import load_dataset

            try:
                dataset = load_dataset(ds)
            except Exception as e:  # noqa: BLE001 - any failure means: no labels, say why
                dataset = f"its labels could not be loaded ({type(e).__name__})"
            else:
                prints = {r.get("dataset_fingerprint") for (d, *_), r in self.result.selected.items()
                          if d == ds} - {None}
                if prints and prints != {dataset.fingerprint}:
                    dataset = "the dataset's labels differ from those the runs were scored on"
            self._datasets[ds] = dataset
        return self._datasets[ds]

    def _predictions(self, job_id: str):
        if job_id not in self._preds:
            from levi_core.predictions import load_predictions

            ledger = self.result.records.ledger
            try:
                self._preds[job_id] = None if ledger is None else load_predictions(ledger.artifacts_dir(job_id))
            except (OSError, ValueError):
                self._preds[job_id] = None
        return self._preds[job_id]


def _per_example(metric: str, preds: np.ndarray, labels: np.ndarray, classes) -> np.ndarray | None:
    """Per-example terms whose mean gives the metric: squared errors (RMSE = sqrt of their
    mean) or 100 x correct (accuracy in percent)."""
    p = np.asarray(preds, dtype=np.float64)
    if metric == "rmse":
        p = p.reshape(-1)
        return None if p.shape != labels.reshape(-1).shape else (p - labels.reshape(-1)) ** 2
    if metric == "accuracy":
        if p.ndim == 2:
            p = (restrict_to_classes(p, classes) if classes is not None else p).argmax(axis=-1)
        p = p.reshape(-1)
        return None if p.shape != labels.reshape(-1).shape else 100.0 * (p == labels.reshape(-1))
    return None


def _aggregate(metric: str, mean_terms):
    return np.sqrt(mean_terms) if metric == "rmse" else mean_terms


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


__all__ = ["Z", "N_BOOT", "BOOT_SEED", "Gap", "Noise"]
