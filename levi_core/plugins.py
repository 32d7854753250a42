"""Plugins: extra modules that register datasets, methods or implementations.

Set ``LEVI_PLUGINS=my_pkg.my_methods,other_module`` and every process that loads a registry
(the CLI, and each Ray worker, which inherits the variable) imports those modules first. This
is how a researcher adds a method or dataset without editing levi_core.
"""

from __future__ import annotations

import importlib
import os

from levi_core.errors import ConfigError

ENV_VAR = "LEVI_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    for name in filter(None, (n.strip() for n in os.environ.get(ENV_VAR, "").split(","))):
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"{ENV_VAR} names module {name!r}, which cannot be imported: {e}") from e
        _loaded.add(name)
