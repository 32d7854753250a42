"""Grid -> jobs. A job's id is a hash of exactly its semantic fields.

A job is (dataset, method, seed, hyperparameters, preset), plus the code identity of a method
a plugin replaced or versioned (``levi_core.methods.code_identity``; built-in methods have
none, so their ids are the five fields alone). Its id never depends on paths,
executors or devices, so the same job run anywhere lands on the same record, and a widened
grid only adds new ids (DomainBed-style).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from levi_core.methods import code_identity, get_method

from bench.presets import get_preset
from bench.specs import TableSpec


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte string that ids are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Job:
    dataset: str
    method: str
    seed: int
    hparams: tuple[tuple[str, Any], ...]  # sorted (name, value) pairs: hashable
    preset: str

    @staticmethod
    def make(dataset: str, method: str, seed: int, hparams: Mapping[str, Any], preset: str) -> "Job":
        return Job(dataset, method, int(seed), tuple(sorted(dict(hparams).items())), preset)

    @property
    def hparams_dict(self) -> dict[str, Any]:
        return dict(self.hparams)

    def fields(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset,
            "method": self.method,
            "seed": self.seed,
            "hparams": self.hparams_dict,
            "preset": self.preset,
        }
        code = code_identity(self.method)  # a plugin's replacement or versioned method only
        if code is not None:
            out["code"] = code
        return out

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical_json(self.fields()).encode()).hexdigest()[:20]

    @property
    def group(self) -> tuple[str, str, int, str]:
        """The selection group: runs that differ only in hyperparameters."""
        return (self.dataset, self.method, self.seed, self.preset)

    def describe(self) -> str:
        hp = " ".join(f"{k}={v}" for k, v in self.hparams)
        return f"{self.method} {self.dataset} seed={self.seed}" + (f" {hp}" if hp else "")


def grid_points(grid: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of a grid, in a stable order; ``{}`` gives one empty point."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(list(grid[k]) for k in keys))]


def method_grid(spec: TableSpec, method: str, preset: str | None = None,
                dataset: str | None = None) -> Mapping[str, tuple]:
    """The grid a method runs with on a (logical) dataset: the preset's stated subset for that
    dataset, else the table's, else the method's own."""
    subset = get_preset(preset).grids.get(dataset, {}) if preset else {}
    if method in subset:
        return subset[method]
    return spec.grids.get(method, get_method(method).grid)


def with_dependencies(methods: Iterable[str]) -> list[str]:
    """The methods plus everything they depend on, transitively, dependencies first."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise ValueError(f"dependency cycle: {' -> '.join(stack + (name,))}")
        for dep in get_method(name).depends_on:
            visit(dep, stack + (name,))
        order.append(name)

    for m in methods:
        visit(m, ())
    return order


# The value of every hyperparameter of a job that reuses seed 0's selection (``Preset.
# select_on_seed0``): the harness resolves it when seed 0's grid has finished.
FROM_SEED0 = "selected on seed 0"
REFERENCE_SEED = 0


def reuses_seed0(job: "Job") -> bool:
    """Whether ``job`` takes its hyperparameters from the selected run of seed 0."""
    return bool(job.hparams) and all(v == FROM_SEED0 for _, v in job.hparams)


def _points(spec: TableSpec, method: str, preset: str, logical: str, seed: int) -> list[dict]:
    points = grid_points(method_grid(spec, method, preset, logical))
    if (seed != REFERENCE_SEED and REFERENCE_SEED in spec.seeds and len(points) > 1
            and method in get_preset(preset).select_on_seed0):
        return [{k: FROM_SEED0 for k in points[0]}]
    return points


def plan(spec: TableSpec, preset: str) -> list[Job]:
    """Every job a table needs under a preset: what its sections need (``spec.needs``).

    A table names logical datasets (``movielens``); the preset says which id each runs as
    (``movielens:fixture=1`` under ``smoke``). Grid needs run every seed and grid point, with
    their dependencies first (but a method the preset selects on seed 0: one job per other
    seed, ``FROM_SEED0``); ``once`` needs run one job (seed 0, no grid).
    """
    wanted, once = spec.needs(preset)
    jobs: list[Job] = []
    seen: set[str] = set()
    for dataset, (logical, methods) in wanted.items():
        for method in with_dependencies(methods):
            for seed in spec.seeds:
                for point in _points(spec, method, preset, logical, seed):
                    job = Job.make(dataset, method, seed, point, preset)
                    if job.id not in seen:
                        seen.add(job.id)
                        jobs.append(job)
    for dataset, method in once:
        job = Job.make(dataset, method, 0, {}, preset)
        if job.id not in seen:
            seen.add(job.id)
            jobs.append(job)
    return jobs


@dataclass(frozen=True)
class Subset:
    """``--datasets`` / ``--methods`` / ``--seeds``: the part of a table's grid to run, show or
    report. Methods bring their dependencies (``--methods levi`` runs ``ht`` too). ``None``
    means no restriction."""

    datasets: frozenset[str] | None = None  # logical names (movielens) or full ids
    methods: frozenset[str] | None = None
    seeds: frozenset[int] | None = None

    @staticmethod
    def parse(datasets: str | None, methods: str | None, seeds: str | None) -> "Subset":
        from levi_core.errors import ConfigError

        def names(text):
            return None if text is None else frozenset(p.strip() for p in text.split(",") if p.strip())

        try:
            seed_set = None if seeds is None else frozenset(int(s) for s in names(seeds))
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}: give integers, e.g. --seeds 0,1") from None
        method_set = names(methods)
        if method_set:
            for m in method_set:
                get_method(m)  # unknown names fail here, listing the known ones
        return Subset(names(datasets), method_set, seed_set)

    @property
    def empty(self) -> bool:
        return self.datasets is None and self.methods is None and self.seeds is None

    def keep(self, jobs: list[Job]) -> list[Job]:
        wanted = set(with_dependencies(sorted(self.methods))) if self.methods else None
        out = []
        for j in jobs:
            if self.datasets is not None and not ({j.dataset, j.dataset.partition(":")[0]}
                                                  & self.datasets):
                continue
            if wanted is not None and j.method not in wanted:
                continue
            if self.seeds is not None and j.seed not in self.seeds:
                continue
            out.append(j)
        return out

    def flags(self, without_datasets: bool = False) -> str:
        parts = []
        if self.datasets and not without_datasets:
            parts.append("--datasets " + ",".join(sorted(self.datasets)))
        if self.methods:
            parts.append("--methods " + ",".join(sorted(self.methods)))
        if self.seeds:
            parts.append("--seeds " + ",".join(str(s) for s in sorted(self.seeds)))
        return " ".join(parts)
