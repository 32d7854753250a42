"""The one entry point the harness calls: train or evaluate a method on a dataset.

``train_and_evaluate(config, workdir, deps)`` is pure with respect to its arguments: the same
config and dependency artifacts give the same numbers, whichever executor or machine runs it.
It writes artifacts (predictions, checkpoints) under ``workdir`` and returns a JSON-able dict.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from levi_core import metrics as metrics_lib
from levi_core.data.base import load_dataset, parse_dataset_id
from levi_core.methods.registry import RunContext, get_impl

PREDICTIONS_FILE = "predictions.npz"


def train_and_evaluate(
    config: Mapping[str, Any], workdir: str | Path, deps: Mapping[str, str | Path] | None = None
) -> dict[str, Any]:
    """Run one job.

    Args:
      config: ``dataset`` (id), ``method``, ``seed``, ``hparams`` (dict), ``settings`` (the
        preset's size knobs), and optionally ``data_dir``.
      workdir: folder for this job's artifacts (created if missing).
      deps: dependency method name -> artifact folder of its selected run.

    Returns:
      ``{"state": "done" | "diverged", "metric": the dataset's metric name,
      "metrics": {role: {metric: value}}, "extras": {...},
      "dataset_fingerprint": str, "timings": {"load_s", "run_s"}}``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dataset = load_dataset(config["dataset"], config.get("data_dir"))
    t1 = time.perf_counter()
    family, _ = parse_dataset_id(config["dataset"])
    impl = get_impl(config["method"], family)
    ctx = RunContext(
        dataset=dataset,
        seed=int(config["seed"]),
        hparams=dict(config.get("hparams") or {}),
        settings=dict(config.get("settings") or {}),
        workdir=workdir,
        deps={k: Path(v) for k, v in (deps or {}).items()},
    )
    out = impl(ctx)
    t2 = time.perf_counter()

    metrics = {r: dict(m) for r, m in out.metrics.items()}
    for role, pred in out.predictions.items():
        if role in dataset.splits and role not in metrics:
            metrics[role] = {
                dataset.metric: metrics_lib.compute(dataset.metric, pred, dataset.splits[role].labels)
            }
    if out.predictions:
        np.savez(workdir / PREDICTIONS_FILE, **{_npz_key(r): np.asarray(p) for r, p in out.predictions.items()})

    diverged = out.diverged or any(
        not math.isfinite(v) for m in metrics.values() for v in m.values()
    )
    return {
        "state": "diverged" if diverged else "done",
        "metric": dataset.metric,
        "metrics": metrics,
        "extras": dict(out.extras),
        "dataset_fingerprint": dataset.fingerprint,
        "timings": {"load_s": round(t1 - t0, 3), "run_s": round(t2 - t1, 3)},
    }


def _npz_key(role: str) -> str:
    return role.replace("/", "__")


def load_predictions(workdir: str | Path) -> dict[str, np.ndarray]:
    """Predictions a finished job stored, role -> array (inverse of the npz key mangling)."""
    with np.load(Path(workdir) / PREDICTIONS_FILE) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def preflight(dataset_ids, settings: Mapping[str, Any], data_dir: str | None = None) -> list[str]:
    """Problems that would make every job of a grid fail, found in seconds before any job runs.

    Loads each dataset once (which also fills the prepared-data cache the jobs then reuse) and
    resolves the pre-trained weights of the large model each dataset's modality needs. Returns
    one message per problem (each names the fix); empty when the grid can start.
    """
    from levi_core.errors import UserError

    problems: list[str] = []
    modalities: set[str] = set()
    from levi_core.methods.large import FAMILIES

    for dataset_id in dataset_ids:
        family, _ = parse_dataset_id(dataset_id)
        if family in FAMILIES:  # known without loading: checked even when the data is missing
            modalities.add(FAMILIES[family])
        try:
            ds = load_dataset(dataset_id, data_dir)
        except UserError as e:
            problems.append(str(e))
            continue
        for split in ds.splits.values():
            if "text" in split.large:
                modalities.add("text")
            if "image" in split.large:
                modalities.add("vision")
    for modality in sorted(modalities):
        cfg = settings.get(modality) or {}
        if cfg.get("weights", "pretrained") != "pretrained" or "backbone" not in cfg:
            continue
        from levi_core.backbones import load_backbone

        try:  # found, readable, and every tensor of the shape the architecture expects
            load_backbone(cfg["backbone"], cfg.get("weights_dir"))
        except UserError as e:
            problems.append(str(e))
    return problems
