"""`bench check`: baselines pin a table's numbers; changes beyond tolerance fail."""

from __future__ import annotations

import copy

from bench.check import TOLERANCES, compare


def snap(values):
    return {"values": {k: {"value": v, "metric": m} for k, (v, m) in values.items()}}


BASE = snap({"ft|movielens/ood": (1.0, "rmse"), "levi|medical/id": (80.0, "accuracy"),
             "t5|encoder|ft|flops_xla": (2.0e9, "cost_rel")})


def test_identical_and_within_tolerance_pass():
    assert compare(copy.deepcopy(BASE), BASE) == []
    near = snap({"ft|movielens/ood": (1.0 + TOLERANCES["rmse"] / 2, "rmse"),
                 "levi|medical/id": (80.0 - TOLERANCES["accuracy"] / 2, "accuracy"),
                 "t5|encoder|ft|flops_xla": (2.0e9 * (1 + TOLERANCES["cost_rel"] / 2), "cost_rel")})
    assert compare(near, BASE) == []


def test_regressions_changes_missing_and_new_values_fail():
    cur = snap({"ft|movielens/ood": (1.01, "rmse"),          # worse RMSE: regression
                "levi|medical/id": (82.0, "accuracy"),       # better accuracy: still a change
                "extra|x": (1.0, "rmse")})                   # new; the flops value is missing
    problems = compare(cur, BASE)
    text = "\n".join(problems)
    assert "ft|movielens/ood" in text and "regression" in text
    assert "levi|medical/id" in text and "(change" in text
    assert "t5|encoder|ft|flops_xla: missing" in text
    assert "extra|x: new value" in text
    assert len(problems) == 4


def test_accuracy_drop_is_a_regression():
    cur = snap({"ft|movielens/ood": (1.0, "rmse"), "levi|medical/id": (79.0, "accuracy"),
                "t5|encoder|ft|flops_xla": (2.0e9, "cost_rel")})
    [line] = compare(cur, BASE)
    assert "levi|medical/id" in line and "regression" in line
