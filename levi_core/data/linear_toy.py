"""``linear_toy``: the paper's Appendix B linear example as a (tiny) dataset.

Splits: ``train`` (the paper's three fine-tuning points) and ``ood/test`` (our four test
points, see ``levi_core.linear_example``). Features and labels are stored as float64 (the exact
values are Fractions in ``levi_core.linear_example``; the method ``linear_example`` uses those).
"""

from __future__ import annotations

import numpy as np

from levi_core import linear_example as lx
from levi_core.data.base import Dataset, Split, register_dataset
from levi_core.errors import ConfigError


def _split(prefix: str, points) -> Split:
    x = np.array([[float(v) for v in p] for p, _ in points])
    return Split(
        example_ids=np.array([f"{prefix}-{i}" for i in range(len(points))]),
        labels=np.array([float(y) for _, y in points]),
        small={"x": x},
        large={"x": x},
    )


@register_dataset("linear_toy", modality="exact")
def load_linear_toy(options: dict[str, str], data_dir: str | None = None) -> Dataset:
    if options:
        raise ConfigError(f"linear_toy takes no options (got {', '.join(options)})")
    return Dataset(
        name="linear_toy",
        task="regression",
        metric="rmse",
        splits={"train": _split("ft", lx.FINETUNE_POINTS), "ood/test": _split("test", lx.TEST_POINTS)},
        shift="spurious x1 (pre-trained model) and x5 (fine-tuning data); uncorrelated at test",
        info={"source": "paper Appendix B; test points are ours"},
    )
