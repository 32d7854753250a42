"""Records -> DataFrames: the selected run of every (dataset, method, seed), then each
section's cells.

Self-describing records (DomainBed's ``collect_results``): everything a table needs is in the
records of its planned jobs. They are read into one DataFrame (one row per record); for each
(dataset, method, seed) the run that won on id_val is selected (``bench.selection``), and a
section's cells aggregate those runs over seeds with a pandas groupby (mean, sample standard
deviation, n). Diverged runs are counted and shown, never averaged in.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence

import pandas as pd

from bench.job_settings import expected_settings, job_settings
from levi_core.method_kinds import Kind
from levi_core.methods.catalog import summary

from bench.jobs import Job, plan
from bench.ledger import DIVERGED, Ledger
from bench.sections import Column, Section, resolve
from bench.selection import select_record
from bench.specs import TableSpec

CELL_COLUMNS = ["column", "label", "dataset", "role", "metric", "method", "mean", "std", "n",
                "missing", "diverged", "corrupt"]


def role_value(record: Mapping[str, Any], role: str, metric: str) -> float | None:
    """A role's metric; ``<prefix>/mean`` is the mean over the roles under ``<prefix>/``."""
    metrics = record.get("metrics") or {}
    if role.endswith("/mean"):
        prefix = role[: -len("mean")]
        vals = [m[metric] for r, m in sorted(metrics.items()) if r.startswith(prefix) and metric in m]
        return statistics.fmean(vals) if vals else None
    value = (metrics.get(role) or {}).get(metric)
    return None if value is None else float(value)


def records_frame(jobs: Sequence[Job], ledger: Ledger,
                  settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per record of the planned jobs (in plan order); ``record`` holds the JSON.

    With ``settings`` (dataset id -> the settings its records must hold), a finished record
    computed under other settings is left out (``bench run`` re-runs it) and noted in
    ``ledger.other_settings``: numbers of different settings are never averaged together."""
    rows = []
    for j in jobs:
        r = ledger.read(j.id)
        if r is not None and settings is not None and r.get("state") != "failed" \
                and r.get("settings") != settings.get(j.dataset):
            ledger.other_settings.append(j.id)
            continue
        if r is not None:
            rows.append({"job_id": j.id, "dataset": j.dataset, "method": j.method, "seed": j.seed,
                         "hparams": json.dumps(j.hparams_dict, sort_keys=True), "state": r["state"],
                         "record": r})
    return pd.DataFrame(rows, columns=["job_id", "dataset", "method", "seed", "hparams", "state", "record"])


@dataclass
class Records:
    """A table's records under a preset, what sections collect their cells from.

    ``selected``: (dataset id, method, seed) -> the record that won on id_val; ``all_diverged``:
    the groups every planned run of which diverged; ``ledger``: where they were read from (its
    artifact folders hold each run's predictions, which the claims' uncertainty reads);
    ``corrupt``: the groups one of whose records cannot be read. A selection over the readable
    rest could pick another run than the whole grid would, so such a group has no value at all
    and its cells say ``corrupt``; ``corrupt_records``: those records, (path, why).
    """

    preset: str
    seeds: tuple[int, ...]
    frame: pd.DataFrame
    selected: dict[tuple[str, str, int], dict]
    all_diverged: set[tuple[str, str, int]]
    ledger: Ledger | None = None
    corrupt: set[tuple[str, str, int]] = field(default_factory=set)
    corrupt_records: list[tuple[Any, str]] = field(default_factory=list)
    planned: int = 0

    @classmethod
    def load(cls, spec: TableSpec, preset: str, ledger: Ledger) -> "Records":
        jobs = plan(spec, preset)
        typed = job_settings(spec, preset)
        wanted = {ds: expected_settings(typed, ds) for ds in {j.dataset for j in jobs}}
        frame = records_frame(jobs, ledger, wanted)
        planned = pd.DataFrame([(j.dataset, j.method, j.seed) for j in jobs],
                               columns=["dataset", "method", "seed"]).value_counts()
        by_id = {j.id: j for j in jobs}
        corrupt_records = [(p, why) for p, why in ledger.corrupt if p.stem in by_id]
        corrupt = {(by_id[p.stem].dataset, by_id[p.stem].method, by_id[p.stem].seed)
                   for p, _ in corrupt_records}
        selected, all_diverged = {}, set()
        for key, group in frame.groupby(["dataset", "method", "seed"], sort=False):
            if key in corrupt:
                continue
            best = select_record(list(group["record"]))
            if best is not None:
                selected[key] = dict(best)
            elif len(group) == planned[key] and (group["state"] == DIVERGED).all():
                all_diverged.add(key)
        return cls(preset, tuple(spec.seeds), frame, selected, all_diverged, ledger, corrupt,
                   corrupt_records, len(jobs))

    @property
    def pending(self) -> int:
        """Planned jobs without a usable record (never run, unreadable, of another schema
        version or settings): a table with any is partial."""
        return self.planned - len(self.frame)

    def once(self, dataset: str, method: str) -> dict | None:
        """The finished record of a job run once (seed 0, no grid) on a logical dataset."""
        job = Job.make(resolve(self.preset, dataset), method, 0, {}, self.preset)
        hit = self.frame[self.frame.job_id == job.id]
        return None if hit.empty or hit.iloc[0]["state"] != "done" else hit.iloc[0]["record"]

    def roles(self, dataset: str, prefix: str) -> list[str]:
        """Every split role under ``prefix`` that a record of the dataset id has."""
        recs = self.frame[self.frame.dataset == dataset]["record"]
        return sorted({r for rec in recs for r in (rec.get("metrics") or {}) if r.startswith(prefix)})

    def values(self, rows: Sequence[str], columns: Sequence[Column]) -> pd.DataFrame:
        """One row per (column, method, seed): the selected run's value and its status
        (``ok``, ``missing``, ``diverged`` when every run of that seed diverged, or ``corrupt``
        when one of its records cannot be read)."""
        out = []
        for col in columns:
            ds = resolve(self.preset, col.dataset)
            for method in rows:
                for seed in self.seeds:
                    rec = self.selected.get((ds, method, seed))
                    value = None if rec is None else role_value(rec, col.role, col.metric)
                    if value is not None and math.isfinite(value):
                        status = "ok"
                    else:
                        value = math.nan
                        status = ("corrupt" if (ds, method, seed) in self.corrupt else
                                  "diverged" if (ds, method, seed) in self.all_diverged else "missing")
                    out.append((col.key, col.label, col.dataset, col.role, col.metric, method, seed,
                                value, status))
        return pd.DataFrame(out, columns=["column", "label", "dataset", "role", "metric", "method",
                                          "seed", "value", "status"])

    def cells(self, rows: Sequence[str], columns: Sequence[Column]) -> pd.DataFrame:
        """One row per (column, method), column-major: mean and sample std (n - 1) of the seeds
        with a value, n, the missing, diverged and corrupt seeds, and each seed's value
        (``seed<s>``). A cell with a corrupt seed has no mean."""
        values = self.values(rows, columns)
        keys = ["column", "label", "dataset", "role", "metric", "method"]
        if values.empty:
            return pd.DataFrame(columns=CELL_COLUMNS + [f"seed{s}" for s in self.seeds])
        groups = values.groupby(keys, sort=False)
        ok = values[values.status == "ok"].groupby(keys, sort=False)["value"]
        # statistics.fmean/stdev (exactly rounded sums), not Series.mean/std: a mean such as
        # 78.35 must not move by an ulp across a display-rounding boundary.
        cells = ok.agg(mean=statistics.fmean, std=_stdev, n="count")
        cells = cells.reindex(groups.size().index)
        cells["n"] = cells["n"].fillna(0).astype(int)
        seeds_by = {key: g for key, g in groups}
        for status in ("missing", "diverged", "corrupt"):
            cells[status] = [[int(x) for x in seeds_by[key].seed[seeds_by[key].status == status]]
                             for key in cells.index]
        # a mean over the readable seeds would be another number than the table's: none at all
        unreadable = cells["corrupt"].map(bool)
        cells.loc[unreadable, ["mean", "std"]] = math.nan
        wide = values.pivot_table(index=keys, columns="seed", values="value", sort=False, dropna=False)
        wide.columns = [f"seed{s}" for s in wide.columns]
        cells = cells.join(wide.reindex(columns=[f"seed{s}" for s in self.seeds]))
        return cells.reset_index()[CELL_COLUMNS + [f"seed{s}" for s in self.seeds]]


BUDGET_FIELDS = ("train_examples", "epochs", "batch_size", "head_epochs", "head_patience")


def budgets(records) -> list[tuple[str, dict]]:
    """(dataset id, the budget its settings set: ``BUDGET_FIELDS``, None where unset) of every
    record, in order: what the caption's budget notes (``TableResult.scale_notes``) and the
    claims' budget note (``bench.claims.budget_note``) are both written from."""
    return [(r["job"]["dataset"], {k: (r.get("settings") or {}).get(k) for k in BUDGET_FIELDS})
            for r in records]


def _stdev(values: pd.Series) -> float:
    """Sample standard deviation (n - 1); NaN with fewer than two seeds."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass
class TableResult:
    """A table's collected parts, ready to render: one (section, frame) per section."""

    spec: TableSpec
    preset: str
    records: Records
    parts: list[tuple[Section, pd.DataFrame]] = field(default_factory=list)
    hint_flags: str = ""  # the user's flags (--results-dir, a subset) for the commands we suggest

    @property
    def run_command(self) -> str:
        """The ``bench run`` that fills this table's missing cells, with the flags it ran
        with: ``hint_flags`` and the ``--data-dir`` of each dataset as its records name it."""
        from bench.preflight import data_dir_flags

        dirs: dict[str, str] = {}
        for rec in self.records.frame["record"]:
            folder = (rec.get("provenance") or {}).get("data_dir")
            if folder:
                dirs.setdefault(str(rec["job"]["dataset"]).partition(":")[0], str(folder))
        flags = " ".join(f for f in (self.hint_flags, data_dir_flags(dict(sorted(dirs.items()))))
                         if f)
        return f"bench run {self.spec.name} --preset {self.preset}" + (f" {flags}" if flags else "")

    @property
    def n_records(self) -> int:
        return len(self.records.frame)

    @property
    def selected(self) -> dict[tuple[str, str, int], dict]:
        return self.records.selected

    def runs(self, state: str) -> list[dict]:
        """Every record of the plan in that state (``diverged``, ``failed``), in plan order."""
        frame = self.records.frame
        return list(frame[frame.state == state]["record"])

    @property
    def diverged_runs(self) -> list[dict]:
        return self.runs(DIVERGED)

    @property
    def failed_runs(self) -> list[dict]:
        return self.runs("failed")

    @property
    def caption(self) -> str:
        """The spec's caption, the sections' notes (e.g. the chosen WiSE-FT alpha) and, for
        tables with a metric grid, how cells are aggregated."""
        notes = [n for s in self.spec.sections for n in s.notes(self)]
        text = " ".join([self.spec.caption, *notes, *self.scale_notes()])
        if self.spec.grid is None:
            return text
        seeds = ", ".join(str(s) for s in self.spec.seeds)
        return (f"{text} Mean ± sample standard deviation (n−1) over seeds {seeds} "
                f"(preset `{self.preset}`); best in bold, second best underlined.")

    def scale_notes(self) -> list[str]:
        """The budget the records ran under, where it departs from the paper's protocol: the
        large models' training draw and learning-rate selection, the heads' epoch selection,
        and the evaluation sample (from the dataset ids)."""
        recs = [r for r in self.records.frame["record"] if r.get("state") in ("done", "diverged")]
        if not recs:
            return []
        notes = []
        datasets = sorted({r["job"]["dataset"] for r in recs})
        by_settings = {json.dumps(s, sort_keys=True): s for _, s in budgets(recs)}
        for s in by_settings.values():
            if s.get("train_examples"):
                notes.append(
                    f"Equal data: every method of a seed, the references included, learns from the "
                    f"same seeded draw of {s['train_examples']:,} training examples (a new draw "
                    f"per seed); the large models train {s.get('epochs')} epoch(s) over it in "
                    f"batches of {s.get('batch_size')}.")
            if s.get("head_patience"):
                notes.append(
                    f"Heads ({summary(Kind.TRAINS_SMALL)}) train up to {s.get('head_epochs')} epochs, "
                    f"the epoch chosen on id_val (best weights kept, patience {s['head_patience']}).")
        if any((r.get("extras") or {}).get("hparams_from_seed0") for r in recs):
            notes.append("The learning rate of the large-model methods is selected on seed 0 "
                         "(id_val) and reused for the other seeds, as the LP-FT protocol does.")
        sampled = [d for d in datasets if "max_eval=" in d or "max_ood=" in d]
        if sampled:
            notes.append("Every method is scored on the same fixed, stratified evaluation sample "
                         "(max_eval per ID evaluation split, max_ood per OOD set, all of a smaller "
                         "set): " + ", ".join(f"`{d}`" for d in sampled) + ".")
        val_only = [d for d in datasets if "max_val=" in d and d not in sampled]
        if val_only:
            notes.append("Every method is scored on every example of id_test and of each OOD set; "
                         "id_val, which selection reads, is a fixed stratified sample: "
                         + ", ".join(f"`{d}`" for d in val_only) + ".")
        return notes

    def frame(self, section: Section) -> pd.DataFrame:
        return next(f for s, f in self.parts if s is section)

    @cached_property
    def cells(self) -> pd.DataFrame:
        """Every metric cell of the table (grid, breakdowns, sweeps), indexed by (method, column)."""
        frames = [c for c in (s.cells(f) for s, f in self.parts) if c is not None]
        if not frames:
            return pd.DataFrame(columns=CELL_COLUMNS).set_index(["method", "column"])
        return pd.concat(frames, ignore_index=True).set_index(["method", "column"])

    def cell(self, method: str, column: str) -> pd.Series:
        return self.cells.loc[(method, column)]

    def mean(self, method: str, column: str) -> float | None:
        """A cell's mean over seeds; None when the cell has no value or does not exist."""
        cells = self.cells
        if (method, column) not in cells.index:
            return None
        value = cells.loc[(method, column), "mean"]
        return None if pd.isna(value) else float(value)

    def std(self, method: str, column: str) -> float | None:
        cells = self.cells
        value = cells.loc[(method, column), "std"] if (method, column) in cells.index else None
        return None if value is None or pd.isna(value) else float(value)


def collect(spec: TableSpec, preset: str, ledger: Ledger, hint_flags: str = "") -> TableResult:
    """Read the table's records and let every section collect its part."""
    recs = Records.load(spec, preset, ledger)
    return TableResult(spec, preset, recs, [(s, s.collect(recs)) for s in spec.sections],
                       hint_flags)
