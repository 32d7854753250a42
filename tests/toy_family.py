"""A tiny dataset family and methods for harness tests: no JAX, milliseconds per job.

Importing this module registers dataset ``toy`` and methods ``toy_fit`` (grid lr in {1, 2, 3};
lr=3 diverges when the dataset option ``nan=1`` is set), ``toy_ens`` (composite over the
selected toy_fit run), ``toy_slow`` (sleeps, for kill tests), ``toy_progress`` (a progress bar
for a second, logging every 0.2 s),
``toy_crash`` (its worker process dies on the first attempt) and ``toy_error`` (always raises). Predictions are a deterministic
function of (seed, lr), so every executor gives the same numbers.
"""

from __future__ import annotations

import os
import time

import numpy as np

from levi_core.api import load_predictions
from levi_core.data.base import Dataset, Split, register_dataset
from levi_core.methods.registry import Kind, Method, RunOutput, implements, register_method


@register_dataset("toy")
def load_toy(options, data_dir):
    rng = np.random.default_rng(int(options.get("data_seed", 0)))
    splits = {}
    for role, n in (("train", 20), ("id_val", 10), ("id_test", 10), ("ood/a", 8), ("ood/b", 8)):
        splits[role] = Split(example_ids=np.array([f"{role}-{i}" for i in range(n)]),
                             labels=rng.integers(1, 6, size=n).astype(np.float32))
    return Dataset(name="toy", task="regression", metric="rmse", splits=splits,
                   info={"nan": options.get("nan", "0")})


register_method(Method("toy_fit", "toy regressor", grid={"lr": (1, 2, 3)}))
register_method(Method("toy_ens", "toy ensemble", depends_on=("toy_fit",), kind=Kind.COMPOSITE))
register_method(Method("toy_slow", "toy regressor that takes a while", grid={"lr": (1, 2)}))
register_method(Method("toy_crash", "toy regressor whose worker dies on its first attempt",
                       grid={"lr": (1,)}))
register_method(Method("toy_error", "toy regressor that always raises", grid={"lr": (1,)}))
register_method(Method("toy_progress", "toy regressor that reports progress for a second",
                       grid={"lr": (1,)}))


def _predict(ds, seed, lr, offset=0.0):
    out = {}
    for role, split in ds.splits.items():
        noise = np.random.default_rng(seed * 100 + lr).normal(size=len(split)) * (0.3 * lr)
        bias = 0.5 if role.startswith("ood/") else 0.0
        out[role] = split.labels + noise + bias + offset
    return out


@implements("toy_fit", "toy")
def run_fit(ctx):
    _count_run(ctx)
    lr = ctx.hparams["lr"]
    if ctx.dataset.info["nan"] == "1" and lr == 3:
        return RunOutput(diverged=True)
    return RunOutput(predictions=_predict(ctx.dataset, ctx.seed, lr))


@implements("toy_ens", "toy")
def run_ens(ctx):
    _count_run(ctx)
    member = load_predictions(ctx.deps["toy_fit"])
    return RunOutput(predictions={r: (p + ctx.dataset.splits[r].labels) / 2 for r, p in member.items()})


@implements("toy_slow", "toy")
def run_slow(ctx):
    _count_run(ctx)
    time.sleep(float(os.environ.get("TOY_SLOW_S", "0.5")))
    return RunOutput(predictions=_predict(ctx.dataset, ctx.seed, ctx.hparams["lr"], offset=0.1))


@implements("toy_progress", "toy")
def run_progress(ctx):
    from levi_core import progress

    _count_run(ctx)
    os.environ["LEVI_PROGRESS_EVERY"] = "0.2"  # this worker's pace: several lines in a second
    with progress.phase("train_large"), progress.bar("toy progress", total=10, unit="step") as b:
        for _ in range(10):
            time.sleep(0.1)
            b.update(1)
    return RunOutput(predictions=_predict(ctx.dataset, ctx.seed, ctx.hparams["lr"]))


@implements("toy_crash", "toy")
def run_crash(ctx):
    """A lost worker: the process dies (no exception) unless $TOY_CRASH_DIR marks a try."""
    _count_run(ctx)
    marker = os.path.join(os.environ["TOY_CRASH_DIR"], ctx.workdir.name)
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return RunOutput(predictions=_predict(ctx.dataset, ctx.seed, ctx.hparams["lr"]))


@implements("toy_error", "toy")
def run_error(ctx):
    _count_run(ctx)
    raise RuntimeError("the job's own bug")


def _count_run(ctx):
    """Append one line per executed job to $TOY_RUN_LOG: tests count re-executions with it."""
    log = os.environ.get("TOY_RUN_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{ctx.workdir.name}\n")
