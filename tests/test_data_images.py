"""Retinopathy and ImageNet-variant loaders on their fixtures (original folder layouts)."""


import numpy as np
import pytest
from PIL import Image

from levi_core.data import cache  # noqa: E402
from levi_core.data import common, fixtures
from levi_core.data.imagenet_classes import imagenet_wnids


pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # see conftest.py


def test_retinopathy_resolution_shift():
    ds = fixtures.fixture_dataset("retinopathy", image_size=16)
    folder = fixtures.fixture_dir("retinopathy")
    assert ds.task == "classification" and ds.metric == "accuracy" and ds.num_classes == 5
    assert ds.ood_roles == ["ood/low_resolution"]
    labels = dict(line.split(",") for line in (folder / "trainLabels.csv").read_text().split()[1:])
    for role, s in ds.splits.items():
        assert s.large["image"].shape == (len(s), 16, 16, 3) and s.large["image"].dtype == np.uint8
        assert s.small["image"] is s.large["image"] or np.array_equal(s.small["image"], s.large["image"])
        assert s.labels.dtype == np.int32
        for eid, y in zip(s.example_ids, s.labels):
            assert int(labels[eid]) == y
            w = Image.open(folder / "train" / f"{eid}.jpeg").size[0]
            assert (w >= 64) == (role != "ood/low_resolution")
    n_id = sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test"))
    assert n_id + len(ds.splits["ood/low_resolution"]) == len(labels)
    cached = fixtures.fixture_dataset("retinopathy", image_size=16)
    assert cached.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(cached.splits["train"].large["image"], ds.splits["train"].large["image"])
    before = cache.BUILD_COUNTS.get("retinopathy", 0)
    fixtures.fixture_dataset("retinopathy", image_size=16)
    assert cache.BUILD_COUNTS.get("retinopathy", 0) == before  # served from the cache


def test_retinopathy_threshold_with_nothing_ood_is_an_error():
    from levi_core.errors import DataError

    with pytest.raises(DataError, match="min_id_width"):
        fixtures.fixture_dataset("retinopathy", image_size=16, min_id_width=30, cache=0)


def test_imagenet_variants():
    ds = fixtures.fixture_dataset("imagenet", image_size=24)
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764"
    assert ds.num_classes == 1000 and ds.ood_roles == ["ood/a", "ood/r", "ood/v2"]
    folder = fixtures.fixture_dir("imagenet")
    for role, s in ds.splits.items():
        assert s.large["image"].shape == (len(s), 24, 24, 3)
        for eid, y in zip(s.example_ids, s.labels):
            parent = (folder / eid).parent.name
            assert (folder / eid).is_file()
            assert y == (int(parent) if role == "ood/v2" else wnids.index(parent))
    assert ds.info["class_subsets"]["ood/a"] == sorted(set(ds.splits["ood/a"].labels.tolist()))
    assert ds.info["class_subsets_wnids"]["ood/r"] == [wnids[i] for i in ds.info["class_subsets"]["ood/r"]]
    n_sketch = sum(1 for _ in (folder / "sketch").rglob("*.JPEG"))
    assert sum(len(ds.splits[r]) for r in ("train", "id_val", "id_test")) == n_sketch
    small = fixtures.fixture_dataset("imagenet", image_size=24, max_per_class=2, variants="v2", max_ood=5)
    assert small.ood_roles == ["ood/v2"] and len(small.splits["ood/v2"]) == 5
    assert sum(len(small.splits[r]) for r in ("train", "id_val", "id_test")) == 2 * 6
