"""Verdicts on the paper's claims (../shared/paper/CLAIMS.md) from reproduced numbers.

Each checker reads a TableResult and returns a Verdict: ``supported``, ``contradicted``,
``partly supported`` (some parts hold, some do not) or ``undecided`` (cells missing). The
detail line always shows the numbers the verdict was drawn from. The per-shift rule and the
Verdict record are in ``bench.verdicts``; every "better" is ``levi_core.metrics.better`` in the
metric's declared direction; method names are the catalog's labels.
"""

from __future__ import annotations

from typing import Callable

from levi_core.methods.catalog import label, labels
from levi_core.metrics import better, lower_is_better, rank_distinct, sort_key

from bench.collect import TableResult
from bench.record_sections import LINEAR_NAMES, CostTable, ExactTable
from bench.sections import OodBreakdown
from bench.verdicts import (CONTRADICTED, PARTLY, SUPPORTED, UNDECIDED, Verdict, best_of, fmt,
                            per_shift, status_of)

# C15: "each within a few points of the paper's figure". We read "a few" as 5 accuracy points.
C15_TOLERANCE = 5.0
# C9: LEVI's ID accuracy may be at most this many points below FT's.
C9_ID_POINTS = 1.0


def _means(result: TableResult, column: str, methods: list[str]) -> dict[str, float] | None:
    out = {m: result.mean(m, column) for m in methods}
    return None if any(v is None for v in out.values()) else out


def c15(result: TableResult) -> Verdict:
    statement = ("Synthetic E.8: test accuracy FT 68.9, FS 69.5, LEVI 75.5 (ordering LEVI > FS >= FT; "
                 f"each within {C15_TOLERANCE:g} points of the paper)")
    rows = {"ft": "FT", "fs": "FS", "levi/pretrained": "LEVI"}
    means = _means(result, "ood", list(rows))
    if means is None:
        return Verdict("C15", statement, UNDECIDED, "missing cells: run `bench run synthetic`")
    metric = next(c.metric for c in result.spec.grid.columns if c.key == "ood")
    order_ok = (better(metric, means["levi/pretrained"], means["fs"])
                and not better(metric, means["ft"], means["fs"]))
    paper = {m: result.spec.grid.paper[(m, "ood")] for m in rows}
    gaps = {m: means[m] - paper[m] for m in rows}
    close = all(abs(g) <= C15_TOLERANCE for g in gaps.values())
    nums = ", ".join(f"{rows[m]} {means[m]:.1f} (paper {paper[m]:.1f}, {gaps[m]:+.1f})" for m in rows)
    order = "ordering LEVI > FS >= FT holds" if order_ok else "ordering LEVI > FS >= FT does not hold"
    near = "all within tolerance" if close else "not all within tolerance"
    status = SUPPORTED if order_ok and close else (PARTLY if order_ok or close else CONTRADICTED)
    return Verdict("C15", statement, status, f"{nums}; {order}; {near}")


def c16(result: TableResult) -> Verdict:
    statement = ("Appendix B: the fine-tuned model [1,1,1,1,1] has a larger test error than the "
                 "pre-trained [1,1,1,0,0] and the from-scratch [0,0,1,1,1] models")
    exact = next(iter(result.spec.sections_of(ExactTable)), None)
    rec = result.records.once(exact.dataset, exact.method) if exact else None
    if rec is None:
        return Verdict("C16", statement, UNDECIDED, "missing: run `bench run synthetic`")
    ex = rec.get("extras") or {}
    models = ex.get("models") or {}
    holds = ex.get("c16_finetune_worse_than_both")
    if holds is None or not models:
        return Verdict("C16", statement, UNDECIDED, "the linear example's record has no verdict")
    nums = ", ".join(f"{LINEAR_NAMES.get(k, k)} {m['mse']}" for k, m in models.items())
    return Verdict("C16", statement, SUPPORTED if holds else CONTRADICTED,
                   f"exact mean squared test errors: {nums}")


# ------------------------------------------------------------------ per-shift claims
def c1(result: TableResult) -> Verdict:
    rows = list(result.spec.grid.rows_for(result.preset))

    def check(ids, oods, metric, shift):
        best = best_of(metric, oods)
        return (oods["levi"] == oods[best],
                f"LEVI OOD {fmt(oods['levi'])}, best {label(best)} {fmt(oods[best])}")

    return per_shift(result, "LEVI gives the best OOD RMSE in every recommendation shift", "C1",
                     rows, check)


def c2(result: TableResult) -> Verdict:
    rows = list(result.spec.grid.rows_for(result.preset))

    def check(ids, oods, metric, shift):
        best = best_of(metric, ids)
        std = result.std("levi", f"{shift.key}/id") or 0.0
        ok = abs(ids["levi"] - ids[best]) <= std
        return ok, f"LEVI ID {fmt(ids['levi'])} ± {fmt(std)}, best {label(best)} {fmt(ids[best])}"

    return per_shift(result, "LEVI's ID RMSE is the best, or within one seed-std (LEVI's) of it",
                     "C2", rows, check)


def c3(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        light = {m: oods[m] for m in ("ht", "lp", "fs")}
        best = best_of(metric, light)
        return (better(metric, light[best], oods["ft"]),
                f"best of HT/LP/FS: {label(best)} {fmt(light[best])} vs FT {fmt(oods['ft'])}")

    return per_shift(result, "FT is worse OOD than at least one of HT, LP, FS", "C3",
                     ["ft", "ht", "lp", "fs"], check)


def c4(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        ok = all(better(metric, oods[m], oods["ft"]) for m in ("ht", "lp", "fs"))
        return ok, ", ".join(f"{label(m)} {fmt(oods[m])}" for m in ("ft", "ht", "lp", "fs"))

    return per_shift(result, "On Amazon product shift FT is worse OOD than all of HT, LP and FS",
                     "C4", ["ft", "ht", "lp", "fs"], check, shifts=["amazon_product"])


GENERALIZATION = ("lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c5(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        beat = [m for m in GENERALIZATION if better(metric, oods[m], oods["ft"])]
        return len(beat) >= 3, f"{len(beat)} of 4 beat FT OOD {fmt(oods['ft'])}: {labels(beat) or 'none'}"

    return per_shift(result, "LP→FT, FT+RobustModel, FT+ZeroShot, FT+FS mostly (>= 3 of 4) improve "
                     "FT's OOD", "C5", ["ft", *GENERALIZATION], check)


C6_MARGIN = 0.005  # RMSE: "largely fails to improve" read as an improvement below this margin


def c6(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        gain = oods["ft"] - oods["ft_zeroshot"]  # the improvement, in the metric's direction
        gain = gain if lower_is_better(metric) else -gain
        return gain < C6_MARGIN, f"FT {fmt(oods['ft'])}, FT+ZeroShot {fmt(oods['ft_zeroshot'])}, gain {gain:+.4f}"

    return per_shift(result, f"FT+ZeroShot fails to improve FT's OOD on Amazon product (gain < "
                     f"{C6_MARGIN} RMSE)", "C6", ["ft", "ft_zeroshot"], check, shifts=["amazon_product"])


def c7(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        ok = all(not better(metric, oods[m], oods["ft"]) for m in ("ht", "lp", "lp_ft"))
        return ok, ", ".join(f"{label(m)} {fmt(oods[m])}" for m in ("ft", "ht", "lp", "lp_ft"))

    return per_shift(result, "Medical: HT, LP and LP→FT do not improve FT's OOD accuracy", "C7",
                     ["ft", "ht", "lp", "lp_ft"], check, shifts=["medical"])


def c8(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        ok = all(better(metric, oods[m], oods["ft"]) for m in ("ht", "lp", "lp_ft"))
        return ok, ", ".join(f"{label(m)} {fmt(oods[m])}" for m in ("ft", "ht", "lp", "lp_ft"))

    return per_shift(result, "ImageNet: HT, LP and LP→FT improve FT's OOD accuracy", "C8",
                     ["ft", "ht", "lp", "lp_ft"], check, shifts=["imagenet"])


def _per_set(result: TableResult, methods) -> list[tuple[str, str, dict[str, float]]]:
    """(set label, metric, method -> mean) for every per-OOD-set column where all have a mean."""
    out = []
    for section in result.spec.sections_of(OodBreakdown):
        for r in result.frame(section).drop_duplicates("column").itertuples():
            vals = {m: result.mean(m, r.column) for m in methods}
            if all(v is not None for v in vals.values()):
                out.append((r.label, r.metric, vals))
    return out


def c9(result: TableResult) -> Verdict:
    rows = list(result.spec.grid.rows_for(result.preset))

    def check(ids, oods, metric, shift):
        best = best_of(metric, oods)
        # ID "comparable to FT": at most 1 point worse (one-sided, as CLAIMS.md states it)
        id_ok = sort_key(metric, ids["levi"]) - sort_key(metric, ids["ft"]) <= C9_ID_POINTS
        ok = oods["levi"] == oods[best] and id_ok
        why = (f"LEVI OOD {fmt(oods['levi'])} (best {label(best)} {fmt(oods[best])}); "
               f"ID LEVI {fmt(ids['levi'])} vs FT {fmt(ids['ft'])}")
        return ok, why

    v = per_shift(result, "LEVI has the best OOD accuracy on Medical and ImageNet, ID within 1 "
                  "point of FT; best or second best on each ImageNet OOD set", "C9", rows, check)
    per_set = [(name, rank_distinct(metric, vals.values()).index(vals["levi"]) < 2)
               for name, metric, vals in _per_set(result, rows)]
    if per_set:
        detail = v.detail + "; per ImageNet OOD set top-2: " + ", ".join(
            f"{name} {'yes' if ok else 'no'}" for name, ok in per_set)
        status = PARTLY if v.status == SUPPORTED and not all(ok for _, ok in per_set) else v.status
        return Verdict(v.claim, v.statement, status, detail)
    return v


BASELINES_C10 = ("ft", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c10(result: TableResult) -> Verdict:
    statement = ("LEVI on the pre-trained model trains fewer parameters than every baseline (FT, LP→FT, "
                 "FT+RobustModel, FT+ZeroShot, FT+FS); inference FLOPs(LEVI) <= 1.2 x FT; FLOPs(FT+FS) "
                 "about 2 x FT (within 10%)")
    outcomes, details = [], []
    for section in result.spec.sections_of(CostTable):
        costs = result.frame(section)
        for (backbone, scope), part in costs.groupby(["backbone", "scope"], sort=False):
            r = part.set_index("method")
            if not all(m in r.index for m in (*BASELINES_C10, "levi/pretrained", "levi")):
                continue
            min_base = min(r.loc[m, "trainable_params"] for m in BASELINES_C10)
            train_ok = r.loc["levi/pretrained", "trainable_params"] < min_base
            flops = {m: r.loc[m, "flops_xla"] for m in ("ft", "levi", "levi/pretrained", "ft_fs")}
            levi_ok = max(flops["levi"], flops["levi/pretrained"]) <= 1.2 * flops["ft"]
            ratio = flops["ft_fs"] / flops["ft"]
            ens_ok = abs(ratio - 2.0) <= 0.2
            outcomes.append(bool(train_ok and levi_ok and ens_ok))
            details.append(
                f"{backbone} ({scope}): LEVI (pre-trained) trains "
                f"{r.loc['levi/pretrained', 'trainable_params'] / 1e6:.2f}M vs min baseline "
                f"{min_base / 1e6:.2f}M; FLOPs LEVI/FT = {flops['levi'] / flops['ft']:.3f}; "
                f"FT+FS/FT = {ratio:.2f}")
    if not outcomes:
        return Verdict("C10", statement, UNDECIDED, f"missing: run `bench run {result.spec.name}`")
    return Verdict("C10", statement, status_of(outcomes), "; ".join(details))


def c11(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        ok = (better(metric, ids["levi/lora"], ids["lora"])
              and better(metric, oods["levi/lora"], oods["lora"]))
        return ok, (f"ID {fmt(ids['levi/lora'])} vs {fmt(ids['lora'])}, OOD {fmt(oods['levi/lora'])} "
                    f"vs {fmt(oods['lora'])}")

    v = per_shift(result, "LEVI on a LoRA-tuned model beats LoRA alone in ID and OOD (Medical, every "
                  "ImageNet OOD set)", "C11", ["lora", "levi/lora"], check)
    per_set = []
    for name, metric, vals in _per_set(result, ["levi/lora", "lora"]):
        ok = better(metric, vals["levi/lora"], vals["lora"])
        per_set.append(f"{name} {'yes' if ok else 'no'}")
        if not ok and v.status == SUPPORTED:
            v = Verdict(v.claim, v.statement, PARTLY, v.detail)
    return Verdict(v.claim, v.statement, v.status,
                   v.detail + ("; per ImageNet OOD set: " + ", ".join(per_set) if per_set else ""))


def c12(result: TableResult) -> Verdict:
    import statistics

    abl = ["a1", "a2", "a3", "a4", "a5"]

    def check(ids, oods, metric, shift):
        def worse(a, b):  # a worse than b
            return better(metric, b, a)

        med_id = statistics.median(ids[m] for m in abl)
        med_ood = statistics.median(oods[m] for m in abl)
        parts = {
            "A1, A2 worse than LEVI in ID and OOD": all(
                worse(ids[m], ids["levi"]) and worse(oods[m], oods["levi"]) for m in ("a1", "a2")),
            "A3 OOD better than the ablations' median, ID worse than LEVI": (
                better(metric, oods["a3"], med_ood) and worse(ids["a3"], ids["levi"])),
            "A4, A5 ID better than the ablations' median, OOD worse than LEVI": all(
                not worse(ids[m], med_id) and worse(oods[m], oods["levi"]) for m in ("a4", "a5")),
        }
        return all(parts.values()), "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in parts.items())

    return per_shift(result, "Ablations: A1, A2 worse than LEVI in ID and OOD; A3 good OOD, worse "
                     "ID; A4, A5 good ID, worse OOD", "C12", abl + ["levi"], check)


def c13(result: TableResult) -> Verdict:
    from scipy.stats import spearmanr

    statement = ("One layer at a time: later layers better ID RMSE, earlier layers better OOD RMSE "
                 "(Spearman of layer index with ID RMSE < 0, with OOD RMSE > 0)")
    grid = result.spec.grid
    rows = list(grid.rows_for(result.preset))
    shift = grid.shifts[0]
    ids = [result.mean(m, f"{shift.key}/id") for m in rows]
    oods = [result.mean(m, f"{shift.key}/ood") for m in rows]
    if any(v is None for v in ids + oods):
        return Verdict("C13", statement, UNDECIDED, f"missing cells: run `bench run {result.spec.name}`")
    if len(rows) < 3:
        return Verdict("C13", statement, UNDECIDED,
                       f"{len(rows)} layers: too few for a rank correlation (this preset's backbone)")
    k = list(range(1, len(rows) + 1))
    rho_id, rho_ood = float(spearmanr(k, ids)[0]), float(spearmanr(k, oods)[0])
    # "later layers better ID": the metric improves with the layer index, in its direction
    sign = 1.0 if lower_is_better(shift.metric) else -1.0
    ok_id, ok_ood = sign * rho_id < 0, sign * rho_ood > 0
    status = SUPPORTED if ok_id and ok_ood else PARTLY if ok_id or ok_ood else CONTRADICTED
    name = shift.metric.upper()
    return Verdict("C13", statement, status,
                   f"{shift.label}, {len(rows)} layers: Spearman(layer, ID {name}) = {rho_id:+.2f}, "
                   f"Spearman(layer, OOD {name}) = {rho_ood:+.2f}")


def c14(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        best_id = best_of(metric, ids)
        pair = {m: oods[m] for m in ("levi/pretrained", "levi")}
        other_ood = pair[best_of(metric, pair)]
        ok = best_id == "levi/ft" and better(metric, other_ood, oods["levi/ft"])
        return ok, (f"best ID: {label(best_id)}; OOD pre-trained {fmt(oods['levi/pretrained'])}, "
                    f"light-tuned {fmt(oods['levi'])}, fine-tuned {fmt(oods['levi/ft'])}")

    return per_shift(result, "LEVI on a fine-tuned model has the best ID; on the pre-trained or "
                     "light-tuned model, better OOD", "C14", ["levi/pretrained", "levi", "levi/ft"], check)


def c17(result: TableResult) -> Verdict:
    def check(ids, oods, metric, shift):
        ok = better(metric, ids["levi"], ids["ft_fs"]) and better(metric, oods["levi"], oods["ft_fs"])
        return ok, (f"ID LEVI {fmt(ids['levi'])} vs FT+FS {fmt(ids['ft_fs'])}; OOD {fmt(oods['levi'])} "
                    f"vs {fmt(oods['ft_fs'])}")

    return per_shift(result, "LEVI beats the FT+FS prediction ensemble in ID and OOD", "C17",
                     ["levi", "ft_fs"], check)


CHECKERS: dict[str, Callable[[TableResult], Verdict]] = {
    "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9,
    "C10": c10, "C11": c11, "C12": c12, "C13": c13, "C14": c14, "C15": c15, "C16": c16, "C17": c17,
}


def verdicts(result: TableResult) -> list[Verdict]:
    return [CHECKERS[c](result) for c in result.spec.claims if c in CHECKERS]
