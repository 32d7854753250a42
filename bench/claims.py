"""Verdicts on the paper's claims (C1-C16, each stated in its checker's docstring and verdict
text below) from reproduced numbers.

Each checker reads a TableResult (through a ``bench.uncertainty.Noise`` over it) and returns a
Verdict: ``supported``, ``contradicted``, ``partly supported`` (some parts hold, some fail),
``undecided`` (a difference within its uncertainty, or cells missing), "supported on k of n
shifts" (the others not run), or for C16 ``illustrated``. A comparison between methods counts
only when the difference is larger than its uncertainty (seed spread and a paired bootstrap over
the evaluation examples, ``bench.uncertainty``); costs (C10) and exact arithmetic (C16) are
deterministic. The detail line shows every number the verdict was drawn from. The tests and the
per-shift rule are in ``bench.verdicts``; method names are the catalog's labels.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable

import numpy as np

from levi_core.methods.catalog import label
from levi_core.metrics import lower_is_better

from bench.collect import TableResult, budgets
from bench.sections import CostTable, ExactTable, OodBreakdown
from bench.sections.record_tables import LINEAR_NAMES
from bench.metric_format import metric as metric_format
from bench.uncertainty import Noise
from bench.verdicts import (CONTRADICTED, FAILS, HOLDS, ILLUSTRATED, NOT_ILLUSTRATED, OPEN, PARTLY,
                            SUPPORTED, UNDECIDED, Outcome, ShiftView, Verdict, all_of, any_of,
                            at_least, fact, per_shift, status_from, test, verdict)

# C15: "each within a few points of the paper's figure". We read "a few" as 5 accuracy points.
C15_TOLERANCE = 5.0
# C9: LEVI's ID accuracy may be at most this many points below FT's (one-sided).
C9_ID_POINTS = 1.0
# C6: "largely fails to improve" read as an improvement below this margin (RMSE).
C6_MARGIN = 0.005
# C10: inference FLOPs and parameters of LEVI relative to FT ("close to one large model";
# a two-model ensemble costs 2x).
C10_FLOPS_RATIO, C10_PARAMS_RATIO = 1.2, 1.5

Checker = Callable[[TableResult, Noise], Verdict]


def _noise(result: TableResult, noise: Noise | None) -> Noise:
    return noise if noise is not None else Noise(result)


def _ood_sets(noise: Noise, view: ShiftView) -> list[tuple[str, str]]:
    """(set label, column key) of the per-OOD-set breakdowns of the shift's dataset."""
    out = []
    for section in noise.result.spec.sections_of(OodBreakdown):
        if section.dataset != view.shift.dataset:
            continue
        frame = noise.result.frame(section)
        out += [(r.label, r.column) for r in frame.drop_duplicates("column").itertuples()]
    return out


def _grid_rows(result: TableResult) -> list[str]:
    """The rows of the table's metric grid; none when a ``--methods`` filter left no grid (the
    claims on it then cannot be decided, see ``per_shift``)."""
    grid = result.spec.grid
    return list(grid.rows_for(result.preset)) if grid is not None else []


def _means(view: ShiftView, methods, which: str) -> str:
    return ", ".join(f"{label(m)} {view.cell(view.mean(m, which))}" for m in methods)


# ------------------------------------------------------------------ Table 1
def c1(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)
    rows = _grid_rows(result)

    def check(v: ShiftView) -> Outcome:
        o = v.beats_all("levi", rows, "ood")
        return Outcome(o.state, f"LEVI OOD {v.cell(v.mean('levi', 'ood'))}; {o.why}", o.tests)

    return per_shift(noise, "LEVI gives the best OOD RMSE in every recommendation shift (beats every "
                     "row beyond the uncertainty)", "C1", ["levi", *rows], check)


def c2(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)
    rows = _grid_rows(result)

    def check(v: ShiftView) -> Outcome:
        std = result.std("levi", v.column("id")) or 0.0
        o = all_of([v.test("levi", r, "id", threshold=-std) for r in rows if r != "levi"])
        return Outcome(o.state, f"LEVI ID {v.cell(v.mean('levi', 'id'))} ± {v.cell(std)} (its seed-std "
                       f"is the tolerance); {o.why}", o.tests)

    return per_shift(noise, "LEVI's ID RMSE is the best, or within one seed-std (LEVI's) of it",
                     "C2", ["levi", *rows], check)


def c3(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = any_of([v.test(m, "ft", "ood") for m in ("ht", "lp", "fs")])
        return Outcome(o.state, f"OOD {_means(v, ('ft', 'ht', 'lp', 'fs'), 'ood')}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "FT is worse OOD than at least one of HT, LP, FS", "C3",
                     ["ft", "ht", "lp", "fs"], check)


def c4(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = all_of([v.test(m, "ft", "ood") for m in ("ht", "lp", "fs")])
        return Outcome(o.state, f"OOD {_means(v, ('ft', 'ht', 'lp', 'fs'), 'ood')}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "On Amazon product shift FT is worse OOD than all of HT, "
                     "LP and FS", "C4", ["ft", "ht", "lp", "fs"], check, shifts=["amazon_product"])


GENERALIZATION = ("lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c5(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = at_least(3, [v.test(m, "ft", "ood") for m in GENERALIZATION])
        return Outcome(o.state, f"FT OOD {v.cell(v.mean('ft', 'ood'))}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "LP→FT, FT+RobustModel, FT+ZeroShot, FT+FS mostly (>= 3 "
                     "of 4) improve FT's OOD", "C5", ["ft", *GENERALIZATION], check)


def c6(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        # FT+ZeroShot's improvement over FT is below the margin: FT is better than FT+ZeroShot
        # by more than -margin
        return v.test("ft", "ft_zeroshot", "ood", threshold=-C6_MARGIN)

    return per_shift(_noise(result, noise), f"FT+ZeroShot fails to improve FT's OOD on Amazon product "
                     f"(gain < {C6_MARGIN} RMSE)", "C6", ["ft", "ft_zeroshot"], check,
                     shifts=["amazon_product"])


def c17(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        return all_of([v.test("levi", "ft_fs", "id"), v.test("levi", "ft_fs", "ood")])

    return per_shift(_noise(result, noise), "LEVI beats the FT+FS prediction ensemble in ID and OOD",
                     "C17", ["levi", "ft_fs"], check)


# ------------------------------------------------------------------ Tables 2, 4
def c7(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = all_of([v.test("ft", m, "ood") for m in ("ht", "lp", "lp_ft")])
        return Outcome(o.state, f"OOD {_means(v, ('ft', 'ht', 'lp', 'lp_ft'), 'ood')}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "Medical: HT, LP and LP→FT do not improve FT's OOD "
                     "accuracy (FT beats each); also judged on the CIFAR-10 vehicles proxy (cpu), "
                     "which is not the paper's data", "C7", ["ft", "ht", "lp", "lp_ft"], check,
                     shifts=["medical", "cifar"])


def c8(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = all_of([v.test(m, "ft", "ood") for m in ("ht", "lp", "lp_ft")])
        return Outcome(o.state, f"OOD {_means(v, ('ft', 'ht', 'lp', 'lp_ft'), 'ood')}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "ImageNet: HT, LP and LP→FT improve FT's OOD accuracy; "
                     "also judged on the CIFAR-10 vehicles proxy (cpu), which is not the paper's "
                     "data", "C8", ["ft", "ht", "lp", "lp_ft"], check, shifts=["imagenet", "cifar"])


def c9(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)
    rows = _grid_rows(result)
    others = [r for r in rows if r != "levi"]

    def check(v: ShiftView) -> Outcome:
        parts = [v.beats_all("levi", rows, "ood"),
                 # ID "comparable to FT": at most 1 point worse (one-sided: only a worse ID can fail it)
                 v.test("levi", "ft", "id", threshold=-C9_ID_POINTS)]
        names = ["best OOD", f"ID not more than {C9_ID_POINTS:g} point below FT"]
        parts = [Outcome(p.state, f"{n}: {p.state}" + (f" ({p.why})" if p.why else ""), p.tests, n)
                 for n, p in zip(names, parts)]
        for name, col in _ood_sets(noise, v):  # top 2: beats all other rows but at most one
            parts.append(at_least(len(others) - 1, [test(noise, "levi", r, col) for r in others],
                                  name=f"top 2 on {name}"))
        return all_of(parts)

    return per_shift(noise, "LEVI has the best OOD accuracy on Medical and ImageNet, ID not more than "
                     "1 point below FT; best or second best on each ImageNet OOD set (also judged "
                     "on the CIFAR-10 vehicles proxy under cpu, per corruption; not the paper's "
                     "data)", "C9",
                     ["levi", "ft", *others], check)


def c11(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)

    def check(v: ShiftView) -> Outcome:
        parts = [v.test("levi/lora", "lora", "id"), v.test("levi/lora", "lora", "ood")]
        parts += [test(noise, "levi/lora", "lora", col) for _, col in _ood_sets(noise, v)]
        return all_of(parts)

    return per_shift(noise, "LEVI on a LoRA-tuned model beats LoRA alone in ID and OOD (Medical, every "
                     "ImageNet OOD set; also judged on the CIFAR-10 vehicles proxy under cpu, not "
                     "the paper's data)", "C11", ["lora", "levi/lora"], check)


# ------------------------------------------------------------------ Tables 5, 14
ABLATIONS = ("a1", "a2", "a3", "a4", "a5")


def c12(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        def rest(m):
            return [o for o in ABLATIONS if o != m]

        # better than the ablations' median (of 5) = better than at least 3 of the other 4;
        # at least as good as the median = better than at least 2 of the other 4
        return all_of([
            all_of([v.test("levi", m, w) for m in ("a1", "a2") for w in ("id", "ood")],
                   name="A1, A2 worse than LEVI in ID and OOD"),
            all_of([at_least(3, [v.test("a3", o, "ood") for o in rest("a3")]), v.test("levi", "a3", "id")],
                   name="A3 OOD better than the ablations' median, ID worse than LEVI"),
            all_of([at_least(2, [v.test(m, o, "id") for o in rest(m)]) for m in ("a4", "a5")]
                   + [v.test("levi", m, "ood") for m in ("a4", "a5")],
                   name="A4, A5 ID at least the ablations' median, OOD worse than LEVI"),
        ])

    return per_shift(_noise(result, noise), "Ablations: A1, A2 worse than LEVI in ID and OOD; A3 good "
                     "OOD, worse ID; A4, A5 good ID, worse OOD", "C12", [*ABLATIONS, "levi"], check)


def c14(result: TableResult, noise: Noise | None = None) -> Verdict:
    def check(v: ShiftView) -> Outcome:
        o = all_of([
            all_of([v.test("levi/ft", m, "id") for m in ("levi/pretrained", "levi")],
                   name="fine-tuned best ID"),
            all_of([v.test(m, "levi/ft", "ood") for m in ("levi/pretrained", "levi")],
                   name="pre-trained and light-tuned both beat fine-tuned OOD"),
        ])
        means = "; ".join(f"{w.upper()} pre-trained {v.cell(v.mean('levi/pretrained', w))}, light-tuned "
                          f"{v.cell(v.mean('levi', w))}, fine-tuned {v.cell(v.mean('levi/ft', w))}"
                          for w in ("id", "ood"))
        return Outcome(o.state, f"{means}; {o.why}", o.tests)

    return per_shift(_noise(result, noise), "LEVI on a fine-tuned model has the best ID; on the "
                     "pre-trained and on the light-tuned model, better OOD", "C14",
                     ["levi/pretrained", "levi", "levi/ft"], check)


# ------------------------------------------------------------------ Fig. 4, costs, synthetic
def _spearman(k: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``k`` [L] with every column of ``values`` [L, B] (0 if constant)."""
    from scipy.stats import rankdata

    rk = rankdata(k) - rankdata(k).mean()
    rv = rankdata(values, axis=0)
    rv = rv - rv.mean(axis=0)
    den = np.sqrt((rk ** 2).sum() * (rv ** 2).sum(axis=0))
    return np.where(den > 0, (rk[:, None] * rv).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


def c13(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)
    statement = ("One layer at a time: later layers better ID RMSE, earlier layers better OOD RMSE "
                 "(Spearman of layer index with ID RMSE < 0, with OOD RMSE > 0; decided when its "
                 "95% bootstrap interval excludes 0)")
    grid = result.spec.grid
    if grid is None or not grid.shifts:
        return Verdict("C13", statement, UNDECIDED, "cannot decide: this table has no per-layer rows "
                       "(a --methods or --datasets filter left none)")
    rows = list(grid.rows_for(result.preset))
    shift = grid.shifts[0]
    means = {w: [result.mean(m, f"{shift.key}/{w}") for m in rows] for w in ("id", "ood")}
    if any(v is None for w in means for v in means[w]):
        return Verdict("C13", statement, UNDECIDED, f"missing cells: run `{result.run_command}`")
    if len(rows) < 3:
        return Verdict("C13", statement, UNDECIDED,
                       f"{len(rows)} layers: too few for a rank correlation (this preset's backbone)")
    k = np.arange(1, len(rows) + 1, dtype=np.float64)
    # "later layers better ID": the metric improves with the layer index, in its direction
    sign = 1.0 if lower_is_better(shift.metric) else -1.0
    states, details = [], [f"{shift.label}, {len(rows)} layers"]
    for w, want in (("id", -1.0), ("ood", 1.0)):
        rho = float(_spearman(k, np.array(means[w])[:, None])[0])
        reps, basis = noise.replicates(rows, f"{shift.key}/{w}")
        text = f"Spearman(layer, {w.upper()} {metric_format(shift.metric).short}) = {rho:+.2f}"
        if reps is None:
            states.append(OPEN)
            details.append(f"{text}: undecided ({basis})")
            continue
        lo, hi = np.percentile(_spearman(k, reps), [2.5, 97.5])
        signed = sorted((sign * want * lo, sign * want * hi))  # > 0 where the claim holds
        state = HOLDS if signed[0] > 0 else FAILS if signed[1] < 0 else OPEN
        states.append(state)
        details.append(f"{text}, 95% interval [{lo:+.2f}, {hi:+.2f}] ({basis}): {state}")
    return Verdict("C13", statement, status_from(states), "; ".join(details))


BASELINES_C10 = ("ft", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c10(result: TableResult, noise: Noise | None = None) -> Verdict:
    statement = ("LEVI on the pre-trained model trains fewer parameters than every baseline (FT, LP→FT, "
                 f"FT+RobustModel, FT+ZeroShot, FT+FS); inference FLOPs(LEVI) <= {C10_FLOPS_RATIO} x FT "
                 f"and inference parameters(LEVI) <= {C10_PARAMS_RATIO} x FT (comparable to a single "
                 "large model; a two-model ensemble is 2 x)")
    states, details = [], []
    for section in result.spec.sections_of(CostTable):
        costs = result.frame(section)
        for (backbone, scope), part in costs.groupby(["backbone", "scope"], sort=False):
            r = part.set_index("method")
            if not all(m in r.index for m in (*BASELINES_C10, "levi/pretrained", "levi")):
                continue
            min_base = min(r.loc[m, "trainable_params"] for m in BASELINES_C10)
            levi_train = r.loc["levi/pretrained", "trainable_params"]
            flops = max(r.loc[m, "flops_xla"] for m in ("levi", "levi/pretrained")) / r.loc["ft", "flops_xla"]
            params = (max(r.loc[m, "inference_params"] for m in ("levi", "levi/pretrained"))
                      / r.loc["ft", "inference_params"])
            parts = [fact(levi_train < min_base, f"LEVI (pre-trained) trains {levi_train / 1e6:.2f}M vs "
                          f"min baseline {min_base / 1e6:.2f}M"),
                     fact(flops <= C10_FLOPS_RATIO, f"inference FLOPs LEVI/FT = {flops:.3f}"),
                     fact(params <= C10_PARAMS_RATIO, f"inference params LEVI/FT = {params:.3f}")]
            states += [p.state for p in parts]
            # FT+FS is FT + FS on one architecture: its ~2x is true by construction, so shown only
            ens = r.loc["ft_fs", "flops_xla"] / r.loc["ft", "flops_xla"]
            details.append(f"{backbone} ({scope}): " + ", ".join(
                f"{p.why} ({'yes' if p.state == HOLDS else 'no'})" for p in parts)
                + f"; for scale, not evidence: FLOPs FT+FS/FT = {ens:.2f} (two models by construction)")
    if not states:
        return Verdict("C10", statement, UNDECIDED, f"missing: run `{result.run_command}`")
    return verdict("C10", statement, status_from(states), details)


def c15(result: TableResult, noise: Noise | None = None) -> Verdict:
    noise = _noise(result, noise)
    statement = ("Synthetic E.8: test accuracy FT 68.9, FS 69.5, LEVI 75.5 (ordering LEVI > FS >= FT; "
                 f"each within {C15_TOLERANCE:g} points of the paper)")
    rows = {"ft": "FT", "fs": "FS", "levi/pretrained": "LEVI"}
    means = {m: result.mean(m, "ood") for m in rows}
    if any(v is None for v in means.values()):
        return Verdict("C15", statement, UNDECIDED, f"missing cells: run `{result.run_command}`")
    order = all_of([test(noise, "levi/pretrained", "fs", "ood"), test(noise, "fs", "ft", "ood")])
    paper = {m: result.spec.grid.paper[(m, "ood")] for m in rows}
    gaps = {m: means[m] - paper[m] for m in rows}
    close = all(abs(g) <= C15_TOLERANCE for g in gaps.values())
    nums = ", ".join(f"{rows[m]} {means[m]:.1f} (paper {paper[m]:.1f}, {gaps[m]:+.1f})" for m in rows)
    near = "all within tolerance" if close else "not all within tolerance"
    status = status_from([order.state, HOLDS if close else FAILS])
    return verdict("C15", statement, status, [nums, f"ordering LEVI > FS > FT {order.state} ({order.why})",
                                              near], order.tests)


def expected_sq_error(w, w_true) -> Fraction:
    """E[(w.x - w_true.x)^2] for x with independent unit-variance features: |w - w_true|^2."""
    return sum(((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(w, w_true)), Fraction(0))


def c16(result: TableResult, noise: Noise | None = None) -> Verdict:
    statement = ("Appendix B: the fine-tuned model [1,1,1,1,1] has a larger test error than the "
                 "pre-trained [1,1,1,0,0] and the from-scratch [0,0,1,1,1] models (on test points "
                 "chosen here: the paper's are not given, so this can only illustrate)")
    exact = next(iter(result.spec.sections_of(ExactTable)), None)
    rec = result.records.once(exact.dataset, exact.method) if exact else None
    if rec is None:
        return Verdict("C16", statement, UNDECIDED, "missing: run `bench run synthetic`")
    ex = rec.get("extras") or {}
    models = ex.get("models") or {}
    holds = ex.get("c16_finetune_worse_than_both")
    if holds is None or not models:
        return Verdict("C16", statement, UNDECIDED, "the linear example's record has no verdict")
    shown = [k for k in ("pretrain", "scratch", "finetune") if k in models]
    nums = ", ".join(f"{LINEAR_NAMES.get(k, k)} {models[k]['mse']}" for k in shown)
    w_true = models.get("true", {}).get("w", ["0", "1", "1", "1", "0"])
    expect = {k: expected_sq_error(models[k]["w"], w_true) for k in shown}
    exp_nums = ", ".join(f"{LINEAR_NAMES.get(k, k)} {v}" for k, v in expect.items())
    others = [v for k, v in expect.items() if k != "finetune"]
    if all(v == expect["finetune"] for v in others):
        meaning = "equal, so the example shows that FT can be worse, not that it must"
    elif all(expect["finetune"] > v for v in others):
        meaning = "FT is worse in expectation too"
    else:
        meaning = "FT is not worse in expectation"
    return Verdict("C16", statement, ILLUSTRATED if holds else NOT_ILLUSTRATED,
                   f"exact mean squared errors on our four test points: {nums}; expected squared "
                   f"error with x1..x5 independent, unit variance, y = x2 + x3 + x4: {exp_nums} "
                   f"({meaning})")


CHECKERS: dict[str, Checker] = {
    "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9,
    "C10": c10, "C11": c11, "C12": c12, "C13": c13, "C14": c14, "C15": c15, "C16": c16, "C17": c17,
}


def verdicts(result: TableResult) -> list[Verdict]:
    noise = Noise(result)  # predictions and labels are read once for all of the table's claims
    out = [CHECKERS[c](result, noise) for c in result.spec.claims if c in CHECKERS]
    note = budget_note(result)
    return [with_budget(v, note) for v in out] if note else out


def _built_on_large(method: str) -> bool:
    """Whether the method trains the large model (its declared kind) or is built on one that does."""
    from levi_core.methods import Kind, get_method

    m = get_method(method)
    return m.kind is Kind.TRAINS_LARGE or any(_built_on_large(d) for d in m.depends_on)


def budget_note(result: TableResult) -> str:
    """The budget the verdict was drawn under, from the records' settings: every method of a
    seed learned from the same draw of the training split (empty when every method trained on
    the whole split)."""
    seen = {}
    for dataset, s in budgets(result.records.frame["record"]):
        if s["train_examples"]:
            seen[dataset] = (int(s["train_examples"]), s["epochs"])
    if not seen:
        return ""
    parts = [f"{n:,} training examples on {d} (large models: {ep} epoch(s))"
             for d, (n, ep) in sorted(seen.items())]
    return ("Budget: every method of a seed learned from the same seeded draw of "
            + "; ".join(parts) + ".")


def with_budget(v: Verdict, note: str) -> Verdict:
    """The verdict with the budget stated beside it when a method it compares trained (or
    was built on) the large model."""
    methods = {m for t in v.evidence for m in (t.a, t.b)}
    try:
        hit = any(_built_on_large(m) for m in methods)
    except Exception:  # noqa: BLE001 - a label that is not a catalog method (costs, exact)
        hit = False
    if not hit:
        return v
    return dataclasses.replace(v, detail=f"{v.detail} {note}")


__all__ = ["Verdict", "verdicts", "CHECKERS", "SUPPORTED", "CONTRADICTED", "PARTLY", "C15_TOLERANCE", "C9_ID_POINTS", "C6_MARGIN",
           "C10_FLOPS_RATIO", "C10_PARAMS_RATIO"]
