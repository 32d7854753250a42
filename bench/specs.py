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

    ``role`` is a split role (``id_test``, ``ood/test``) or ``<prefix>/mean`` for the mean over
    every role that starts with ``<prefix>/`` (``ood/mean``: all OOD sets of the dataset;
    ``ood/product/mean``: Amazon's product categories).
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
class Shift:
    """A distribution shift: one dataset's ID test set against its OOD set(s).

    Gives the table two columns, ``<key>/id`` and ``<key>/ood``; claims are checked per shift.
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


@dataclass(frozen=True)
class Breakdown:
    """A per-OOD-set table (the paper's Tables 9-12, 17, 18): one column per role under prefix."""

    key: str
    title: str
    dataset: str
    prefix: str
    metric: str


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
    shifts: tuple[Shift, ...] = ()
    references: tuple[str, ...] = ()
    breakdowns: tuple[Breakdown, ...] = ()
    layer_study: bool = False
    kind: str = "metrics"

    def rows_for(self, preset: str) -> tuple[str, ...]:
        """Rows under a preset: the per-layer study has one row per layer of its backbone."""
        if not self.layer_study:
            return self.rows
        from levi_core.backbones import get_config

        from bench.presets import get_preset

        backbone = get_preset(preset).settings.get("text", {}).get("backbone", "t5-small")
        return tuple(f"layer/{k}" for k in range(1, get_config(backbone).num_layers + 1))

    def all_columns(self) -> tuple[Column, ...]:
        return tuple(c for sh in self.shifts for c in sh.columns()) + tuple(self.columns)

    def columns_for(self, preset: str) -> tuple[Column, ...]:
        """The columns whose dataset is part of the preset (``cpu`` has MovieLens only)."""
        from bench.presets import get_preset

        resolve = get_preset(preset).dataset_id
        return tuple(c for c in self.all_columns() if resolve(c.dataset) is not None)

    def datasets(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.all_columns():
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

# Recommendation shifts (Table 1, 5, 14): RMSE, lower is better.
ML = Shift("movielens", "MovieLens (genre)", "movielens", "ood/mean", "rmse")
AMZ_TIME = Shift("amazon_time", "Amazon (time)", "amazon", "ood/time", "rmse")
AMZ_PRODUCT = Shift("amazon_product", "Amazon (product)", "amazon", "ood/product/mean", "rmse")
REC_SHIFTS = (ML, AMZ_TIME, AMZ_PRODUCT)
REC_BREAKDOWNS = (
    Breakdown("movielens_genres", "MovieLens OOD RMSE per genre (the paper's Tables 9-10)",
              "movielens", "ood/", "rmse"),
    Breakdown("amazon_products", "Amazon OOD RMSE per product category (the paper's Table 11)",
              "amazon", "ood/product/", "rmse"),
)
# Vision shifts (Table 2, 4): accuracy, higher is better.
MEDICAL = Shift("medical", "Medical (quality)", "retinopathy", "ood/mean", "accuracy")
IMAGENET = Shift("imagenet", "ImageNet (domain)", "imagenet", "ood/mean", "accuracy")
IMAGENET_BREAKDOWN = Breakdown("imagenet_variants",
                               "ImageNet OOD accuracy per variant (the paper's Tables 12, 17, 18)",
                               "imagenet", "ood/", "accuracy")
SANITY_ROWS = ("ref/mean", "ref/user_bias", "ref/user_movie_bias")
LR_NOTE = "Hyperparameters selected on id_val only (the paper's D.3)."

TABLE1 = TableSpec(
    name="table1",
    title="Table 1: recommendation, ID and OOD RMSE",
    caption=("RMSE (lower is better) of rating prediction under the genre shift of MovieLens and "
             "the time and product shifts of Amazon Reviews; OOD = mean over the shift's OOD sets. "
             "Reference rows (not ranked): the ID-train mean rating and bias models. " + LR_NOTE),
    rows=("ft", "ht", "lp", "fs", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs", "levi"),
    columns=(), shifts=REC_SHIFTS, references=SANITY_ROWS, breakdowns=REC_BREAKDOWNS,
    claims=("C1", "C2", "C3", "C4", "C5", "C6", "C17"),
)
TABLE2 = TableSpec(
    name="table2",
    title="Table 2: image classification, ID and OOD accuracy",
    caption=("Accuracy (%) under the quality shift of Diabetic Retinopathy (Medical) and the domain "
             "shift of ImageNet (ID Sketch; OOD = mean of A, R, V2). No from-scratch rows: the "
             "paper skips FS for ViT. " + LR_NOTE),
    rows=("ft", "ht", "lp", "lp_ft", "ft_robust", "ft_zeroshot", "levi"),
    columns=(), shifts=(MEDICAL, IMAGENET), breakdowns=(IMAGENET_BREAKDOWN,),
    claims=("C7", "C8", "C9"),
)
TABLE4 = TableSpec(
    name="table4",
    title="Table 4: LEVI with a LoRA-tuned large model",
    caption="Accuracy (%) of LoRA alone and LEVI on the LoRA-tuned model. " + LR_NOTE,
    rows=("lora", "levi/lora"), columns=(), shifts=(MEDICAL, IMAGENET),
    breakdowns=(IMAGENET_BREAKDOWN,), claims=("C11",),
)
TABLE5 = TableSpec(
    name="table5",
    title="Table 5: ablations of LEVI",
    caption=("RMSE (lower is better). A1: average of two FT seeds; A2: average of FT and the small "
             "model; A3: adapting layers on the large model's layers, no small model; A4: small "
             "model, one head; A5: small model, shared bottom, several heads averaged. "
             "Reference rows (not ranked) as in Table 1. " + LR_NOTE),
    rows=("a1", "a2", "a3", "a4", "a5", "levi"), columns=(), shifts=REC_SHIFTS,
    references=SANITY_ROWS, claims=("C12",),
)
TABLE14 = TableSpec(
    name="table14",
    title="Table 14: LEVI with different large models",
    caption=("RMSE (lower is better) of LEVI on the original pre-trained, the light-tuned (HT, "
             "the paper's main setting) and the fully fine-tuned large model. " + LR_NOTE),
    rows=("levi/pretrained", "levi", "levi/ft"), columns=(), shifts=REC_SHIFTS, claims=("C14",),
)
FIG4 = TableSpec(
    name="fig4",
    title="Fig. 4: one intermediate layer at a time (MovieLens)",
    caption=("RMSE of an MLP head on one layer of the frozen pre-trained large model, per layer "
             "(1 = first block). " + LR_NOTE),
    rows=(), columns=(), shifts=(ML,), breakdowns=(REC_BREAKDOWNS[0],), layer_study=True,
    claims=("C13",),
)


def _costs_table(name: str, title: str, backbones: tuple[str, ...]) -> TableSpec:
    return TableSpec(
        name=name, title=title, kind="costs",
        caption=("Trainable parameters, inference parameters and inference FLOPs per example of "
                 "each method row, computed from the compiled model (XLA cost analysis) and "
                 "cross-checked against an analytic count. Composite methods cost the sum of "
                 "their members."),
        rows=("ft", "ht", "lp", "fs", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs", "lora",
              "levi/pretrained", "levi", "levi/ft", "levi/lora", "a1", "a2", "a3", "a4", "a5"),
        columns=(), seeds=(0,), claims=("C10",),
        extra_jobs=tuple((f"costs:backbone={b}", "cost_analysis") for b in backbones),
    )


TABLE3 = _costs_table("table3", "Table 3: efficiency (parameters and FLOPs)",
                      ("t5-small", "vit-b16-224-in21k"))
TABLE15 = _costs_table("table15", "Table 15: parameters and FLOPs with T5-small", ("t5-small",))
TABLE16 = _costs_table("table16", "Table 16: parameters and FLOPs with ViT-B/16",
                       ("vit-b16-224-in21k",))

TABLES: dict[str, TableSpec] = {
    t.name: t for t in [TABLE1, TABLE2, TABLE3, TABLE4, TABLE5, TABLE14, TABLE15, TABLE16, FIG4,
                        SYNTHETIC]
}


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise ConfigError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]
