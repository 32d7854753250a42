"""The CIFAR-10 vehicles shift (dataset, corruptions) on the generated fixture and, where the
project machines' copy is present, on a few real CIFAR-10 images."""

import os
from pathlib import Path

import numpy as np
import pytest

from levi_core.data import cifar_folder, corruptions, fixtures, load_dataset
from levi_core.data.cache import BUILD_COUNTS
from levi_core.errors import ConfigError, DataError

OOD = [f"ood/{c}" for c in corruptions.NAMES] + ["ood/resolution"]


def test_fixture_roles_sizes_and_ids():
    ds = fixtures.fixture_dataset("cifar_vehicles")
    assert ds.modality == "vision" and ds.num_classes == 4 and ds.metric == "accuracy"
    assert list(ds.splits) == ["train", "id_val", "id_test"] + OOD
    # 10 training images per vehicle class, 10% to id_val; 5 test images per class
    assert (len(ds.splits["train"]), len(ds.splits["id_val"])) == (36, 4)
    assert all(len(ds.splits[r]) == 20 for r in ["id_test"] + OOD)
    # only the vehicle folders are read, labelled in VEHICLES order
    assert sorted(set(ds.splits["train"].example_ids[0].split("/")[1] for _ in [0])) == ["airplane"]
    assert set(np.unique(ds.splits["id_test"].labels)) == {0, 1, 2, 3}
    assert not any("/cat/" in i for s in ds.splits.values() for i in s.example_ids)
    # an id names one input across splits (the engines run each distinct id once)
    all_ids = np.concatenate([s.example_ids for s in ds.splits.values()])
    assert len(set(all_ids)) == len(all_ids)
    test = ds.splits["id_test"]
    for role in OOD:
        s = ds.splits[role]
        assert s.example_ids[0] == f"{role[4:]}/{test.example_ids[0]}"
        np.testing.assert_array_equal(s.labels, test.labels)
        assert s.large["image"].dtype == np.uint8 and s.large["image"].shape == (20, 32, 32, 3)
        diff = np.abs(s.large["image"].astype(int) - test.large["image"].astype(int)).mean()
        assert diff > 0.5, f"{role} leaves the images (nearly) as they were"


def test_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("LEVI_DATA_CACHE", str(tmp_path / "cache"))
    first = load_dataset("cifar_vehicles:fixture=1")
    before = BUILD_COUNTS.get("cifar_vehicles", 0)
    again = load_dataset("cifar_vehicles:fixture=1")
    assert BUILD_COUNTS.get("cifar_vehicles", 0) == before  # read from the cache, not rebuilt
    uncached = load_dataset("cifar_vehicles:fixture=1,cache=0")
    assert first.fingerprint == again.fingerprint == uncached.fingerprint
    for role in OOD:  # the random corruptions are seeded: the same pixels every time
        np.testing.assert_array_equal(first.splits[role].large["image"], uncached.splits[role].large["image"])
    other = load_dataset("cifar_vehicles:fixture=1,cache=0,corruption_seed=1")
    assert not np.array_equal(other.splits["ood/gaussian_noise"].large["image"],
                              first.splits["ood/gaussian_noise"].large["image"])


def test_options():
    ds = fixtures.fixture_dataset("cifar_vehicles", corruptions="contrast", low_resolution=0, severity=5)
    assert list(ds.splits) == ["train", "id_val", "id_test", "ood/contrast"]
    assert ds.info["corruption_constants"] == {"contrast": 0.15}
    with pytest.raises(ConfigError, match="snow"):
        fixtures.fixture_dataset("cifar_vehicles", corruptions="snow")
    with pytest.raises(ConfigError, match="1-5"):
        fixtures.fixture_dataset("cifar_vehicles", severity=6)
    with pytest.raises(ConfigError, match="low_resolution"):
        fixtures.fixture_dataset("cifar_vehicles", low_resolution=32)


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar_vehicles:source=files", str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "does not exist" in msg and "train/airplane/*.jpg" in msg and "--data-dir" in msg
    (tmp_path / "half" / "train" / "airplane").mkdir(parents=True)
    with pytest.raises(DataError, match=r"test/truck/\*\.jpg  \(missing\)"):
        load_dataset("cifar_vehicles:source=files", str(tmp_path / "half"))


def test_corruptions_follow_their_constants():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ids = ["a", "b", "c"]
    for name in corruptions.NAMES:
        out = corruptions.corrupt(x, name, 3, seed=0, ids=ids)
        assert out.shape == x.shape and out.dtype == np.uint8
        # an image's pixels depend on its id, not on the rest of the batch
        np.testing.assert_array_equal(corruptions.corrupt(x[1:], name, 3, seed=0, ids=ids[1:]), out[1:])
    # contrast scales the deviation from the mean by c (0.4 at severity 3)
    c = corruptions.contrast(x[0], 0.4)
    assert abs(c.astype(float).std() / x[0].astype(float).std() - 0.4) < 0.02
    # noise of sd 0.08 in [0, 1] units, before clipping
    n = corruptions.corrupt(np.full((1, 32, 32, 3), 128, np.uint8), "gaussian_noise", 3)[0]
    assert abs((n.astype(float) - 128).std() / 255 - 0.08) < 0.01
    # a blur removes high-frequency energy; stronger severities remove more
    def roughness(img):
        return np.abs(np.diff(img.astype(float), axis=1)).mean()
    blurs = [roughness(corruptions.corrupt(x, "gaussian_blur", s)) for s in (1, 5)]
    assert roughness(x) > blurs[0] > blurs[1]
    low = corruptions.resolution(x, 16)
    assert roughness(low) < roughness(x)


REAL = cifar_folder.shared_local_dir()


@pytest.mark.skipif(REAL is None, reason="no CIFAR-10 image folder (../shared/data/cifar10) here")
def test_real_images(tmp_path, monkeypatch):
    """A few genuine CIFAR-10 JPEGs (linked, never copied into the project) in the layout."""
    monkeypatch.setenv("LEVI_DATA_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cifar"
    for split, n in (("train", 10), ("test", 4)):
        for c in cifar_folder.VEHICLES:
            d = root / split / c
            d.mkdir(parents=True)
            for p in sorted((REAL / split / c).iterdir())[:n]:
                os.symlink(p, d / p.name)
    ds = load_dataset("cifar_vehicles", str(root))
    assert (len(ds.splits["train"]), len(ds.splits["id_val"]), len(ds.splits["id_test"])) == (36, 4, 16)
    test = ds.splits["id_test"].large["image"]
    assert test.shape == (16, 32, 32, 3) and test.std() > 30  # real pictures, not blank
    # the severity-3 corruptions change real images, each in its own way
    diffs = {r: np.abs(ds.splits[r].large["image"].astype(int) - test.astype(int)).mean() for r in OOD}
    assert min(diffs.values()) > 1.0 and len(set(np.round(list(diffs.values()), 3))) == len(OOD)
    # the pre-training reader gets the animals of the same folder, and only those
    (root / "train" / "cat").mkdir()
    os.symlink(sorted((REAL / "train" / "cat").iterdir())[0], root / "train" / "cat" / "0000.jpg")
    ids, labels, images = cifar_folder.read_classes(root, "train", ["cat"])
    assert list(ids) == ["train/cat/0000.jpg"] and labels.tolist() == [0] and images.shape == (1, 32, 32, 3)


def test_presets_wire_the_shift():
    from bench.specs import TABLE2, TABLE4

    grid, _ = TABLE2.needs("cpu")
    ds = [d for d in grid if d.startswith("cifar_vehicles")]
    assert len(ds) == 1
    assert set(grid[ds[0]][1]) >= {"ft", "ht", "lp", "lp_ft", "ft_robust", "ft_zeroshot", "levi"}
    grid4, _ = TABLE4.needs("cpu")
    assert set(grid4[ds[0]][1]) >= {"lora", "levi/lora"}
    for preset in ("smoke", "paper"):  # beyond the paper: only under cpu
        for spec in (TABLE2, TABLE4):
            assert not any(d.startswith("cifar_vehicles") for d in spec.needs(preset)[0])


def test_vision_heads_learn_from_the_seed_draw_and_stop_early(tmp_path):
    """The cpu protocol of the text tables holds for images too: the api cuts the training split
    to the seed's draw (vision.train_examples) and heads keep their best epoch on id_val
    (vision.head_patience)."""
    from bench.presets import PRESETS
    from levi_core.api import train_and_evaluate
    from levi_core.data.base import with_train_draw

    vision = {**PRESETS["smoke"].settings["vision"], "train_examples": 20, "head_epochs": 4,
              "head_patience": 1}
    rec = train_and_evaluate({"dataset": "cifar_vehicles:fixture=1", "method": "lp", "seed": 0,
                              "hparams": {"lr": 0.01}, "settings": {"vision": vision}}, tmp_path)
    full = load_dataset("cifar_vehicles:fixture=1")
    assert rec["dataset_fingerprint"] == with_train_draw(full, 0, 20).fingerprint != full.fingerprint
    assert rec["settings"]["train_examples"] == 20 and rec["settings"]["head_patience"] == 1
    assert 1 <= rec["extras"]["best_epoch"] <= rec["extras"]["epochs_run"] <= 4
