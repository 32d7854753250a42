"""The method catalog is the one list: every method states its kind and label, the lists of
methods elsewhere are derived from it, and every method is costed or of a kind the cost tables
leave out (a method without a cost rule fails loudly)."""

from __future__ import annotations

import pytest

from levi_core import costs
from levi_core.errors import ConfigError
from levi_core.method_kinds import UNCOSTED, Kind
from levi_core.methods import Method, get_method
from levi_core.methods.catalog import LARGE_GRIDS, LARGE_TRAINING, METHODS, label, of_kind, summary


def test_every_catalog_method_states_its_kind_and_label():
    for m in METHODS:
        assert isinstance(m.kind, Kind), m.name
        assert label(m.name) == (m.label or m.name)
        assert (m.tuning is not None) == (m.kind is Kind.TRAINS_LARGE), m.name
    assert get_method("layer/3").kind is Kind.TRAINS_SMALL and label("layer/3") == "Layer 3"
    assert label("lp_ft") == "LP→FT" and label("not_a_method") == "not_a_method"


def test_a_tuning_mode_goes_with_training_the_large_model_only():
    with pytest.raises(ConfigError, match="tuning mode is stated exactly when"):
        Method("x", "x", kind=Kind.TRAINS_SMALL, tuning="all")
    with pytest.raises(ConfigError, match="tuning mode is stated exactly when"):
        Method("x", "x", kind=Kind.TRAINS_LARGE)
    with pytest.raises(ConfigError, match="not one of"):
        Method("x", "x", kind=Kind.TRAINS_LARGE, tuning="most")


def test_the_derived_lists_follow_the_kinds():
    """The classification the presets, the claims' budget note, ``bench plan`` and the notes'
    summaries rest on; a change here moves job ids (the presets' grids) or report text."""
    from bench.presets import PRESETS
    from levi_core.methods import standard

    assert LARGE_TRAINING == ("ft", "ht", "fs", "lp_ft", "lora", "a1")
    assert LARGE_GRIDS == ("ft", "ht", "fs", "lp_ft", "lora")  # a1 reuses the selected ft's lr
    assert PRESETS["cpu"].select_on_seed0 == LARGE_GRIDS
    assert standard.MODES == {"ft": "all", "ht": "half", "fs": "all", "lp_ft": "all", "lora": "lora"}
    assert set(standard.KEEPS_STATES) == {"ft", "ht", "lora"}
    assert of_kind(Kind.COMPOSITE) == ("ft_robust", "ft_zeroshot", "ft_fs", "a2")
    assert summary(Kind.TRAINS_SMALL) == "LP, LEVI, A3-A5, per-layer"  # the tables' notes
    assert all(get_method(m).composite for m in of_kind(Kind.COMPOSITE))


def test_every_catalog_method_is_costed_or_of_an_uncosted_kind():
    for m in METHODS:
        if m.kind in UNCOSTED:
            with pytest.raises(ConfigError, match="no cost rule"):
                costs.rule_for(m)
        else:
            assert callable(costs.rule_for(m)), m.name
    assert set(costs.RULES) <= {m.name for m in METHODS}, "a rule for a method the catalog lacks"


def test_a_method_without_a_cost_rule_fails_loudly():
    new = Method("new_heads", "a new small-model method", {"lr": (1e-3,)}, kind=Kind.TRAINS_SMALL)
    with pytest.raises(ConfigError, match="no cost rule for method 'new_heads'"):
        costs.rule_for(new)
    with pytest.raises(ConfigError, match="no cost rule for method 'plugin'"):
        costs.rule_for(Method("plugin", "a plugin's method that states no kind"))
    with pytest.raises(ConfigError, match="no cost rule for method 'new_heads'"):
        costs.method_costs("bert-tiny", METHODS + (new,), seq_len=8, methods=("ft", "new_heads"))


def test_the_cost_table_fails_on_a_row_its_record_does_not_cost():
    from bench.sections.record_tables import CostTable, cost_frame

    row = {f: 1.0 for f in ("trainable_params", "inference_params", "flops_xla", "flops_analytic",
                            "macs_analytic")}
    record = {"extras": {"backbone": "t5-small", "input": "x", "convention": "c", "scopes": {
        "encoder": {"rows": {"ft": row}, "large_model": {"params": 1, "flops_xla": 1,
                                                         "macs_analytic": 1}}}}}
    frame = cost_frame([record])
    assert "FT" in CostTable(("ft",), ("t5-small",)).markdown(frame, None)
    with pytest.raises(ConfigError, match="no cost row for levi in the record of t5-small"):
        CostTable(("ft", "levi"), ("t5-small",)).markdown(frame, None)
