"""Model engines: one per kind of large model (see ``levi_core.engines.base``).

``engine_for(ctx)`` picks the engine from what the dataset declares (its modality), never from
its name, so a new dataset of a known modality needs no change here.
"""

from __future__ import annotations

from levi_core.engines.base import Engine
from levi_core.errors import ConfigError

ENGINES = {"text": "transformer", "vision": "transformer", "tabular": "mlp"}


def engine_for(ctx) -> Engine:
    """The engine for a job's dataset, configured by the job's settings of that modality."""
    ds = ctx.dataset
    s = ctx.settings.for_modality(ds.modality)
    kind = ENGINES.get(ds.modality)
    if kind is None or s is None:
        raise ConfigError(f"dataset {ds.name!r} (modality {ds.modality!r}) has no large-model "
                          f"engine; engines exist for: {', '.join(sorted(ENGINES))}")
    if kind == "mlp":
        from levi_core.engines.mlp import MLPEngine

        return MLPEngine(ds, s, ctx.cache_dir)
    from levi_core.engines.transformer import TransformerEngine

    return TransformerEngine(ds, s, ctx.cache_dir)


__all__ = ["Engine", "engine_for"]
