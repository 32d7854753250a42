"""The sections a table is made of, each planning its jobs, collecting its frame and rendering
itself through one interface, ``Section`` (``bench.sections.base``).

* ``base``: the interface, ``Column``, ``Shift``, ``Need`` and ``Narrowing``;
* ``metric_grid``: metric cells aggregated over seeds (``MetricGrid``, ``OodBreakdown``);
* ``figures``: sections drawn as figures (``LayerCurve`` of Fig. 4, ``Sweep`` of E.8);
* ``record_tables``: tables read from one record each (``CostTable``, ``ExactTable``).
"""

from bench.sections.base import Column, Narrowing, Need, Section, Shift, layer_rows, resolve
from bench.sections.figures import LayerCurve, Sweep
from bench.sections.metric_grid import CellSection, MetricGrid, OodBreakdown
from bench.sections.record_tables import CostTable, ExactTable

__all__ = ["Section", "CellSection", "Column", "Shift", "Need", "Narrowing", "MetricGrid",
           "OodBreakdown", "LayerCurve", "Sweep", "CostTable", "ExactTable", "resolve",
           "layer_rows"]
