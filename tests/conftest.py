"""Test-session environment: CPU JAX, quiet TensorFlow, Ray and matplotlib kept off $HOME."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's Unix socket paths are capped at 107 bytes: pytest's tmp_path is too long for them.
os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray", dir="/tmp"))
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl"))
os.environ.setdefault("MPLBACKEND", "Agg")
# Prepared-data cache: per test session, never the user's ~/.cache.
os.environ.setdefault("LEVI_DATA_CACHE", tempfile.mkdtemp(prefix="levi-data-cache"))
# Tests never download (MovieLens and ImageNet would, on first use, on a machine with a network).
os.environ.setdefault("LEVI_OFFLINE", "1")


def _cleanup(paths=(os.environ["RAY_TMPDIR"], os.environ["MPLCONFIGDIR"], os.environ["LEVI_DATA_CACHE"])):
    for p in paths:
        if p.startswith(tempfile.gettempdir()):
            shutil.rmtree(p, ignore_errors=True)


atexit.register(_cleanup)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def fresh_data_cache(tmp_path_factory):
    """An empty prepared-data cache for one test module (tests that count cache builds)."""
    from levi_core.data import common

    old = os.environ.get(common.CACHE_ENV)
    os.environ[common.CACHE_ENV] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop(common.CACHE_ENV, None)
    else:
        os.environ[common.CACHE_ENV] = old
