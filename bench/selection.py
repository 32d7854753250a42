"""Hyperparameter selection: a pure function of in-distribution validation metrics.

The paper (D.3) picks each method's hyperparameters on the ID validation set "while not
accessing the out-of-distribution datasets". Here the scores are extracted from the ``id_val``
role before any comparison, so no OOD number can reach the decision. Which score is better is
the metric's declared direction (``levi_core.metrics.better``), never a guess.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from levi_core.errors import ConfigError
from levi_core.metrics import best_key

SELECTION_ROLE = "id_val"


def id_val_score(record: Mapping[str, Any], metric: str) -> float | None:
    """The record's id_val metric, or None when absent or not finite."""
    value = (record.get("metrics") or {}).get(SELECTION_ROLE, {}).get(metric)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def record_metric(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The metric the finished records declare (``record["metric"]``, set from the dataset)."""
    metrics = {r.get("metric") for r in records if r.get("state") == "done" and r.get("metric")}
    if len(metrics) > 1:
        raise ConfigError(f"records of one selection group declare different metrics: {sorted(metrics)}")
    return next(iter(metrics), None)


def select_record(records: Sequence[Mapping[str, Any]], metric: str | None = None
                  ) -> Mapping[str, Any] | None:
    """Among finished runs of one (dataset, method, seed), the one that won on id_val.

    ``metric`` defaults to the one the records declare; its direction decides. Only records in
    state ``done`` with a finite id_val score compete. The tie-break key is the canonical JSON
    of the hyperparameters, so the choice never depends on record order.
    """
    metric = metric or record_metric(records)
    if metric is None:
        return None
    by_key: dict[str, Mapping[str, Any]] = {}
    scores: dict[str, float] = {}
    for r in records:
        if r.get("state") != "done":
            continue
        score = id_val_score(r, metric)
        if score is None:
            continue
        key = json.dumps(r["job"]["hparams"], sort_keys=True)
        by_key[key] = r
        scores[key] = score
    return by_key[best_key(metric, scores)] if scores else None
