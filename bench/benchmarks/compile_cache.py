"""What the shared compilation cache saves: the same jobs in two fresh processes, one cache.

    python -m bench.benchmarks.compile_cache [--methods ft lp levi/pretrained] [--backbone bert-tiny]
                                             [--dataset movielens:fixture=1,max_train=384,max_eval=96]

Each pass is a new Python process (as a Ray worker or a later ``bench run`` is) running the
jobs through ``train_and_evaluate`` with a fresh compilation-cache folder of its own
(``LEVI_BENCH_COMPILE_CACHE``, not the machine's, so the first pass really compiles); the first
pass fills it, the second loads. Prints, per job and pass, the wall seconds, the
compile seconds spent and the compile seconds the cache saved (what ``bench run`` prints per
job), and checks the two passes' metrics are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
from levi_core.api import train_and_evaluate
args = json.loads(sys.argv[1])
out = []
for m in args["methods"]:
    t = time.perf_counter()
    deps = {"ht": args["root"] + "/ht"} if m == "levi" else {}
    r = train_and_evaluate({"dataset": args["dataset"], "method": m, "seed": 0,
                            "hparams": {"lr": 1e-3}, "settings": args["settings"],
                            "cache_dir": args["root"] + "/cache"},
                           args["root"] + "/" + m.replace("/", "_"), deps)
    out.append({"method": m, "wall_s": time.perf_counter() - t, **r["timings"],
                "metrics": r["metrics"]})
print("RESULT " + json.dumps(out))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.compile_cache",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["ft", "lp", "levi/pretrained"])
    ap.add_argument("--backbone", default="bert-tiny")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--dataset", default="movielens:fixture=1,max_train=384,max_eval=96")
    args = ap.parse_args(argv)
    settings = {"text": {"backbone": args.backbone, "weights": args.weights, "max_len": args.max_len,
                         "epochs": 1, "batch_size": 64, "small_hidden": [16, 8],
                         "adapter_hidden": 8, "embed_dim": 4}}
    passes = []
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
               "LEVI_BENCH_COMPILE_CACHE": f"{root}/xla"}
        for k in range(2):
            blob = json.dumps({"methods": args.methods, "dataset": args.dataset,
                               "settings": settings, "root": f"{root}/pass{k}"})
            # the two passes share the compilation cache and nothing else (fresh workdirs and
            # feature caches: the second pass does the same work)
            os.makedirs(f"{root}/pass{k}/cache", exist_ok=True)
            proc = subprocess.run([sys.executable, "-c", _CHILD, blob], env=env,
                                  capture_output=True, text=True, check=True)
            passes.append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
    print(f"{args.backbone} on {args.dataset}: each job in two fresh processes, one compilation cache")
    for a, b in zip(*passes):
        same = a["metrics"] == b["metrics"]
        print(f"  {a['method']:16s} first {a['wall_s']:6.1f} s (compile {a['compile_s']:5.1f} s)"
              f"  second {b['wall_s']:6.1f} s (compile {b['compile_s']:5.1f} s, saved "
              f"{b['compile_saved_s']:5.1f} s, {b['compile_cache_hits']} programs loaded)"
              f"  metrics identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
