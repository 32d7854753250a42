"""Records -> table cells: per (method, column), the selected run of every seed.

Self-describing records (DomainBed's ``collect_results``): everything a cell needs is in the
records of the table's planned jobs. For each (dataset, method, seed) the run that won on
id_val is selected (bench.selection); a cell aggregates those runs over seeds. Diverged runs
are counted and shown, never averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.jobs import Job, plan
from bench.ledger import DIVERGED, Ledger
from bench.presets import get_preset
from bench.selection import select_record
from bench.specs import Column, TableSpec



@dataclass
class Cell:
    """One (method, column) cell: the selected run's value for each seed that has one."""

    values: dict[int, float] = field(default_factory=dict)  # seed -> value
    missing_seeds: list[int] = field(default_factory=list)
    diverged_seeds: list[int] = field(default_factory=list)  # every run of that seed diverged

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values.values()) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1 in the denominator); None with fewer than 2 seeds."""
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else None


def breakdown_columns(spec: TableSpec, preset: str, records: Mapping[str, dict]) -> list[Column]:
    """One column per OOD role found in the records under each breakdown's prefix."""
    resolve = get_preset(preset).dataset_id
    cols: list[Column] = []
    for b in spec.breakdowns:
        ds = resolve(b.dataset)
        if ds is None:
            continue
        roles = sorted({r for rec in records.values() if rec["job"]["dataset"] == ds
                        for r in (rec.get("metrics") or {}) if r.startswith(b.prefix)})
        cols += [Column(f"{b.key}:{r}", r[len(b.prefix):], b.dataset, r, b.metric) for r in roles]
    return cols


@dataclass
class TableResult:
    spec: TableSpec
    preset: str
    cells: dict[tuple[str, str], Cell]  # (method, column key) -> Cell
    selected: dict[tuple[str, str, int], dict]  # (dataset, method, seed) -> selected record
    diverged_runs: list[dict]  # every diverged record of the plan
    failed_runs: list[dict]
    extras: dict[tuple[str, str], dict]  # (dataset, method) of extra jobs -> record
    n_records: int
    rows: tuple[str, ...] = ()  # ranked rows under this preset
    columns: tuple[Column, ...] = ()  # the columns whose dataset is part of the preset
    breakdown_cols: list[Column] = field(default_factory=list)

    def cell(self, method: str, column: str) -> Cell:
        return self.cells[(method, column)]


def role_value(record: Mapping[str, Any], role: str, metric: str) -> float | None:
    """A role's metric; ``<prefix>/mean`` is the mean over the roles under ``<prefix>/``."""
    metrics = record.get("metrics") or {}
    if role.endswith("/mean"):
        prefix = role[: -len("mean")]
        vals = [m[metric] for r, m in sorted(metrics.items()) if r.startswith(prefix) and metric in m]
        return statistics.fmean(vals) if vals else None
    value = (metrics.get(role) or {}).get(metric)
    return None if value is None else float(value)


def collect(spec: TableSpec, preset: str, ledger: Ledger) -> TableResult:
    jobs = plan(spec, preset)
    records: dict[str, dict] = {}
    for j in jobs:
        r = ledger.read(j.id)
        if r is not None:
            records[j.id] = r
    groups: dict[tuple[str, str, int], list[Job]] = defaultdict(list)
    for j in jobs:
        groups[(j.dataset, j.method, j.seed)].append(j)

    selected: dict[tuple[str, str, int], dict] = {}
    all_diverged: set[tuple[str, str, int]] = set()
    for key, members in groups.items():
        recs = [records[m.id] for m in members if m.id in records]
        if not recs:
            continue
        best = select_record(recs)
        if best is not None:
            selected[key] = dict(best)
        elif len(recs) == len(members) and all(r["state"] == DIVERGED for r in recs):
            all_diverged.add(key)

    resolve = get_preset(preset).dataset_id
    cells: dict[tuple[str, str], Cell] = {}
    rows = spec.rows_for(preset) + spec.references
    for col in list(spec.columns_for(preset)) + breakdown_columns(spec, preset, records):
        for method in rows:
            cells[(method, col.key)] = _cell(resolve(col.dataset), method, col, spec.seeds, selected,
                                             all_diverged)
    for sweep in spec.sweeps:
        for x, dataset in sweep.points.items():
            col = Column(f"{sweep.key}@{x}", str(x), dataset, sweep.role, sweep.metric)
            for method in sweep.methods:
                cells[(method, col.key)] = _cell(resolve(dataset), method, col, spec.seeds, selected,
                                                 all_diverged)

    extras = {}
    for dataset, method in spec.extra_jobs:
        r = records.get(Job.make(resolve(dataset), method, 0, {}, preset).id)
        if r is not None and r["state"] == "done":
            extras[(dataset, method)] = r
    ordered = [records[j.id] for j in jobs if j.id in records]
    return TableResult(
        spec=spec, preset=preset, cells=cells, selected=selected,
        diverged_runs=[r for r in ordered if r["state"] == DIVERGED],
        failed_runs=[r for r in ordered if r["state"] == "failed"],
        extras=extras, n_records=len(records), rows=spec.rows_for(preset),
        columns=spec.columns_for(preset),
        breakdown_cols=breakdown_columns(spec, preset, records),
    )


def _cell(dataset: str, method: str, col: Column, seeds, selected, all_diverged) -> Cell:
    cell = Cell()
    for seed in seeds:
        rec = selected.get((dataset, method, seed))
        value = None if rec is None else role_value(rec, col.role, col.metric)
        if value is not None and math.isfinite(value):
            cell.values[seed] = value
        elif (dataset, method, seed) in all_diverged:
            cell.diverged_seeds.append(seed)
        else:
            cell.missing_seeds.append(seed)
    return cell
