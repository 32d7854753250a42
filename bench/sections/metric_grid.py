"""Sections whose cells are metrics aggregated over seeds: the metric grid (rows of methods,
columns of a metric of a split role) and its per-OOD-set breakdown; ``CellSection`` gives them
(and the sweep of ``bench.sections.figures``) the CSV rows, baseline and missing cells of such a
frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from levi_core.methods.catalog import label

from bench import styling
from bench.metric_format import metric as metric_format
from bench.sections.base import Column, Narrowing, Need, Section, Shift, resolve


class CellSection(Section):
    """A section whose frame is metric cells (``Records.cells``): one CSV row per cell, every
    cell mean pinned by ``bench check``, every seed without a value listed as missing."""

    def csv(self, frame: pd.DataFrame, table) -> pd.DataFrame:
        return csv_rows(frame, table, {})

    def baseline(self, frame: pd.DataFrame) -> dict[str, dict]:
        return cell_baseline(frame)

    def missing(self, frame: pd.DataFrame) -> list[str]:
        return missing_cells(frame)

    def cells(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame


# ------------------------------------------------------------------ metric grid
@dataclass(frozen=True)
class MetricGrid(CellSection):
    """Rows (methods) x columns (a metric of a split role): mean ± std over seeds.

    Attributes:
      rows: ranked method rows, in display order.
      shifts: each gives an ID and an OOD column (first); ``columns``: further columns.
      references: rows shown below a rule, never ranked (e.g. the ID-train mean rating).
      preset_references: more reference rows under a named preset only (``references_for``),
        e.g. the small model alone beside a proxy shift whose jobs the other presets lack.
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
    preset_references: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def rows_for(self, preset: str) -> tuple[str, ...]:
        return self.rows

    def references_for(self, preset: str) -> tuple[str, ...]:
        """The reference rows under ``preset``: the preset's, then the table's own (a learned
        reference such as A4 sits above the classic recommenders, as in Table 1)."""
        extra = tuple(r for r in self.preset_references.get(preset, ()) if r not in self.references)
        return extra + self.references

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
                                  self.shown_rows(table.preset) + self.references_for(table.preset))
            if note:
                out.append(f"Chosen on id_val, {dataset} (seeds {', '.join(map(str, table.records.seeds))}): {note}.")
        return list(dict.fromkeys(out))

    def needs(self, preset: str) -> list[Need]:
        rows = self.shown_rows(preset) + self.references_for(preset)
        return [Need(c.dataset, rows, grid_dataset=c.dataset) for c in self.columns_for(preset)]

    def collect(self, recs) -> pd.DataFrame:
        return recs.cells(self.shown_rows(recs.preset) + self.references_for(recs.preset),
                          self.columns_for(recs.preset))

    # rendering
    def layout(self, frame: pd.DataFrame, preset: str, columns=None):
        """(texts, marks, n_ranked): DataFrames of display strings and of marks (1 bold, 2
        underlined), ranked rows first; paper columns beside the columns that have one."""
        columns = list(self.columns_for(preset) if columns is None else columns)
        ranked = self.shown_rows(preset)
        refs = self.references_for(preset)
        cells = frame.set_index(["column", "method"])
        pcols = {c for (_, c) in self.paper}
        texts: dict[str, list[str]] = {"Method": [label(m) for m in ranked]
                                       + [f"{label(m)} (reference)" for m in refs]}
        marks: dict[str, list] = {"Method": [None] * len(texts["Method"])}
        for col in columns:
            rk = styling.ranks({m: cells.loc[(col.key, m), "mean"] for m in ranked}, col.metric)
            texts[col.label] = [cell_text(cells.loc[(col.key, m)], col.metric)
                                for m in ranked + refs]
            marks[col.label] = [rk.get(m) for m in ranked] + [None] * len(refs)
            if col.key in pcols:
                texts[f"{col.label} (paper)"] = [
                    metric_format(col.metric).cell(self.paper.get((m, col.key))) for m in ranked + refs]
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

    def narrow(self, narrowing: Narrowing) -> MetricGrid | None:
        """The asked rows and the columns of the asked datasets; the breakdowns drawn from this
        grid follow it (``narrowing.grids``). None when no row or no column is left."""
        keep = narrowing.rows
        new = dataclasses.replace(
            self, rows=keep(self.rows),
            shifts=tuple(sh for sh in self.shifts if narrowing.keeps(sh.dataset)),
            columns=tuple(c for c in self.columns if narrowing.keeps(c.dataset)),
            references=keep(self.references),
            preset_references={p: keep(r) for p, r in self.preset_references.items()},
            extensions=tuple((n, keep(r)) for n, r in self.extensions if keep(r)))
        narrowing.grids[id(self)] = new
        return new if new.has_rows() and (new.shifts or new.columns) else None

    def has_rows(self) -> bool:
        """Whether it has method rows to show (a narrowed grid may have none left)."""
        return bool(self.rows or self.extensions)


# Choices a method makes on id_val inside its own job, as its record's extras name them.
INNER_CHOICES = (("factors", "size"), ("lambda", "lambda"))


def chosen_hparams(table, dataset: str, rows) -> str:
    """Per method, the selected run's learning rate and (heads) epoch for every seed, as the
    records hold them: ``FT lr 1e-4/1e-4/1e-4; LEVI lr 1e-3/1e-3/1e-2, epoch 7/9/5``. A seed
    that reused seed 0's choice shows the value it ran with. A method that chooses more inside
    its job (``ref/mf``: its size and regulariser) shows those choices too (``INNER_CHOICES``)."""
    parts = []
    for method in rows:
        shown = {"lr": [], **{name: [] for _, name in INNER_CHOICES}, "epoch": []}
        for seed in table.records.seeds:
            rec = table.selected.get((dataset, method, seed)) or {}
            extras = rec.get("extras") or {}
            hp = {**(rec.get("job", {}).get("hparams") or {}), **(extras.get("hparams_from_seed0") or {})}
            lr = hp.get("lr")
            shown["lr"].append("–" if lr is None else f"{float(lr):g}")
            for key, name in INNER_CHOICES:
                shown[name].append(f"{extras[key]:g}" if extras.get(key) is not None else "–")
            shown["epoch"].append(str(extras["best_epoch"]) if extras.get("best_epoch") else "–")
        text = [f"{name} " + "/".join(values) for name, values in shown.items()
                if any(v != "–" for v in values)]
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
    shown = metric_format(metric)
    text = shown.cell(cell["mean"])
    if not pd.isna(cell["std"]):
        text += " ± " + shown.cell(cell["std"])
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


MISSING_COLUMNS_SHOWN = 3  # a missing-seeds line names this many columns, then counts the rest


def missing_cells(frame: pd.DataFrame) -> list[str]:
    """One line per row and set of missing seeds, naming its columns (a partial run leaves the
    same seeds missing in every column of a method, often a dozen of them)."""
    groups: dict[tuple[str, tuple, str], list[str]] = {}
    for r in frame.itertuples():
        for seeds, what in ((r.missing, "missing"), (r.corrupt, "unreadable (corrupt record)")):
            if seeds:
                groups.setdefault((r.method, tuple(seeds), what), []).append(str(r.column))
    out = []
    for (method, seeds, what), columns in groups.items():
        word = "seed" if len(seeds) == 1 else "seeds"
        shown = ", ".join(columns[:MISSING_COLUMNS_SHOWN])
        more = len(columns) - MISSING_COLUMNS_SHOWN
        where = f"{shown} and {more} more" if more > 0 else shown
        out.append(f"{label(method)}: {word} {','.join(map(str, seeds))} {what} in {where}")
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
class OodBreakdown(CellSection):
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
        return [Need(self.dataset, self.of.shown_rows(preset) + self.of.references_for(preset),
                     grid_dataset=self.dataset)]

    def collect(self, recs) -> pd.DataFrame:
        return recs.cells(self.of.shown_rows(recs.preset) + self.of.references_for(recs.preset),
                          self.columns_for(recs))

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

    def narrow(self, narrowing: Narrowing) -> OodBreakdown | None:
        """Kept while its dataset is asked for, on the rows of its narrowed grid."""
        if narrowing.keeps(self.dataset) and id(self.of) in narrowing.grids:
            return dataclasses.replace(self, of=narrowing.grids[id(self.of)])
        return None

