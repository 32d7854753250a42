"""``costs:backbone=<preset>[,seq_len=N]``: a dataset with no splits that names the large model
whose method rows Tables 3, 15 and 16 cost (``levi_core.methods.cost_analysis``)."""

from __future__ import annotations

from levi_core.data.base import Dataset, register_dataset
from levi_core.errors import ConfigError

OPTIONS = ("backbone", "seq_len")


@register_dataset("costs", modality="none")
def load_costs(options, data_dir) -> Dataset:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown or "backbone" not in options:
        raise ConfigError(f"dataset 'costs' takes backbone=NAME[,seq_len=N] (got {dict(options)})")
    return Dataset(name="costs", task="costs", metric="params", splits={},
                   info={"backbone": options["backbone"], "seq_len": int(options.get("seq_len", 64))})
