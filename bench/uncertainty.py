"""How uncertain a difference between two methods is: seed spread plus a paired bootstrap.

A claim rests on differences such as "LEVI's OOD RMSE minus FT's". For two methods A and B on
one column of a table (a metric of a split role, or the mean over several OOD roles):

* ``d_s = A_s - B_s`` for every seed s where both have a value (the selected run of each);
  the difference is ``d = mean_s d_s`` (the difference of the table's cell means).
* Seed spread: ``se_seed = stdev_s(d_s) / sqrt(n)`` (sample std, n - 1), over n seeds.
* Paired bootstrap over evaluation examples: ``N_BOOT`` resamples of the column's distinct
  examples (for a mean over several OOD roles, the union of their examples, drawn once per
  replicate, every role scored on its members: ``union_bootstrap``), drawn with replacement; on
  each resample both methods' metric (RMSE, accuracy) is recomputed from their stored
  predictions for every seed on the *same* examples, and ``d*`` is the mean over seeds of the
  per-seed differences. The evaluation examples are the same for every seed, so one resample
  serves all seeds and both methods, and ``se_boot = stdev(d*)`` is the standard error of ``d``
  from the choice of examples. The labels come from the records' own stored evaluation keys
  (``levi_core.predictions``), never from the dataset, so verdicts need only the results folder.
* Combined: ``se = sqrt(se_boot**2 + se_seed**2)``. With one seed, ``se = se_boot`` (said so);
  without usable predictions or stored labels (an old record, a deleted artifact), ``se =
  se_seed`` (said so, naming the record); with neither there is no estimate and nothing is decided.

A difference counts when ``|d - threshold| > t(0.975, df) * se`` (two-sided 95%). Three seeds
give the seed part of ``se`` two degrees of freedom, and ``P(|t_2| > 1.96)`` is about 0.19, not
0.05, so a normal quantile would decide claims that noise alone decides one time in five.

Which df. Welch-Satterthwaite over the two parts, the bootstrap part taken with infinitely many
(``welch_df``: ``se**4 / (se_seed**4 / (n - 1))``), is the textbook answer, but it is computed
from the *estimated* seed variance: when three seeds happen to agree, the seed part looks small,
df grows and the threshold shrinks exactly when the ratio ``d / se`` is inflated by that same
small estimate. ``python -m bench.benchmarks.calibration`` measured it deciding 7.6% (6.1-9.4%)
of equal pairs with the cpu tables' noise, above the 5% a 95% test promises; its lower bound,
``n - 1`` for the whole ``se``, decided 1.1% (needlessly deaf: 17% power at a true gap of two
standard errors). The decision therefore takes each part at its own quantile (``DF_RULE =
"parts"``, ``critical_for``): a difference counts beyond ``sqrt((t(0.975, n - 1) se_seed)**2 +
(1.96 se_boot)**2)``, exact when either part vanishes and trusting no estimated df in between
(3.8%, 2.8-5.2%, false decisions; 24% power, in the same simulation). With one seed: the
bootstrap alone and the normal quantile.
The bootstrap draws from a generator seeded with ``BOOT_SEED`` and the role's name, so verdicts
are deterministic and every comparison on a role uses the same resamples.
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
from bench.metric_format import metric as metric_format
from bench.sections import resolve

Z = 1.96        # the normal quantile: the critical value with infinitely many degrees of freedom
LEVEL = 0.975   # two-sided 95%
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
    def df(self) -> float:
        """The degrees of freedom the decision uses (``DF_RULE``; inf: the bootstrap alone)."""
        return decision_df(self.se_seed, self.n_seeds, self.se_boot)

    @property
    def critical(self) -> float:
        """How many standard errors a difference must exceed to count (``critical_for``)."""
        return critical_for(self.se_seed, self.n_seeds, self.se_boot)

    @property
    def advantage(self) -> float:
        """``a`` minus ``b`` in the metric's better direction (positive: ``a`` is better)."""
        return -self.diff if lower_is_better(self.metric) else self.diff

    @property
    def unit(self) -> str:
        return metric_format(self.metric).unit


def make_gap(a: str, b: str, column: str, metric: str, diffs, se_boot: float | None,
             n_examples: str = "", why_not: str = "") -> Gap:
    """The Gap of per-seed differences ``diffs`` (a - b, one per seed) and the bootstrap
    standard error of their mean (None, with ``why_not``, when there is none)."""
    n = len(diffs)
    se_seed = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else None
    seeds = f"{n} seeds" if n > 1 else "1 seed, so no seed spread"
    if se_boot is not None:
        se = math.sqrt(se_boot ** 2 + (se_seed or 0.0) ** 2)
        basis = (f"seeds and a paired bootstrap over {n_examples}" if n > 1
                 else f"a paired bootstrap over {n_examples} only ({seeds})")
    elif se_seed is not None:
        se, basis = se_seed, f"the spread of {n} seeds only ({why_not})"
    else:
        se, basis = None, f"no estimate: {seeds}, and {why_not}"
    return Gap(a, b, column, metric, statistics.fmean(diffs), se, se_seed, se_boot, n,
               None if se_boot is None else n_examples, basis)


def paired_boot_se(stats: np.ndarray, k: int) -> float:
    """The bootstrap standard error of the mean over seeds of a - b: ``stats`` holds the
    replicates of a's k runs (rows :k) and then b's k runs, seed for seed."""
    d = (stats[:k] - stats[k:]).mean(axis=0)
    return float(np.std(d, ddof=1))


def welch_df(se_seed: float | None, n_seeds: int, se_boot: float | None) -> float:
    """Degrees of freedom of ``sqrt(se_seed**2 + se_boot**2)`` by Welch-Satterthwaite, the
    seed part with ``n_seeds - 1`` and the bootstrap part with infinitely many."""
    if se_seed is None or n_seeds < 2:
        return math.inf
    total = se_seed ** 2 + (se_boot or 0.0) ** 2
    if se_seed == 0.0:
        return math.inf
    return (n_seeds - 1) * (total / se_seed ** 2) ** 2


DF_RULE = "parts"  # see the module docstring; "seeds" and "welch" kept for the calibration check


def decision_df(se_seed: float | None, n_seeds: int, se_boot: float | None, rule: str | None = None) -> float:
    """The degrees of freedom a decision uses under ``rule`` (default ``DF_RULE``)."""
    if se_seed is None or n_seeds < 2 or se_seed == 0.0:
        return math.inf
    if (rule or DF_RULE) == "welch":
        return welch_df(se_seed, n_seeds, se_boot)
    return float(n_seeds - 1)


def critical_for(se_seed: float | None, n_seeds: int, se_boot: float | None, rule: str | None = None) -> float:
    """The multiple of ``se`` a difference must exceed under ``rule`` (default ``DF_RULE``):

    * ``parts``: each part at its own quantile, ``sqrt((t(n-1) se_seed)**2 + (z se_boot)**2) / se``:
      exact when either part is zero, in between without trusting an estimated df;
    * ``seeds``: ``t(0.975, n - 1)``; ``welch``: ``t(0.975, welch_df)``."""
    rule = rule or DF_RULE
    if rule == "parts":
        seed = (se_seed or 0.0) * (critical_value(n_seeds - 1) if n_seeds > 1 else 0.0)
        boot = (se_boot or 0.0) * Z
        se = math.hypot(se_seed or 0.0, se_boot or 0.0)
        return math.hypot(seed, boot) / se if se > 0 else Z
    return critical_value(decision_df(se_seed, n_seeds, se_boot, rule))


def critical_value(df: float) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (Z at inf)."""
    if not math.isfinite(df):
        return Z
    from scipy.stats import t

    return float(t.ppf(LEVEL, df))


class Noise:
    """Gaps between methods of one TableResult, with predictions and labels read once."""

    def __init__(self, result: TableResult, n_boot: int = N_BOOT):
        self.result = result
        self.n_boot = n_boot
        self._preds: dict[str, Any] = {}
        self._gaps: dict[tuple, Gap | None] = {}
        self._boot: dict[tuple, np.ndarray] = {}  # (job ids, dataset, column, metric) -> replicates

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
        boot, n_examples, why_not = self._bootstrap(ds, role, metric, [(ra, rb) for _, ra, rb, _ in runs])
        return make_gap(a, b, column, metric, [d for *_, d in runs], boot, n_examples, why_not)

    # ------------------------------------------------------------------ the bootstrap
    def _bootstrap(self, ds: str, role: str, metric: str, pairs) -> tuple[float | None, str, str]:
        """(se_boot, "N examples" in words, why not) for the paired runs ``pairs``."""
        k = len(pairs)
        stats, words, why = self._stats(ds, role, metric, [p[0] for p in pairs] + [p[1] for p in pairs])
        if stats is None:
            return None, "", why
        return paired_boot_se(stats, k), words, ""

    def _stats(self, ds: str, role: str, metric: str, records) -> tuple[np.ndarray | None, str, str]:
        """Each record's metric on the column, on every bootstrap resample ([records, N_BOOT]),
        the examples in words, and why not when predictions or labels cannot be used.

        A column over several roles (``ood/mean``) resamples the union of their distinct
        examples once per replicate and scores every role on its members in that replicate
        (the OOD genres of MovieLens share ratings: resampling each on its own would treat a
        shared rating as independent draws and understate the mean's variance)."""
        if role.endswith("/mean"):
            prefix = role[: -len("mean")]
            roles = sorted(set.intersection(*(
                {r for r, m in (rec.get("metrics") or {}).items() if r.startswith(prefix) and metric in m}
                for rec in records)))
        else:
            roles = [role]
        if not roles:
            return None, "", f"no record has a split {role}"
        preds, keys = [], None
        for rec in records:
            who = f"{rec['job']['method']} seed {rec['job']['seed']}"
            pred, stored = self._predictions(rec["job_id"])
            if pred is None or any(r not in pred for r in roles):
                return None, "", f"no stored predictions for {who}"
            if stored is None or any(r not in stored for r in roles):
                return None, "", (f"the record of {who} stores no labels for its predictions "
                                  "(run before they were stored; re-run it to store them)")
            if keys is None:
                keys = stored
            elif any(not _same_keys(keys[r], stored[r]) for r in roles):
                return None, "", f"{who} was scored on other examples or labels than the other runs"
            preds.append(pred)
        values = {}  # role -> [records, examples] per-example terms
        for r in roles:
            rows = []
            for rec, pred in zip(records, preds):
                who = f"{rec['job']['method']} seed {rec['job']['seed']}"
                v = _per_example(metric, pred[r], keys[r]["labels"], keys[r].get("classes"))
                recorded = (rec.get("metrics") or {}).get(r, {}).get(metric)
                if v is None or recorded is None or not _close(_aggregate(metric, v.mean()), float(recorded)):
                    return None, "", f"the stored predictions of {who} do not reproduce its recorded {r} {metric}"
                rows.append(v)
            values[r] = np.stack(rows)
        cache_key = (tuple(rec["job_id"] for rec in records), ds, role, metric)
        if cache_key not in self._boot:
            self._boot[cache_key] = union_bootstrap(
                metric, {r: (keys[r]["ids"], values[r]) for r in roles}, self.n_boot, f"{ds}|{role}")
        ids = np.concatenate([keys[r]["ids"] for r in roles])
        n_union = len(np.unique(ids))
        sizes = [len(keys[r]["ids"]) for r in roles]
        if len(roles) == 1:
            words = f"{sizes[0]} examples"
        elif n_union == sum(sizes):
            words = f"{n_union} examples in {len(roles)} sets"
        else:  # overlapping sets: the union is what is resampled
            words = f"{n_union} distinct of {sum(sizes)} examples in {len(roles)} sets"
        return self._boot[cache_key], words, ""

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

    def _predictions(self, job_id: str):
        """(predictions, evaluation keys) a job stored; None for what it did not store."""
        if job_id not in self._preds:
            from levi_core.predictions import load_eval_keys, load_predictions

            ledger = self.result.records.ledger
            try:
                folder = None if ledger is None else ledger.artifacts_dir(job_id)
                pred = None if folder is None else load_predictions(folder)
                keys = None if folder is None else load_eval_keys(folder)
            except (OSError, ValueError):
                pred, keys = None, None
            self._preds[job_id] = (pred, keys)
        return self._preds[job_id]


def union_bootstrap(metric: str, roles: dict, n_boot: int, name: str) -> np.ndarray:
    """Bootstrap replicates of a column's metric: [records, n_boot], the mean over ``roles``.

    ``roles`` maps a role to (example ids [n_r], per-example terms [records, n_r]). Each
    replicate draws the union of the roles' distinct example ids with replacement, once, and
    every role is scored on its members in that draw (an example drawn twice counts twice in
    every role that holds it). The same replicates serve every record (paired comparisons), and
    the generator is seeded by ``BOOT_SEED`` and ``name``, so the result is deterministic."""
    union, inverse = np.unique(np.concatenate([np.asarray(ids) for ids, _ in roles.values()]),
                               return_inverse=True)
    members, start = {}, 0
    for r, (ids, _) in roles.items():
        members[r] = inverse[start:start + len(ids)]
        start += len(ids)
    n, names = len(union), list(roles)
    k = np.asarray(roles[names[0]][1]).shape[0]
    # every (record, role) as a row over the union: a replicate's sums are one matrix product
    spread = np.zeros((len(names) * k, n))
    member = np.zeros((len(names), n))
    for i, r in enumerate(names):
        spread[i * k:(i + 1) * k, members[r]] = np.asarray(roles[r][1], np.float64)
        member[i, members[r]] = 1.0
    rng = np.random.default_rng([BOOT_SEED, zlib.crc32(name.encode())])
    out, step = [], max(1, _CHUNK // max(n, 1))
    for first in range(0, n_boot, step):
        b = min(step, n_boot - first)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        sums = (spread @ counts.T).reshape(len(names), k, b)
        totals = np.maximum(member @ counts.T, 1.0)[:, None, :]  # a role drawn empty scores 0
        out.append(_aggregate(metric, sums / totals).mean(axis=0))
    return np.concatenate(out, axis=1)


def _same_keys(a: dict, b: dict) -> bool:
    return all(np.array_equal(a.get(k), b.get(k)) for k in ("ids", "labels", "classes"))


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


__all__ = ["Z", "LEVEL", "DF_RULE", "decision_df", "critical_for", "make_gap", "paired_boot_se", "union_bootstrap", "welch_df", "critical_value", "N_BOOT", "BOOT_SEED", "Gap", "Noise"]
