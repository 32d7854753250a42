"""Claim verdicts follow the numbers: the same table flips from supported to contradicted."""

from __future__ import annotations

from bench.claims import verdicts
from bench.collect import collect
from bench.jobs import plan
from bench.runner import expected_settings, job_settings
from bench.ledger import Ledger
from bench.specs import TABLE14


def _write(ledger, id_rmse, ood_rmse):
    """A record for every job of Table 14 under smoke; RMSEs by method, same for every lr/seed."""
    for job in plan(TABLE14, "smoke"):
        ood = {"ood/a": {"rmse": ood_rmse.get(job.method, 2.0)}}
        if job.dataset.startswith("amazon"):
            ood = {"ood/time": {"rmse": ood_rmse.get(job.method, 2.0)},
                   "ood/product/x": {"rmse": ood_rmse.get(job.method, 2.0)}}
        ledger.write({"job_id": job.id, "job": job.fields(), "state": "done", "metric": "rmse",
                      "settings": expected_settings(job_settings(TABLE14, "smoke"), job.dataset),
                      "metrics": {"id_val": {"rmse": 1.0}, "id_test": {"rmse": id_rmse.get(job.method, 2.0)},
                                  **ood}})


def c14(tmp_path, id_rmse, ood_rmse):
    ledger = Ledger(tmp_path / "smoke")
    _write(ledger, id_rmse, ood_rmse)
    [v] = verdicts(collect(TABLE14, "smoke", ledger))
    return v


def test_c14_supported_when_fine_tuned_wins_id_and_others_win_ood(tmp_path):
    v = c14(tmp_path, {"levi/ft": 0.9, "levi": 1.0, "levi/pretrained": 1.1},
            {"levi/ft": 1.3, "levi": 1.2, "levi/pretrained": 1.25})
    assert v.claim == "C14" and v.status == "supported", v.detail


def test_c14_contradicted_when_the_fine_tuned_model_also_wins_ood(tmp_path):
    v = c14(tmp_path, {"levi/ft": 0.9, "levi": 1.0, "levi/pretrained": 1.1},
            {"levi/ft": 1.1, "levi": 1.2, "levi/pretrained": 1.25})
    assert v.status == "contradicted", v.detail
    assert "fine-tuned 1.1000" in v.detail
