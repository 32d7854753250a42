"""A job's stored predictions (``predictions.npz`` in its folder): written by the api, read by
composite methods (ensembles) and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

PREDICTIONS_FILE = "predictions.npz"


def _npz_key(role: str) -> str:
    return role.replace("/", "__")


def save_predictions(workdir: str | Path, predictions: Mapping[str, np.ndarray]) -> None:
    np.savez(Path(workdir) / PREDICTIONS_FILE,
             **{_npz_key(r): np.asarray(p) for r, p in predictions.items()})


def load_predictions(workdir: str | Path) -> dict[str, np.ndarray]:
    """Predictions a finished job stored, role -> array (inverse of the npz key mangling)."""
    with np.load(Path(workdir) / PREDICTIONS_FILE) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}
