"""A job's stored predictions (``predictions.npz`` in its folder): written by the api, read by
composite methods (ensembles), the reports' bootstrap and the benchmarks.

Beside the predictions the api stores, per evaluated role, what scores them: the example ids,
the labels and (ImageNet-A/R) the class subset (``eval_keys.npz``). The reports' uncertainty
reads these instead of reloading the dataset, so a results folder gives the same verdicts on
any machine, with or without the dataset's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

PREDICTIONS_FILE = "predictions.npz"
EVAL_KEYS_FILE = "eval_keys.npz"


def _npz_key(role: str) -> str:
    return role.replace("/", "__")


def save_predictions(workdir: str | Path, predictions: Mapping[str, np.ndarray]) -> None:
    np.savez(Path(workdir) / PREDICTIONS_FILE,
             **{_npz_key(r): np.asarray(p) for r, p in predictions.items()})


def load_predictions(workdir: str | Path) -> dict[str, np.ndarray]:
    """Predictions a finished job stored, role -> array (inverse of the npz key mangling)."""
    with np.load(Path(workdir) / PREDICTIONS_FILE) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def save_eval_keys(workdir: str | Path, dataset, roles) -> None:
    """The example ids, labels and class subsets of ``roles`` of ``dataset`` (what scores the
    predictions; ids as text, so no pickling is needed to read them)."""
    subsets = dataset.info.get("class_subsets") or {}
    arrays = {}
    for role in roles:
        if role not in dataset.splits:
            continue
        split = dataset.splits[role]
        arrays[f"ids__{_npz_key(role)}"] = np.asarray(split.example_ids).astype(str)
        arrays[f"labels__{_npz_key(role)}"] = np.asarray(split.labels)
        if subsets.get(role) is not None:
            arrays[f"classes__{_npz_key(role)}"] = np.asarray(subsets[role])
    np.savez(Path(workdir) / EVAL_KEYS_FILE, **arrays)


def load_eval_keys(workdir: str | Path) -> dict[str, dict[str, np.ndarray]] | None:
    """role -> {"ids", "labels"[, "classes"]} as stored by ``save_eval_keys``; None when the
    job stored none (a record from before they were stored)."""
    path = Path(workdir) / EVAL_KEYS_FILE
    if not path.is_file():
        return None
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as z:
        for k in z.files:
            kind, key = k.split("__", 1)
            out.setdefault(key.replace("__", "/"), {})[kind] = z[k]
    return out
