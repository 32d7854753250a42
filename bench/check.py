"""Regression checks: a table's numbers against committed baselines, with stated tolerances.

``bench check`` compares every cell mean (and every cost) of the tables that have baselines
under ``results/baselines/<preset>/<table>.json`` with the current records. Any change beyond
the tolerance fails: worse is a regression, better is an unexplained change; a deliberate change
of results updates the baselines (``bench check --update``) in the same commit, with the reason.

Tolerances (absolute, per metric): runs are deterministic on one machine type, so these only
absorb floating-point differences between CPUs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from levi_core.metrics import better

from bench.collect import TableResult

TOLERANCES = {"rmse": 2e-3, "accuracy": 0.5, "cost_rel": 1e-3}
BASELINES_DIR = Path("results") / "baselines"


def snapshot(result: TableResult) -> dict[str, Any]:
    """The numbers a baseline pins: what each section declares (cell means rounded to 6
    decimals as ``method|column``; for cost tables every cost figure as
    ``backbone|scope|method|field``, metric ``cost_rel``)."""
    values: dict[str, dict] = {}
    for section, frame in result.parts:
        for key, (value, metric) in section.baseline(frame).items():
            values[key] = {"value": value, "metric": metric}
    return {"table": result.spec.name, "preset": result.preset, "tolerances": TOLERANCES,
            "values": dict(sorted(values.items()))}


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
        else:
            ok = abs(a - b) <= TOLERANCES[metric]
        if not ok:
            kind = "regression" if better(_direction_metric(metric), b, a) else "change"
            problems.append(f"{key}: {a:.6g} vs baseline {b:.6g} ({kind}; tolerance "
                            f"{TOLERANCES[metric]:g}{' relative' if metric == 'cost_rel' else ''})")
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
