"""Presets scale a table spec without changing its meaning.

A preset is a name (part of every job id) and the size knobs (``settings``) handed to
levi_core. Changing a preset's settings changes results without changing job ids, so treat
them like code: the git commit in every record's provenance says which settings produced it.

- ``paper``: the paper's models and data sizes (needs downloads; fails fast offline).
- ``cpu``: real data at sizes that finish on a 2-core machine.
- ``smoke``: tiny models and generated fixtures; seconds; what CI runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from levi_core.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("paper", "the paper's models (T5-small, ViT-B/16), full data, 3 seeds"),
        Preset("cpu", "real MovieLens with MiniLM-L6; sized for a 2-core machine"),
        Preset("smoke", "tiny random backbones on generated fixtures; seconds (CI)"),
    ]
}

DEFAULT_PRESET = "paper"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
