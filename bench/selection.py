"""Hyperparameter selection: a pure function of in-distribution validation metrics.

The paper (D.3) picks each method's hyperparameters on the ID validation set "while not
accessing the out-of-distribution datasets". Here the scores are extracted from the ``id_val``
role before any comparison, so no OOD number can reach the decision.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

SELECTION_ROLE = "id_val"


def id_val_score(record: Mapping[str, Any], metric: str) -> float | None:
    """The record's id_val metric, or None when absent or not finite."""
    value = (record.get("metrics") or {}).get(SELECTION_ROLE, {}).get(metric)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def select_best(scores: Mapping[str, float], lower_is_better: bool) -> str | None:
    """The key with the best score; ties go to the smallest key (a stable, documented rule)."""
    if not scores:
        return None
    sign = 1.0 if lower_is_better else -1.0
    return min(scores, key=lambda k: (sign * scores[k], k))


def select_record(
    records: Sequence[Mapping[str, Any]], metric: str, lower_is_better: bool
) -> Mapping[str, Any] | None:
    """Among finished runs of one (dataset, method, seed), the one that won on id_val.

    Only records in state ``done`` with a finite id_val score compete. The tie-break key is the
    canonical JSON of the hyperparameters, so the choice never depends on record order.
    """
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
    winner = select_best(scores, lower_is_better)
    return None if winner is None else by_key[winner]
