"""Regression checks: a table's numbers against committed baselines, with stated tolerances.

``bench check`` compares every cell mean (and every cost) of the tables that have baselines
under ``results/baselines/<preset>/<table>.json`` with the current records. Any change beyond
the tolerance fails: worse is a regression, better is an unexplained change; a deliberate change
of results updates the baselines (``bench check --update``) in the same commit, with the reason.

Why a tolerance per value. XLA picks its machine code by instruction set (AVX-512 or AVX2) and
the matmul libraries block their loops by the cache sizes they find, so two processors sum in
different orders. A trained model is a chaotic function of those last bits: on another
processor a seed lands elsewhere in the distribution that its neighbouring seeds span. A fixed
tolerance therefore either fails on every new kind of machine (noisy cells) or hides real
regressions (stable cells). Each trained cell mean is instead allowed ``K`` standard errors of
the difference between two independent draws of it:

* a cell's noise is the sample standard deviation of its seeds, floored at the median seed
  spread of the table's cells of the same metric (three seeds can agree by chance), and taken
  as that median where the cell has one seed;
* ``se = noise / sqrt(n)`` for the baseline and the current run alike, and the difference is
  allowed ``K * sqrt(se_base**2 + se_cur**2)``, never less than the fixed ``TOLERANCES``.

Exact results stay exact: a cell whose seeds are all equal (a closed-form reference row, an
exact computation) is checked against the fixed tolerance alone, and so are costs
(``cost_rel``). A broken method moves its cells by many standard errors and still fails
(``tests/test_check.py`` injects one).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from levi_core.metrics import better

from bench.collect import TableResult

TOLERANCES = {"rmse": 2e-3, "accuracy": 0.5, "cost_rel": 1e-3}
K = 4.0  # standard errors of a difference that a value may move across processors


def snapshot(result: TableResult) -> dict[str, Any]:
    """The numbers a baseline pins: what each section declares (cell means rounded to 6
    decimals as ``method|column``; for cost tables every cost figure as
    ``backbone|scope|method|field``, metric ``cost_rel``), each trained cell with ``se``, the
    standard error of its mean that the tolerance is built from (0 for an exact cell)."""
    raw: dict[str, dict] = {}
    for section, frame in result.parts:
        for key, entry in section.baseline(frame).items():
            raw[key] = dict(entry)
    spreads = defaultdict(list)
    for entry in raw.values():
        if entry.get("n", 0) > 1 and entry.get("std", 0) > 0:
            spreads[entry["metric"]].append(entry["std"])
    floor = {metric: statistics.median(v) for metric, v in spreads.items()}
    values = {}
    for key, entry in raw.items():
        out = {"value": entry["value"], "metric": entry["metric"]}
        se = _standard_error(entry, floor.get(entry["metric"])) if "n" in entry else None
        if se is not None:
            out["se"] = round(se, 6)
        values[key] = out
    return {"table": result.spec.name, "preset": result.preset, "tolerances": TOLERANCES,
            "k": K, "values": dict(sorted(values.items()))}


def _standard_error(entry: dict, floor: float | None) -> float | None:
    """The standard error of a cell mean (see the module's docstring); 0 for an exact cell,
    None when nothing tells (one seed in a table where no cell has two)."""
    n, std = entry["n"], entry.get("std")
    if n > 1 and std == 0:
        return 0.0
    if n <= 1 or std is None or math.isnan(std):
        return None if floor is None else floor / math.sqrt(max(n, 1))
    return max(std, floor or 0.0) / math.sqrt(n)


def tolerance(metric: str, se_base: float | None, se_cur: float | None) -> float:
    """The absolute difference allowed between a baseline value and the current one: the fixed
    one for costs, exact cells (se 0 in the baseline) and baselines without se; else ``K``
    standard errors of the difference, the baseline's se standing in for a current run that
    cannot estimate its own (one seed)."""
    fixed = TOLERANCES[metric]
    if metric == "cost_rel" or not se_base:
        return fixed
    return max(fixed, K * math.hypot(se_base, se_cur or se_base))


def _direction_metric(metric: str) -> str:
    """The metric whose declared direction applies (``cost_rel`` tolerances are for costs)."""
    return "cost" if metric == "cost_rel" else metric


def compare(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Problems, one line each; empty when every baseline value is matched within tolerance."""
    problems = []
    cur = current["values"]
    for key, base in sorted(baseline["values"].items()):
        if key not in cur:
            problems.append(f"{key}: missing (baseline {base['value']})")
            continue
        a, b, metric = cur[key]["value"], base["value"], base["metric"]
        if metric == "cost_rel":
            ok = math.isclose(a, b, rel_tol=TOLERANCES["cost_rel"], abs_tol=0.5)
            allowed = f"{TOLERANCES['cost_rel']:g} relative"
        else:
            tol = tolerance(metric, base.get("se"), cur[key].get("se"))
            ok = abs(a - b) <= tol
            allowed = f"{tol:.4g}"
        if not ok:
            kind = "regression" if better(_direction_metric(metric), b, a) else "change"
            problems.append(f"{key}: {a:.6g} vs baseline {b:.6g} ({kind}; tolerance {allowed})")
    for key in sorted(set(cur) - set(baseline["values"])):
        problems.append(f"{key}: new value {cur[key]['value']:.6g} not in the baseline (run --update)")
    return problems


def baseline_path(root: Path, preset: str, table: str) -> Path:
    return root / preset / f"{table}.json"


def write_baseline(path: Path, snap: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
