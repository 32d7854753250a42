"""Claims C7-C16: each verdict flips between supported, undecided and contradicted as only the
numbers change (records and predictions built as in test_claims.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from bench.claims import expected_sq_error, verdicts
from bench.collect import collect
from bench.jobs import Job, with_dependencies
from bench.ledger import Ledger
from bench.sections import Column, CostTable, ExactTable, LayerCurve, MetricGrid, Shift, layer_rows
from bench.specs import TableSpec
from levi_core import linear_example
from test_claims import spec, verdict, write

T2 = ("ft", "ht", "lp", "lp_ft", "ft_robust", "ft_zeroshot", "levi")


# ------------------------------------------------------------------ Tables 2, 4
def test_c7_flips_with_the_numbers_on_medical_only(tmp_path):
    sp = spec(("ft", "ht", "lp", "lp_ft"), ("C7",), kind="vision")
    worse = {m: (0.8, 0.5) for m in ("ht", "lp", "lp_ft")}
    v = verdict(tmp_path / "a", sp, worse)
    assert v.status == "supported" and v.detail.startswith("Medical (quality)"), v.detail
    assert verdict(tmp_path / "b", sp, {**worse, "lp": (0.8, 0.8)}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {m: (0.8, 0.95) for m in worse}).status == "contradicted"


def test_c8_flips_with_the_numbers_on_imagenet_only(tmp_path):
    sp = spec(("ft", "ht", "lp", "lp_ft"), ("C8",), kind="vision")
    better = {m: (0.8, 0.95) for m in ("ht", "lp", "lp_ft")}
    v = verdict(tmp_path / "a", sp, better)
    assert v.status == "supported" and v.detail.startswith("ImageNet (domain)"), v.detail
    assert verdict(tmp_path / "b", sp, {}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {m: (0.8, 0.5) for m in better}).status == "contradicted"


def test_c9_flips_with_the_numbers_and_a_better_id_never_fails_it(tmp_path):
    sp = spec(T2, ("C9",), kind="vision", breakdown=True)
    # LEVI's ID far above FT's: the one-sided ID clause holds
    v = verdict(tmp_path / "a", sp, {"levi": (0.95, 0.95)})
    assert v.status == "supported", v.detail
    assert "top 2 on x: holds" in v.detail and "top 2 on y: holds" in v.detail
    assert "()" not in v.detail  # a part with nothing to add says so without empty brackets
    assert verdict(tmp_path / "b", sp, {"levi": (0.95, 0.8)}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {"levi": (0.95, 0.5)}).status == "contradicted"
    # best OOD but ID far below FT's: fails
    assert verdict(tmp_path / "d", sp, {"levi": (0.5, 0.95)}).status == "contradicted"


def test_c9_per_set_rank_can_make_it_partly_supported(tmp_path):
    sp = spec(T2, ("C9",), kind="vision", breakdown=True)
    datasets = {"claimtoy:task=cls,v=1": {"ft": (0.8, 0.97), "ht": (0.8, 0.97)}}
    v = verdict(tmp_path, sp, {"levi": (0.95, 0.9)}, per_dataset=datasets)
    assert v.status == "partly supported", v.detail
    assert v.detail.startswith("Medical (quality): holds") and "ImageNet (domain): fails" in v.detail


def test_c11_flips_with_the_numbers(tmp_path):
    sp = spec(("lora", "levi/lora"), ("C11",), kind="vision", breakdown=True)
    assert verdict(tmp_path / "a", sp, {"levi/lora": (0.95, 0.95)}).status == "supported"
    assert verdict(tmp_path / "b", sp, {"levi/lora": (0.95, 0.8)}).status == "undecided"
    assert verdict(tmp_path / "c", sp, {"levi/lora": (0.5, 0.5)}).status == "contradicted"


# ------------------------------------------------------------------ Tables 5, 14
ABL = ("a1", "a2", "a3", "a4", "a5", "levi")
ABL_OK = {"levi": (0.5, 0.5), "a1": (1.5, 1.5), "a2": (1.5, 1.5), "a3": (1.5, 0.6),
          "a4": (0.6, 1.5), "a5": (0.6, 1.5)}


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_c12_flips_with_the_numbers(tmp_path):
    sp = spec(ABL, ("C12",))
    assert verdict(tmp_path / "a", sp, ABL_OK).status == "supported"
    assert verdict(tmp_path / "b", sp, {}).status == "undecided"
    v = verdict(tmp_path / "c", sp, {**ABL_OK, "a3": (0.4, 1.5)})  # A3: best ID, worst OOD
    assert v.status == "contradicted", v.detail
    assert "A3 OOD better than the ablations' median, ID worse than LEVI: fails" in v.detail


def test_c14_flips_with_the_numbers_and_needs_both_variants(tmp_path):
    sp = spec(("levi/pretrained", "levi", "levi/ft"), ("C14",))
    ok = {"levi/ft": (0.5, 1.5)}
    assert verdict(tmp_path / "a", sp, ok).status == "supported"
    assert verdict(tmp_path / "b", sp, {**ok, "levi": (1.0, 1.5)}).status == "undecided"
    # the pre-trained variant beats the fine-tuned one OOD, the light-tuned one does not
    v = verdict(tmp_path / "c", sp, {**ok, "levi": (1.0, 2.0)})
    assert v.status == "contradicted", v.detail
    assert "pre-trained and light-tuned both beat fine-tuned OOD: fails" in v.detail


# ------------------------------------------------------------------ Fig. 4
def test_c13_flips_with_the_numbers(tmp_path):
    rows = layer_rows("cpu")
    assert len(rows) >= 3
    sp = TableSpec(name="f", title="f", caption="", claims=("C13",),
                   sections=(LayerCurve(shifts=(Shift("movielens", "MovieLens (genre)", "claimtoy:v=0",
                                                      "ood/mean", "rmse"),)),),
                   grids={m: {} for m in with_dependencies(rows)})

    def run(path, id_step, ood_step):
        scales = {m: (1.5 + id_step * k, 1.0 + ood_step * k) for k, m in enumerate(rows)}
        return verdict(path, sp, scales, preset="cpu")

    v = run(tmp_path / "a", -0.1, 0.1)  # later layers: lower ID RMSE, higher OOD RMSE
    assert v.status == "supported", v.detail
    assert "95% interval" in v.detail and "resampled seeds and examples" in v.detail
    assert run(tmp_path / "b", -0.1, 0.0).status == "undecided"
    assert run(tmp_path / "c", 0.1, -0.1).status == "contradicted"


# ------------------------------------------------------------------ costs (deterministic)
def cost_record(levi_infer: float, ens_flops: float = 2.0, levi_train: float = 1e5,
                levi_flops: float = 1.1) -> dict:
    def row(train, infer, flops):
        return {"trainable_params": train, "inference_params": infer, "flops_xla": flops,
                "flops_analytic": flops, "macs_analytic": flops / 2}

    rows = {m: row(6e7, 6e7, 1e9) for m in ("ft", "lp_ft", "ft_robust", "ft_zeroshot")}
    rows["ft_fs"] = row(1.2e8, 1.2e8, ens_flops * 1e9)
    rows["levi"] = row(levi_train, levi_infer * 6e7, levi_flops * 1e9)
    rows["levi/pretrained"] = row(levi_train, levi_infer * 6e7, levi_flops * 1e9)
    return {"backbone": "t5-small", "input": "x", "convention": "c",
            "scopes": {"encoder": {"rows": rows, "large_model": {"params": 6e7, "flops_xla": 1e9,
                                                                 "macs_analytic": 5e8}}}}


def cost_verdict(tmp_path, extras):
    sp = TableSpec(name="c", title="c", caption="", seeds=(0,), claims=("C10",),
                   sections=(CostTable(("ft", "levi"), ("t5-small",)),))
    ledger = Ledger(tmp_path / "smoke")
    if extras is not None:
        job = Job.make("costs:backbone=t5-small", "cost_analysis", 0, {}, "smoke")
        ledger.write({"job_id": job.id, "job": job.fields(), "state": "done", "metrics": {},
                      "extras": extras})
    [v] = verdicts(collect(sp, "smoke", ledger))
    return v


def test_c10_inference_parameters_decide_and_the_ensemble_ratio_is_only_shown(tmp_path):
    v = cost_verdict(tmp_path / "a", cost_record(levi_infer=1.3))
    assert v.status == "supported", v.detail
    assert "inference params LEVI/FT = 1.300 (yes)" in v.detail
    assert "for scale, not evidence: FLOPs FT+FS/FT = 2.00" in v.detail
    # the FT+FS ratio cannot change the verdict
    assert cost_verdict(tmp_path / "b", cost_record(1.3, ens_flops=3.0)).status == "supported"
    v = cost_verdict(tmp_path / "c", cost_record(levi_infer=1.8))  # well above one large model
    assert v.status == "partly supported" and "inference params LEVI/FT = 1.800 (no)" in v.detail
    v = cost_verdict(tmp_path / "d", cost_record(levi_infer=1.8, levi_train=1e9))
    assert v.status == "partly supported"  # FLOPs still hold
    v = cost_verdict(tmp_path / "f", cost_record(levi_infer=1.8, levi_train=1e9, levi_flops=1.5))
    assert v.status == "contradicted" and "inference FLOPs LEVI/FT = 1.500 (no)" in v.detail
    assert cost_verdict(tmp_path / "e", None).status == "undecided"


# ------------------------------------------------------------------ synthetic (E.8, Appendix B)
SYN = "claimtoy:task=cls,n=2000"


def test_c15_flips_with_the_numbers(tmp_path):
    grid = MetricGrid(rows=("ft", "fs", "levi/pretrained"),
                      columns=(Column("id", "ID", SYN, "id_test", "accuracy"),
                               Column("ood", "OOD", SYN, "ood/x", "accuracy")),
                      paper={("ft", "ood"): 68.9, ("fs", "ood"): 69.5, ("levi/pretrained", "ood"): 75.5})
    sp = TableSpec(name="s", title="s", caption="", sections=(grid,), claims=("C15",),
                   grids={m: {} for m in with_dependencies(grid.rows)})

    def run(path, ft, fs, levi):
        return verdict(path, sp, {"ft": (0.8, ft), "fs": (0.8, fs), "levi/pretrained": (0.8, levi)})

    assert run(tmp_path / "a", 0.66, 0.72, 0.78).status == "supported"
    v = run(tmp_path / "b", 0.689, 0.695, 0.755)  # the paper's own FS - FT gap: 0.6 points
    assert v.status == "undecided" and "FS - FT = +0.60 points, within its uncertainty" in v.detail
    assert run(tmp_path / "c", 0.689, 0.695, 0.5).status == "contradicted"


def test_c16_is_illustrated_with_the_expected_error_equal_for_all_three(tmp_path):
    sp = TableSpec(name="l", title="l", caption="", seeds=(0,), claims=("C16",),
                   sections=(ExactTable("linear_toy", "linear_example"),))

    def run(path, extras):
        ledger = Ledger(path)
        if extras is not None:
            job = Job.make("linear_toy", "linear_example", 0, {}, "smoke")
            ledger.write({"job_id": job.id, "job": job.fields(), "state": "done", "metrics": {},
                          "extras": extras})
        [v] = verdicts(collect(sp, "smoke", ledger))
        return v

    v = run(tmp_path / "a", linear_example.report())
    assert v.status == "illustrated", v.detail
    assert "pre-trained 2, from-scratch 2, fine-tuned 2" in v.detail
    assert "FT can be worse, not that it must" in v.detail
    assert run(tmp_path / "b", {**linear_example.report(), "c16_finetune_worse_than_both": False}
               ).status == "not illustrated"
    assert run(tmp_path / "c", None).status == "undecided"


@pytest.mark.parametrize("w, expected", [(["1", "1", "1", "1", "1"], 2), (["0", "1", "1", "1", "0"], 0),
                                         (["1/2", "1", "1", "1", "0"], Fraction(1, 4))])
def test_expected_squared_error_is_the_squared_distance_to_the_true_weights(w, expected):
    assert expected_sq_error(w, ["0", "1", "1", "1", "0"]) == expected
