"""Metrics, owned by the dataset's task: RMSE for rating regression, accuracy for classes."""

from __future__ import annotations

import numpy as np

LOWER_IS_BETTER = {"rmse": True, "accuracy": False}


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
