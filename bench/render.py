"""TableResult -> LaTeX, Markdown, CSV and figures under ``tables/<preset>/``.

Cells show mean ± sample standard deviation over seeds. In each column the best mean is bold
and the second best underlined, in the metric's direction; means are ranked as displayed
(rounded), so equal-looking numbers share a mark. Missing cells are listed with the command
that fills them; diverged runs are listed and never averaged in.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
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
    for m in result.rows:
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


# ------------------------------------------------------------------ layout
@dataclass
class Grid:
    """A rendered table before formatting: header and rows of (text, std, rank) cells.

    ``rank`` is 1 (bold), 2 (underlined) or None; reference rows are never ranked; paper
    columns hold the paper's figure as plain text.
    """

    header: list[str]
    rows: list[list[tuple[str, str, int | None]]]
    n_ranked: int  # rows after this index are reference rows


def grid(result: TableResult, columns: list[Column]) -> Grid:
    spec = result.spec
    pcols = paper_columns(result)
    header = ["Method"]
    for col in columns:
        header.append(col.label)
        if col.key in pcols:
            header.append(f"{col.label} (paper)")
    col_ranks = {col.key: ranks(result, col) for col in columns}
    rows = []
    for m in result.rows + spec.references:
        ranked = m in result.rows
        row = [(display(m) + ("" if ranked else " (reference)"), "", None)]
        for col in columns:
            mean, std = cell_text(result.cell(m, col.key), col.metric)
            row.append((mean, std, col_ranks[col.key].get(m) if ranked else None))
            if col.key in pcols:
                paper = spec.paper.get((m, col.key))
                row.append(("" if paper is None else fmt(paper, col.metric), "", None))
        rows.append(row)
    return Grid(header, rows, len(result.rows))


def grid_markdown(g: Grid) -> str:
    lines = ["| " + " | ".join(g.header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(g.header) - 1)) + "|"]
    for row in g.rows:
        cells = []
        for mean, std, rank in row:
            text = mean + (f" ± {std}" if std else "")
            cells.append(f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def breakdown_groups(result: TableResult) -> list[tuple[str, list[Column]]]:
    groups = []
    for b in result.spec.breakdowns:
        cols = [c for c in result.breakdown_cols if c.key.startswith(b.key + ":")]
        if cols:
            groups.append((b.title, cols))
    return groups


# ------------------------------------------------------------------ markdown
def markdown(result: TableResult) -> str:
    if result.spec.kind == "costs":
        return costs_markdown(result)
    spec = result.spec
    out = io.StringIO()
    w = out.write
    w(f"# {spec.title}\n\n")
    w(f"{caption(result)}\n\n")
    w(grid_markdown(grid(result, list(result.columns))))
    dropped = [c.label for c in spec.all_columns() if c not in result.columns]
    if dropped:
        w(f"\nNot part of preset `{result.preset}` (its data is not available at this scale): "
          f"{', '.join(dropped)}.\n")
    if paper_columns(result):
        w("\nPaper columns: figures the paper states in its text; blank where it gives none.\n")
    for title, cols in breakdown_groups(result):
        w(f"\n## {title}\n\n" + grid_markdown(grid(result, cols)))
    if spec.layer_study:
        w(f"\n![{spec.title}]({spec.name}_layers.png)\n")
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


def grid_latex(g: Grid, title: str, label: str) -> list[str]:
    lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + title + "}",
             r"\label{tab:" + label + "}",
             r"\begin{tabular}{l" + "c" * (len(g.header) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in g.header) + r" \\", r"\midrule"]
    for i, row in enumerate(g.rows):
        if i == g.n_ranked and i:
            lines.append(r"\midrule")
        cells = [LATEX_DISPLAY.get(row[0][0], latex_escape(row[0][0]))]
        for mean, std, rank in row[1:]:
            text = latex_escape(mean) if mean in ("–", "diverged") else mean
            if rank == 1:
                text = r"\textbf{" + text + "}"
            elif rank == 2:
                text = r"\underline{" + text + "}"
            if std:
                text += r" $\pm$ " + latex_escape(std)
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    return lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}"]


def latex(result: TableResult) -> str:
    if result.spec.kind == "costs":
        return costs_latex(result)
    spec = result.spec
    lines = grid_latex(grid(result, list(result.columns)),
                       latex_escape(caption(result).replace("`", "")), spec.name)
    for i, (title, cols) in enumerate(breakdown_groups(result)):
        lines += [""] + grid_latex(grid(result, cols), latex_escape(title), f"{spec.name}-breakdown{i + 1}")
    for table in extra_tables(result):
        lines += ["", r"\begin{table}[t]", r"\centering",
                  r"\caption{" + latex_escape(table["title"] + ". " + table["caption"]) + "}",
                  r"\begin{tabular}{" + "l" * len(table["header"]) + "}", r"\toprule",
                  " & ".join(latex_escape(h) for h in table["header"]) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(str(c)) for c in r) + r" \\" for r in table["rows"]]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ costs (Tables 3, 15, 16)
COST_HEADER = ["Method", "Trainable params (M)", "Inference params (M)", "FLOPs XLA (G)",
               "FLOPs analytic (G)", "MACs analytic (G)"]


def cost_sections(result: TableResult) -> list[dict]:
    """One section per (backbone, scope): title, notes and rows of formatted numbers."""
    sections = []
    for (dataset, _), rec in result.extras.items():
        table = rec.get("extras") or {}
        for scope, data in table.get("scopes", {}).items():
            lm = data["large_model"]
            rows = []
            for m in result.spec.rows:
                c = data["rows"].get(m)
                if c is None:
                    continue
                rows.append([display(m), f"{c['trainable_params'] / 1e6:.2f}",
                             f"{c['inference_params'] / 1e6:.2f}", f"{c['flops_xla'] / 1e9:.3f}",
                             f"{c['flops_analytic'] / 1e9:.3f}", f"{c['macs_analytic'] / 1e9:.3f}"])
            ref = table.get("references") or {}
            notes = [f"Input: {table['input']} per example. Large model alone ({scope}): "
                     f"{lm['params'] / 1e6:.2f}M parameters, {lm['flops_xla'] / 1e9:.3f} G FLOPs (XLA), "
                     f"{lm['macs_analytic'] / 1e9:.3f} G multiply-adds (analytic)."]
            if ref:
                parts = []
                if "params" in ref:
                    parts.append(f"{ref['params'] / 1e6:.0f}M parameters")
                if "macs" in ref:
                    parts.append(f"{ref['macs'] / 1e9:.1f} G multiply-adds")
                notes.append(f"Reference figures: {', '.join(parts)} ({ref.get('source', '')}).")
            notes += sorted({n for c in data["rows"].values() for n in c.get("notes", [])})
            sections.append({"title": f"{table['backbone']} ({scope})", "rows": rows, "notes": notes,
                             "convention": table.get("convention", "")})
    return sections


def costs_markdown(result: TableResult) -> str:
    spec = result.spec
    out = [f"# {spec.title}\n\n{spec.caption}\n"]
    for sec in cost_sections(result):
        out.append(f"\n## {sec['title']}\n\n")
        out.append("| " + " | ".join(COST_HEADER) + " |\n|" + "|".join(["---"] + ["---:"] * 5) + "|\n")
        out += ["| " + " | ".join(r) + " |\n" for r in sec["rows"]]
        out.append("\n" + "".join(f"- {n}\n" for n in sec["notes"]))
        out.append(f"- Convention: {sec['convention']}\n")
    out.append(_notes_markdown(result))
    out.append(_claims_markdown(verdicts(result)))
    return "".join(out)


def costs_latex(result: TableResult) -> str:
    lines: list[str] = []
    for i, sec in enumerate(cost_sections(result)):
        cap = latex_escape(f"{result.spec.title}: {sec['title']}. {result.spec.caption} "
                           + " ".join(sec["notes"][:2]) + f" Convention: {sec['convention']}")
        lines += ([""] if lines else []) + [
            r"\begin{table}[t]", r"\centering", r"\caption{" + cap + "}",
            r"\label{tab:" + f"{result.spec.name}-{i + 1}" + "}", r"\begin{tabular}{lrrrrr}",
            r"\toprule", " & ".join(latex_escape(h) for h in COST_HEADER) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in sec["rows"]]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def costs_csv(result: TableResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "backbone", "scope", "method", "trainable_params", "inference_params",
                     "flops_xla", "flops_analytic", "macs_analytic"])
    for (_, _), rec in result.extras.items():
        table = rec.get("extras") or {}
        for scope, data in table.get("scopes", {}).items():
            for m in result.spec.rows:
                c = data["rows"].get(m)
                if c is not None:
                    writer.writerow([result.spec.name, table["backbone"], scope, m, c["trainable_params"],
                                     c["inference_params"], c["flops_xla"], c["flops_analytic"],
                                     c["macs_analytic"]])
    return buf.getvalue()


# ------------------------------------------------------------------ csv
def csv_text(result: TableResult) -> str:
    spec = result.spec
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    seeds = list(spec.seeds)
    writer.writerow(["table", "preset", "method", "column", "dataset", "role", "metric", "mean",
                     "std", "n"] + [f"seed{s}" for s in seeds] + ["diverged_seeds", "paper"])
    if spec.kind == "costs":
        return costs_csv(result)
    cols = list(result.columns) + list(result.breakdown_cols)
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


def draw_layers(result: TableResult, folder: Path) -> list[Path]:
    """Fig. 4: ID and OOD RMSE of a head on one layer at a time, against the layer index."""
    spec = result.spec
    if not spec.layer_study or not spec.shifts:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shift = spec.shifts[0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, part, name in ((axes[0], "id", "ID"), (axes[1], "ood", "OOD (mean over sets)")):
        pts = [(i + 1, result.cell(m, f"{shift.key}/{part}")) for i, m in enumerate(result.rows)]
        pts = [(k, c) for k, c in pts if c.mean is not None]
        if pts:
            ax.errorbar([k for k, _ in pts], [c.mean for _, c in pts], yerr=[c.std or 0.0 for _, c in pts],
                        marker="o", capsize=3)
        ax.set_xlabel("layer of the frozen large model")
        ax.set_ylabel(f"{name} {shift.metric.upper()}")
        ax.set_title(f"{shift.label}: {name}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"{spec.name}_layers.png"
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return [path]


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
    written += draw_layers(result, folder)
    return written


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
