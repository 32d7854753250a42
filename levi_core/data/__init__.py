"""Datasets in one shape (see `levi_core.data.base`). Importing this registers the loaders."""

from levi_core.data.base import (  # noqa: F401
    Dataset,
    Split,
    dataset_names,
    fingerprint_splits,
    load_dataset,
    parse_dataset_id,
    register_dataset,
)

# Built-in loaders (each module registers itself; none imports TensorFlow at import time).
from levi_core.data import movielens  # noqa: F401,E402
from levi_core.data import amazon  # noqa: F401,E402
from levi_core.data import imagenet, retinopathy  # noqa: F401,E402
from levi_core.data import cifar_vehicles  # noqa: F401,E402
from levi_core.data.fixtures import fixture_dataset, write_fixture  # noqa: F401,E402
from levi_core.data.describe import describe  # noqa: F401,E402
from levi_core.data import synthetic  # noqa: E402,F401  (registers `synthetic`)
from levi_core.data import linear_toy  # noqa: E402,F401  (registers `linear_toy`)
from levi_core.data import costs  # noqa: E402,F401  (registers `costs`: Tables 3, 15, 16)
