"""TableResult -> LaTeX, Markdown, CSV and figures under ``tables/<preset>/``.

A table renders as its sections in order (each section renders itself through pandas, see
``bench.sections`` and ``bench.styling``), then what the reader must know about the numbers:
missing cells with the command that fills them, diverged and failed runs, and the verdicts on
the paper's claims. The verdicts are drawn by the caller (``bench.claims.verdicts``, once per
report: their bootstrap is the slow part) and handed to ``markdown``; writing a table never
draws them again. Cells show mean ± sample standard deviation over seeds; in each column the
best mean is bold and the second best underlined, in the metric's declared direction, ranking
means as displayed (rounded) so equal-looking numbers share a mark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from levi_core.methods.catalog import label

from bench import styling
from bench.collect import TableResult
from bench.verdicts import Verdict


def markdown(result: TableResult, verdicts: Sequence[Verdict]) -> str:
    """The table's sections, its notes and ``verdicts`` (those of ``result``'s claims)."""
    out = [f"# {result.spec.title}\n\n{result.caption}\n\n"]
    out += [section.markdown(frame, result) for section, frame in result.parts]
    out.append(notes_markdown(result))
    out.append(claims_markdown(verdicts))
    text = "".join(out)
    while "\n\n\n" in text:  # sections open with a blank line; one is enough
        text = text.replace("\n\n\n", "\n\n")
    return text


def latex(result: TableResult) -> str:
    """Every section's table float (booktabs), one after another; compiles in a document with
    ``\\usepackage{booktabs,graphicx}`` (the first line says so) and fits its text width."""
    parts = [section.latex(frame, result) for section, frame in result.parts]
    body = "\n".join(p for p in parts if p)
    return f"{LATEX_NEEDS}\n{body}" if body else body


LATEX_NEEDS = r"% needs \usepackage{booktabs,graphicx} (graphicx: \resizebox fits wide tables to the page)"


def csv_text(result: TableResult) -> str:
    """The sections' rows, one per cell (cost tables: one per method and scope)."""
    frames = [f for f in (s.csv(frame, result) for s, frame in result.parts) if f is not None]
    if not frames:
        return ""
    return styling.csv_text(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


def missing_lines(result: TableResult) -> list[str]:
    return [line for section, frame in result.parts for line in section.missing(frame)]


def notes_markdown(result: TableResult) -> str:
    out = []
    missing = missing_lines(result)
    if missing:
        out.append("\n## Missing cells\n\n" + "".join(f"- {line}\n" for line in missing)
                   + f"\n`{result.run_command}` runs what is missing.\n")
    if result.diverged_runs:
        out.append("\n## Diverged runs (excluded from selection and means)\n\n")
        for r in result.diverged_runs:
            j = r["job"]
            hp = " ".join(f"{k}={v}" for k, v in sorted(j["hparams"].items()))
            out.append(f"- {label(j['method'])} {j['dataset']} seed {j['seed']} {hp}\n")
    if result.failed_runs:
        out.append("\n## Failed runs (retried by the next `bench run`)\n\n")
        for r in result.failed_runs:
            j = r["job"]
            err = (r.get("error") or "").splitlines()[0][:160] if r.get("error") else ""
            out.append(f"- {label(j['method'])} {j['dataset']} seed {j['seed']}: {err}\n")
    return "".join(out)


def claims_markdown(vs: Sequence[Verdict]) -> str:
    if not vs:
        return ""
    frame = pd.DataFrame([(v.claim, v.statement, f"**{v.status}**", numbers)
                          for v, numbers in zip(vs, claim_numbers(vs))],
                         columns=["Claim", "Statement", "Verdict", "Numbers"])
    return "\n## Claims of the paper\n\n" + styling.markdown_table(frame, align_rest="left")


def claim_numbers(vs: Sequence[Verdict]) -> list[str]:
    """Each verdict's numbers, except where a claim rests on exactly the differences an earlier
    one does (two opposite claims judged on one proxy, C7 and C8 on CIFAR-10): that row points
    to the earlier one instead of printing the same gaps with their signs flipped."""
    first: dict[frozenset, str] = {}
    out = []
    for v in vs:
        key = frozenset((frozenset((t.a, t.b)), t.column) for t in v.evidence)
        earlier = first.setdefault(key, v.claim) if key else v.claim
        out.append(v.detail if earlier == v.claim else
                   f"the same differences as {earlier} (see its numbers), read as this claim states them")
    return out


def write_all(result: TableResult, verdicts: Sequence[Verdict], tables_root: Path,
              partial: bool = False) -> list[Path]:
    """Write ``<table>.{md,tex,csv}`` (the Markdown with ``verdicts``) and figures into
    ``tables_root/<preset>/`` (a partial table: into its ``partial/`` folder, so that it never
    replaces a complete one); return the paths."""
    folder = tables_root / result.preset / ("partial" if partial else "")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in (("md", markdown(result, verdicts)), ("tex", latex(result)), ("csv", csv_text(result))):
        path = folder / f"{result.spec.name}.{suffix}"
        _atomic_write(path, text)
        written.append(path)
    for section, frame in result.parts:
        written += section.figures(frame, result, folder)
    return written


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
