"""What training a head grid in one program saves: a method's learning-rate grid as separate
jobs vs. as one batched (vmapped) program shared by the jobs.

    python -m bench.benchmarks.head_grid [--methods lp levi/pretrained a4 layer/1]
        [--dataset movielens:fixture=1] [--data-dir ...] [--backbone bert-tiny] [--lrs ...]

Each variant runs every job of the grid through ``train_and_evaluate`` in a fresh process
with a fresh cache folder (compilation included, as a worker meets it), after the frozen
features are built (not timed: both variants read the same cache). ``alone``: each job
trains its own point; ``grid``: each job is told its siblings (what ``bench run`` does), the
first trains all points in one program and the others read their member. Prints the wall
seconds of each method's whole grid and the speed-up, and checks the metrics agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
from levi_core.api import train_and_evaluate
a = json.loads(sys.argv[1])
res = {}
for m in a["methods"]:
    t = time.perf_counter()
    metrics = []
    for lr in a["lrs"]:
        r = train_and_evaluate({"dataset": a["dataset"], "method": m, "seed": 0, "hparams": {"lr": lr},
                                "settings": a["settings"], "cache_dir": a["cache"], "data_dir": a["data_dir"],
                                "grid": [{"lr": x} for x in a["lrs"]] if a["grid"] else None},
                               a["root"] + "/" + m.replace("/", "_") + f"_{lr}")
        metrics.append(r["metrics"])
    res[m] = {"s": time.perf_counter() - t, "metrics": metrics}
print("RESULT " + json.dumps(res))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.head_grid",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["lp", "levi/pretrained", "a4", "layer/1"])
    ap.add_argument("--dataset", default="movielens:fixture=1")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backbone", default="bert-tiny")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    args = ap.parse_args(argv)
    settings = {"text": {"backbone": args.backbone, "weights": args.weights, "max_len": args.max_len,
                         "epochs": args.epochs}}
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    out = {}
    with tempfile.TemporaryDirectory() as root:
        features = f"{root}/features_only"
        # build the frozen features once (both variants read them)
        blob = {"methods": ["lp"], "lrs": [args.lrs[0]], "dataset": args.dataset, "settings": settings,
                "data_dir": args.data_dir, "grid": False, "root": f"{root}/warm", "cache": features}
        subprocess.run([sys.executable, "-c", _CHILD, json.dumps(blob)], env=env, check=True,
                       capture_output=True, text=True)
        for variant in ("alone", "grid"):
            cache = f"{root}/{variant}_cache"
            shutil.copytree(f"{features}/features", f"{cache}/features")
            blob.update(methods=args.methods, lrs=args.lrs, grid=variant == "grid",
                        root=f"{root}/{variant}", cache=cache)
            proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(blob)], env=env,
                                  check=True, capture_output=True, text=True)
            out[variant] = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(f"{args.backbone} on {args.dataset}: {len(args.lrs)} learning rates per method, "
          f"{args.epochs} epochs; wall seconds for the whole grid (fresh process, compile included)")
    for m in args.methods:
        a, g = out["alone"][m], out["grid"][m]
        worst = max(abs(x[r][k] - y[r][k]) for x, y in zip(a["metrics"], g["metrics"])
                    for r in x for k in x[r])
        print(f"  {m:16s} separate {a['s']:6.1f} s  one program {g['s']:6.1f} s  "
              f"speed-up {a['s'] / g['s']:.1f}x  (metrics differ by at most {worst:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
