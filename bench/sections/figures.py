"""Sections drawn as figures: the per-layer curve of Fig. 4 and the E.8 strength sweep.

Both render their cells like a metric grid (``bench.sections.metric_grid``) and add a matplotlib
figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from levi_core.methods.catalog import label

from bench import styling
from bench.metric_format import metric as metric_format
from bench.sections.base import Column, Need, layer_rows
from bench.sections.metric_grid import CellSection, MetricGrid, cell_text


# ------------------------------------------------------------------ layer curve (Fig. 4)
@dataclass(frozen=True)
class LayerCurve(MetricGrid):
    """One row per layer of the preset's text backbone (``layer/<k>``), with the ID and OOD
    curve of its first shift drawn against the layer index."""

    rows: tuple[str, ...] = ()

    def rows_for(self, preset: str) -> tuple[str, ...]:
        return layer_rows(preset)

    def has_rows(self) -> bool:
        return True  # its rows are the backbone's layers, which no --methods filter removes

    def markdown(self, frame: pd.DataFrame, table) -> str:
        return super().markdown(frame, table) + f"\n![{table.spec.title}]({table.spec.name}_layers.png)\n"

    def figures(self, frame: pd.DataFrame, table, folder: Path) -> list[Path]:
        """ID and OOD RMSE against the layer: one curve per dataset (shift) that ran and, where
        several did, their average (what the paper's Fig. 4 reports)."""
        plt = _pyplot()
        cells = frame.set_index(["column", "method"])
        rows = self.rows_for(table.preset)
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        for ax, part, name in ((axes[0], "id", "ID"), (axes[1], "ood", "OOD (mean over sets)")):
            curves = {}
            for shift in self.shifts:
                key = f"{shift.key}/{part}"
                means = [cells.loc[(key, m)]["mean"] if (key, m) in cells.index else math.nan
                         for m in rows]
                if not all(pd.isna(v) for v in means):
                    curves[shift.label] = means
            for curve, means in curves.items():
                ax.plot(range(1, len(rows) + 1), means, marker="o", label=curve, alpha=0.8)
            if len(curves) > 1:
                avg = [statistics.fmean(vs) if not any(pd.isna(v) for v in vs) else math.nan
                       for vs in zip(*curves.values())]
                ax.plot(range(1, len(rows) + 1), avg, marker="s", color="black", label="average")
            ax.set_xlabel("layer of the frozen large model")
            ax.set_ylabel(f"{name} {metric_format(self.shifts[0].metric).short}")
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
            if curves:
                ax.legend(fontsize=7)
        return [_save(fig, folder / f"{table.spec.name}_layers.png")]

    def notes(self, table) -> list[str]:
        from bench.presets import get_preset

        text = get_preset(table.preset).typed_settings().text
        return [f"Layers of the frozen pre-trained {text.backbone} ({text.weights} weights, preset "
                f"`{table.preset}`)."]


# ------------------------------------------------------------------ sweep
@dataclass(frozen=True)
class Sweep(CellSection):
    """A figure over a family of datasets (e.g. the spurious-strength sweep of E.8).

    ``points`` maps the swept value (x axis) to a dataset id; each point runs ``methods`` and is
    plotted as ``metric`` of ``role`` (selected on id_val, mean ± std over seeds).
    """

    key: str
    title: str
    x_label: str
    points: Mapping[float, str]
    methods: tuple[str, ...]
    role: str
    metric: str

    def columns(self) -> list[Column]:
        return [Column(f"{self.key}@{x}", str(x), d, self.role, self.metric) for x, d in self.points.items()]

    def needs(self, preset: str) -> list[Need]:
        return [Need(d, self.methods) for d in self.points.values()]

    def collect(self, recs) -> pd.DataFrame:
        return recs.cells(self.methods, self.columns())

    def markdown(self, frame: pd.DataFrame, table) -> str:
        cells = frame.set_index(["column", "method"])
        texts = {"Method": [label(m) for m in self.methods]}
        for x, col in zip(self.points, self.columns()):
            texts[f"{x:g}"] = [cell_text(cells.loc[(col.key, m)], self.metric) for m in self.methods]
        return (f"\n## {self.title}\n\n![{self.title}]({table.spec.name}_{self.key}.png)\n\n"
                + styling.markdown_table(pd.DataFrame(texts))
                + f"\nx: {self.x_label}. y: {self.role} {self.metric} of the run selected on id_val.\n")

    def latex(self, frame: pd.DataFrame, table) -> str:
        cells = frame.set_index(["column", "method"])
        texts = {"Method": [label(m) for m in self.methods]}
        for x, col in zip(self.points, self.columns()):
            texts[f"{x:g}"] = [cell_text(cells.loc[(col.key, m)], self.metric) for m in self.methods]
        caption = (f"{self.title}. x: {self.x_label}. Cells: {self.role} {self.metric} of the run "
                   "selected on id_val, mean ± std over seeds.")
        return styling.latex_table(pd.DataFrame(texts), caption, f"{table.spec.name}-{self.key}")

    def figures(self, frame: pd.DataFrame, table, folder: Path) -> list[Path]:
        plt = _pyplot()
        cells = frame.set_index(["column", "method"])
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        xs = sorted(self.points)
        for m in self.methods:
            pts = [(x, cells.loc[(f"{self.key}@{x}", m)]) for x in xs]
            pts = [(x, c) for x, c in pts if not pd.isna(c["mean"])]
            if pts:
                ax.errorbar([x for x, _ in pts], [c["mean"] for _, c in pts],
                            yerr=[0.0 if pd.isna(c["std"]) else c["std"] for _, c in pts],
                            marker="o", capsize=3, label=label(m))
        ax.set_xlabel(self.x_label, fontsize=8)
        ax.set_ylabel(f"{self.role} {self.metric}")
        ax.set_title(self.title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return [_save(fig, folder / f"{table.spec.name}_{self.key}.png")]


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
