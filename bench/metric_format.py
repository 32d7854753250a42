"""How each metric is shown, in one place: the decimals of a cell (which the best/second-best
marks also compare at), of a difference between two methods in a claim's detail, and the unit
that difference is stated in. Tables (``bench.styling``, the sections), claims
(``bench.verdicts``, ``bench.claims``) and the uncertainty (``bench.uncertainty``) read it here.

Which way a metric improves is its declaration in ``levi_core.metrics``, never restated here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from levi_core.metrics import lower_is_better


@dataclass(frozen=True)
class Metric:
    """A metric as the reports write it.

    Attributes:
      name: the metric's name in the records (``rmse``, ``accuracy``).
      decimals: a cell's mean and std, and the rounding at which cells are ranked.
      diff_decimals: a difference between two methods (a claim's test).
      unit: what a difference is counted in (``points`` of accuracy, ``RMSE``).
    """

    name: str
    decimals: int
    diff_decimals: int
    unit: str

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.name)

    @property
    def short(self) -> str:
        """The name in a figure's axis or a claim's formula (``RMSE``)."""
        return self.name.upper()

    def rounded(self, value: float) -> float:
        """The value as a cell shows it, as a number (ranks compare these)."""
        return round(value, self.decimals)

    def cell(self, value: float | None) -> str:
        """A number as a table cell or a claim's mean shows it; '' for none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.{self.decimals}f}"

    def diff(self, value: float, sign: bool = False) -> str:
        """A difference (or its uncertainty) in the metric's units; ``sign``: always signed."""
        return f"{value:+.{self.diff_decimals}f}" if sign else f"{value:.{self.diff_decimals}f}"


METRICS = {m.name: m for m in (Metric("rmse", decimals=4, diff_decimals=4, unit="RMSE"),
                               Metric("accuracy", decimals=1, diff_decimals=2, unit="points"))}


def metric(name: str) -> Metric:
    """The metric's description; a metric without one is shown to 3 decimals (differences to
    4), in units of its name."""
    return METRICS.get(name) or Metric(name, decimals=3, diff_decimals=4, unit=name.upper())
