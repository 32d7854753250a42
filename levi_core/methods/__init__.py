"""Registered methods. Importing this registers every built-in method and implementation."""

from levi_core.methods.registry import (  # noqa: F401
    Method,
    RunContext,
    RunOutput,
    get_impl,
    get_method,
    implements,
    method_names,
    parametric_method_names,
    register_method,
    register_parametric,
)
from levi_core.methods import catalog  # noqa: E402,F401  (declares every method of DESIGN.md)
from levi_core.methods import synthetic  # noqa: E402,F401  (implementations for `synthetic`)
from levi_core.methods import linear  # noqa: E402,F401  (the Appendix B linear example job)
from levi_core.methods import cost_analysis  # noqa: E402,F401  (Tables 3, 15, 16 as jobs)
from levi_core.methods import large  # noqa: E402,F401  (movielens, amazon, retinopathy, imagenet)
from levi_core.methods import refs  # noqa: E402,F401  (ref/* rows for rating regression)
