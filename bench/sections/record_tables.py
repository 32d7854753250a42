"""Sections built from one record each (a job run once, seed 0, no grid): the cost tables
(Tables 3, 15, 16) and exact tables (the linear example of Appendix B, Table 6).

The cost record's JSON (``levi_core.costs.cost_table``) is read here and nowhere else: every
other consumer (rendering, ``bench check``, claim C10) reads the DataFrame ``CostTable.collect``
returns, one row per (backbone, scope, method).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from levi_core.errors import ConfigError
from levi_core.methods.catalog import label

from bench import styling
from bench.sections.base import Narrowing, Need, Section

COST_FIELDS = ("trainable_params", "inference_params", "flops_xla", "flops_analytic", "macs_analytic")
BASELINE_COST_FIELDS = ("trainable_params", "inference_params", "flops_xla", "macs_analytic")
COST_HEADER = ["Method", "Trainable params (M)", "Inference params (M)", "FLOPs XLA (G)",
               "FLOPs analytic (G)", "MACs analytic (G)"]


def cost_frame(records: list[dict]) -> pd.DataFrame:
    """Cost records -> one row per (backbone, scope, method) with every cost field (Python
    numbers, as recorded); ``attrs["scopes"]``: per (backbone, scope) its notes and convention."""
    rows, scopes = [], []
    for rec in records:
        table = rec.get("extras") or {}
        for scope, data in table.get("scopes", {}).items():
            for m, c in data["rows"].items():
                rows.append({"backbone": table["backbone"], "scope": scope, "method": m,
                             **{f: c[f] for f in COST_FIELDS}})
            scopes.append({"backbone": table["backbone"], "scope": scope,
                           "notes": _notes(table, scope, data),
                           "convention": table.get("convention", "")})
    frame = pd.DataFrame(rows, columns=["backbone", "scope", "method", *COST_FIELDS], dtype=object)
    frame.attrs["scopes"] = scopes
    return frame


def _notes(table: dict, scope: str, data: dict) -> list[str]:
    lm = data["large_model"]
    notes = [f"Input: {table['input']} per example. Large model alone ({scope}): "
             f"{lm['params'] / 1e6:.2f}M parameters, {lm['flops_xla'] / 1e9:.3f} G FLOPs (XLA), "
             f"{lm['macs_analytic'] / 1e9:.3f} G multiply-adds (analytic)."]
    ref = table.get("references") or {}
    if ref:
        parts = []
        if "params" in ref:
            parts.append(f"{ref['params'] / 1e6:.0f}M parameters")
        if "macs" in ref:
            parts.append(f"{ref['macs'] / 1e9:.1f} G multiply-adds")
        notes.append(f"Reference figures: {', '.join(parts)} ({ref.get('source', '')}).")
    return notes + sorted({n for c in data["rows"].values() for n in c.get("notes", [])})


@dataclass(frozen=True)
class CostTable(Section):
    """Trainable and inference parameters and FLOPs of each row, per backbone and scope (T5:
    encoder and encoder+decoder), from one ``cost_analysis`` job per backbone."""

    rows: tuple[str, ...]
    backbones: tuple[str, ...]
    key: str = "costs"
    options: str = ""  # more options of the ``costs`` dataset, e.g. the task's head size

    def datasets(self) -> list[str]:
        return [f"costs:backbone={b}{self.options}" for b in self.backbones]

    def needs(self, preset: str) -> list[Need]:
        return [Need(d, ("cost_analysis",), once=True) for d in self.datasets()]

    def collect(self, recs) -> pd.DataFrame:
        return cost_frame([r for r in (recs.once(d, "cost_analysis") for d in self.datasets()) if r])

    def _part(self, frame: pd.DataFrame, info: Mapping) -> pd.DataFrame:
        """One (backbone, scope) of the record, by method; a row of the table that the record
        does not cost fails here (a method without a rule in ``levi_core.costs``), never
        silently left out of the table."""
        part = frame[(frame.backbone == info["backbone"]) & (frame.scope == info["scope"])]
        part = part.set_index("method")
        lacking = [m for m in self.rows if m not in part.index]
        if lacking:
            raise ConfigError(f"cost table: no cost row for {', '.join(lacking)} in the record of "
                              f"{info['backbone']} ({info['scope']}); levi_core.costs has no rule for "
                              f"them (RULES, RULES_BY_KIND) or they are of a kind it leaves out")
        return part

    def _scopes(self, frame: pd.DataFrame):
        """Each (backbone, scope) as shown: methods that cost the same (FT, FS and LP→FT run
        one architecture) share a row, and a row a scope shares with an earlier scope of the
        same backbone is named in a note instead of repeated. The CSV keeps every method."""
        shown: dict[str, set] = {}
        for info in frame.attrs.get("scopes", []):
            by_method = self._part(frame, info)
            groups: dict[tuple, list[str]] = {}
            for m in self.rows:
                c = by_method.loc[m]
                figures = (f"{c.trainable_params / 1e6:.2f}", f"{c.inference_params / 1e6:.2f}",
                           f"{c.flops_xla / 1e9:.3f}", f"{c.flops_analytic / 1e9:.3f}",
                           f"{c.macs_analytic / 1e9:.3f}")
                groups.setdefault(figures, []).append(label(m))
            earlier = shown.setdefault(info["backbone"], set())
            rows, same = [], []
            for figures, labels in groups.items():
                name = ", ".join(labels)
                if (name, figures) in earlier:
                    same.append(name)
                    continue
                earlier.add((name, figures))
                rows.append([name, *figures])
            notes = list(info["notes"])
            if same:
                notes.insert(1, f"Costing as in the section above: {'; '.join(same)}.")
            yield {**info, "notes": notes}, pd.DataFrame(rows, columns=COST_HEADER)

    def markdown(self, frame: pd.DataFrame, table) -> str:
        out = []
        for info, texts in self._scopes(frame):
            out.append(f"\n## {info['backbone']} ({info['scope']})\n\n" + styling.markdown_table(texts)
                       + "\n" + "".join(f"- {n}\n" for n in info["notes"])
                       + f"- Convention: {info['convention']}\n")
        return "".join(out)

    def latex(self, frame: pd.DataFrame, table) -> str:
        out = []
        for i, (info, texts) in enumerate(self._scopes(frame)):
            cap = (f"{table.spec.title}: {info['backbone']} ({info['scope']}). {table.spec.caption} "
                   + " ".join(info["notes"][:2]) + f" Convention: {info['convention']}")
            out.append(styling.latex_table(texts, cap, f"{table.spec.name}-{i + 1}", column_format="lrrrrr"))
        return "\n".join(out)

    def csv(self, frame: pd.DataFrame, table) -> pd.DataFrame:
        rows = []
        for info in frame.attrs.get("scopes", []):
            part = self._part(frame, info)
            rows += [{"table": table.spec.name, "backbone": info["backbone"], "scope": info["scope"],
                      "method": m, **{f: part.loc[m, f] for f in COST_FIELDS}}
                     for m in self.rows]
        return pd.DataFrame(rows, columns=["table", "backbone", "scope", "method", *COST_FIELDS],
                            dtype=object)

    def baseline(self, frame: pd.DataFrame) -> dict[str, dict]:
        return {f"{r['backbone']}|{r['scope']}|{r['method']}|{f}": {"value": r[f], "metric": "cost_rel"}
                for _, r in frame.iterrows() for f in BASELINE_COST_FIELDS}

    def missing(self, frame: pd.DataFrame) -> list[str]:
        have = {b for b in frame["backbone"]}
        return [f"cost_analysis on costs:backbone={b}: missing" for b in self.backbones if b not in have]

    def narrow(self, narrowing: Narrowing) -> CostTable | None:
        """The asked methods' rows (a cost job has no dataset to narrow); None when none."""
        rows = narrowing.rows(self.rows)
        return dataclasses.replace(self, rows=rows) if rows else None


# ------------------------------------------------------------------ exact tables
LINEAR_NAMES = {"pretrain": "pre-trained", "scratch": "from-scratch", "finetune": "fine-tuned",
                "true": "true"}


def linear_example_table(extras: Mapping) -> tuple[str, str, pd.DataFrame] | None:
    """Table 6 of the paper from the linear example's exact record (fractions as strings)."""
    models, points = extras.get("models"), extras.get("test_points")
    if not models or not points:
        return None
    order = [m for m in ("pretrain", "scratch", "finetune", "true") if m in models]
    header = ["x", "y"] + [f"ŷ {LINEAR_NAMES[m]} (sq. err.)" for m in order]
    rows = [["[" + ", ".join(p["x"]) + "]", p["y"]]
            + [f"{models[m]['predictions'][i]} ({models[m]['sq_errors'][i]})" for m in order]
            for i, p in enumerate(points)]
    rows.append(["mean squared error", ""] + [models[m]["mse"] for m in order])
    weights = "; ".join(f"{LINEAR_NAMES[m]} w = [{', '.join(models[m]['w'])}]" for m in order)
    caption = (f"{weights}. The fine-tuned and from-scratch weights are computed as the "
               "minimum-norm fits of the three fine-tuning points from the pre-trained and zero "
               "weights. Test points: " + extras.get("test_points_source", "") + "; on them y has "
               "zero sample correlation with x1 and x5.")
    return "Linear example of Appendix B (Table 6), exact", caption, pd.DataFrame(rows, columns=header)


EXACT_TABLES: dict[str, Callable[[Mapping], tuple[str, str, pd.DataFrame] | None]] = {
    "linear_example": linear_example_table}


@dataclass(frozen=True)
class ExactTable(Section):
    """A table of exact values (fractions as strings) read from one record, e.g. Table 6."""

    dataset: str
    method: str
    key: str = "exact"

    def needs(self, preset: str) -> list[Need]:
        return [Need(self.dataset, (self.method,), once=True)]

    def collect(self, recs) -> pd.DataFrame:
        rec = recs.once(self.dataset, self.method)
        made = EXACT_TABLES[self.method](rec.get("extras") or {}) if rec else None
        if made is None:
            return pd.DataFrame()
        title, caption, frame = made
        frame.attrs.update(title=title, caption=caption)
        return frame

    def markdown(self, frame: pd.DataFrame, table) -> str:
        if frame.empty:
            return ""
        return (f"\n## {frame.attrs['title']}\n\n{frame.attrs['caption']}\n\n"
                + styling.markdown_table(frame, align_rest="left"))

    def latex(self, frame: pd.DataFrame, table) -> str:
        if frame.empty:
            return ""
        return styling.latex_table(frame, f"{frame.attrs['title']}. {frame.attrs['caption']}",
                                   f"{table.spec.name}-{self.key}", column_format="l" * len(frame.columns))

    def missing(self, frame: pd.DataFrame) -> list[str]:
        return [f"{self.method} on {self.dataset}: missing"] if frame.empty else []
