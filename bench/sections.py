"""The sections a table is made of, each planning its jobs, collecting its cells and rendering
itself: a metric grid, a per-OOD-set breakdown, a layer curve and a sweep. (Sections built from
one record each, the cost and exact tables, are in ``bench.record_sections``.)

A section's three steps:

* ``needs(preset)``: which (dataset, methods) it needs; ``bench.jobs.plan`` turns them into jobs
  (every seed, every grid point, dependencies first).
* ``collect(recs)``: its part of the records as a pandas DataFrame. ``recs`` is the table's
  ``bench.collect.Records``: the selected run of every (dataset, method, seed) and, through
  ``recs.cells(rows, columns)``, one row per (column, method) with the seeds aggregated by
  groupby (mean, sample std, n, missing, diverged and corrupt seeds).
* ``markdown`` / ``latex`` / ``csv`` / ``figures`` / ``baseline`` / ``missing``: its rendering,
  its rows of the table's CSV, its figures, the numbers ``bench check`` pins, and the cells
  that have no value yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import pandas as pd

from levi_core.methods.catalog import label

from bench import styling


@dataclass(frozen=True)
class Column:
    """One column of a table: a metric of one split role of one dataset.

    ``role`` is a split role (``id_test``, ``ood/test``) or ``<prefix>/mean`` for the mean over
    every role that starts with ``<prefix>/`` (``ood/mean``: all OOD sets of the dataset;
    ``ood/product/mean``: Amazon's product categories).
    """

    key: str
    label: str
    dataset: str
    role: str
    metric: str


@dataclass(frozen=True)
class Shift:
    """A distribution shift: one dataset's ID test set against its OOD set(s).

    Gives the grid two columns, ``<key>/id`` and ``<key>/ood``; claims are checked per shift.
    """

    key: str
    label: str
    dataset: str
    ood_role: str
    metric: str
    id_role: str = "id_test"

    def columns(self) -> tuple[Column, Column]:
        return (Column(f"{self.key}/id", f"{self.label} ID", self.dataset, self.id_role, self.metric),
                Column(f"{self.key}/ood", f"{self.label} OOD", self.dataset, self.ood_role, self.metric))


class Need(NamedTuple):
    """Jobs a section needs: ``methods`` on a logical ``dataset`` (the preset resolves its id).

    ``once``: one job per method, seed 0, no grid (e.g. the exact linear example); otherwise
    every seed of the table and every point of each method's grid, dependencies included.
    ``grid_dataset``: the logical name whose preset grid subset applies (None: none).
    """

    dataset: str
    methods: tuple[str, ...]
    once: bool = False
    grid_dataset: str | None = None


def resolve(preset: str, dataset: str) -> str | None:
    from bench.presets import get_preset

    return get_preset(preset).dataset_id(dataset)


def layer_rows(preset: str) -> tuple[str, ...]:
    """``layer/1`` ... ``layer/L`` for the text backbone of the preset."""
    from levi_core.backbones import get_config

    from bench.presets import get_preset

    backbone = get_preset(preset).typed_settings().text.backbone
    return tuple(f"layer/{k}" for k in range(1, get_config(backbone).num_layers + 1))


# ------------------------------------------------------------------ metric grid
@dataclass(frozen=True)
class MetricGrid:
    """Rows (methods) x columns (a metric of a split role): mean ± std over seeds.

    Attributes:
      rows: ranked method rows, in display order.
      shifts: each gives an ID and an OOD column (first); ``columns``: further columns.
      references: rows shown below a rule, never ranked (e.g. the ID-train mean rating).
      paper: (method, column key) -> the paper's figure, printed beside ours (only where the
        paper gives one; never invented).
      extensions: (extension name, rows) added by plugins (``bench.specs.extend_table``):
        run, shown and ranked beside ``rows``, named in the caption, but not among the rows
        the paper's claims are checked on (``rows_for``), whose verdicts stay the paper's.
    """

    rows: tuple[str, ...]
    shifts: tuple[Shift, ...] = ()
    columns: tuple[Column, ...] = ()
    references: tuple[str, ...] = ()
    paper: Mapping[tuple[str, str], float] = field(default_factory=dict)
    key: str = "grid"
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def rows_for(self, preset: str) -> tuple[str, ...]:
        return self.rows

    def shown_rows(self, preset: str) -> tuple[str, ...]:
        """The ranked rows a report shows: the table's own, then the extensions' rows."""
        return self.rows_for(preset) + tuple(r for _, rows in self.extensions for r in rows)

    def all_columns(self) -> tuple[Column, ...]:
        return tuple(c for sh in self.shifts for c in sh.columns()) + tuple(self.columns)

    def columns_for(self, preset: str) -> tuple[Column, ...]:
        """The columns whose dataset is part of the preset (``cpu`` has MovieLens only)."""
        return tuple(c for c in self.all_columns() if resolve(preset, c.dataset) is not None)

    def notes(self, table) -> list[str]:
        """Facts a reader needs beside the cells: FT+ZeroShot's mixing weight chosen on id_val."""
        out = [f"Rows added by the plugin extension {name!r} (not the paper's; the claims' "
               f"verdicts consider the paper's rows only): {', '.join(label(r) for r in rows)}."
               for name, rows in self.extensions]
        if "ft_zeroshot" in self.rows:
            for dataset in dict.fromkeys(sh.dataset for sh in self.shifts):
                ds = resolve(table.preset, dataset)
                alphas = {seed: rec["extras"].get("alpha") for (d, m, seed), rec in table.selected.items()
                          if d == ds and m == "ft_zeroshot" and "alpha" in (rec.get("extras") or {})}
                if alphas:
                    chosen = ", ".join(f"{a} (seed {s})" for s, a in sorted(alphas.items()))
                    out.append(f"FT+ZeroShot's alpha chosen on id_val, {dataset}: {chosen}.")
        for dataset in dict.fromkeys(c.dataset for c in self.columns_for(table.preset)):
            note = chosen_hparams(table, resolve(table.preset, dataset),
                                  self.shown_rows(table.preset) + self.references)
            if note:
                out.append(f"Chosen on id_val, {dataset} (seeds {', '.join(map(str, table.records.seeds))}): {note}.")
        return list(dict.fromkeys(out))

    def needs(self, preset: str) -> list[Need]:
        rows = self.shown_rows(preset) + self.references
        return [Need(c.dataset, rows, grid_dataset=c.dataset) for c in self.columns_for(preset)]

    def collect(self, recs) -> pd.DataFrame:
        return recs.cells(self.shown_rows(recs.preset) + self.references, self.columns_for(recs.preset))

    # rendering
    def layout(self, frame: pd.DataFrame, preset: str, columns=None):
        """(texts, marks, n_ranked): DataFrames of display strings and of marks (1 bold, 2
        underlined), ranked rows first; paper columns beside the columns that have one."""
        columns = list(self.columns_for(preset) if columns is None else columns)
        ranked = self.shown_rows(preset)
        cells = frame.set_index(["column", "method"])
        pcols = {c for (_, c) in self.paper}
        texts: dict[str, list[str]] = {"Method": [label(m) for m in ranked]
                                       + [f"{label(m)} (reference)" for m in self.references]}
        marks: dict[str, list] = {"Method": [None] * len(texts["Method"])}
        for col in columns:
            rk = styling.ranks({m: cells.loc[(col.key, m), "mean"] for m in ranked}, col.metric)
            texts[col.label] = [cell_text(cells.loc[(col.key, m)], col.metric)
                                for m in ranked + self.references]
            marks[col.label] = [rk.get(m) for m in ranked] + [None] * len(self.references)
            if col.key in pcols:
                texts[f"{col.label} (paper)"] = [
                    styling.fmt(self.paper.get((m, col.key)), col.metric) for m in ranked + self.references]
                marks[f"{col.label} (paper)"] = [None] * len(texts["Method"])
        return pd.DataFrame(texts), pd.DataFrame(marks), len(ranked)

    def markdown(self, frame: pd.DataFrame, table) -> str:
        texts, marks, _ = self.layout(frame, table.preset)
        out = styling.markdown_table(texts, marks)
        dropped = [c.label for c in self.all_columns() if c not in self.columns_for(table.preset)]
        if dropped:
            out += (f"\nNot part of preset `{table.preset}` (its data is not available at this "
                    f"scale): {', '.join(dropped)}.\n")
        if self.paper:
            out += "\nPaper columns: figures the paper states in its text; blank where it gives none.\n"
        return out

    def latex(self, frame: pd.DataFrame, table) -> str:
        texts, marks, n = self.layout(frame, table.preset)
        return styling.latex_table(texts, table.caption, table.spec.name, marks, rule_before=[n])

    def csv(self, frame: pd.DataFrame, table) -> pd.DataFrame:
        return csv_rows(frame, table, self.paper)

    def figures(self, frame, table, folder: Path) -> list[Path]:
        return []

    def baseline(self, frame: pd.DataFrame) -> dict[str, dict]:
        return cell_baseline(frame)

    def missing(self, frame: pd.DataFrame) -> list[str]:
        return missing_cells(frame)


def chosen_hparams(table, dataset: str, rows) -> str:
    """Per method, the selected run's learning rate and (heads) epoch for every seed, as the
    records hold them: ``FT lr 1e-4/1e-4/1e-4; LEVI lr 1e-3/1e-3/1e-2, epoch 7/9/5``. A seed
    that reused seed 0's choice shows the value it ran with."""
    parts = []
    for method in rows:
        lrs, epochs = [], []
        for seed in table.records.seeds:
            rec = table.selected.get((dataset, method, seed))
            if rec is None:
                lrs.append("–")
                epochs.append("–")
                continue
            extras = rec.get("extras") or {}
            hp = {**(rec["job"].get("hparams") or {}), **(extras.get("hparams_from_seed0") or {})}
            lr = hp.get("lr")
            lrs.append("–" if lr is None else f"{float(lr):g}")
            epochs.append(str(extras["best_epoch"]) if extras.get("best_epoch") else "–")
        text = []
        if any(v != "–" for v in lrs):
            text.append("lr " + "/".join(lrs))
        if any(v != "–" for v in epochs):
            text.append("epoch " + "/".join(epochs))
        if text:
            parts.append(f"{label(method)} {', '.join(text)}")
    return "; ".join(parts)


def cell_text(cell: Mapping[str, Any], metric: str) -> str:
    """``mean ± std``; ``(n=2)`` when seeds are missing or diverged; a cell without a value
    says why (``corrupt``: a record of it cannot be read; ``diverged``; or ``–``)."""
    if cell.get("corrupt"):
        return "corrupt"
    if pd.isna(cell["mean"]):
        return "diverged" if cell["diverged"] else "–"
    text = styling.fmt(cell["mean"], metric)
    if not pd.isna(cell["std"]):
        text += " ± " + styling.fmt(cell["std"], metric)
    if cell["missing"] or cell["diverged"]:
        text += f" (n={cell['n']})"
    return text


def cell_baseline(frame: pd.DataFrame) -> dict[str, dict]:
    """``method|column`` -> its mean rounded to 6 decimals, metric, seed std and n, for every
    cell with a mean (``bench.check`` turns std and n into the cell's tolerance)."""
    return {f"{r.method}|{r.column}": {"value": round(float(r.mean), 6), "metric": r.metric,
                                        "std": None if pd.isna(r.std) else float(r.std),
                                        "n": int(r.n)}
            for r in frame.itertuples() if not pd.isna(r.mean)}


def missing_cells(frame: pd.DataFrame) -> list[str]:
    out = []
    for r in frame.itertuples():
        for seeds, what in ((r.missing, "missing"), (r.corrupt, "unreadable (corrupt record)")):
            if seeds:
                word = "seed" if len(seeds) == 1 else "seeds"
                out.append(f"{label(r.method)} / {r.column}: {word} {','.join(map(str, seeds))} {what}")
    return out


def csv_rows(frame: pd.DataFrame, table, paper: Mapping[tuple[str, str], float]) -> pd.DataFrame:
    """The table's CSV schema: one row per cell, per-seed values, diverged seeds, paper figure."""
    seeds = [f"seed{s}" for s in table.spec.seeds]
    out = frame.assign(table=table.spec.name, preset=table.preset,
                       diverged_seeds=[";".join(map(str, d)) for d in frame["diverged"]],
                       paper=[paper.get((m, c)) for m, c in zip(frame["method"], frame["column"])])
    out = out[["table", "preset", "method", "column", "dataset", "role", "metric", "mean", "std", "n"]
              + seeds + ["diverged_seeds", "paper"]]
    return out.round({c: 10 for c in ["mean", "std"] + seeds})


# ------------------------------------------------------------------ per-OOD-set breakdown
@dataclass(frozen=True)
class OodBreakdown:
    """A per-OOD-set grid (the paper's Tables 9-12, 17, 18): the rows of ``of``, one column per
    role under ``prefix`` found in the records of ``dataset``."""

    key: str
    title: str
    dataset: str
    prefix: str
    metric: str
    of: MetricGrid

    def columns_for(self, recs) -> list[Column]:
        ds = resolve(recs.preset, self.dataset)
        if ds is None:
            return []
        return [Column(f"{self.key}:{r}", r[len(self.prefix):], self.dataset, r, self.metric)
                for r in recs.roles(ds, self.prefix)]

    def needs(self, preset: str) -> list[Need]:
        if resolve(preset, self.dataset) is None:
            return []
        return [Need(self.dataset, self.of.shown_rows(preset) + self.of.references, grid_dataset=self.dataset)]

    def collect(self, recs) -> pd.DataFrame:
        return recs.cells(self.of.shown_rows(recs.preset) + self.of.references, self.columns_for(recs))

    def _columns(self, frame: pd.DataFrame) -> list[Column]:
        cols = frame.drop_duplicates("column")
        return [Column(r.column, r.label, r.dataset, r.role, r.metric) for r in cols.itertuples()]

    def markdown(self, frame: pd.DataFrame, table) -> str:
        if frame.empty:
            return ""
        texts, marks, _ = self.of.layout(frame, table.preset, self._columns(frame))
        return f"\n## {self.title}\n\n" + styling.markdown_table(texts, marks)

    def latex(self, frame: pd.DataFrame, table) -> str:
        if frame.empty:
            return ""
        texts, marks, n = self.of.layout(frame, table.preset, self._columns(frame))
        return styling.latex_table(texts, self.title, f"{table.spec.name}-{self.key}", marks,
                                   rule_before=[n])

    def csv(self, frame: pd.DataFrame, table) -> pd.DataFrame:
        return csv_rows(frame, table, {})

    def figures(self, frame, table, folder: Path) -> list[Path]:
        return []

    baseline = staticmethod(cell_baseline)
    missing = staticmethod(missing_cells)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    _pyplot().close(fig)
    return path
