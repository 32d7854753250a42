"""The settings a table's jobs run with, and what a finished record must hold to be reused.

Both the scheduler (``bench.runner``, which hands settings to workers and keeps or re-runs
records) and the reports (``bench.collect``, which only mix records made under the current
settings) ask these questions, so the answers live here, below both of them.
"""

from __future__ import annotations

from typing import Any, Mapping

from levi_core.data.base import declaration
from levi_core.settings import Settings, settings_dict

from bench.presets import get_preset
from bench.specs import TableSpec


def job_settings(spec: TableSpec, preset: str) -> Settings:
    """The typed settings every job of a table runs with under a preset (unknown keys fail)."""
    return get_preset(preset).typed_settings()


def expected_settings(settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """What a job's record must hold to be reused: its dataset modality's settings."""
    return settings_dict(settings.for_modality(declaration(dataset_id).modality))


def data_dir_for(dataset_id: str, data_dir: str | Mapping[str, str] | None) -> str | None:
    """The local folder of a dataset: one folder for all, or a per-dataset-name mapping."""
    if data_dir is None or isinstance(data_dir, str):
        return data_dir
    name = dataset_id.partition(":")[0]
    return data_dir.get(name, data_dir.get("*"))
