"""``linear_example`` on ``linear_toy``: the Appendix B / Table 6 example as a job.

Nothing trains: the exact (Fraction) results of ``levi_core.linear_example`` go into the
record's extras, and the mean squared test errors into its metrics (as floats).
"""

from __future__ import annotations

from levi_core import linear_example as lx
from levi_core.methods.registry import Kind, Method, RunContext, RunOutput, implements, register_method

register_method(
    Method(
        "linear_example",
        "Appendix B linear example: exact test errors of pre-trained, from-scratch, fine-tuned",
        {},
        kind=Kind.EXACT,
    )
)


@implements("linear_example", "linear_toy")
def linear_example(ctx: RunContext) -> RunOutput:
    res = lx.evaluate()
    return RunOutput(
        metrics={"ood/test": {f"mse_{m}": float(r["mse"]) for m, r in res.items()}},
        extras=lx.report(),
    )
