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

from bench.collect import TableResult
from bench.render import cost_sections

TOLERANCES = {"rmse": 2e-3, "accuracy": 0.5, "cost_rel": 1e-3}
BASELINES_DIR = Path("results") / "baselines"


def snapshot(result: TableResult) -> dict[str, Any]:
    """The numbers a baseline pins: cell means, and for cost tables every cost figure."""
    values: dict[str, dict] = {}
    if result.spec.kind == "costs":
        for rec in result.extras.values():
            table = rec.get("extras") or {}
            for scope, data in table.get("scopes", {}).items():
                for m, c in data["rows"].items():
                    for field in ("trainable_params", "inference_params", "flops_xla", "macs_analytic"):
                        values[f"{table['backbone']}|{scope}|{m}|{field}"] = {"value": c[field], "metric": "cost_rel"}
    else:
        for (method, column), cell in sorted(result.cells.items()):
            if cell.mean is not None:
                metric = _metric_of(result, column)
                values[f"{method}|{column}"] = {"value": round(cell.mean, 6), "metric": metric}
    return {"table": result.spec.name, "preset": result.preset, "tolerances": TOLERANCES,
            "values": values}


def _metric_of(result: TableResult, column: str) -> str:
    for col in list(result.columns) + list(result.breakdown_cols):
        if col.key == column:
            return col.metric
    for sweep in result.spec.sweeps:
        if column.startswith(sweep.key + "@"):
            return sweep.metric
    return "accuracy"


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
            lower = metric in ("rmse", "cost_rel")
            kind = "regression" if (a > b) == lower else "change"
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
