"""Head grids in one program: every learning rate of a method trained together, shared by its jobs.

A method that trains a small model on cached states (``lp``, ``levi*``, ``a3``-``a5``,
``layer/<k>``) costs far more in dispatch and compilation than in arithmetic, and the harness
runs it once per learning rate of its grid. The harness tells each job the grid points of its
siblings (same dataset, method and seed: ``RunContext.grid``); the first sibling to start
trains all of them in one ``vmap``ped program (``training.fit_grid``) and leaves each member's
artifacts under ``<cache_dir>/grids/<key>/<i>/``; the others, concurrent (they wait on the
claim) or later, copy theirs. Records stay one per job, each with its own predictions,
parameters and loss figures, equal to a separate run's up to float rounding.

The key holds everything the members' numbers depend on: method, seed, the dataset
fingerprint, the modality's settings, the grid and the dependency folders (the selected runs
this job reads). Without a cache folder, or with a one-point grid, the job trains alone.

Status: ``bench run`` does not pass the grid yet (a job's config ``grid`` stays empty). On
CPU the separate runs of a grid already share one compiled program (the learning rate is a
runtime value), so batching saves nothing there (``bench.benchmarks.head_grid``: 0.7-0.9x), and
the batched products round differently, which high learning rates amplify (a4 on the smoke
fixture: up to 6e-3 RMSE, above the baseline tolerance). It is meant for accelerators, where
one program of G members fills the device that one member leaves idle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from levi_core import features as feature_cache
from levi_core import training
from levi_core.methods.registry import RunContext, RunOutput
from levi_core.predictions import load_predictions, save_predictions
from levi_core.settings import settings_dict

OUT_FILE = "member.json"


@dataclass
class Member:
    """One trained grid point: what its job returns and what it saves."""

    output: RunOutput
    params: Any  # saved as the job's params.npz
    info: dict


def grid_lrs(ctx: RunContext) -> list[float]:
    """The learning rates trained together with this job's: its siblings' when the grid
    varies only ``lr`` (else this job's alone)."""
    points = [dict(p) for p in (getattr(ctx, "grid", None) or ())]
    mine = dict(ctx.hparams)
    others = {k: v for k, v in mine.items() if k != "lr"}
    if len(points) < 2 or any({k: v for k, v in p.items() if k != "lr"} != others for p in points):
        return [ctx.lr]
    lrs = sorted({float(p["lr"]) for p in points if "lr" in p})
    return lrs if ctx.lr in lrs else [ctx.lr]


def run(ctx: RunContext, tag: str, train: Callable[[list[float]], list[Member]]) -> RunOutput:
    """This job's output, trained alone or with its grid (see the module docstring)."""
    lrs = grid_lrs(ctx)
    if len(lrs) < 2 or ctx.cache_dir is None:
        return _finish(ctx, train([ctx.lr])[0])
    modality = ctx.dataset.modality
    key = feature_cache.cache_key({
        "method": tag, "seed": ctx.seed, "fingerprint": ctx.dataset.fingerprint, "lrs": lrs,
        "settings": settings_dict(ctx.settings.for_modality(modality)),
        "deps": {k: str(Path(v).resolve()) for k, v in sorted(ctx.deps.items())}})
    root = Path(ctx.cache_dir) / "grids"
    folder = root / key
    i = lrs.index(ctx.lr)
    def build():
        members = train(lrs)
        for j, m in enumerate(members):
            _store(folder / str(j), m)
        (folder / "done").write_text(json.dumps({"lrs": lrs}))
        return _finish(ctx, members[i])

    mine = feature_cache.build_once(root / f"{key}.lock", (folder / "done").exists, build)
    return mine if mine is not None else _load(ctx, folder / str(i))


def _finish(ctx: RunContext, m: Member) -> RunOutput:
    training.save_params(ctx.workdir, m.params, m.info)
    return m.output


def _store(d: Path, m: Member) -> None:
    d.mkdir(parents=True, exist_ok=True)
    training.save_params(d, m.params, m.info)
    save_predictions(d, m.output.predictions)
    (d / OUT_FILE).write_text(json.dumps({"diverged": bool(m.output.diverged),
                                          "extras": m.output.extras}, default=_json))


def _load(ctx: RunContext, d: Path) -> RunOutput:
    for name in (training.PARAMS_FILE, training.RUN_FILE):
        shutil.copyfile(d / name, Path(ctx.workdir) / name)
    out = json.loads((d / OUT_FILE).read_text())
    return RunOutput(predictions=load_predictions(d), diverged=out["diverged"], extras=out["extras"])


def _json(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON: {type(v).__name__}")
