"""Every table's LaTeX compiles: each table of the ``smoke`` preset, rendered from generated
records, goes into one minimal document (article + booktabs) that pdflatex must typeset.

The records cover what a report can contain: means with and without missing seeds, a seed
whose every run diverged, a failed run, the cost tables' figures and the exact linear example
(whose cells start with ``[``, which LaTeX reads as an optional length after ``\\\\`` unless
braced). Skipped when pdflatex is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.claims import verdicts
from bench.collect import collect
from bench.jobs import plan
from bench.ledger import Ledger
from bench.render import latex, markdown
from bench.job_settings import expected_settings, job_settings
from bench.specs import TABLES

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

ROLES = ("id_val", "id_test", "ood/a", "ood/[b]", "ood/time", "ood/product/x_y", "ood/test")


def _metric(dataset: str) -> str:
    return "rmse" if dataset.startswith(("movielens", "amazon")) else "accuracy"


def _extras(job) -> dict:
    if job.method == "linear_example":
        from levi_core.linear_example import report

        return report()
    if job.method == "cost_analysis":
        cost = {"trainable_params": 1_500_000, "inference_params": 60_000_000, "flops_xla": 2.5e9,
                "flops_analytic": 2.4e9, "macs_analytic": 1.2e9, "notes": ["a note with 50% & $"]}
        backbone = job.dataset.split("=", 1)[1]
        return {"backbone": backbone, "convention": "multiply-add = 2 FLOPs", "input": "64 tokens",
                "references": {"params": 60e6, "macs": 1.2e9, "source": "Rao et al. (2021)"},
                "scopes": {"encoder": {"large_model": {"params": 6e7, "flops_xla": 2e9, "macs_analytic": 1e9},
                                       "rows": {m: cost for m in TABLES["table3"].sections[0].rows}}}}
    return {}


def write_records(spec, ledger: Ledger) -> None:
    for i, job in enumerate(plan(spec, "smoke")):
        if job.seed == 2 and job.method in ("ft", "layer/1", "levi/lora"):
            continue  # a missing seed
        state = "diverged" if job.seed == 1 and job.method in ("lp", "fs") else "done"
        if job.seed == 0 and job.method == "ht" and job.hparams_dict.get("lr") == 1e-4:
            state = "failed"
        metric = _metric(job.dataset)
        value = float("nan") if state == "diverged" else 1.0 + (i % 7) / 10
        ledger.write({"job_id": job.id, "job": job.fields(), "state": state, "metric": metric,
                      "settings": expected_settings(job_settings(spec, "smoke"), job.dataset),
                      "metrics": {r: {metric: value + k / 100} for k, r in enumerate(ROLES)},
                      "extras": _extras(job), "error": "boom {x}_y" if state == "failed" else None})


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_every_smoke_table_compiles_with_pdflatex(tmp_path):
    body = []
    for name, spec in TABLES.items():
        ledger = Ledger(tmp_path / name / "smoke")
        write_records(spec, ledger)
        result = collect(spec, "smoke", ledger)
        assert markdown(result, verdicts(result))
        tex = latex(result)
        assert tex.strip(), name
        body += [f"\\section*{{{name.replace('_', ' ')}}}", tex, r"\clearpage"]
    doc = tmp_path / "tables.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
                   + "\n".join(body) + "\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stdout.splitlines() if line.startswith("!")]
    assert run.returncode == 0, "\n".join(errors) or run.stdout[-3000:]
    assert (tmp_path / "tables.pdf").is_file()
    # every table fits the page of a plain article: nothing runs into the margin
    log = (tmp_path / "tables.log").read_text(errors="replace")
    overfull = [line for line in log.splitlines() if line.startswith("Overfull \\hbox")]
    assert not overfull, "\n".join(overfull)
    assert "{[1, 1, 0, 0, 1]}" in "\n".join(body)  # the exact table's bracketed cells, braced
