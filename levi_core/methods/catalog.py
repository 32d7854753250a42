"""Every built-in method, the one list: name, label, kind, grid, dependencies.

These declarations say *what* a method is; the implementations (``levi_core.methods.standard``,
``levi``, ``ensembles``, ``refs``) run on every dataset through its modality's model engine.
Every other list of methods is derived from this one: the report labels, the methods that
train the large model (``LARGE_TRAINING``; the presets' learning-rate subsets, the claims'
budget note, ``bench plan`` and the GPU check read it), their tuning modes (``standard``), the
cost rows (``levi_core.costs``, by kind) and the notes' summaries (``summary``). Adding a
method is one ``Method`` here plus its implementation. Large-model trainings and composites
are costed by their kind; a new small-model method also needs its own cost rule
(``levi_core.costs.RULES``: their parts differ), and ``tests/test_catalog.py`` fails until it
has one.

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
from levi_core.methods.registry import Kind, Method, register_method, register_parametric

LR_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
LP_LR_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
WISE_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))  # WiSE-FT's own grid, 0 to 1

_LR = {"lr": LR_GRID}
_LARGE, _SMALL, _COMPOSITE, _REFERENCE = Kind.TRAINS_LARGE, Kind.TRAINS_SMALL, Kind.COMPOSITE, Kind.REFERENCE

# The order of METHODS is the order of every listing (``bench ls``, the cost tables); a table's
# rows choose a subset. ``label`` is how reports name a method.
METHODS = (
    Method("ft", "fine-tune the large model + head, all parameters", _LR,
           kind=_LARGE, tuning="all", label="FT"),
    Method("ht", "half-tune: last half of the large model's blocks + final norm + head", _LR,
           kind=_LARGE, tuning="half", label="HT"),
    Method("lp", "linear probe: a head on the frozen pre-trained model", {"lr": LP_LR_GRID},
           kind=_SMALL, label="LP"),
    Method("fs", "the large architecture trained from scratch (random init)", _LR,
           kind=_LARGE, tuning="all", label="FS"),
    Method("lp_ft", "fine-tune all parameters, starting from the selected lp head", _LR, ("lp",),
           kind=_LARGE, tuning="all", label="LP→FT"),
    Method(
        "ft_robust",
        "calibrated ensemble of the selected ft and lp (temperature-scaled on id_val)",
        {},
        ("ft", "lp"),
        kind=_COMPOSITE, label="FT+RobustModel",
    ),
    Method(
        "ft_zeroshot",
        "WiSE-FT: (1-a) * lp (pre-trained + linear head) + a * lp_ft weights, a chosen on id_val",
        {},
        ("lp", "lp_ft"),
        kind=_COMPOSITE, label="FT+ZeroShot",
    ),
    Method("ft_fs", "average of the selected ft and fs predictions", {}, ("ft", "fs"),
           kind=_COMPOSITE, label="FT+FS"),
    Method("lora", "LoRA adapters (query, value) + head", _LR, kind=_LARGE, tuning="lora", label="LoRA"),
    Method(
        "levi",
        "LEVI on the selected ht model (the paper's main setting): small model + adapting layers",
        _LR,
        ("ht",),
        kind=_SMALL, label="LEVI",
    ),
    Method("levi/pretrained", "LEVI on the frozen pre-trained large model", _LR,
           kind=_SMALL, label="LEVI (pre-trained)"),
    Method("levi/ft", "LEVI on the selected ft model", _LR, ("ft",), kind=_SMALL, label="LEVI (fine-tuned)"),
    Method("levi/lora", "LEVI on the selected lora model", _LR, ("lora",), kind=_SMALL, label="LEVI (LoRA)"),
    # a1 trains its second ft (seed + 1000, at the selected ft's learning rate) in its own job
    Method("a1", "ablation A1: average of two ft runs with different seeds", {}, ("ft",),
           kind=_LARGE, tuning="all", label="A1"),
    Method("a2", "ablation A2: average of ft and the small model (a4)", {}, ("ft", "a4"),
           kind=_COMPOSITE, label="A2"),
    Method("a3", "ablation A3: adapting layers on the selected ht model's layers (LEVI's large "
                 "model), no small model", _LR, ("ht",), kind=_SMALL, label="A3"),
    Method("a4", "ablation A4: the small task model alone, one head", _LR,
           kind=_SMALL, label="A4 (small model alone)"),
    Method("a5", "ablation A5: small model, shared bottom, several heads averaged", _LR,
           kind=_SMALL, label="A5"),
    # Reference rows (not ranked; rating regression only): see levi_core.methods.refs.
    Method("ref/mean", "reference: the ID-train mean rating", {}, kind=_REFERENCE),
    Method("ref/user_bias", "reference: train mean + regularised user bias", {}, kind=_REFERENCE),
    Method("ref/user_movie_bias", "reference: train mean + regularised user and item biases", {},
           kind=_REFERENCE),
    Method("ref/mf", "reference: biased matrix factorisation (Funk-SVD), size, regulariser and epochs on id_val", {},
           kind=_REFERENCE),
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
    return Method(f"layer/{k_int}", f"an MLP head on layer {k_int} of the frozen large model", _LR,
                  kind=_SMALL, label=f"Layer {k_int}")


register_parametric("layer", layer_method)


# ------------------------------------------------------------------ derived views
_BY_NAME = {m.name: m for m in METHODS}


def of_kind(*kinds: Kind) -> tuple[str, ...]:
    """The names of the catalog's methods of these kinds, in the catalog's order."""
    return tuple(m.name for m in METHODS if m.kind in kinds)


def tuning_of(name: str) -> str | None:
    """Which of the large model's parameters a catalog method trains (None: not the large model)."""
    m = _BY_NAME.get(name)
    return m.tuning if m is not None else None


# The methods whose jobs train the large model (the expensive part of a budget), a1 included.
LARGE_TRAINING = of_kind(Kind.TRAINS_LARGE)
# Of those, the ones trained over a learning-rate grid of their own (one large model per job):
# a1 has none, it reuses the selected ft's.
LARGE_GRIDS = tuple(n for n in LARGE_TRAINING if "lr" in _BY_NAME[n].grid)

# How a one-line summary of a kind names its methods, where not by their label: LEVI's variants
# fold into LEVI, the small-model ablations into one range, the layer/<k> family is "per-layer".
_SUMMARY_NAMES = {"levi/pretrained": "LEVI", "levi/ft": "LEVI", "levi/lora": "LEVI",
                  "a3": "A3-A5", "a4": "A3-A5", "a5": "A3-A5"}
_PARAMETRIC_SUMMARY = {"layer": ("per-layer", Kind.TRAINS_SMALL)}


def summary(kind: Kind) -> str:
    """``"LP, LEVI, A3-A5, per-layer"``: the catalog's methods of a kind in one phrase, for notes."""
    names: list[str] = []
    for m in METHODS:
        if m.kind is kind:
            text = _SUMMARY_NAMES.get(m.name, m.label or m.name)
            if text not in names:
                names.append(text)
    names += [text for text, k in _PARAMETRIC_SUMMARY.values() if k is kind]
    return ", ".join(names)


def label(name: str) -> str:
    """The display name of a method: the label its declaration states (a plugin's method, which
    also wins for a built-in it replaced; ``layer/3`` -> ``Layer 3``), else the catalog's label
    (a built-in replaced without one), else the name."""
    from levi_core.methods.registry import registered_label

    stated = registered_label(name)
    if stated:
        return stated
    if name.startswith("layer/"):
        return f"Layer {name.split('/', 1)[1]}"
    builtin = _BY_NAME.get(name)
    return (builtin.label if builtin is not None else None) or name


def labels(names) -> str:
    """``"FT, LP, HT"``: display names joined, for claim details."""
    return ", ".join(label(n) for n in names)
