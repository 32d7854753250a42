"""Bad input gives one clear DataError (naming the expected files and where to put them), fast."""

import gzip
import shutil
import time

import pytest

from levi_core.data import common, fixtures, load_dataset
from levi_core.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "errors-cache"))
    empty = tmp_path_factory.getbasetemp() / "empty-home"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))
    monkeypatch.setenv("HOME", str(empty))  # no ~/tensorflow_datasets to fall back on
    monkeypatch.setenv("LEVI_MOVIELENS_DIR", "none")  # nor the shared genuine MovieLens copy
    monkeypatch.setenv(common.OFFLINE_ENV, "1")  # never a download, even where a network answers


def fails(dataset_id, data_dir, *needles, exc=DataError):
    t = time.perf_counter()
    with pytest.raises(exc) as info:
        load_dataset(dataset_id, None if data_dir is None else str(data_dir))
    assert time.perf_counter() - t < 5
    msg = str(info.value)
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def copy_fixture(name, dst):
    shutil.copytree(fixtures.fixture_dir(name), dst)
    return dst


def test_movielens_missing_dir(tmp_path):
    fails("movielens", tmp_path / "nope", "u.data", "u.item", "u.user", "--data-dir", "does not exist")
    fails("movielens", None, "u.data", "no --data-dir given", "download=1")
    fails("movielens", tmp_path, "u.data", "u.genre", "u.occupation", "movielens/100k-ratings")


def test_movielens_incomplete_and_corrupt(tmp_path):
    d = copy_fixture("movielens", tmp_path / "ml")
    (d / "u.item").unlink()
    msg = fails("movielens", d, f"u.item is missing from {str(d)!r}", "ml-100k download")
    assert not any(f in msg for f in ("u.data", "u.user", "u.genre", "u.occupation"))  # named alone
    (d / "u.user").unlink()
    fails("movielens", d, "u.item, u.user are missing from")
    d = copy_fixture("movielens", tmp_path / "ml2")
    with open(d / "u.data", "a") as f:
        f.write("this is not a rating row\n")
    fails("movielens:cache=0", d, "u.data", "line 4001", "corrupt")
    d = copy_fixture("movielens", tmp_path / "ml3")
    (d / "u.item").write_bytes((d / "u.item").read_bytes().replace(b"|0|", b"|", 1))
    fails("movielens:cache=0", d, "u.item", "line 1")


def test_movielens_download_without_network(tmp_path, monkeypatch):
    monkeypatch.delenv(common.OFFLINE_ENV)
    monkeypatch.setattr(common, "network_available", lambda *a, **k: False)
    msg = fails("movielens:download=1", tmp_path, "no network", "--data-dir")
    assert "ml-100k" in msg
    # the default (download=auto) offline: today's missing-files error, saying why nothing was tried
    msg = fails("movielens", None, "u.data", "no --data-dir given", "files.grouplens.org is unreachable")
    assert "No download was tried" in msg


def test_offline_env_skips_the_network_probe(tmp_path, monkeypatch):
    probes = []
    monkeypatch.setattr(common, "network_available", lambda *a, **k: probes.append(a) or True)
    msg = fails("movielens", tmp_path, "u.data", common.OFFLINE_ENV)
    assert "No download was tried" in msg
    fails("movielens:download=1", tmp_path, "no network", common.OFFLINE_ENV)
    fails("imagenet:download=1", tmp_path, "no network", exc=DataError)
    fails("imagenet", tmp_path, "sketch/", "imagenet-a/")
    fails("movielens:download=0", tmp_path, "u.data")
    fails("movielens:download=maybe", tmp_path, "download='maybe'", exc=ConfigError)
    assert probes == []


def test_amazon_bad_input(tmp_path):
    fails("amazon", tmp_path, "amazon_reviews_us_Books_v1_00.tsv(.gz)", "amazon_reviews_us_Baby_v1_00", "--data-dir")
    d = copy_fixture("amazon", tmp_path / "am")
    (d / "amazon_reviews_us_Toys_v1_00.tsv.gz").unlink()
    fails("amazon", d, "amazon_reviews_us_Toys_v1_00.tsv(.gz)  (missing)")
    d = copy_fixture("amazon", tmp_path / "am2")
    (d / "amazon_reviews_us_Books_v1_00.tsv.gz").write_bytes(b"\x1f\x8b\x08garbage" * 10)
    fails("amazon:cache=0", d, "amazon_reviews_us_Books_v1_00.tsv.gz", "corrupt")
    d = copy_fixture("amazon", tmp_path / "am3")
    with gzip.open(d / "amazon_reviews_us_Baby_v1_00.tsv.gz", "wt") as f:
        f.write("a\tb\tc\n1\t2\t3\n")
    fails("amazon:cache=0", d, "15-column header", "amazon_reviews_us_Baby_v1_00.tsv.gz")


def copy_2023(dst):
    return copy_fixture("amazon2023", dst)


def test_amazon_2023_bad_input(tmp_path):
    """Each problem of a 2023 folder: one DataError naming the file and the fix, in seconds."""
    d = copy_2023(tmp_path / "a1")
    (d / "Toys_and_Games.csv.gz").unlink()
    msg = fails("amazon", d, "Toys_and_Games.csv(.gz)  (missing)", "McAuley-Lab/Amazon-Reviews-2023",
                "benchmark/0core/rating_only/<C>.csv")
    assert "meta_Toys_and_Games.jsonl(.gz)\n" in msg  # present: listed, not flagged
    d = copy_2023(tmp_path / "a2")
    (d / "meta_Books.jsonl").unlink()
    fails("amazon", d, "meta_Books.jsonl(.gz)  (missing)", "raw/meta_categories/meta_<C>.jsonl")
    d = copy_2023(tmp_path / "a3")
    (d / "Baby_Products.csv").write_text("user,item,rating,time\nA,B,5,1\n")
    fails("amazon:cache=0", d, "Baby_Products.csv", "user_id,parent_asin,rating,timestamp",
          "benchmark/0core/rating_only/Baby_Products.csv")
    d = copy_2023(tmp_path / "a4")
    data = (d / "Clothing_Shoes_and_Jewelry.csv.gz").read_bytes()
    (d / "Clothing_Shoes_and_Jewelry.csv.gz").write_bytes(data[: len(data) // 2])
    fails("amazon:cache=0", d, "Clothing_Shoes_and_Jewelry.csv.gz", "truncated", "Download it again")
    d = copy_2023(tmp_path / "a5")
    (d / "meta_Sports_and_Outdoors.jsonl.gz").unlink()
    (d / "meta_Sports_and_Outdoors.jsonl").write_text('{"asin": "B1", "title": "x", "categories": []}\n')
    fails("amazon:cache=0", d, "meta_Sports_and_Outdoors.jsonl", "line 1", "parent_asin",
          "raw/meta_categories/meta_Sports_and_Outdoors.jsonl")
    d = copy_2023(tmp_path / "a6")
    (d / "meta_Books.jsonl").write_bytes(b"\x1f\x8b\x08garbage")
    (d / "meta_Books.jsonl").rename(d / "meta_Books.jsonl.gz")
    fails("amazon:cache=0", d, "meta_Books.jsonl.gz", "corrupt")
    fails("amazon:fixture=2023,until=last-year", None, "until='last-year'", "until=none")
    fails("amazon:fixture=2023,categories=Watches+Shoes", None, "shoes", "no Amazon Reviews 2023 mapping")
    fails("amazon:fixture=3", None, "fixture='3'", exc=ConfigError)
    fails("amazon:source=2023", None, "no --data-dir given", "Books.csv(.gz)")


def test_retinopathy_bad_input(tmp_path):
    fails("retinopathy", tmp_path, "trainLabels.csv  (columns image,level)  (missing)", "train/<image>.jpeg", "kaggle")
    d = copy_fixture("retinopathy", tmp_path / "dr")
    (d / "train" / "10_left.jpeg").write_bytes(b"not a jpeg")
    fails("retinopathy:cache=0,min_id_width=64", d, "10_left.jpeg", "corrupt")
    (d / "train" / "10_left.jpeg").unlink()
    fails("retinopathy:cache=0,min_id_width=64", d, "10_left", "not in")


def test_imagenet_bad_input(tmp_path):
    fails("imagenet", tmp_path, "sketch/", "imagenet-a/", "imagenet-r/", "imagenetv2-matched-frequency-format-val/", "--data-dir")
    d = copy_fixture("imagenet", tmp_path / "in")
    shutil.rmtree(d / "imagenet-r")
    msg = fails("imagenet", d, "imagenet-r/  (missing")
    assert "sketch/...\n" in msg or "sketch/..." in msg


def test_bad_options():
    fails("movielens:val_fraction=0.1", None, "unknown option", "val_frac", exc=ConfigError)
    fails("movielens:fixture=1,val_frac=abc", None, "val_frac", exc=ConfigError)
    fails("movielens:fixture=1,val_frac=0.6,test_frac=0.5", None, "sum < 1", exc=ConfigError)
    fails("movielens:fixture=1,id_genres=action+cartoons", None, "cartoons", exc=DataError)
    fails("nosuchdataset", None, "unknown dataset", exc=ConfigError)
