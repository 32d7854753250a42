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


from levi_core import compile_cache, progress
from levi_core import metrics as metrics_lib
from levi_core.data.base import declaration, load_dataset, parse_dataset_id, with_train_draw
from levi_core.methods.registry import RunContext, get_impl
from levi_core.predictions import (  # noqa: F401  (re-exported)
    PREDICTIONS_FILE, load_predictions, save_eval_keys, save_predictions)
from levi_core.settings import Settings, settings_dict


def train_and_evaluate(
    config: Mapping[str, Any], workdir: str | Path, deps: Mapping[str, str | Path] | None = None
) -> dict[str, Any]:
    """Run one job.

    Args:
      config: ``dataset`` (id), ``method``, ``seed``, ``hparams`` (dict), ``settings`` (a
        mapping for ``Settings.from_mapping``: unknown keys fail), and optionally ``data_dir``
        and ``cache_dir`` (the feature cache) and ``resume_dir`` (a folder kept across attempts
        of this job, where long phases leave what a killed attempt's successor resumes from).
      workdir: folder for this job's artifacts (created if missing).
      deps: dependency method name -> artifact folder of its selected run.

    Returns:
      ``{"state": "done" | "diverged", "metric": the dataset's metric name,
      "metrics": {role: {metric: value}}, "extras": {...},
      "dataset_fingerprint": str, "settings": the resolved settings of the dataset's
      modality (what decides whether the record can be reused), "timings": {"load_s", "run_s", "compile_s",
      "compile_saved_s", "compile_cache_hits", "phases"}}`` (compile seconds spent, and saved by the
      persistent compilation cache, in this job; seconds per phase, ``levi_core.progress``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_mapping(config.get("settings"))
    compile_cache.use(config.get("cache_dir"))
    meter = compile_cache.Meter()
    t0 = time.perf_counter()
    dataset = load_dataset(config["dataset"], config.get("data_dir"))
    modality_settings = settings.for_modality(dataset.modality)
    dataset = with_train_draw(dataset, int(config["seed"]),
                              getattr(modality_settings, "train_examples", None))
    t1 = time.perf_counter()
    family, _ = parse_dataset_id(config["dataset"])
    impl = get_impl(config["method"], family)
    ctx = RunContext(
        dataset=dataset,
        seed=int(config["seed"]),
        hparams=dict(config.get("hparams") or {}),
        settings=settings,
        workdir=workdir,
        deps={k: Path(v) for k, v in (deps or {}).items()},
        cache_dir=config.get("cache_dir"),
        grid=tuple(config.get("grid") or ()),
        resume_dir=Path(config["resume_dir"]) if config.get("resume_dir") else None,
    )
    progress.reset()
    with meter:
        out = impl(ctx)
    t2 = time.perf_counter()

    metrics = {r: dict(m) for r, m in out.metrics.items()}
    subsets = dataset.info.get("class_subsets") or {}  # ImageNet-A, -R: their 200 classes
    for role, pred in out.predictions.items():
        if role in dataset.splits and role not in metrics:
            metrics[role] = {dataset.metric: metrics_lib.compute(
                dataset.metric, pred, dataset.splits[role].labels, subsets.get(role))}
    if out.predictions:
        save_predictions(workdir, out.predictions)
        save_eval_keys(workdir, dataset, out.predictions)

    diverged = out.diverged or any(
        not math.isfinite(v) for m in metrics.values() for v in m.values()
    )
    return {
        "state": "diverged" if diverged else "done",
        "metric": dataset.metric,
        "metrics": metrics,
        "extras": dict(out.extras),
        "dataset_fingerprint": dataset.fingerprint,
        "settings": settings_dict(settings.for_modality(dataset.modality)),
        "backbone": backbone_identity(settings.for_modality(dataset.modality)),
        "timings": {"load_s": round(t1 - t0, 3), "run_s": round(t2 - t1, 3), **meter.as_dict(),
                    "phases": progress.timings()},
    }


def backbone_identity(s) -> dict[str, str] | None:
    """The large model a job's modality used: ``{"backbone", "weights"}``, and for pre-trained
    weights the ``file`` and its ``sha256``, so a record names the exact weights behind its
    numbers (None for modalities without a backbone: tabular, cost tables)."""
    if s is None or not hasattr(s, "backbone"):
        return None
    if s.weights != "pretrained":
        return {"backbone": s.backbone, "weights": s.weights}
    from levi_core.backbones.weights import weights_identity
    from levi_core.errors import UserError

    try:
        return {**weights_identity(s.backbone, s.weights_dir), "weights": s.weights}
    except UserError:  # weights that cannot be found were not used (e.g. ref/mf, synthetic)
        return {"backbone": s.backbone, "weights": s.weights, "sha256": None}


def preflight(dataset_ids, settings, data_dir: str | None = None) -> list[str]:
    """Problems that would make every job of a grid fail, found in seconds before any job runs.

    Loads each dataset once (which also fills the prepared-data cache the jobs then reuse) and
    resolves the pre-trained weights of the large model each dataset's modality needs. Returns
    one message per problem (each names the fix); empty when the grid can start.
    """
    from levi_core.errors import UserError

    problems: list[str] = []
    modalities: set[str] = set()
    typed = settings if isinstance(settings, Settings) else Settings.from_mapping(settings)
    for dataset_id in dataset_ids:
        # the modality is declared: weights are checked even when the data is missing
        modalities.add(declaration(dataset_id).modality)
        try:
            load_dataset(dataset_id, data_dir)
        except UserError as e:
            problems.append(str(e))
    for modality in sorted(modalities & {"text", "vision"}):
        s = typed.for_modality(modality)
        if s.weights != "pretrained":
            continue
        from levi_core.backbones import load_backbone

        try:  # found, readable, and every tensor of the shape the architecture expects
            load_backbone(s.backbone, s.weights_dir)
        except UserError as e:
            problems.append(str(e))
    return problems
