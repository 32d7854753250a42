"""Effect of the unknown-id fraction (cold start) on LEVI and the small model alone.

In the genre shift every OOD movie is unseen in training and maps to the unknown embedding
(row 0). That row is learned only because a fraction ``unknown_id_frac`` of training ids is
replaced by it (levi_core.engines.base.replace_unknown). This script runs ``levi/pretrained``
and ``a4`` (small model alone) for several fractions, the given seeds and one learning rate,
and prints ID and mean OOD RMSE per seed with each fraction's difference from the
preset's, paired by seed, so the choice of the fraction can be read off with its noise.

It reads the preset's settings (the cpu preset's training draw included, so every run learns
from the same rows as the tables' methods) and reuses the pre-trained feature cache of an
earlier ``bench run`` under the same results folder, so no backbone runs; the default 18 runs
train heads only:

    python -m bench.benchmarks.cold_start --preset cpu --results-dir results
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from levi_core.api import train_and_evaluate

from bench.collect import role_value
from bench.job_settings import job_settings
from bench.presets import get_preset
from bench.specs import TABLE1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.cold_start", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--fractions", default="0,0.05,0.2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--methods", default="levi/pretrained,a4")
    args = ap.parse_args(argv)
    preset = get_preset(args.preset)
    dataset = preset.dataset_id("movielens")
    base = job_settings(TABLE1, args.preset)
    reference = base.text.unknown_id_frac
    cache_dir = str(Path(args.results_dir) / args.preset / "cache")
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"dataset {dataset}, preset {args.preset} (unknown_id_frac {reference:g}), lr {args.lr}, "
          f"seeds {args.seeds}", flush=True)
    rows = []
    for method in args.methods.split(","):
        for frac in fractions:
            settings = base.replace("text", unknown_id_frac=frac).as_dict()
            for seed in seeds:
                with tempfile.TemporaryDirectory() as work:
                    rec = train_and_evaluate({"dataset": dataset, "method": method, "seed": seed,
                                              "hparams": {"lr": args.lr}, "settings": settings,
                                              "cache_dir": cache_dir}, work)
                rows.append({"method": method, "unknown_id_frac": frac, "seed": seed,
                             "id": role_value(rec, "id_test", "rmse"),
                             "ood": role_value(rec, "ood/mean", "rmse")})
                print(f"  {method} unknown_id_frac={frac:g} seed={seed}: ID {rows[-1]['id']:.4f} "
                      f"OOD {rows[-1]['ood']:.4f}", flush=True)
    print(summarise(pd.DataFrame(rows), reference))
    return 0


def summarise(df: pd.DataFrame, reference: float) -> str:
    """Per-seed RMSE, their mean, and each fraction's difference from ``reference`` paired by
    seed, with a 95% t-interval over seeds (``nan`` with one seed). A negative difference means
    the fraction is better than the reference."""
    lines = []
    for method, g in df.groupby("method", sort=False):
        lines.append(f"\n{method}: test RMSE per seed, mean, and difference from unknown_id_frac "
                     f"{reference:g} (paired by seed, 95% t-interval over seeds)")
        for column, name in (("id", "ID"), ("ood", "OOD mean")):
            table = g.pivot(index="unknown_id_frac", columns="seed", values=column)
            table.columns = [f"seed {c}" for c in table.columns]
            table["mean"] = table.mean(axis=1)
            if reference in table.index:
                diff = g.pivot(index="unknown_id_frac", columns="seed", values=column)
                diff = diff - diff.loc[reference]
                n = diff.shape[1]
                half = (stats.t.ppf(0.975, n - 1) * diff.std(axis=1, ddof=1) / np.sqrt(n)
                        if n > 1 else np.nan)
                table["diff"] = diff.mean(axis=1)
                table["+-"] = half
            lines.append(f"{name}:\n{table.to_string(float_format=lambda v: f'{v:.4f}')}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
