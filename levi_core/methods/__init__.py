"""Registered methods. Importing this registers every built-in method and implementation."""

from levi_core.methods.registry import (  # noqa: F401
    Method,
    RunContext,
    RunOutput,
    get_impl,
    get_method,
    implements,
    method_names,
    register_method,
)
