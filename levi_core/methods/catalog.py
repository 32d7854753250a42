"""Every method of DESIGN.md's methods table: name, grid, dependencies, composite or not.

These declarations say *what* a method is; the implementations (``levi_core.methods.standard``,
``levi``, ``ensembles``, ``refs``) run on every dataset through its modality's model engine.

Grids follow the paper's D.3: learning rates {1e-4, 1e-3, 1e-2, 1e-1} for every trained method,
{1e-3, 1e-2, 1e-1, 1, 10} for linear probing. Composite methods (ensembles, interpolations)
train nothing and have no grid:

* ``ft_zeroshot`` (WiSE-FT, Wortsman et al. 2022, for a model with no zero-shot head): the
  zero-shot end is the pre-trained model with a linear head fitted on its frozen features (the
  selected ``lp`` run), the fine-tuned end is fine-tuned from that same head (the selected
  ``lp_ft`` run), and every weight is interpolated, ``(1-a) * zero-shot + a * fine-tuned``. The
  mixing weight ``a`` in {0, 0.1, ..., 1} (WiSE-FT's own grid; 0 and 1 are the ``lp`` and
  ``lp_ft`` models) is *not* a grid axis: the job evaluates every ``a`` on ``id_val`` and keeps
  the best (recorded in its extras and shown in the table's notes), the harness's own selection
  rule at eleven forward passes of id_val instead of eleven jobs.
* ``ft_robust``: the temperature of each member is fitted on ``id_val`` inside the job.

``layer/<k>`` is parametric: ``layer_method(k)`` (or ``get_method("layer/3")``) makes it on demand.
"""

from __future__ import annotations

from levi_core.errors import ConfigError
from levi_core.methods.registry import Method, register_method, register_parametric

LR_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
LP_LR_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
WISE_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))  # WiSE-FT's own grid, 0 to 1

_LR = {"lr": LR_GRID}

METHODS = (
    Method("ft", "fine-tune the large model + head, all parameters", _LR),
    Method("ht", "half-tune: last half of the large model's blocks + final norm + head", _LR),
    Method("lp", "linear probe: a head on the frozen pre-trained model", {"lr": LP_LR_GRID}),
    Method("fs", "the large architecture trained from scratch (random init)", _LR),
    Method("lp_ft", "fine-tune all parameters, starting from the selected lp head", _LR, ("lp",)),
    Method(
        "ft_robust",
        "calibrated ensemble of the selected ft and lp (temperature-scaled on id_val)",
        {},
        ("ft", "lp"),
        composite=True,
    ),
    Method(
        "ft_zeroshot",
        "WiSE-FT: (1-a) * lp (pre-trained + linear head) + a * lp_ft weights, a chosen on id_val",
        {},
        ("lp", "lp_ft"),
        composite=True,
    ),
    Method("ft_fs", "average of the selected ft and fs predictions", {}, ("ft", "fs"), composite=True),
    Method("lora", "LoRA adapters (query, value) + head", _LR),
    Method(
        "levi",
        "LEVI on the selected ht model (the paper's main setting): small model + adapting layers",
        _LR,
        ("ht",),
    ),
    Method("levi/pretrained", "LEVI on the frozen pre-trained large model", _LR),
    Method("levi/ft", "LEVI on the selected ft model", _LR, ("ft",)),
    Method("levi/lora", "LEVI on the selected lora model", _LR, ("lora",)),
    Method("a1", "ablation A1: average of two ft runs with different seeds", {}, ("ft",)),
    Method("a2", "ablation A2: average of ft and the small model (a4)", {}, ("ft", "a4"), composite=True),
    Method("a3", "ablation A3: adapting layers on the selected ht model's layers (LEVI's large "
                 "model), no small model", _LR, ("ht",)),
    Method("a4", "ablation A4: the small task model alone, one head", _LR),
    Method("a5", "ablation A5: small model, shared bottom, several heads averaged", _LR),
    # Reference rows (not ranked; rating regression only): see levi_core.methods.refs.
    Method("ref/mean", "reference: the ID-train mean rating", {}),
    Method("ref/user_bias", "reference: train mean + regularised user bias", {}),
    Method("ref/user_movie_bias", "reference: train mean + regularised user and item biases", {}),
    Method("ref/mf", "reference: biased matrix factorisation (Funk-SVD), size and epochs on id_val", {}),
)

for _m in METHODS:
    register_method(_m)


def layer_method(k: int | str) -> Method:
    """``layer/<k>``: one MLP head on layer k of the frozen pre-trained large model (Fig. 4)."""
    try:
        k_int = int(k)
    except (TypeError, ValueError):
        raise ConfigError(f"layer/<k>: k={k!r} must be a layer number, e.g. layer/3") from None
    if k_int < 0 or str(k_int) != str(k).strip():
        raise ConfigError(f"layer/<k>: k={k!r} must be a non-negative integer, e.g. layer/3")
    return Method(f"layer/{k_int}", f"an MLP head on layer {k_int} of the frozen large model", _LR)


register_parametric("layer", layer_method)


# ------------------------------------------------------------------ display labels
# How reports name the methods of METHODS (a method without an entry shows its name; the order
# of every listing is METHODS' order); a table's rows choose a subset.
LABELS = {
    "ft": "FT", "ht": "HT", "lp": "LP", "fs": "FS", "lp_ft": "LP→FT", "ft_robust": "FT+RobustModel",
    "ft_zeroshot": "FT+ZeroShot", "ft_fs": "FT+FS", "lora": "LoRA", "levi": "LEVI",
    "levi/pretrained": "LEVI (pre-trained)", "levi/ft": "LEVI (fine-tuned)", "levi/lora": "LEVI (LoRA)",
    "a1": "A1", "a2": "A2", "a3": "A3", "a4": "A4 (small model alone)", "a5": "A5",
    "ref/mean": "ref/mean", "ref/user_bias": "ref/user_bias", "ref/user_movie_bias": "ref/user_movie_bias",
    "ref/mf": "ref/mf",
}
assert set(LABELS) <= {m.name for m in METHODS}, "LABELS names a method that METHODS lacks"


def label(name: str) -> str:
    """The display name of a method (``layer/3`` -> ``Layer 3``; a plugin's method: the label
    its declaration states, which also wins for a built-in it replaced; else the name)."""
    from levi_core.methods.registry import registered_label

    stated = registered_label(name)
    if stated:
        return stated
    if name.startswith("layer/"):
        return f"Layer {name.split('/', 1)[1]}"
    return LABELS.get(name, name)


def labels(names) -> str:
    """``"FT, LP, HT"``: display names joined, for claim details."""
    return ", ".join(label(n) for n in names)
