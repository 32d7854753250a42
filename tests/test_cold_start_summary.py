"""The cold-start script's summary: per-seed values and differences paired by seed."""

import numpy as np
import pandas as pd
import pytest

from bench.benchmarks.cold_start import summarise


def test_summary_pairs_seeds_and_gives_a_t_interval():
    ood = {(0.0, 0): 1.00, (0.0, 1): 1.02, (0.0, 2): 1.01,
           (0.05, 0): 1.03, (0.05, 1): 1.04, (0.05, 2): 1.05}
    rows = [{"method": "a4", "unknown_id_frac": f, "seed": s, "id": 0.9, "ood": v}
            for (f, s), v in ood.items()]
    text = summarise(pd.DataFrame(rows), 0.05)
    line = next(l for l in text.splitlines()[text.splitlines().index("OOD mean:"):]
                if l.startswith("0.00"))
    values = [float(v) for v in line.split()[1:]]
    d = np.array([1.00 - 1.03, 1.02 - 1.04, 1.01 - 1.05])
    half = 4.302653 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert values[:4] == pytest.approx([1.00, 1.02, 1.01, 1.01], abs=1e-4)
    assert values[4] == pytest.approx(d.mean(), abs=1e-4)
    assert values[5] == pytest.approx(half, abs=1e-4)
