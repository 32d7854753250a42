"""What every section is: the ``Section`` interface, the columns and shifts a section shows, the
jobs it needs (``Need``) and how ``bench report --datasets/--methods`` narrows it
(``Narrowing``).

A section's three steps:

* ``needs(preset)``: which (dataset, methods) it needs; ``bench.jobs.plan`` turns them into jobs
  (every seed, every grid point, dependencies first).
* ``collect(recs)``: its part of the records as a pandas DataFrame. ``recs`` is the table's
  ``bench.collect.Records``: the selected run of every (dataset, method, seed) and, through
  ``recs.cells(rows, columns)``, one row per (column, method) with the seeds aggregated by
  groupby (mean, sample std, n, missing, diverged and corrupt seeds).
* ``markdown`` / ``latex``: its rendering; and, where a section has them, ``csv`` (its rows of
  the table's CSV), ``figures``, ``baseline`` (the numbers ``bench check`` pins), ``missing``
  (the cells that have no value yet), ``notes`` (caption facts) and ``cells`` (the metric cells
  that claims read). The base class gives the answer of a section that has none of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, NamedTuple

import pandas as pd

from levi_core.data.base import ShiftDeclaration


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
class Shift(ShiftDeclaration):
    """A distribution shift: one dataset's ID test set against its OOD set(s), with the fields
    a dataset declares (``levi_core.data.base.ShiftDeclaration``).

    Gives the grid two columns, ``<key>/id`` and ``<key>/ood``; claims are checked per shift.
    """

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


@dataclass
class Narrowing:
    """The part of a table that ``bench report --datasets/--methods`` asks for, as the sections
    narrow themselves to it (``Section.narrow``).

    ``datasets`` / ``methods``: the asked logical dataset names and methods (None: all).
    ``grids``: the metric grids narrowed so far, by ``id`` of the table's own grid, so that a
    section drawn from a grid (a per-OOD-set breakdown) follows its grid's narrowed rows.
    """

    datasets: Collection[str] | None = None
    methods: Collection[str] | None = None
    grids: dict[int, Section] = field(default_factory=dict)

    def keeps(self, dataset: str) -> bool:
        """Whether a logical dataset (``movielens``, ``synthetic:rho=0.5``) was asked for."""
        return (self.datasets is None or dataset in self.datasets
                or dataset.partition(":")[0] in self.datasets)

    def rows(self, rows) -> tuple[str, ...]:
        """The asked methods among ``rows``, in the table's order."""
        return tuple(r for r in rows if self.methods is None or r in self.methods)


class Section:
    """A part of a table: it plans its jobs, collects its frame and renders itself.

    Subclasses are frozen dataclasses and must give ``key``, ``needs``, ``collect``,
    ``markdown`` and ``latex``. ``recs`` is the table's ``bench.collect.Records`` and ``table``
    its ``bench.collect.TableResult`` (not imported here: ``bench.collect`` imports this); every other method has the answer of a section that has no
    such part (no CSV rows, no figure, nothing pinned, nothing missing, no notes, no metric
    cells) and stays whole when a report narrows the table.
    """

    key: str

    def needs(self, preset: str) -> list[Need]:
        raise NotImplementedError

    def collect(self, recs) -> pd.DataFrame:
        raise NotImplementedError

    def markdown(self, frame: pd.DataFrame, table) -> str:
        raise NotImplementedError

    def latex(self, frame: pd.DataFrame, table) -> str:
        raise NotImplementedError

    def csv(self, frame: pd.DataFrame, table) -> pd.DataFrame | None:
        """Its rows of the table's CSV (None: it has none)."""
        return None

    def figures(self, frame: pd.DataFrame, table, folder: Path) -> list[Path]:
        """Draw its figures into ``folder``; the paths written."""
        return []

    def baseline(self, frame: pd.DataFrame) -> dict[str, dict]:
        """The numbers ``bench check`` pins, by key."""
        return {}

    def missing(self, frame: pd.DataFrame) -> list[str]:
        """One line per part without a value yet."""
        return []

    def notes(self, table) -> list[str]:
        """Facts the caption states beside the cells."""
        return []

    def cells(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """Its metric cells (``bench.collect.CELL_COLUMNS``), which claims read; None: none."""
        return None

    def narrow(self, narrowing: Narrowing) -> Section | None:
        """The section restricted to the asked datasets and methods; None when nothing of it
        is left."""
        return self
