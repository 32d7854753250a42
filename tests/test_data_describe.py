"""describe(): per role counts, label distribution, fingerprints, and the shift in words."""


import pytest

from levi_core.data import load_dataset
from levi_core.data.base import fingerprint_splits
from levi_core.data.describe import describe
from levi_core.data.movielens import shared_local_dir


pytestmark = pytest.mark.usefixtures("fresh_data_cache")  # see conftest.py


@pytest.mark.parametrize("name", ["movielens", "amazon", "retinopathy", "imagenet"])
def test_describe_fixture(name):
    extra = ",image_size=8" if name in ("retinopathy", "imagenet") else ""
    text = describe(f"{name}:fixture=1{extra}")
    ds = load_dataset(f"{name}:fixture=1{extra}")
    assert f"fingerprint {ds.fingerprint}" in text
    for role, s in ds.splits.items():
        line = next(ln for ln in text.splitlines() if ln.split() and ln.split()[0] == role)
        assert line.split()[1] == str(len(s))
        assert line.split()[2] == fingerprint_splits({role: s})
    assert "shift: " in text and ds.shift in text


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@pytest.mark.skipif(shared_local_dir() is None, reason="genuine ml-100k not present")
def test_describe_real_movielens():
    text = describe("movielens", str(shared_local_dir()))
    assert "ID total 91142; 12 OOD sets" in text
    assert "ood/children         2742" in text
    assert "action, comedy, drama, romance, thriller" in text
    assert "train               72914" in text


def test_import_is_light():
    """Importing the data layer (all loaders) must not import TensorFlow / TFDS."""
    import subprocess
    import sys

    code = "import sys, levi_core.data; bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
