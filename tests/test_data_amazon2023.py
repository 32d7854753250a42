"""Amazon on the Amazon Reviews 2023 files (fixture=2023): roles, clipping, inputs, auto-detection,
one pass per large file, cache reuse. The expectations are computed here from the raw fixture
files, independently of the loader."""

import datetime as dt
import gzip
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from levi_core.data import cache  # noqa: E402
from levi_core.data import amazon2023, common, fixtures, load_dataset
from levi_core.data.describe import describe

pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # see conftest.py

UNTIL_MS = int(dt.datetime(2015, 9, 1, tzinfo=dt.timezone.utc).timestamp() * 1000) - 1


def read(path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def raw(folder, category):
    csv = next(p for p in folder.iterdir() if p.name.split(".")[0] == category and ".csv" in p.name)
    meta = next(p for p in folder.iterdir() if p.name.split(".")[0] == f"meta_{category}")
    lines = read(csv)
    assert lines[0] == "user_id,parent_asin,rating,timestamp"
    rows = [dict(zip(lines[0].split(","), ln.split(","))) for ln in lines[1:]]
    products = {}
    for ln in read(meta):
        rec = json.loads(ln)
        products[rec["parent_asin"]] = rec
    return rows, products


def expected_role(cats):
    below = cats[1:]
    if "Watches" in below:
        return "watches"
    if "Jewelry" in below:
        return "jewelry"
    if len(cats) > 1 and cats[1] == "Furniture":
        return "furniture"
    return None


def year(ms):
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.timezone.utc).year


def test_roles_clipping_and_inputs():
    ds = fixtures.fixture_dataset("amazon", fixture=2023)
    folder = fixtures.fixture_dir("amazon2023")
    books, books_meta = raw(folder, "Books")
    kept = [r for r in books if int(r["timestamp"]) <= UNTIL_MS]
    assert len(kept) < len(books)  # the fixture has ratings after 2015-08-31
    years = Counter(year(r["timestamp"]) for r in kept)
    first4, last = sorted(years)[:4], max(years)
    assert ds.info["id_years"] == first4 and ds.info["ood_year"] == last == 2015
    assert sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test")) == sum(years[y] for y in first4)
    assert len(ds.splits["ood/time"]) == years[last]
    expected = {}
    meta_all = dict(books_meta)
    for role, (cat, rule) in amazon2023.ROLES.items():
        rows, meta = raw(folder, cat)
        meta_all.update(meta)
        keep = [r for r in rows if int(r["timestamp"]) <= UNTIL_MS
                and (rule is None or expected_role(meta.get(r["parent_asin"], {}).get("categories", [])) == role)]
        expected[f"ood/product/{role}"] = keep
        assert keep, role
    for role, rows in expected.items():
        assert len(ds.splits[role]) == len(rows), role
        assert set(ds.splits[role].example_ids) == {f"{r['user_id']}_{r['parent_asin']}_{r['timestamp']}" for r in rows}
    assert sorted(ds.ood_roles) == sorted(["ood/time"] + list(expected))
    by_id = {f"{r['user_id']}_{r['parent_asin']}_{r['timestamp']}": r
             for cat in ["Books"] + [c for c, _ in amazon2023.ROLES.values()] for r in raw(folder, cat)[0]}
    blank = 0
    for role, s in ds.splits.items():
        assert s.labels.dtype == np.float32
        for eid, y, text in zip(s.example_ids, s.labels, s.large["text"]):
            r = by_id[eid]
            assert y == float(r["rating"])
            title = meta_all.get(r["parent_asin"], {}).get("title")
            title = " ".join(str(title).split()) if title is not None else ""
            blank += title == ""
            assert text == (
                f"When the customer id is {r['user_id']}, the product title is {title}, "
                f"and the product id is {r['parent_asin']}, what can be the customer rating on this product?:"
            )
        if role.startswith("ood/product/"):
            assert (s.small["product_id"] == 0).all()
        for k, v in s.small.items():
            assert v.dtype == np.int32 and 0 <= v.min() and v.max() < ds.vocab_sizes[k]
    assert blank > 0  # null / absent titles and products without meta are in the fixture
    assert ds.info["source"] == "amazon2023" and sum(ds.info["clipped_rows"].values()) > 0
    lo, hi = ds.info["date_ranges"]["ood/time"]
    assert lo.startswith("2015-") and hi <= "2015-08-31"


def test_full_span_and_options():
    full = fixtures.fixture_dataset("amazon", fixture=2023, until="none", cache=0)
    assert full.info["ood_year"] == 2016 and sum(full.info["clipped_rows"].values()) == 0
    some = fixtures.fixture_dataset("amazon", fixture=2023, categories="Baby+Furniture", max_ood=10,
                                    max_id=50, cache=0)
    assert some.ood_roles == ["ood/product/baby", "ood/product/furniture", "ood/time"]
    assert [len(some.splits[r]) for r in some.ood_roles] == [10, 10, 10]
    again = fixtures.fixture_dataset("amazon", fixture=2023, categories="Baby+Furniture", max_ood=10,
                                     max_id=50, cache=0)
    assert again.fingerprint == some.fingerprint


def test_role_rule():
    top = "Clothing, Shoes & Jewelry"
    assert amazon2023.role_of([top, "Women", "Watches"]) == "watches"
    assert amazon2023.role_of([top, "Men", "Jewelry", "Rings"]) == "jewelry"
    assert amazon2023.role_of([top, "Jewelry", "Watches"]) == "watches"  # both: a watch
    assert amazon2023.role_of([top, "Shoes", "Jewelry Boxes"]) is None
    assert amazon2023.role_of([top]) is None and amazon2023.role_of([]) is None
    assert amazon2023.role_of(None) is None and amazon2023.role_of("Watches") is None
    assert amazon2023.role_of(["Home & Kitchen", "Furniture", "Beds"]) == "furniture"
    assert amazon2023.role_of(["Home & Kitchen", "Bedding", "Furniture"]) is None


def test_auto_detect_hub_layout_and_one_pass(tmp_path, monkeypatch):
    """A folder as `huggingface-cli download --local-dir` leaves it is recognised by source=auto;
    each category's files are streamed once (Books' ratings twice: years, then the sample)."""
    src = fixtures.fixture_dir("amazon2023")
    (tmp_path / amazon2023.HUB_CSV_DIR).mkdir(parents=True)
    (tmp_path / amazon2023.HUB_META_DIR).mkdir(parents=True)
    for p in src.iterdir():
        sub = amazon2023.HUB_META_DIR if p.name.startswith("meta_") else amazon2023.HUB_CSV_DIR
        shutil.copy(p, tmp_path / sub / p.name)
    opened = Counter()
    real_open = common.open_text

    def counting(path, desc=None):
        opened[path.name] += 1
        return real_open(path, desc)

    monkeypatch.setattr(common, "open_text", counting)
    ds = load_dataset("amazon:cache=0", str(tmp_path))
    n = dict(opened)  # this load's opens (the comparison load below opens files too)
    assert ds.fingerprint == fixtures.fixture_dataset("amazon", fixture=2023).fingerprint
    # one first-line check per file, then the streaming passes
    assert n["Clothing_Shoes_and_Jewelry.csv.gz"] == 1 + 1
    assert n["meta_Clothing_Shoes_and_Jewelry.jsonl.gz"] == 1 + 1
    assert n["Home_and_Kitchen.csv"] == 1 + 1 and n["meta_Home_and_Kitchen.jsonl.gz"] == 1 + 1
    assert n["Books.csv.gz"] == 1 + 2 and n["meta_Books.jsonl"] == 1 + 1


def test_second_load_is_cached_and_describe():
    before = cache.BUILD_COUNTS.get("amazon", 0)
    a = load_dataset("amazon:fixture=2023,max_ood=7")
    b = load_dataset("amazon:fixture=2023,max_ood=7")
    assert cache.BUILD_COUNTS.get("amazon", 0) == before + 1 and a.fingerprint == b.fingerprint
    text = describe("amazon:fixture=2023,max_ood=7")
    line = next(ln for ln in text.splitlines() if ln.startswith("ood/time "))
    n, fp, dates = line.split()[1:4]
    assert n == "7" and dates.startswith("2015-") and ".." in dates
    assert "Amazon Reviews 2023, ratings up to 2015-08-31" in text


def test_data_dir_name_prefix():
    folder = str(fixtures.fixture_dir("amazon2023"))
    assert describe("amazon", f"amazon={folder}") == describe("amazon", folder)


def test_progress_bar_streams_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEVI_PROGRESS", "1")
    path = fixtures.fixture_dir("amazon2023") / "Books.csv.gz"
    with common.open_text(path) as f:
        with_bar = f.read()
    monkeypatch.setenv("LEVI_PROGRESS", "0")
    with common.open_text(path) as f:
        assert f.read() == with_bar
    assert "Books.csv.gz" in capsys.readouterr().err
