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

from levi_core.data import synthetic  # noqa: E402,F401  (registers `synthetic`)
from levi_core.data import linear_toy  # noqa: E402,F401  (registers `linear_toy`)
