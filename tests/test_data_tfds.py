"""The TFDS source of MovieLens gives the same dataset as the local files.

No download and no prepared TFDS copy: TFDS's own ml-100k parser (the code its builder runs)
reads the fixture's files, its examples are encoded as its feature spec would decode them, and
``tfds.load`` / ``tfds.as_numpy`` are replaced to serve them. Imports TensorFlow (a few seconds).
"""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from levi_core.data import common, fixtures, load_dataset  # noqa: E402
from levi_core.data.imagenet_classes import imagenet_wnids  # noqa: E402
from levi_core.errors import DataError  # noqa: E402

tfds = pytest.importorskip("tensorflow_datasets")


def movielens_examples(folder):
    """The fixture's ratings as TFDS's builder would give them (its own parser, its features)."""
    from tensorflow_datasets.structured import movielens_parsing

    info = tfds.builder("movielens/100k-ratings").info  # from code: no download
    genre_names = info.features["movie_genres"].feature.names
    examples = []
    for _, ex in movielens_parsing.parse_100k_ratings_data(str(folder)):
        examples.append({
            "user_id": ex["user_id"].encode(), "movie_id": ex["movie_id"].encode(),
            "user_rating": np.float32(ex["user_rating"]), "timestamp": np.int64(ex["timestamp"]),
            "raw_user_age": np.float32(ex["raw_user_age"]), "user_gender": bool(ex["user_gender"]),
            "user_occupation_text": ex["user_occupation_text"].encode(),
            "user_zip_code": ex["user_zip_code"].encode(), "movie_title": ex["movie_title"].encode(),
            "movie_genres": np.array([genre_names.index(g) for g in ex["movie_genres"]], np.int64),
        })
    examples.reverse()  # TFDS order is not the file order: the loader must not depend on it
    return examples, info


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_tfds_source_equals_files(tmp_path, monkeypatch):
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))
    folder = fixtures.fixture_dir("movielens")
    examples, info = movielens_examples(folder)
    tfds_dir = tmp_path / "tfds"
    prepared = tfds_dir / "movielens" / "100k-ratings" / "0.1.1"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")
    calls = []

    def fake_load(name, split, data_dir, download, with_info):
        calls.append((name, split, Path(data_dir), download))
        return examples, info

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr(tfds, "as_numpy", lambda ds: iter(ds))
    from_tfds = load_dataset("movielens", str(tfds_dir))
    assert calls == [("movielens/100k-ratings", "train", tfds_dir, False)]
    from_files = load_dataset("movielens:cache=0", str(folder))
    assert from_tfds.fingerprint == from_files.fingerprint
    assert from_tfds.vocab_sizes == from_files.vocab_sizes
    for role in from_files.splits:
        a, b = from_tfds.splits[role], from_files.splits[role]
        np.testing.assert_array_equal(a.large["text"], b.large["text"])
        for k in b.small:
            np.testing.assert_array_equal(a.small[k], b.small[k])


def test_movielens_downloads_on_first_use(tmp_path, monkeypatch):
    """The control flow of download-on-first-use (``download=auto``, the default) with the network
    and TFDS's download replaced: the real download cannot run on these offline machines."""
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("LEVI_MOVIELENS_DIR", "none")
    monkeypatch.delenv(common.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(common, "network_available", lambda host, *a, **k: host == "files.grouplens.org")
    folder = fixtures.fixture_dir("movielens")
    examples, info = movielens_examples(folder)
    tfds_dir = tmp_path / "tfds"  # TFDS's default folder on this "fresh machine"
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("HOME", str(tmp_path))
    downloads = []

    class FakeBuilder:
        def __init__(self, name, data_dir):
            self.name, self.data_dir = name, data_dir

        def download_and_prepare(self):
            downloads.append((self.name, self.data_dir))
            root = Path(self.data_dir or os.environ["TFDS_DATA_DIR"])
            prepared = root / "movielens" / "100k-ratings" / "0.1.1"
            prepared.mkdir(parents=True)
            (prepared / "dataset_info.json").write_text("{}")

    monkeypatch.setattr(tfds, "builder", FakeBuilder)
    monkeypatch.setattr(tfds, "load", lambda name, split, data_dir, download, with_info: (examples, info))
    monkeypatch.setattr(tfds, "as_numpy", lambda ds: iter(ds))
    got = load_dataset("movielens")  # no --data-dir, nothing local: `bench run table1` on paper
    assert downloads == [("movielens/100k-ratings", None)]
    assert got.fingerprint == load_dataset("movielens:cache=0", str(folder)).fingerprint
    load_dataset("movielens")  # prepared now: no second download
    assert len(downloads) == 1
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "elsewhere"))  # another fresh machine

    def broken(self):
        raise ConnectionError("connection reset")

    monkeypatch.setattr(FakeBuilder, "download_and_prepare", broken)
    with pytest.raises(DataError, match="downloading TFDS movielens/100k-ratings failed.*connection reset"):
        load_dataset("movielens", str(tmp_path / "elsewhere"))


def test_amazon_tfds_source_equals_files(tmp_path, monkeypatch):
    """Prepared TFDS amazon_us_reviews copies (served from the fixture TSVs as TFDS would decode
    them: every column under "data", strings as bytes, star_rating int32) give the same dataset."""
    import csv
    import gzip

    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))
    folder = fixtures.fixture_dir("amazon")
    tfds_dir = tmp_path / "tfds"
    by_config = {}
    for p in sorted(folder.glob("amazon_reviews_us_*.tsv*")):
        config = p.name[len("amazon_reviews_us_"):].split(".")[0]
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        by_config[config] = [
            {"data": {k: (np.int32(v) if k == "star_rating" else v.encode()) for k, v in r.items()}}
            for r in rows
        ]
        prepared = tfds_dir / "amazon_us_reviews" / config / "0.1.0"
        prepared.mkdir(parents=True)
        (prepared / "dataset_info.json").write_text("{}")

    def fake_load(name, split, data_dir, download):
        assert not download and split == "train" and Path(data_dir) == tfds_dir
        return list(reversed(by_config[name.split("/")[1]]))

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr(tfds, "as_numpy", lambda ds: iter(ds))
    from_tfds = load_dataset("amazon", str(tfds_dir))
    from_files = load_dataset("amazon:cache=0", str(folder))
    assert from_tfds.fingerprint == from_files.fingerprint
    for role in from_files.splits:
        np.testing.assert_array_equal(from_tfds.splits[role].large["text"], from_files.splits[role].large["text"])
    small_tfds = load_dataset("amazon:max_id=100,max_ood=10,cache=0", str(tfds_dir))
    small_files = load_dataset("amazon:max_id=100,max_ood=10,cache=0", str(folder))
    assert small_tfds.fingerprint == small_files.fingerprint
    assert len(small_tfds.splits["ood/time"]) == 10


def test_imagenet_tfds_source(tmp_path, monkeypatch):
    """Variants whose folder is absent are read from prepared TFDS copies (here: ImageNet-R, served
    from the fixture's images as TFDS would decode them); labels stay 1000-class indices."""
    from types import SimpleNamespace

    from PIL import Image

    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))
    src = fixtures.fixture_dir("imagenet")
    data = tmp_path / "in"
    for sub in ("sketch", "imagenet-a", "imagenetv2-matched-frequency-format-val"):
        import shutil

        shutil.copytree(src / sub, data / sub)
    wnids = imagenet_wnids()
    examples = [
        {"image": np.asarray(Image.open(p).convert("RGB")), "label": wnids.index(p.parent.name),
         "file_name": p.name.encode()}
        for p in sorted((src / "imagenet-r").rglob("*.jpg"))
    ]
    prepared = data / "imagenet_r" / "0.2.0"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")

    def fake_builder(name, data_dir):
        assert name == "imagenet_r" and Path(data_dir) == data
        info = SimpleNamespace(splits={"test": SimpleNamespace(num_examples=len(examples))})
        return SimpleNamespace(info=info, as_dataset=lambda split, shuffle_files: examples)

    monkeypatch.setattr(tfds, "builder", fake_builder)
    monkeypatch.setattr(tfds, "as_numpy", lambda ds: iter(ds))
    mixed = load_dataset("imagenet:image_size=8", str(data))
    files = load_dataset("imagenet:fixture=1,image_size=8,cache=0")
    np.testing.assert_array_equal(mixed.splits["ood/r"].labels, files.splits["ood/r"].labels)
    np.testing.assert_array_equal(mixed.splits["ood/r"].large["image"], files.splits["ood/r"].large["image"])
    assert mixed.info["class_subsets"] == files.info["class_subsets"]
    assert mixed.splits["ood/r"].example_ids[0].startswith("imagenet_r/")
