"""Datasets in one shape (see `levi_core.data.base`). Importing this registers the loaders.

Every module of this package is imported here, so a dataset is one module: it registers its
loader (``register_dataset``), its fixture (``fixtures.register_fixture``), its shifts
(``register_shift``) and its ids under the presets (``register_preset_ids``) when imported.
No module of the package imports TensorFlow at import time.
"""

import importlib
import pkgutil

from levi_core.data.base import (  # noqa: F401
    Dataset,
    Split,
    dataset_names,
    fingerprint_splits,
    load_dataset,
    parse_dataset_id,
    register_dataset,
)
from levi_core.data.fixtures import fixture_dataset, write_fixture  # noqa: F401,E402
from levi_core.data.describe import describe  # noqa: F401,E402

# in name order, so that registration does not depend on the file system's listing order
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
