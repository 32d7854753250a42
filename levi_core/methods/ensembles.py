"""Composite methods that only combine stored predictions; they work for every dataset family.

* ``ft_fs``: the mean of the selected ``ft`` and ``fs`` predictions.
* ``a2``: the mean of the selected ``ft`` and ``a4`` (the small model alone) predictions.
* ``ft_robust``: classification: each member's probabilities are temperature-scaled on
  ``id_val`` (the temperature from a fixed log-spaced grid that minimises the ``id_val``
  negative log-likelihood), then averaged; regression: the mean of the predictions.

They work on stored predictions only, so one generic implementation serves every dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from levi_core.methods.registry import RunContext, RunOutput, implements
from levi_core.predictions import load_predictions

TEMPERATURES = np.geomspace(0.05, 20.0, 81)


def load(workdir: Path) -> dict[str, np.ndarray]:
    return {r: np.asarray(p, dtype=np.float64) for r, p in load_predictions(workdir).items()}


def average(*members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    roles = set(members[0])
    for m in members[1:]:
        roles &= set(m)
    return {r: np.mean([m[r] for m in members], axis=0) for r in sorted(roles)}


def temperature_scale(probs: np.ndarray, t: float) -> np.ndarray:
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / t
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels).astype(int)
    nll = [
        -np.mean(np.log(np.clip(temperature_scale(probs, t)[np.arange(len(labels)), labels], 1e-12, 1)))
        for t in TEMPERATURES
    ]
    return float(TEMPERATURES[int(np.argmin(nll))])


def _ensemble(ctx: RunContext, a: str, b: str) -> RunOutput:
    return RunOutput(predictions=average(load(ctx.deps[a]), load(ctx.deps[b])))


def ft_fs(ctx: RunContext) -> RunOutput:
    return _ensemble(ctx, "ft", "fs")


def a2(ctx: RunContext) -> RunOutput:
    return _ensemble(ctx, "ft", "a4")


def ft_robust(ctx: RunContext) -> RunOutput:
    members = [load(ctx.deps["ft"]), load(ctx.deps["lp"])]
    if ctx.dataset.task != "classification":
        return RunOutput(predictions=average(*members))
    val = ctx.dataset.splits["id_val"].labels
    temps = [fit_temperature(m["id_val"], val) for m in members]
    scaled = [{r: temperature_scale(p, t) for r, p in m.items()} for m, t in zip(members, temps)]
    return RunOutput(predictions=average(*scaled), extras={"temperatures": temps})


def register() -> None:
    implements("ft_fs")(ft_fs)
    implements("a2")(a2)
    implements("ft_robust")(ft_robust)
