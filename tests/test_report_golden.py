"""Golden test: fixed records in, exact LaTeX and Markdown out.

The records cover the cases a report must get right: ties for best (both bold), second best
underlined, lower-is-better ranking, a paper column, a missing seed with the command that fills
it, and a seed whose every run diverged. Regenerate after a deliberate format change with
``UPDATE_GOLDEN=1 python -m pytest tests/test_report_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import toy_family  # noqa: F401
from bench.collect import collect
from bench.jobs import Job
from bench.ledger import Ledger
from bench.claims import verdicts
from bench.render import csv_text, latex, markdown
from bench.specs import Column, MetricGrid, TableSpec

GOLDEN = Path(__file__).parent / "golden"
SPEC = TableSpec(
    name="golden", title="Golden table", caption="Fixed records.",
    sections=(MetricGrid(rows=("toy_fit", "toy_slow", "toy_ens"),
                         columns=(Column("id", "ID RMSE", "toy", "id_test", "rmse"),
                                  Column("ood", "OOD RMSE", "toy", "ood/mean", "rmse")),
                         paper={("toy_fit", "ood"): 1.25}),),
    grids={"toy_fit": {"lr": (1,)}, "toy_slow": {"lr": (1,)}},
)

# (method, seed) -> (state, id_val, id_test, ood/a, ood/b); None = no record
FIXED = {
    ("toy_fit", 0): ("done", 0.5, 0.9, 1.0, 1.2),
    ("toy_fit", 1): ("done", 0.5, 1.1, 1.4, 1.6),
    ("toy_fit", 2): ("done", 0.5, 1.0, 1.2, 1.4),
    ("toy_slow", 0): ("done", 0.5, 1.0, 1.0, 1.0),
    ("toy_slow", 1): ("done", 0.5, 1.0, 2.0, 2.0),
    ("toy_slow", 2): ("diverged", float("nan"), float("nan"), float("nan"), float("nan")),
    ("toy_ens", 0): ("done", 0.4, 0.8, 1.5, 1.5),
    ("toy_ens", 1): ("done", 0.4, 0.8, 1.5, 1.5),
}


def write_records(ledger: Ledger) -> None:
    for (method, seed), (state, val, test, a, b) in FIXED.items():
        hp = {} if method == "toy_ens" else {"lr": 1}
        job = Job.make("toy", method, seed, hp, "smoke")
        ledger.write({"job_id": job.id, "job": job.fields(), "state": state, "metric": "rmse",
                      "metrics": {"id_val": {"rmse": val}, "id_test": {"rmse": test},
                                  "ood/a": {"rmse": a}, "ood/b": {"rmse": b}}})


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file"


def test_golden_markdown_latex_csv(tmp_path):
    ledger = Ledger(tmp_path / "smoke")
    write_records(ledger)
    result = collect(SPEC, "smoke", ledger)
    # toy_fit ID: mean 1.0, toy_slow ID: mean 1.0 (tie for second); toy_ens ID 0.8 best
    assert result.cell("toy_slow", "id")["diverged"] == [2]
    assert result.cell("toy_ens", "id")["missing"] == [2]
    check("golden.md", markdown(result, verdicts(result)))
    check("golden.tex", latex(result))
    check("golden.csv", csv_text(result))
