"""Verdicts on the paper's claims (../shared/paper/CLAIMS.md) from reproduced numbers.

Each checker reads a TableResult and returns a Verdict: ``supported``, ``contradicted``,
``partly supported`` (some parts hold, some do not) or ``undecided`` (cells missing). The
detail line always shows the numbers the verdict was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.collect import TableResult
from bench.specs import Shift

SUPPORTED, CONTRADICTED, PARTLY, UNDECIDED = "supported", "contradicted", "partly supported", "undecided"

# C15: "each within a few points of the paper's figure". We read "a few" as 5 accuracy points.
C15_TOLERANCE = 5.0


@dataclass(frozen=True)
class Verdict:
    claim: str
    statement: str
    status: str
    detail: str


def _means(result: TableResult, column: str, methods: list[str]) -> dict[str, float] | None:
    out = {}
    for m in methods:
        mean = result.cell(m, column).mean
        if mean is None:
            return None
        out[m] = mean
    return out


def c15(result: TableResult) -> Verdict:
    statement = ("Synthetic E.8: test accuracy FT 68.9, FS 69.5, LEVI 75.5 (ordering LEVI > FS >= FT; "
                 f"each within {C15_TOLERANCE:g} points of the paper)")
    rows = {"ft": "FT", "fs": "FS", "levi/pretrained": "LEVI"}
    means = _means(result, "ood", list(rows))
    if means is None:
        return Verdict("C15", statement, UNDECIDED, "missing cells: run `bench run synthetic`")
    order_ok = means["levi/pretrained"] > means["fs"] >= means["ft"]
    paper = {m: result.spec.paper[(m, "ood")] for m in rows}
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
    rec = result.extras.get(("linear_toy", "linear_example"))
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


LINEAR_NAMES = {"pretrain": "pre-trained", "scratch": "from-scratch", "finetune": "fine-tuned",
                "true": "true"}


# ------------------------------------------------------------------ per-shift claims
def _mean(result: TableResult, method: str, column: str) -> float | None:
    key = (method, column)
    return result.cells[key].mean if key in result.cells else None


def _better(a: float, b: float, lower: bool) -> bool:
    return a < b if lower else a > b


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"


def per_shift(result: TableResult, statement: str, claim: str, methods: list[str],
              check: Callable[[dict, dict, bool, Shift], tuple[bool, str]],
              shifts: list[str] | None = None) -> Verdict:
    """Apply ``check(id_means, ood_means, lower_is_better, shift)`` to every shift whose cells exist.

    The verdict is supported when it holds on every shift with numbers, contradicted when on
    none, partly supported otherwise; shifts without cells are listed as undecided.
    """
    outcomes, details, missing = [], [], []
    active = {c.key for c in result.columns}
    for shift in result.spec.shifts:
        if shifts is not None and shift.key not in shifts:
            continue
        if f"{shift.key}/id" not in active:
            details.append(f"{shift.label}: not part of preset {result.preset}")
            continue
        ids = {m: _mean(result, m, f"{shift.key}/id") for m in methods}
        oods = {m: _mean(result, m, f"{shift.key}/ood") for m in methods}
        if any(v is None for v in list(ids.values()) + list(oods.values())):
            missing.append(shift.label)
            continue
        ok, why = check(ids, oods, shift.metric == "rmse", shift)
        outcomes.append(ok)
        details.append(f"{shift.label}: {'holds' if ok else 'fails'} ({why})")
    if missing:
        details.append(f"undecided (missing cells): {', '.join(missing)}")
    if not outcomes:
        status = UNDECIDED
    elif all(outcomes):
        status = SUPPORTED
    elif not any(outcomes):
        status = CONTRADICTED
    else:
        status = PARTLY
    return Verdict(claim, statement, status, "; ".join(details))


def _names(ms) -> str:
    from bench.render import display

    return ", ".join(display(m) for m in ms)


def c1(result: TableResult) -> Verdict:
    rows = list(result.rows)

    def check(ids, oods, lower, shift):
        best = min(oods, key=lambda m: oods[m] if lower else -oods[m])
        return (oods["levi"] == oods[best],
                f"LEVI OOD {_fmt(oods['levi'])}, best {_names([best])} {_fmt(oods[best])}")

    return per_shift(result, "LEVI gives the best OOD RMSE in every recommendation shift", "C1",
                     rows, check)


def c2(result: TableResult) -> Verdict:
    rows = list(result.rows)

    def check(ids, oods, lower, shift):
        best = min(ids, key=lambda m: ids[m] if lower else -ids[m])
        std = result.cells[("levi", f"{shift.key}/id")].std or 0.0
        ok = abs(ids["levi"] - ids[best]) <= std
        return ok, f"LEVI ID {_fmt(ids['levi'])} ± {_fmt(std)}, best {_names([best])} {_fmt(ids[best])}"

    return per_shift(result, "LEVI's ID RMSE is the best, or within one seed-std (LEVI's) of it",
                     "C2", rows, check)


def c3(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        light = {m: oods[m] for m in ("ht", "lp", "fs")}
        best = min(light, key=lambda m: light[m] if lower else -light[m])
        return (_better(light[best], oods["ft"], lower),
                f"best of HT/LP/FS: {_names([best])} {_fmt(light[best])} vs FT {_fmt(oods['ft'])}")

    return per_shift(result, "FT is worse OOD than at least one of HT, LP, FS", "C3",
                     ["ft", "ht", "lp", "fs"], check)


def c4(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        ok = all(_better(oods[m], oods["ft"], lower) for m in ("ht", "lp", "fs"))
        return ok, ", ".join(f"{_names([m])} {_fmt(oods[m])}" for m in ("ft", "ht", "lp", "fs"))

    return per_shift(result, "On Amazon product shift FT is worse OOD than all of HT, LP and FS",
                     "C4", ["ft", "ht", "lp", "fs"], check, shifts=["amazon_product"])


GENERALIZATION = ("lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c5(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        beat = [m for m in GENERALIZATION if _better(oods[m], oods["ft"], lower)]
        return len(beat) >= 3, f"{len(beat)} of 4 beat FT OOD {_fmt(oods['ft'])}: {_names(beat) or 'none'}"

    return per_shift(result, "LP→FT, FT+RobustModel, FT+ZeroShot, FT+FS mostly (>= 3 of 4) improve "
                     "FT's OOD", "C5", ["ft", *GENERALIZATION], check)


C6_MARGIN = 0.005  # RMSE: "largely fails to improve" read as an improvement below this margin


def c6(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        gain = oods["ft"] - oods["ft_zeroshot"]
        return gain < C6_MARGIN, f"FT {_fmt(oods['ft'])}, FT+ZeroShot {_fmt(oods['ft_zeroshot'])}, gain {gain:+.4f}"

    return per_shift(result, f"FT+ZeroShot fails to improve FT's OOD on Amazon product (gain < "
                     f"{C6_MARGIN} RMSE)", "C6", ["ft", "ft_zeroshot"], check, shifts=["amazon_product"])


def c7(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        ok = all(not _better(oods[m], oods["ft"], lower) for m in ("ht", "lp", "lp_ft"))
        return ok, ", ".join(f"{_names([m])} {_fmt(oods[m])}" for m in ("ft", "ht", "lp", "lp_ft"))

    return per_shift(result, "Medical: HT, LP and LP→FT do not improve FT's OOD accuracy", "C7",
                     ["ft", "ht", "lp", "lp_ft"], check, shifts=["medical"])


def c8(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        ok = all(_better(oods[m], oods["ft"], lower) for m in ("ht", "lp", "lp_ft"))
        return ok, ", ".join(f"{_names([m])} {_fmt(oods[m])}" for m in ("ft", "ht", "lp", "lp_ft"))

    return per_shift(result, "ImageNet: HT, LP and LP→FT improve FT's OOD accuracy", "C8",
                     ["ft", "ht", "lp", "lp_ft"], check, shifts=["imagenet"])


def c9(result: TableResult) -> Verdict:
    rows = list(result.rows)

    def check(ids, oods, lower, shift):
        best = max(oods, key=lambda m: oods[m])
        ok = oods["levi"] == oods[best] and abs(ids["levi"] - ids["ft"]) <= 1.0
        why = (f"LEVI OOD {_fmt(oods['levi'])} (best {_names([best])} {_fmt(oods[best])}); "
               f"ID LEVI {_fmt(ids['levi'])} vs FT {_fmt(ids['ft'])}")
        return ok, why

    v = per_shift(result, "LEVI has the best OOD accuracy on Medical and ImageNet, ID within 1 "
                  "point of FT; best or second best on each ImageNet OOD set", "C9", rows, check)
    per_set = []
    for col in result.breakdown_cols:
        vals = {m: result.cells[(m, col.key)].mean for m in rows}
        if any(x is None for x in vals.values()):
            continue
        order = sorted(set(vals.values()), reverse=True)
        per_set.append((col.label, order.index(vals["levi"]) < 2))
    if per_set:
        ok_sets = all(ok for _, ok in per_set)
        detail = v.detail + "; per ImageNet OOD set top-2: " + ", ".join(
            f"{name} {'yes' if ok else 'no'}" for name, ok in per_set)
        status = v.status
        if v.status == SUPPORTED and not ok_sets:
            status = PARTLY
        return Verdict(v.claim, v.statement, status, detail)
    return v


BASELINES_C10 = ("ft", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs")


def c10(result: TableResult) -> Verdict:
    statement = ("LEVI on the pre-trained model trains fewer parameters than every baseline (FT, LP→FT, "
                 "FT+RobustModel, FT+ZeroShot, FT+FS); inference FLOPs(LEVI) <= 1.2 x FT; FLOPs(FT+FS) "
                 "about 2 x FT (within 10%)")
    outcomes, details = [], []
    for rec in result.extras.values():
        table = rec.get("extras") or {}
        for scope, data in table.get("scopes", {}).items():
            r = data["rows"]
            if not all(m in r for m in (*BASELINES_C10, "levi/pretrained", "levi")):
                continue
            train_ok = r["levi/pretrained"]["trainable_params"] < min(r[m]["trainable_params"] for m in BASELINES_C10)
            flops = {m: r[m]["flops_xla"] for m in ("ft", "levi", "levi/pretrained", "ft_fs")}
            levi_ok = max(flops["levi"], flops["levi/pretrained"]) <= 1.2 * flops["ft"]
            ratio = flops["ft_fs"] / flops["ft"]
            ens_ok = abs(ratio - 2.0) <= 0.2
            outcomes.append(train_ok and levi_ok and ens_ok)
            details.append(
                f"{table['backbone']} ({scope}): LEVI (pre-trained) trains "
                f"{r['levi/pretrained']['trainable_params'] / 1e6:.2f}M vs min baseline "
                f"{min(r[m]['trainable_params'] for m in BASELINES_C10) / 1e6:.2f}M; FLOPs LEVI/FT = "
                f"{flops['levi'] / flops['ft']:.3f}; FT+FS/FT = {ratio:.2f}")
    if not outcomes:
        return Verdict("C10", statement, UNDECIDED, f"missing: run `bench run {result.spec.name}`")
    status = SUPPORTED if all(outcomes) else CONTRADICTED if not any(outcomes) else PARTLY
    return Verdict("C10", statement, status, "; ".join(details))


def c11(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        ok = _better(ids["levi/lora"], ids["lora"], lower) and _better(oods["levi/lora"], oods["lora"], lower)
        return ok, (f"ID {_fmt(ids['levi/lora'])} vs {_fmt(ids['lora'])}, OOD {_fmt(oods['levi/lora'])} "
                    f"vs {_fmt(oods['lora'])}")

    v = per_shift(result, "LEVI on a LoRA-tuned model beats LoRA alone in ID and OOD (Medical, every "
                  "ImageNet OOD set)", "C11", ["lora", "levi/lora"], check)
    per_set = []
    for col in result.breakdown_cols:
        a, b = (result.cells[(m, col.key)].mean for m in ("levi/lora", "lora"))
        if a is not None and b is not None:
            per_set.append(f"{col.label} {'yes' if a > b else 'no'}")
            if a <= b and v.status == SUPPORTED:
                v = Verdict(v.claim, v.statement, PARTLY, v.detail)
    return Verdict(v.claim, v.statement, v.status,
                   v.detail + ("; per ImageNet OOD set: " + ", ".join(per_set) if per_set else ""))


def c12(result: TableResult) -> Verdict:
    abl = ["a1", "a2", "a3", "a4", "a5"]

    def check(ids, oods, lower, shift):
        import statistics

        worse = lambda a, b: _better(b, a, lower)  # noqa: E731  (a worse than b)
        med_id = statistics.median(ids[m] for m in abl)
        med_ood = statistics.median(oods[m] for m in abl)
        parts = {
            "A1, A2 worse than LEVI in ID and OOD": all(worse(ids[m], ids["levi"]) and worse(oods[m], oods["levi"]) for m in ("a1", "a2")),
            "A3 OOD better than the ablations' median, ID worse than LEVI": (_better(oods["a3"], med_ood, lower) and worse(ids["a3"], ids["levi"])),
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
    rows = list(result.rows)
    shift = result.spec.shifts[0]
    ids = [_mean(result, m, f"{shift.key}/id") for m in rows]
    oods = [_mean(result, m, f"{shift.key}/ood") for m in rows]
    if any(v is None for v in ids + oods):
        return Verdict("C13", statement, UNDECIDED, f"missing cells: run `bench run {result.spec.name}`")
    if len(rows) < 3:
        return Verdict("C13", statement, UNDECIDED,
                       f"{len(rows)} layers: too few for a rank correlation (this preset's backbone)")
    k = list(range(1, len(rows) + 1))
    rho_id, rho_ood = float(spearmanr(k, ids)[0]), float(spearmanr(k, oods)[0])
    ok_id, ok_ood = rho_id < 0, rho_ood > 0
    status = SUPPORTED if ok_id and ok_ood else PARTLY if ok_id or ok_ood else CONTRADICTED
    return Verdict("C13", statement, status,
                   f"{shift.label}, {len(rows)} layers: Spearman(layer, ID RMSE) = {rho_id:+.2f}, "
                   f"Spearman(layer, OOD RMSE) = {rho_ood:+.2f}")


def c14(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        best_id = min(ids, key=lambda m: ids[m] if lower else -ids[m])
        other_ood = min(oods["levi/pretrained"], oods["levi"]) if lower else max(oods["levi/pretrained"], oods["levi"])
        ok = best_id == "levi/ft" and _better(other_ood, oods["levi/ft"], lower)
        return ok, (f"best ID: {_names([best_id])}; OOD pre-trained {_fmt(oods['levi/pretrained'])}, "
                    f"light-tuned {_fmt(oods['levi'])}, fine-tuned {_fmt(oods['levi/ft'])}")

    return per_shift(result, "LEVI on a fine-tuned model has the best ID; on the pre-trained or "
                     "light-tuned model, better OOD", "C14", ["levi/pretrained", "levi", "levi/ft"], check)


def c17(result: TableResult) -> Verdict:
    def check(ids, oods, lower, shift):
        ok = _better(ids["levi"], ids["ft_fs"], lower) and _better(oods["levi"], oods["ft_fs"], lower)
        return ok, (f"ID LEVI {_fmt(ids['levi'])} vs FT+FS {_fmt(ids['ft_fs'])}; OOD {_fmt(oods['levi'])} "
                    f"vs {_fmt(oods['ft_fs'])}")

    return per_shift(result, "LEVI beats the FT+FS prediction ensemble in ID and OOD", "C17",
                     ["levi", "ft_fs"], check)


CHECKERS: dict[str, Callable[[TableResult], Verdict]] = {
    "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9,
    "C10": c10, "C11": c11, "C12": c12, "C13": c13, "C14": c14, "C15": c15, "C16": c16, "C17": c17,
}


def verdicts(result: TableResult) -> list[Verdict]:
    return [CHECKERS[c](result) for c in result.spec.claims if c in CHECKERS]
