"""Registered methods. Importing this registers every built-in method and implementation.

Where to find a method: ``catalog`` declares every one (name, label, kind, grid, dependencies); ``standard``
implements the baselines, ``levi`` LEVI and its ablations, ``ensembles`` the prediction
ensembles, ``refs`` the reference rows; all run on ``levi_core.engines``."""

from levi_core.methods.registry import (  # noqa: F401
    Kind,
    Method,
    RunContext,
    RunOutput,
    code_identity,
    get_impl,
    get_method,
    implements,
    method_names,
    parametric_method_names,
    register_method,
    register_parametric,
)
from levi_core.methods import catalog  # noqa: E402,F401  (declares every method)
from levi_core.methods import standard  # noqa: E402,F401  (ft, ht, lp, fs, lp_ft, lora, ft_zeroshot, a1, ensembles)
from levi_core.methods import levi  # noqa: E402,F401  (levi*, a3-a5, layer/<k>)
from levi_core.methods import refs  # noqa: E402,F401  (ref/* rows for rating regression)
from levi_core.methods import linear  # noqa: E402,F401  (the Appendix B linear example job)
from levi_core.methods import cost_analysis  # noqa: E402,F401  (Tables 3, 15, 16 as jobs)
