"""The kinds of method (``Kind``) and the large model's tuning modes a method may state.

A leaf module, apart from ``levi_core.methods``: ``levi_core.costs`` keys its rules by kind, and
a method (``cost_analysis``) runs ``levi_core.costs``, so the kinds must be importable without
the methods package.
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    """What a method's job does. It decides what the method costs (``levi_core.costs``,
    ``bench.plan``) and which derived lists hold it (the presets' learning-rate subsets, the
    claims' budget note); every method of the catalog states one.

    * ``TRAINS_LARGE``: trains the large model (all of it, its upper half or LoRA adapters)
      with a head.
    * ``TRAINS_SMALL``: trains small models (a head, adapting layers, LEVI's small model) on
      the frozen large model's states, or without the large model.
    * ``COMPOSITE``: combines the selected runs of other methods (ensembles, interpolations);
      trains nothing.
    * ``REFERENCE``: a reference row fitted without the large model; not ranked.
    * ``EXACT``: computed exactly from its inputs, nothing trained (the linear example, the
      cost tables).
    """

    TRAINS_LARGE = "trains_large"
    TRAINS_SMALL = "trains_small"
    COMPOSITE = "composite"
    REFERENCE = "reference"
    EXACT = "exact"


# The large model's tuning modes a method may state (``levi_core.backbones.tuning``).
TUNINGS = ("all", "half", "lora")

# Kinds with no row in the cost tables (Tables 3, 15, 16): the references use no large model
# and the exact methods train nothing, so a parameter or FLOP count says nothing about them.
UNCOSTED = (Kind.REFERENCE, Kind.EXACT)
