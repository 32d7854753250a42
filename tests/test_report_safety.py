"""What `bench report` must never do: crash on a filtered table, overwrite a committed table with
a partial one, or show a different number because a record is unreadable."""

from __future__ import annotations

import dataclasses

import pytest

from bench.claims import CHECKERS, verdicts
from bench.collect import collect
from bench.jobs import Subset
from bench.ledger import Ledger
from bench.specs import TABLES, subset_spec
from bench.sections import MetricGrid


# ------------------------------------------------------------------ claims on a filtered table
@pytest.mark.parametrize("name", [n for n, s in TABLES.items() if s.claims])
def test_every_claim_of_a_table_without_its_grid_cannot_decide_and_never_crashes(tmp_path, name):
    # what a --methods filter that keeps no ranked row leaves of any table
    spec = TABLES[name]
    part = dataclasses.replace(spec, sections=tuple(s for s in spec.sections
                                                    if not isinstance(s, MetricGrid)))
    vs = verdicts(collect(part, "smoke", Ledger(tmp_path / "smoke")))
    assert len(vs) == len([c for c in spec.claims if c in CHECKERS])
    assert all(v.status == "undecided" for v in vs), [(v.claim, v.status) for v in vs]


def test_table1_filtered_to_references_names_the_absent_rows(tmp_path):
    part = subset_spec(TABLES["table1"], Subset.parse(None, "ref/user_movie_bias,ref/mf", "0"))
    assert part.grid is None  # the filter left no ranked row: the grid section is gone
    by_claim = {v.claim: v for v in verdicts(collect(part, "cpu", Ledger(tmp_path / "cpu")))}
    assert by_claim["C1"].status == "undecided"
    assert "cannot decide: this table has no row for levi" in by_claim["C1"].detail
