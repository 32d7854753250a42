"""One decision of "better", from each metric's declared direction, used everywhere."""

from __future__ import annotations

import pytest

from levi_core.errors import ConfigError
from levi_core.metrics import better, direction, rank_distinct
from bench.selection import select_record
from bench.styling import ranks


def test_better_follows_the_declared_direction():
    assert direction("rmse") == "lower" and direction("accuracy") == "higher"
    assert better("rmse", 0.9, 1.0) and not better("rmse", 1.0, 0.9)
    assert better("accuracy", 80.0, 70.0) and not better("accuracy", 70.0, 80.0)
    assert better("cost", 1e6, 2e6)
    assert not better("rmse", 1.0, 1.0)  # strictly better
    assert rank_distinct("accuracy", [1.0, 3.0, 3.0, 2.0]) == [3.0, 2.0, 1.0]
    with pytest.raises(ConfigError):
        direction("f1")


def test_selection_takes_the_direction_of_the_metric_the_records_declare():
    def rec(lr, state, acc, metric="accuracy"):
        return {"job_id": str(lr), "job": {"hparams": {"lr": lr}}, "state": state, "metric": metric,
                "metrics": {"id_val": {"accuracy": acc, "rmse": 100 - acc}}}

    # a failed record first (no metric): the group still selects by accuracy, highest wins
    recs = [{"job_id": "f", "job": {"hparams": {"lr": 9}}, "state": "failed", "metric": None},
            rec(1, "done", 70.0), rec(2, "done", 90.0)]
    assert select_record(recs)["job_id"] == "2"
    assert select_record([rec(r["job"]["hparams"]["lr"], "done", 100 - a, "rmse")
                          for r, a in ((recs[1], 70.0), (recs[2], 90.0))])["job_id"] == "1"
    assert select_record(recs[:1]) is None


def test_marks_rank_displayed_means_in_the_metric_direction_with_shared_ties():
    assert ranks({"a": 1.00001, "b": 1.0, "c": 2.0, "d": None}, "rmse") == {"a": 1, "b": 1, "c": 2}
    assert ranks({"a": 70.0, "b": 90.0, "c": 80.0}, "accuracy") == {"b": 1, "c": 2}
