"""``costs:backbone=<preset>[,seq_len=N][,num_outputs=K][,adapter_hidden=H]``: a dataset with no
splits that names the large model whose method rows Tables 3, 15 and 16 cost
(``levi_core.methods.cost_analysis``); ``num_outputs`` and ``adapter_hidden`` size the task head
and LEVI's adapting layers where a table's task differs from the paper's (the defaults are the
paper's)."""

from __future__ import annotations

from levi_core.data.base import Dataset, register_dataset
from levi_core.errors import ConfigError

OPTIONS = ("backbone", "seq_len", "num_outputs", "adapter_hidden")


@register_dataset("costs", modality="none")
def load_costs(options, data_dir) -> Dataset:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown or "backbone" not in options:
        raise ConfigError(f"dataset 'costs' takes backbone=NAME[,seq_len=N][,num_outputs=K]"
                          f"[,adapter_hidden=H] (got {dict(options)})")
    info = {"backbone": options["backbone"], "seq_len": int(options.get("seq_len", 64))}
    for key in ("num_outputs", "adapter_hidden"):
        if key in options:
            try:
                info[key] = int(options[key])
            except ValueError:
                raise ConfigError(f"dataset 'costs': {key}={options[key]!r} is not a whole "
                                  f"number, e.g. {key}=4") from None
    return Dataset(name="costs", task="costs", metric="params", splits={}, info=info)
