"""Claim verdicts follow the numbers, and count a difference only beyond its uncertainty.

Records and predictions are written by hand into a temporary ledger, for a dataset registered
here (``claimtoy``: fixed labels, 200 examples per evaluation split). Each method's predictions
are ``labels + scale * P_m(e)``: ``e`` a fixed normal vector per (seed, role), ``P_m`` a fixed
permutation per method. So a method's RMSE is exactly ``scale * rms(e)``: equal scales give an
exact tie whose paired bootstrap still has a spread (undecided), and scales far apart give a
difference well beyond it. For accuracy (``claimtoy:task=cls``) a method is right on exactly
``scale`` of the examples, at positions set by its permutation.
"""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest

from bench.claims import verdicts
from bench.collect import collect
from bench.jobs import plan, with_dependencies
from bench.ledger import SCHEMA_VERSION, Ledger
from bench.sections import MetricGrid, OodBreakdown, Shift
from bench.specs import TableSpec
from bench.uncertainty import Noise
from levi_core.data.base import Dataset, Split, load_dataset, register_dataset
from levi_core.metrics import compute
from levi_core.predictions import save_eval_keys, save_predictions

N = 200
ROLES = ("id_val", "id_test", "ood/x", "ood/y")


@register_dataset("claimtoy")
def load_claimtoy(options, data_dir):
    n, cls = int(options.get("n", N)), options.get("task") == "cls"
    rng = np.random.default_rng(int(options.get("v", 0)))
    splits = {r: Split(example_ids=np.array([f"{r}-{i}" for i in range(n)]),
                       labels=(rng.integers(0, 10, n).astype(np.int32) if cls
                               else rng.integers(1, 6, n).astype(np.float32)))
              for r in ("train", *ROLES)}
    return Dataset(name="claimtoy", task="classification" if cls else "regression",
                   metric="accuracy" if cls else "rmse", splits=splits, num_classes=10 if cls else None)


def _crc(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def predictions(dataset, method: str, seed: int, scale_of) -> dict[str, np.ndarray]:
    """``scale_of(role) -> scale``: the construction of the module docstring."""
    out = {}
    for role in ROLES:
        y = dataset.splits[role].labels
        n, scale = len(y), scale_of(role)
        perm = np.random.default_rng(_crc(method, role)).permutation(n)
        if dataset.metric == "rmse":
            e = np.random.default_rng(_crc(seed, role)).normal(size=n)
            out[role] = (y + scale * e[perm]).astype(np.float32)
        else:
            right = np.zeros(n, bool)
            right[perm[: int(round(scale * n))]] = True
            out[role] = np.where(right, y, (y + 1) % 10).astype(np.int32)
    return out


def write(tmp_path, spec, scales, preset="smoke", skip=(), per_dataset=None) -> Ledger:
    """Records and predictions for every job of ``spec``: ``scales[method] = (id, ood)``
    (default (1.0, 1.0), accuracy: (0.8, 0.8)); ``per_dataset[dataset id][method]`` overrides;
    datasets in ``skip`` get no records."""
    ledger = Ledger(tmp_path / preset)
    for job in plan(spec, preset):
        if job.dataset in skip:
            continue
        ds = load_dataset(job.dataset)
        default = (1.0, 1.0) if ds.metric == "rmse" else (0.8, 0.8)
        sc = (per_dataset or {}).get(job.dataset, {}).get(job.method, scales.get(job.method, default))
        preds = predictions(ds, job.method, job.seed, lambda r: sc[1] if r.startswith("ood/") else sc[0])
        workdir = ledger.fresh_workdir(job.id)
        save_predictions(workdir, preds)
        save_eval_keys(workdir, ds, preds)
        metrics = {r: {ds.metric: compute(ds.metric, p, ds.splits[r].labels)} for r, p in preds.items()}
        ledger.records_dir.mkdir(parents=True, exist_ok=True)  # as Ledger.write, without fsync
        ledger.record_path(job.id).write_text(json.dumps({
            "job_id": job.id, "job": job.fields(), "state": "done", "metric": ds.metric,
            "metrics": metrics, "dataset_fingerprint": ds.fingerprint, "schema": SCHEMA_VERSION}))
    return ledger


REC = (("movielens", "MovieLens (genre)", "ood/mean"), ("amazon_time", "Amazon (time)", "ood/x"),
       ("amazon_product", "Amazon (product)", "ood/mean"))
VISION = (("medical", "Medical (quality)", "ood/mean"), ("imagenet", "ImageNet (domain)", "ood/mean"))


def spec(rows, claims, kind="rec", datasets=None, breakdown=False, seeds=(0, 1, 2)) -> TableSpec:
    """A table like the paper's, on ``claimtoy`` (one dataset id per shift)."""
    shifts_def = REC if kind == "rec" else VISION
    task = "" if kind == "rec" else "task=cls,"
    datasets = datasets or [f"claimtoy:{task}v={i}" for i in range(len(shifts_def))]
    metric = "rmse" if kind == "rec" else "accuracy"
    shifts = tuple(Shift(k, lab, d, role, metric) for (k, lab, role), d in zip(shifts_def, datasets))
    grid = MetricGrid(rows=tuple(rows), shifts=shifts)
    sections = (grid,)
    if breakdown:
        sections += (OodBreakdown("variants", "per set", datasets[-1], "ood/", metric, of=grid),)
    return TableSpec(name="t", title="t", caption="", sections=sections, seeds=seeds,
                     grids={m: {} for m in with_dependencies(rows)}, claims=tuple(claims))


def verdict(tmp_path, sp, scales, **kw):
    ledger = write(tmp_path, sp, scales, **kw)
    [v] = verdicts(collect(sp, kw.get("preset", "smoke"), ledger))
    return v


T1 = ("ft", "ht", "lp", "fs", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs", "levi")


# ------------------------------------------------------------------ the uncertainty
def test_gap_combines_seed_spread_and_paired_bootstrap(tmp_path):
    sp = spec(("ft", "levi"), ())
    ledger = write(tmp_path, sp, {"levi": (1.0, 0.9)})
    result = collect(sp, "smoke", ledger)
    g = Noise(result).gap("levi", "ft", "amazon_time/ood")
    per_seed = [result.cell("levi", "amazon_time/ood")[f"seed{s}"] - result.cell("ft", "amazon_time/ood")[f"seed{s}"]
                for s in (0, 1, 2)]
    assert g.diff == pytest.approx(np.mean(per_seed))
    assert g.se_seed == pytest.approx(np.std(per_seed, ddof=1) / np.sqrt(3))
    assert g.se == pytest.approx(np.hypot(g.se_boot, g.se_seed))
    assert g.basis == "seeds and a paired bootstrap over 200 examples"
    # the same resamples every time: deterministic
    assert Noise(result).gap("levi", "ft", "amazon_time/ood") == g


def test_bootstrap_matches_the_analytic_standard_error_of_a_paired_accuracy_difference(tmp_path):
    sp = spec(("ft", "levi"), (), kind="vision", seeds=(0,))
    ledger = write(tmp_path, sp, {"levi": (0.8, 0.7)})
    result = collect(sp, "smoke", ledger)
    g = Noise(result, n_boot=2000).gap("levi", "ft", "medical/ood")
    ds = load_dataset("claimtoy:task=cls,v=0")
    sides = []
    for m, scale in (("levi", 0.7), ("ft", 0.8)):
        p = predictions(ds, m, 0, lambda r: scale)
        sides.append(np.stack([100.0 * (p[r] == ds.splits[r].labels) for r in ("ood/x", "ood/y")]))
    d = sides[0] - sides[1]  # per-example differences, per OOD set; the column averages the sets
    analytic = np.sqrt(sum(np.var(x) / len(x) for x in d)) / 2
    assert g.se_seed is None and g.basis == "a paired bootstrap over 400 examples in 2 sets only (1 seed, so no seed spread)"
    assert g.se == pytest.approx(analytic, rel=0.1)


def test_missing_predictions_fall_back_to_the_seed_spread_and_say_so(tmp_path):
    sp = spec(("ft", "levi"), ())
    ledger = write(tmp_path, sp, {"levi": (1.0, 0.9)})
    shutil.rmtree(ledger.root / "artifacts")
    g = Noise(collect(sp, "smoke", ledger)).gap("levi", "ft", "amazon_time/ood")
    assert g.se_boot is None and g.se == g.se_seed
    assert g.basis.startswith("the spread of 3 seeds only (no stored predictions for levi seed 0")


def test_one_seed_without_predictions_decides_nothing(tmp_path):
    sp = spec(("ft", "levi"), ("C1",), seeds=(0,))
    ledger = write(tmp_path, sp, {"levi": (1.0, 0.5)})
    shutil.rmtree(ledger.root / "artifacts")
    [v] = verdicts(collect(sp, "smoke", ledger))
    assert v.status == "undecided", v.detail
    assert "undecidable (no estimate: 1 seed, so no seed spread, and no stored predictions" in v.detail


def test_predictions_that_do_not_reproduce_the_record_are_not_used(tmp_path):
    sp = spec(("ft", "levi"), ())
    ledger = write(tmp_path, sp, {"levi": (1.0, 0.9)})
    job = next(j for j in plan(sp, "smoke") if j.method == "ft" and j.dataset.endswith("v=1"))
    rec = ledger.read(job.id)
    rec["metrics"]["ood/x"]["rmse"] += 0.1
    ledger.write(rec)
    g = Noise(collect(sp, "smoke", ledger)).gap("levi", "ft", "amazon_time/ood")
    assert "do not reproduce its recorded ood/x rmse" in g.basis and g.se == g.se_seed


# ------------------------------------------------------------------ coverage
def test_a_claim_about_several_shifts_says_how_many_ran(tmp_path):
    sp = spec(T1, ("C1",), datasets=["claimtoy:v=0", "amazon", "amazon"])  # cpu has no Amazon
    v = verdict(tmp_path, sp, {"levi": (1.0, 0.5)}, preset="cpu")
    assert v.status == "supported on 1 of 3 shifts (the others not run under this preset)", v.detail
    assert "not run under preset cpu: Amazon (time), Amazon (product)" in v.detail


def test_shifts_without_records_are_named_with_the_command(tmp_path):
    sp = spec(T1, ("C1",))
    v = verdict(tmp_path, sp, {"levi": (1.0, 0.5)}, skip=("claimtoy:v=2",))
    assert v.status == "supported on 2 of 3 shifts (the others have no results yet)", v.detail
    assert "`bench run t --preset smoke`" in v.detail
    assert verdict(tmp_path / "all", sp, {"levi": (1.0, 0.5)}).status == "supported"


# ------------------------------------------------------------------ Table 1 claims
@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_c1_flips_with_the_numbers(tmp_path):
    sp = spec(T1, ("C1",))
    assert verdict(tmp_path / "a", sp, {"levi": (1.0, 0.5)}).status == "supported"
    v = verdict(tmp_path / "b", sp, {"levi": (1.0, 1.01)})
    assert v.status == "undecided", v.detail
    assert "within its uncertainty ±" in v.detail and "; short by " in v.detail
    assert "(seeds and a paired bootstrap over 400 examples in 2 sets)" in v.detail
    assert all(t.shortfall is not None for t in v.evidence)
    assert verdict(tmp_path / "c", sp, {"levi": (1.0, 1.5)}).status == "contradicted"


def test_c1_undecided_on_a_gap_inside_its_uncertainty(tmp_path):
    """The issue's case: a small gap (here 0.001 x rms(e) ~ 0.001 RMSE), 200 examples."""
    sp = spec(("ft", "levi"), ("C1",))
    v = verdict(tmp_path, sp, {"ft": (1.0, 1.001)})
    assert v.status == "undecided", v.detail
    [t] = [t for t in v.evidence if t.column == "amazon_time/ood"]
    assert t.gap.diff == pytest.approx(-0.001, abs=3e-4)
    assert t.uncertainty > 0.05 and t.shortfall == pytest.approx(t.uncertainty - abs(t.margin))
    assert f"LEVI - FT = {t.gap.diff:+.4f} RMSE, within its uncertainty ±{t.uncertainty:.4f}" in v.detail


def test_c2_flips_with_the_numbers(tmp_path):
    sp = spec(T1, ("C2",))
    assert verdict(tmp_path / "a", sp, {"levi": (0.5, 1.0)}).status == "supported"
    assert verdict(tmp_path / "b", sp, {}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {"levi": (1.5, 1.0)}).status == "contradicted"


def test_c3_flips_with_the_numbers(tmp_path):
    sp = spec(("ft", "ht", "lp", "fs"), ("C3",))
    assert verdict(tmp_path / "a", sp, {"lp": (1.0, 0.5)}).status == "supported"
    assert verdict(tmp_path / "b", sp, {}).status == "undecided"
    worse = {m: (1.0, 1.5) for m in ("ht", "lp", "fs")}
    assert verdict(tmp_path / "c", sp, worse).status == "contradicted"


def test_c4_flips_with_the_numbers_on_amazon_product_only(tmp_path):
    sp = spec(("ft", "ht", "lp", "fs"), ("C4",))
    better = {m: (1.0, 0.5) for m in ("ht", "lp", "fs")}
    v = verdict(tmp_path / "a", sp, better)
    assert v.status == "supported" and v.detail.startswith("Amazon (product)"), v.detail
    assert verdict(tmp_path / "b", sp, {**better, "fs": (1.0, 1.0)}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {**better, "fs": (1.0, 1.5)}).status == "contradicted"


def test_c5_flips_with_the_numbers(tmp_path):
    sp = spec(("ft", "lp_ft", "ft_robust", "ft_zeroshot", "ft_fs"), ("C5",))
    three = {m: (1.0, 0.5) for m in ("lp_ft", "ft_robust", "ft_fs")}
    assert verdict(tmp_path / "a", sp, three).status == "supported"
    assert verdict(tmp_path / "b", sp, {**three, "ft_fs": (1.0, 1.0)}).status == "undecided"
    two_worse = {**three, "ft_fs": (1.0, 1.5), "ft_zeroshot": (1.0, 1.5)}
    assert verdict(tmp_path / "c", sp, two_worse).status == "contradicted"


def test_c6_flips_with_the_numbers(tmp_path):
    sp = spec(("ft", "ft_zeroshot"), ("C6",))
    assert verdict(tmp_path / "a", sp, {"ft_zeroshot": (1.0, 1.5)}).status == "supported"
    assert verdict(tmp_path / "b", sp, {}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {"ft_zeroshot": (1.0, 0.5)}).status == "contradicted"


def test_c17_flips_with_the_numbers(tmp_path):
    sp = spec(("levi", "ft_fs"), ("C17",))
    assert verdict(tmp_path / "a", sp, {"levi": (0.5, 0.5)}).status == "supported"
    assert verdict(tmp_path / "b", sp, {"levi": (0.5, 1.0)}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {"levi": (1.5, 1.5)}).status == "contradicted"


# ------------------------------------------------------------------ calibration of a verdict
def test_the_threshold_is_t_with_welch_satterthwaite_degrees_of_freedom():
    from scipy.stats import t

    from bench.uncertainty import Z, critical_value, welch_df

    assert welch_df(0.01, 3, None) == pytest.approx(2.0)            # seeds alone: n - 1
    assert critical_value(welch_df(0.01, 3, None)) == pytest.approx(4.3027, abs=1e-4)
    assert welch_df(None, 1, 0.01) == float("inf") and critical_value(float("inf")) == Z
    # equal parts: se**2 = 2 se_seed**2, so df = (n - 1) * 4
    assert welch_df(0.01, 3, 0.01) == pytest.approx(8.0)
    assert critical_value(8.0) == pytest.approx(t.ppf(0.975, 8))
    # the bootstrap part dominating: the normal quantile in the limit
    assert critical_value(welch_df(1e-4, 3, 1.0)) == pytest.approx(Z, abs=1e-3)


def test_decisions_take_each_part_at_its_own_quantile():
    """Welch-Satterthwaite from estimated variances over-decides with 3 seeds and its lower bound
    n - 1 is needlessly deaf (the calibration benchmark); a decision takes the seed part at
    t(n - 1) and the bootstrap part at the normal quantile."""
    from bench.uncertainty import DF_RULE, Gap, decision_df

    from bench.uncertainty import Z, critical_for

    assert DF_RULE == "parts"
    assert decision_df(0.01, 3, 0.01, "seeds") == 2.0
    assert decision_df(0.01, 3, 0.01, "welch") == pytest.approx(8.0)
    assert decision_df(None, 1, 0.01) == float("inf")
    # each part at its own quantile: t(0.975, 2) = 4.303 for the seeds, 1.96 for the bootstrap
    g = Gap("a", "b", "c", "rmse", 0.0, 0.05, 0.03, 0.04, 3, None, "")
    assert g.critical * g.se == pytest.approx(((4.3027 * 0.03) ** 2 + (Z * 0.04) ** 2) ** 0.5, rel=1e-4)
    assert critical_for(0.01, 3, 0.0) == pytest.approx(4.3027, abs=1e-4)   # seeds alone: t
    assert critical_for(0.0, 3, 0.01) == pytest.approx(Z)                  # bootstrap alone: z
    assert critical_for(None, 1, 0.01) == pytest.approx(Z)


def test_a_gap_of_three_seed_errors_is_not_decided_with_three_seeds_alone(tmp_path):
    """With 3 seeds and no bootstrap, |d| = 3 se (beyond 1.96, below t(0.975, 2) = 4.30) is open."""
    from bench.verdicts import OPEN, Test
    from bench.uncertainty import Gap

    g = Gap("levi", "ft", "c", "rmse", diff=-0.03, se=0.01, se_seed=0.01, se_boot=None, n_seeds=3,
            n_examples=None, basis="the spread of 3 seeds only")
    assert Test("levi", "ft", "c", g).state == OPEN
    assert "within its uncertainty ±0.0430" in Test("levi", "ft", "c", g).text()


def test_overlapping_sets_are_resampled_as_their_union():
    """Two OOD sets holding the same examples: the mean over them varies exactly as one set does
    (resampling each on its own would halve its variance)."""
    from bench.uncertainty import union_bootstrap

    rng = np.random.default_rng(0)
    ids = np.array([f"e{i}" for i in range(300)])
    v = rng.normal(size=(2, 300)) ** 2
    one = union_bootstrap("rmse", {"ood/a": (ids, v)}, 500, "x")
    both = union_bootstrap("rmse", {"ood/a": (ids, v), "ood/b": (ids[::-1], v[:, ::-1])}, 500, "x")
    np.testing.assert_allclose(both, one, rtol=1e-12)
    # disjoint sets: about half the variance of one set of the same size
    ids2 = np.array([f"f{i}" for i in range(300)])
    apart = union_bootstrap("rmse", {"ood/a": (ids, v), "ood/b": (ids2, v)}, 2000, "y")
    assert 0.35 < apart.var(axis=1).mean() / one.var(axis=1).mean() < 0.65


def test_verdicts_come_from_the_records_alone(tmp_path, monkeypatch):
    """The bootstrap reads the labels each job stored: with the dataset unloadable, the gaps are
    the same to the bit; a record without stored labels is named, not silently weaker."""
    import levi_core.data
    import levi_core.data.base

    sp = spec(("ft", "levi"), ("C1",))
    ledger = write(tmp_path, sp, {"levi": (1.0, 0.9)})
    before = Noise(collect(sp, "smoke", ledger)).gap("levi", "ft", "movielens/ood")

    def unavailable(*a, **k):
        raise AssertionError("the report reloaded a dataset")

    monkeypatch.setattr(levi_core.data, "load_dataset", unavailable)
    monkeypatch.setattr(levi_core.data.base, "load_dataset", unavailable)
    after = Noise(collect(sp, "smoke", ledger)).gap("levi", "ft", "movielens/ood")
    assert after == before and after.se_boot is not None
    job = next(j for j in plan(sp, "smoke") if j.method == "ft" and j.seed == 1 and j.dataset.endswith("v=0"))
    (ledger.artifacts_dir(job.id) / "eval_keys.npz").unlink()
    g = Noise(collect(sp, "smoke", ledger)).gap("levi", "ft", "movielens/ood")
    assert g.se_boot is None and "ft seed 1 stores no labels for its predictions" in g.basis
