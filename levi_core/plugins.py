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
            raise ConfigError(f"{ENV_VAR} names module {name!r}, which cannot be imported: {e}. "
                              f"Check the name and that its folder is on PYTHONPATH (on every "
                              f"Ray node), or remove it from {ENV_VAR}.") from e
        except Exception as e:  # noqa: BLE001 - the plugin's own code failed while importing
            where = ""
            tb = e.__traceback__
            while tb is not None:  # the innermost frame: the plugin's line that failed
                where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
                tb = tb.tb_next
            if isinstance(e, SyntaxError):
                where = f" at {e.filename}:{e.lineno}"
            raise ConfigError(f"{ENV_VAR} names module {name!r}, which fails while importing: "
                              f"{type(e).__name__}: {e}{where}. Fix the plugin or remove it "
                              f"from {ENV_VAR}.") from e
        _loaded.add(name)
