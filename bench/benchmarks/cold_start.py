"""Effect of the unknown-id fraction (cold start) on LEVI and the small model alone.

In the genre shift every OOD movie is unseen in training and maps to the unknown embedding
(row 0). That row is learned only because a fraction ``unknown_id_frac`` of training ids is
replaced by it (levi_core.engines.base.replace_unknown). This script runs ``levi/pretrained``
and ``a4`` (small model alone) for several fractions, the given seeds and one learning rate,
and prints ID and mean OOD RMSE, so the choice of the fraction can be read off.

It reads the preset's settings and reuses the pre-trained feature cache of an earlier
``bench run`` under the same results folder, so on the cpu preset it takes about a minute:

    python -m bench.benchmarks.cold_start --preset cpu --results-dir results
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from levi_core.api import train_and_evaluate

from bench.collect import role_value
from bench.presets import get_preset
from bench.runner import job_settings
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
    cache_dir = str(Path(args.results_dir) / args.preset / "cache")
    print(f"dataset {dataset}, preset {args.preset}, lr {args.lr}; RMSE mean over seeds {args.seeds}")
    print(f"{'method':<16} {'unknown_id_frac':>15} {'ID test':>9} {'OOD mean':>9}")
    for method in args.methods.split(","):
        for frac in (float(f) for f in args.fractions.split(",")):
            settings = base.replace("text", unknown_id_frac=frac).as_dict()
            ids, oods = [], []
            for seed in (int(s) for s in args.seeds.split(",")):
                with tempfile.TemporaryDirectory() as work:
                    rec = train_and_evaluate({"dataset": dataset, "method": method, "seed": seed,
                                              "hparams": {"lr": args.lr}, "settings": settings,
                                              "cache_dir": cache_dir}, work)
                ids.append(role_value(rec, "id_test", "rmse"))
                oods.append(role_value(rec, "ood/mean", "rmse"))
            print(f"{method:<16} {frac:>15g} {statistics.fmean(ids):>9.4f} {statistics.fmean(oods):>9.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
