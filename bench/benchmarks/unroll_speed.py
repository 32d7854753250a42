"""How much slower XLA's CPU backend trains a convolutional small model inside a loop.

LEVI's heads on images train a small CNN (``ConvSmall``) with the adapting layers. ``training.fit``
runs a chunk of steps as one ``lax.scan``; on CPU, convolutions in a loop body run far slower
than the same convolutions in straight-line code, so vision heads train with ``fit(unroll=...)``.
This prints seconds per step both ways, on the shapes of the ``cpu`` preset's vision heads
(batch 64, 32 x 32 images, seven states of width 96), and checks the two give the same numbers.

    python -m bench.benchmarks.unroll_speed [--steps 16]
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16, help="training steps per measurement")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)

    from levi_core import training
    from levi_core.models.small import ConvSmall, TaskHeads

    model = TaskHeads(small=ConvSmall(), adapter_hidden=128, n_out=4, out_bias=0.0)
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    data = {"image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
            "y": rng.integers(0, 4, n).astype(np.int32),
            **{f"s{j}": rng.normal(size=(n, 96)).astype(np.float32) for j in range(7)}}
    v = model.init(jax.random.PRNGKey(0), {"image": data["image"][:2]},
                   tuple(data[f"s{j}"][:2] for j in range(7)), False)
    params, extra = v["params"], {k: x for k, x in v.items() if k != "params"}

    def apply_fn(p, ex, b):
        states = tuple(b[f"s{j}"] for j in range(7))
        return model.apply({"params": p, **ex}, {"image": b["image"]}, states, train=True,
                           mutable=list(ex))

    idx = training.batch_indices(n, args.batch, 1, [0])
    out = {}
    for unroll in (0, training.UNROLL_STEPS):
        key = ("unroll_speed", unroll)
        t0 = time.perf_counter()
        training.fit(apply_fn, params, extra, data, idx[:1], 1e-3, "classification", "sgd",
                     cache_key=key, optimize=True, unroll=unroll)  # compile (a 1-step chunk)
        training.fit(apply_fn, params, extra, data, idx, 1e-3, "classification", "sgd",
                     cache_key=key, optimize=True, unroll=unroll)  # and the run's chunk shape
        t1 = time.perf_counter()
        out[unroll] = training.fit(apply_fn, params, extra, data, idx, 1e-3, "classification",
                                   "sgd", cache_key=key, optimize=True, unroll=unroll)
        t2 = time.perf_counter()
        name = "loop (lax.scan)" if not unroll else f"unrolled, chunks of {unroll}"
        print(f"{name:28s} {(t2 - t1) / len(idx):7.3f} s per step   (compile and warm-up "
              f"{t1 - t0:.1f} s)", flush=True)
    a, b = out[0][0], out[training.UNROLL_STEPS][0]
    diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    print(f"largest parameter difference between the two: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
