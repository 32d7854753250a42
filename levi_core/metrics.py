"""Metrics, owned by the dataset's task: RMSE for rating regression, accuracy for classes.

Every metric declares its direction here, and ``better`` is the one place that decides which of
two values is better: hyperparameter selection, the bold/underline marks of a report and every
claim check ask it, never ``metric == "rmse"``.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

import numpy as np

from levi_core.errors import ConfigError

LOWER, HIGHER = "lower", "higher"
# Declared direction of each metric; ``cost`` covers parameter and FLOP counts.
DIRECTION = {"rmse": LOWER, "accuracy": HIGHER, "cost": LOWER}
LOWER_IS_BETTER = {m: d == LOWER for m, d in DIRECTION.items()}

K = TypeVar("K")


def direction(metric: str) -> str:
    """``"lower"`` or ``"higher"``: which way the metric improves."""
    try:
        return DIRECTION[metric]
    except KeyError:
        raise ConfigError(f"metric {metric!r} declares no direction (known: {', '.join(DIRECTION)})") from None


def lower_is_better(metric: str) -> bool:
    return direction(metric) == LOWER


def better(metric: str, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` in the metric's direction."""
    return a < b if lower_is_better(metric) else a > b


def sort_key(metric: str, value: float) -> float:
    """A key that sorts better values first (``sorted(xs, key=lambda v: sort_key(m, v))``)."""
    return value if lower_is_better(metric) else -value


def best_key(metric: str, values: dict[K, float]) -> K:
    """The key of the best value; ties go to the smallest key (a stable, documented rule)."""
    return min(values, key=lambda k: (sort_key(metric, values[k]), k))


def rank_distinct(metric: str, values: Iterable[float]) -> list[float]:
    """The distinct values, best first."""
    return sorted(set(values), key=lambda v: sort_key(metric, v))


def rmse(predictions: np.ndarray, labels: np.ndarray) -> float:
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy in percent. ``predictions`` are class ids [N] or scores/probabilities [N, C]."""
    p = np.asarray(predictions)
    if p.ndim == 2:
        p = p.argmax(axis=-1)
    return float(100.0 * np.mean(p.reshape(-1) == np.asarray(labels).reshape(-1)))


METRICS = {"rmse": rmse, "accuracy": accuracy}


def compute(metric: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    return METRICS[metric](predictions, labels)
