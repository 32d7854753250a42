"""The costs of Tables 3, 15 and 16 as a job, so they flow through the same ledger and reports.

Dataset ``costs:backbone=<preset name>[,seq_len=N]`` (``levi_core.data.costs``) has no splits: it
only names the large model whose method rows are costed. Method ``cost_analysis`` returns
``levi_core.costs.cost_table`` of the catalog's methods in the record's extras. Offline and deterministic: configs only,
no weights.
"""

from __future__ import annotations

from levi_core.methods.registry import Kind, Method, RunOutput, implements, register_method

register_method(Method("cost_analysis", "parameters and inference FLOPs of every method row",
                       kind=Kind.EXACT))


@implements("cost_analysis", "costs")
def run_cost_analysis(ctx) -> RunOutput:
    from levi_core.costs import cost_table
    from levi_core.methods.catalog import METHODS

    info = ctx.dataset.info
    kwargs = {"seq_len": info["seq_len"]} if not info["backbone"].startswith("vit") else {}
    kwargs.update({k: info[k] for k in ("num_outputs", "adapter_hidden") if k in info})
    return RunOutput(extras=cost_table(info["backbone"], METHODS, **kwargs))
