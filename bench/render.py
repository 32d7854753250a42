"""TableResult -> LaTeX, Markdown, CSV and figures under ``tables/<preset>/``.

Cells show mean ± sample standard deviation over seeds. In each column the best mean is bold
and the second best underlined, in the metric's direction; means are ranked as displayed
(rounded), so equal-looking numbers share a mark. Missing cells are listed with the command
that fills them; diverged runs are listed and never averaged in.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bench.claims import Verdict, verdicts
from bench.collect import Cell, TableResult
from bench.specs import Column

DISPLAY = {
    "ft": "FT", "ht": "HT", "lp": "LP", "fs": "FS", "lp_ft": "LP→FT",
    "ft_robust": "FT+RobustModel", "ft_zeroshot": "FT+ZeroShot", "ft_fs": "FT+FS", "lora": "LoRA",
    "levi": "LEVI", "levi/pretrained": "LEVI (pre-trained)", "levi/ft": "LEVI (fine-tuned)",
    "levi/lora": "LEVI (LoRA)", "a1": "A1", "a2": "A2", "a3": "A3", "a4": "A4", "a5": "A5",
}
LATEX_DISPLAY = {"lp_ft": r"LP$\to$FT"}
DECIMALS = {"accuracy": 1, "rmse": 4}


def linear_example_table(extras: dict) -> dict | None:
    """Table 6 of the paper from the linear example's exact record (fractions as strings)."""
    models = extras.get("models")
    points = extras.get("test_points")
    if not models or not points:
        return None
    from bench.claims import LINEAR_NAMES

    order = [m for m in ("pretrain", "scratch", "finetune", "true") if m in models]
    header = ["x", "y"] + [f"ŷ {LINEAR_NAMES[m]} (sq. err.)" for m in order]
    rows = []
    for i, p in enumerate(points):
        rows.append(["[" + ", ".join(p["x"]) + "]", p["y"]]
                    + [f"{models[m]['predictions'][i]} ({models[m]['sq_errors'][i]})" for m in order])
    rows.append(["mean squared error", ""] + [models[m]["mse"] for m in order])
    weights = "; ".join(f"{LINEAR_NAMES[m]} w = [{', '.join(models[m]['w'])}]" for m in order)
    return {
        "title": "Linear example of Appendix B (Table 6), exact",
        "caption": (f"{weights}. The fine-tuned and from-scratch weights are computed as the "
                    "minimum-norm fits of the three fine-tuning points from the pre-trained and "
                    "zero weights. Test points: " + extras.get("test_points_source", "") + "; on them "
                    "y has zero sample correlation with x1 and x5."),
        "header": header,
        "rows": rows,
    }


EXTRA_TABLES = {"linear_example": linear_example_table}


def extra_tables(result: TableResult) -> list[dict]:
    out = []
    for (_, method), rec in result.extras.items():
        fn = EXTRA_TABLES.get(method)
        table = fn(rec.get("extras") or {}) if fn else None
        if table:
            out.append(table)
    return out


def display(method: str) -> str:
    if method.startswith("layer/"):
        return f"Layer {method.split('/', 1)[1]}"
    return DISPLAY.get(method, method)


def fmt(value: float | None, metric: str) -> str:
    return "" if value is None else f"{value:.{DECIMALS.get(metric, 3)}f}"


def ranks(result: TableResult, col: Column) -> dict[str, int]:
    """method -> 1 (best) or 2 (second best), ranking displayed means; ties share a rank."""
    shown = {}
    for m in result.spec.rows:
        mean = result.cell(m, col.key).mean
        if mean is not None:
            shown[m] = round(mean, DECIMALS.get(col.metric, 3))
    distinct = sorted(set(shown.values()), reverse=not col.lower_is_better)
    return {m: distinct.index(v) + 1 for m, v in shown.items() if distinct.index(v) < 2}


def cell_text(cell: Cell, metric: str) -> tuple[str, str]:
    """(mean, std) strings; a cell with no value says why; one with fewer seeds says n."""
    if cell.mean is None:
        return ("diverged" if cell.diverged_seeds else "–"), ""
    std = "" if cell.std is None else fmt(cell.std, metric)
    partial = cell.missing_seeds or cell.diverged_seeds
    return fmt(cell.mean, metric), std + (f" (n={cell.n})" if partial else "")


def paper_columns(result: TableResult) -> set[str]:
    return {col for (_, col) in result.spec.paper}


def caption(result: TableResult) -> str:
    seeds = ", ".join(str(s) for s in result.spec.seeds)
    return (f"{result.spec.caption} Mean ± sample standard deviation (n−1) over seeds {seeds} "
            f"(preset `{result.preset}`); best in bold, second best underlined.")


# ------------------------------------------------------------------ markdown
def markdown(result: TableResult) -> str:
    spec = result.spec
    out = io.StringIO()
    w = out.write
    w(f"# {spec.title}\n\n")
    w(f"{caption(result)}\n\n")
    pcols = paper_columns(result)
    header = ["Method"]
    for col in spec.columns:
        header.append(col.label)
        if col.key in pcols:
            header.append(f"{col.label} (paper)")
    w("| " + " | ".join(header) + " |\n")
    w("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|\n")
    col_ranks = {col.key: ranks(result, col) for col in spec.columns}
    for m in spec.rows:
        row = [display(m)]
        for col in spec.columns:
            mean, std = cell_text(result.cell(m, col.key), col.metric)
            text = mean + (f" ± {std}" if std else "")
            rank = col_ranks[col.key].get(m)
            if rank == 1:
                text = f"**{text}**"
            elif rank == 2:
                text = f"<u>{text}</u>"
            row.append(text)
            if col.key in pcols:
                paper = spec.paper.get((m, col.key))
                row.append("" if paper is None else fmt(paper, col.metric))
        w("| " + " | ".join(row) + " |\n")
    if pcols:
        w("\nPaper columns: figures the paper states in its text; blank where it gives none.\n")
    for sweep in spec.sweeps:
        w(f"\n## {sweep.title}\n\n![{sweep.title}]({spec.name}_{sweep.key}.png)\n\n")
        xs = list(sweep.points)
        w("| Method | " + " | ".join(f"{x:g}" for x in xs) + " |\n")
        w("|---|" + "|".join(["---:"] * len(xs)) + "|\n")
        for m in sweep.methods:
            vals = []
            for x in xs:
                mean, std = cell_text(result.cell(m, f"{sweep.key}@{x}"), sweep.metric)
                vals.append(mean + (f" ± {std}" if std else ""))
            w(f"| {display(m)} | " + " | ".join(vals) + " |\n")
        w(f"\nx: {sweep.x_label}. y: {sweep.role} {sweep.metric} of the run selected on id_val.\n")
    for table in extra_tables(result):
        if table:
            w(f"\n## {table['title']}\n\n{table['caption']}\n\n")
            w("| " + " | ".join(table["header"]) + " |\n")
            w("|" + "|".join(["---"] * len(table["header"])) + "|\n")
            for r in table["rows"]:
                w("| " + " | ".join(str(c) for c in r) + " |\n")
    w(_notes_markdown(result))
    w(_claims_markdown(verdicts(result)))
    return out.getvalue()


def missing_lines(result: TableResult) -> list[str]:
    spec = result.spec
    cmd = f"bench run {spec.name} --preset {result.preset}"
    lines = []
    for (m, key), cell in result.cells.items():
        if cell.missing_seeds:
            seeds = ",".join(str(s) for s in cell.missing_seeds)
            word = "seed" if len(cell.missing_seeds) == 1 else "seeds"
            lines.append(f"{display(m)} / {key}: {word} {seeds} missing — `{cmd}`")
    for dataset, method in spec.extra_jobs:
        if (dataset, method) not in result.extras:
            lines.append(f"{method} on {dataset}: missing — `{cmd}`")
    return lines


def _notes_markdown(result: TableResult) -> str:
    out = []
    missing = missing_lines(result)
    if missing:
        out.append("\n## Missing cells\n\n" + "".join(f"- {line}\n" for line in missing))
    if result.diverged_runs:
        out.append("\n## Diverged runs (excluded from selection and means)\n\n")
        for r in result.diverged_runs:
            j = r["job"]
            hp = " ".join(f"{k}={v}" for k, v in sorted(j["hparams"].items()))
            out.append(f"- {display(j['method'])} {j['dataset']} seed {j['seed']} {hp}\n")
    if result.failed_runs:
        out.append("\n## Failed runs (retried by the next `bench run`)\n\n")
        for r in result.failed_runs:
            j = r["job"]
            err = (r.get("error") or "").splitlines()[0][:160]
            out.append(f"- {display(j['method'])} {j['dataset']} seed {j['seed']}: {err}\n")
    return "".join(out)


def _claims_markdown(vs: list[Verdict]) -> str:
    if not vs:
        return ""
    out = ["\n## Claims of the paper\n\n| Claim | Statement | Verdict | Numbers |\n|---|---|---|---|\n"]
    for v in vs:
        out.append(f"| {v.claim} | {v.statement} | **{v.status}** | {v.detail} |\n")
    return "".join(out)


# ------------------------------------------------------------------ latex
def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
            "±": r"$\pm$", "→": r"$\to$", "−": "-", "–": "--", "ŷ": r"$\hat{y}$"}
    return "".join(repl.get(ch, ch) for ch in text)


def latex(result: TableResult) -> str:
    spec = result.spec
    pcols = paper_columns(result)
    ncols = sum(2 if c.key in pcols else 1 for c in spec.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + latex_escape(caption(result).replace("`", "")) + "}",
        r"\label{tab:" + spec.name + "}",
        r"\begin{tabular}{l" + "c" * ncols + "}",
        r"\toprule",
    ]
    header = ["Method"]
    for col in spec.columns:
        header.append(latex_escape(col.label))
        if col.key in pcols:
            header.append(latex_escape(col.label) + " (paper)")
    lines.append(" & ".join(header) + r" \\")
    lines.append(r"\midrule")
    col_ranks = {col.key: ranks(result, col) for col in spec.columns}
    for m in spec.rows:
        row = [LATEX_DISPLAY.get(m, latex_escape(display(m)))]
        for col in spec.columns:
            mean, std = cell_text(result.cell(m, col.key), col.metric)
            text = latex_escape(mean) if mean in ("–", "diverged") else mean
            rank = col_ranks[col.key].get(m)
            if rank == 1:
                text = r"\textbf{" + text + "}"
            elif rank == 2:
                text = r"\underline{" + text + "}"
            if std:
                text += r" $\pm$ " + std
            row.append(text)
            if col.key in pcols:
                paper = spec.paper.get((m, col.key))
                row.append("" if paper is None else fmt(paper, col.metric))
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    for table in extra_tables(result):
        if table:
            lines += ["", r"\begin{table}[t]", r"\centering",
                      r"\caption{" + latex_escape(table["title"] + ". " + table["caption"]) + "}",
                      r"\begin{tabular}{" + "l" * len(table["header"]) + "}", r"\toprule",
                      " & ".join(latex_escape(h) for h in table["header"]) + r" \\", r"\midrule"]
            lines += [" & ".join(latex_escape(str(c)) for c in r) + r" \\" for r in table["rows"]]
            lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ csv
def csv_text(result: TableResult) -> str:
    spec = result.spec
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    seeds = list(spec.seeds)
    writer.writerow(["table", "preset", "method", "column", "dataset", "role", "metric", "mean",
                     "std", "n"] + [f"seed{s}" for s in seeds] + ["diverged_seeds", "paper"])
    cols = list(spec.columns)
    for sweep in spec.sweeps:
        for x, dataset in sweep.points.items():
            cols.append(Column(f"{sweep.key}@{x}", str(x), dataset, sweep.role, sweep.metric))
    for col in cols:
        for (m, key), cell in result.cells.items():
            if key != col.key:
                continue
            paper = spec.paper.get((m, col.key))
            writer.writerow(
                [spec.name, result.preset, m, col.key, col.dataset, col.role, col.metric,
                 _num(cell.mean), _num(cell.std), cell.n]
                + [_num(cell.values.get(s)) for s in seeds]
                + [";".join(str(s) for s in cell.diverged_seeds), "" if paper is None else paper]
            )
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(round(float(v), 10))


# ------------------------------------------------------------------ figures
def draw_sweeps(result: TableResult, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sweep in result.spec.sweeps:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        xs = sorted(sweep.points)
        for m in sweep.methods:
            pts = [(x, result.cell(m, f"{sweep.key}@{x}")) for x in xs]
            pts = [(x, c) for x, c in pts if c.mean is not None]
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [c.mean for _, c in pts],
                        yerr=[c.std or 0.0 for _, c in pts], marker="o", capsize=3, label=display(m))
        ax.set_xlabel(sweep.x_label, fontsize=8)
        ax.set_ylabel(f"{sweep.role} {sweep.metric}")
        ax.set_title(sweep.title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"{result.spec.name}_{sweep.key}.png"
        fig.savefig(path, dpi=120, metadata={"Software": None})
        plt.close(fig)
        paths.append(path)
    return paths


def write_all(result: TableResult, tables_root: Path) -> list[Path]:
    """Write ``<table>.{md,tex,csv}`` and figures into ``tables_root/<preset>/``; return paths."""
    folder = tables_root / result.preset
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in (("md", markdown(result)), ("tex", latex(result)), ("csv", csv_text(result))):
        path = folder / f"{result.spec.name}.{suffix}"
        _atomic_write(path, text)
        written.append(path)
    written += draw_sweeps(result, folder)
    return written


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
