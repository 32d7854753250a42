"""Amazon loader on the fixture: the original 15-column TSV(.gz) files."""

import csv
import gzip
from collections import Counter

import numpy as np
import pytest

from levi_core.data import fixtures, load_dataset

CATS = ["watches", "toys", "sports", "music", "jewelry", "furniture", "baby"]


pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # see conftest.py


def raw_rows(folder):
    out = {}
    for p in sorted(folder.glob("amazon_reviews_us_*.tsv*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        out[p.name.split("_")[3]] = out.get(p.name.split("_")[3], []) + rows
    return out


def test_fixture_time_and_product_shift():
    ds = fixtures.fixture_dataset("amazon")
    raw = raw_rows(fixtures.fixture_dir("amazon"))
    years = Counter(int(r["review_date"][:4]) for r in raw["Books"])
    first4, last = sorted(years)[:4], max(years)
    assert ds.info["id_years"] == first4 and ds.info["ood_year"] == last
    assert sorted(ds.ood_roles) == sorted(["ood/time"] + [f"ood/product/{c}" for c in CATS])
    assert sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test")) == sum(years[y] for y in first4)
    assert len(ds.splits["ood/time"]) == years[last]
    for c in CATS:
        assert len(ds.splits[f"ood/product/{c}"]) == len(raw[c.capitalize()])
    by_id = {r["review_id"]: r for rows in raw.values() for r in rows}
    for role, s in ds.splits.items():
        assert s.labels.dtype == np.float32
        for eid, y, text in zip(s.example_ids[:20], s.labels[:20], s.large["text"][:20]):
            r = by_id[eid]
            assert y == float(r["star_rating"])
            assert text == (
                f"When the customer id is {r['customer_id']}, the product title is {r['product_title']}, "
                f"and the product id is {r['product_id']}, what can be the customer rating on this product?:"
            )
            assert r["review_body"] not in text and r["review_headline"] not in text
        if role.startswith("ood/product/"):
            assert (s.small["product_id"] == 0).all()  # other categories' products are unseen
        for k, v in s.small.items():
            assert v.dtype == np.int32 and 0 <= v.min() and v.max() < ds.vocab_sizes[k]
    all_ids = [e for r in ("train", "id_val", "id_test", "ood/time") for e in ds.splits[r].example_ids]
    assert len(all_ids) == len(set(all_ids))


def test_subsampling_and_determinism():
    a = fixtures.fixture_dataset("amazon", max_ood=10, max_id=100, cache=0)
    b = fixtures.fixture_dataset("amazon", max_ood=10, max_id=100, cache=0)
    assert a.fingerprint == b.fingerprint
    assert all(len(a.splits[r]) == 10 for r in a.ood_roles)
    assert sum(len(a.splits[r]) for r in ("train", "id_val", "id_test")) == 100
    c = fixtures.fixture_dataset("amazon", max_ood=10, max_id=100, sample_seed=1, cache=0)
    assert c.fingerprint != a.fingerprint
    d = fixtures.fixture_dataset("amazon", categories="Baby", id_years=2, cache=0)
    assert d.ood_roles == ["ood/product/baby", "ood/time"] and d.info["id_years"] == [2000, 2001]


def test_only_some_books_files(tmp_path):
    src = fixtures.fixture_dir("amazon")
    for p in src.iterdir():
        if "Books_v1_00" not in p.name:
            (tmp_path / p.name).write_bytes(p.read_bytes())
    ds = load_dataset("amazon:cache=0,id_years=2", str(tmp_path))  # v1_01 + v1_02: 2000-2003
    assert ds.info["id_years"] == [2000, 2001] and ds.info["ood_year"] == 2003
