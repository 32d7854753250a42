"""Table specs: one per paper table, declaring rows, columns, seeds and grids.

The same spec drives ``bench run`` (which jobs to run) and ``bench report`` (how to lay out
their records). A spec never names a path, an executor or a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from levi_core.errors import ConfigError


@dataclass(frozen=True)
class Column:
    """One column of a table: a metric of one split role of one dataset.

    ``role`` is a split role (``id_test``, ``ood/test``) or ``ood/mean`` for the mean over all
    OOD roles of the dataset.
    """

    key: str
    label: str
    dataset: str
    role: str
    metric: str

    @property
    def lower_is_better(self) -> bool:
        from levi_core.metrics import LOWER_IS_BETTER

        return LOWER_IS_BETTER[self.metric]


@dataclass(frozen=True)
class Sweep:
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


@dataclass(frozen=True)
class TableSpec:
    """What a table is.

    Attributes:
      name: CLI name (``table1``, ``synthetic``).
      title / caption: shown in every rendering.
      rows: method names, in display order.
      columns: the metric columns.
      seeds: seeds to run and average over.
      grids: per-method overrides of the method's hyperparameter grid (e.g. a stated subset).
      settings: preset name -> size knobs merged over the preset's own settings.
      paper: (method, column key) -> the paper's figure, printed beside ours (only where the
        paper gives one; never invented).
      claims: ids of ../shared/paper/CLAIMS.md whose verdicts this table gives.
      sweeps: figures over dataset families.
      extra_jobs: (dataset, method) pairs run once (seed 0, no grid) and shown in the report,
        e.g. the exact linear example of Appendix B.
    """

    name: str
    title: str
    caption: str
    rows: tuple[str, ...]
    columns: tuple[Column, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    grids: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper: Mapping[tuple[str, str], float] = field(default_factory=dict)
    claims: tuple[str, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    extra_jobs: tuple[tuple[str, str], ...] = ()

    def datasets(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.columns:
            seen.setdefault(c.dataset)
        for s in self.sweeps:
            for d in s.points.values():
                seen.setdefault(d)
        return list(seen)


# ------------------------------------------------------------------ the tables
SYNTHETIC_SWEEP = {
    0.5: "synthetic:rho=0.5",
    0.6: "synthetic:rho=0.6",
    0.7: "synthetic:rho=0.7",
    0.8: "synthetic:rho=0.8",
    0.9: "synthetic",  # the default strength: these jobs are shared with the main table
    0.975: "synthetic:rho=0.975",
}

SYNTHETIC = TableSpec(
    name="synthetic",
    title="Synthetic spurious-feature experiment (Appendix E.8) and linear example (Appendix B)",
    caption=(
        "Accuracy (%) on the synthetic experiment of Appendix E.8: a 3-layer network pre-trained "
        "on data where s1 and x predict y, fine-tuned (FT) on data where s2 and x predict y, the "
        "same network trained from scratch (FS), LEVI on the frozen pre-trained network, and "
        "LP, HT, FT+FS for context. ID test: fresh draws from the fine-tuning distribution; "
        "Test (OOD): only x predicts y. Learning rate selected on id_val only."
    ),
    rows=("ft", "fs", "levi/pretrained", "lp", "ht", "ft_fs"),
    columns=(
        Column("id", "ID test acc.", "synthetic", "id_test", "accuracy"),
        Column("ood", "Test acc. (OOD)", "synthetic", "ood/test", "accuracy"),
    ),
    paper={("ft", "ood"): 68.9, ("fs", "ood"): 69.5, ("levi/pretrained", "ood"): 75.5},
    claims=("C15", "C16"),
    sweeps=(
        Sweep(
            key="spurious_sweep",
            title="Test (OOD) accuracy vs. spurious correlation strength",
            x_label="P(spurious feature agrees with y) in pre-training and fine-tuning data",
            points=SYNTHETIC_SWEEP,
            methods=("ft", "fs", "levi/pretrained"),
            role="ood/test",
            metric="accuracy",
        ),
    ),
    extra_jobs=(("linear_toy", "linear_example"),),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in [SYNTHETIC]}


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]
