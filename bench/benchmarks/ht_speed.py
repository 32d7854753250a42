"""What computing HT's frozen lower half once saves: an HT epoch, the predictions plus layer
states (what LEVI, A3 and Table 14 read) of an HT model, and the pre-trained model's layer states
(LP, LEVI on the pre-trained model, Fig. 4), full model vs. upper blocks only.

    python -m bench.benchmarks.ht_speed [--backbone minilm-l6 --weights pretrained]
        [--dataset movielens:max_train=2000,max_eval=300 --data-dir ...] [--max-len 128]

Both paths run the engine's own code (``training.fit`` with the half-tuning mask;
``predict(..., keep_states_in=...)``), each compiled and warmed up first (its compile time
is excluded; the shared compilation cache pays it once per shape anyway). The one-off cost of
building the boundary (one frozen-half pass over every distinct example) is printed apart:
every ``ht`` run of the dataset (seeds x learning rates) reuses it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from bench.benchmarks.text_engine import add_text_args, text_engine  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.ht_speed",
                                 description=__doc__.split("\n\n")[0])
    add_text_args(ap, "movielens:fixture=1", "bert-tiny", "random")
    args = ap.parse_args(argv)

    import numpy as np

    from levi_core import training

    with tempfile.TemporaryDirectory() as cache:
        ds, e = text_engine(args, cache_dir=cache)
        params0 = e.start("pretrained", 0)
        labels = e.labels(params0, "half")
        idx = e.batch_order(0, 1)
        t = time.perf_counter()
        top = e.frozen_lower("half")
        build_s = time.perf_counter() - t

        def epoch(run, data):
            fit = lambda: training.fit(run.apply, params0, {}, data, idx, 1e-4, e.task, e.optimizer,  # noqa: E731
                                       labels, cache_key=run.cache_key, prepare=e.trim_batch)
            fit()  # compile and warm up
            t0 = time.perf_counter()
            params = fit()[0]
            return time.perf_counter() - t0, params

        full_s, params = epoch(e, e.train_data())
        top_s, params_top = epoch(top, top.data())

        def states(run, folder):
            run.predict(params, ds.eval_roles, keep_states_in=folder)  # compile
            t0 = time.perf_counter()
            run.predict(params, ds.eval_roles, keep_states_in=folder)
            return time.perf_counter() - t0

        os.makedirs(f"{cache}/a", exist_ok=True)
        os.makedirs(f"{cache}/b", exist_ok=True)
        pred_full = states(e, f"{cache}/a")
        pred_top = states(top, f"{cache}/b")

        def pretrained(run):  # the two branches of the feature cache's compute
            run.forward_roles(params0, ds.eval_roles, True)  # compile
            t0 = time.perf_counter()
            out = run.forward_roles(params0, ds.eval_roles, True)
            return time.perf_counter() - t0, out

        pre_full, st_full = pretrained(e)
        pre_top, st_top = pretrained(top)
        pre_diff = max(float(np.max(np.abs(st_full[r][1].astype(np.float32) - st_top[r][1].astype(np.float32))))
                       for r in ds.eval_roles)
        diff = max(float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))
                   for a, b in zip(jax_leaves(params), jax_leaves(params_top)))
    rows = sum(len(ds.splits[r]) for r in ds.eval_roles)
    res = {"backbone": args.backbone, "dataset": args.dataset, "layers": e.num_layers,
           "frozen_blocks": top.k, "train_rows": len(ds.splits["train"]), "steps": len(idx),
           "ht_epoch_full_s": full_s, "ht_epoch_cached_s": top_s,
           "states_full_s": pred_full, "states_cached_s": pred_top, "boundary_build_s": build_s,
           "max_param_diff": diff, "pretrained_states_full_s": pre_full,
           "pretrained_states_cached_s": pre_top, "pretrained_states_max_diff": pre_diff}
    print(f"{args.backbone} ({e.num_layers} blocks, {top.k} frozen) on {args.dataset}: "
          f"{len(ds.splits['train'])} train rows, {len(idx)} steps of {e.batch_size}")
    print(f"  HT epoch, full model:            {full_s:8.2f} s")
    print(f"  HT epoch, tuned blocks only:     {top_s:8.2f} s   speed-up {full_s / top_s:.2f}x "
          f"(trained parameters differ by at most {diff:.1e})")
    print(f"  predictions + layer states of an HT model over {rows} rows: full {pred_full:.2f} s,"
          f" tuned blocks only {pred_top:.2f} s, speed-up {pred_full / pred_top:.2f}x")
    print(f"  pre-trained model's layer states (the feature cache's entry) over {rows} rows: full "
          f"{pre_full:.2f} s, upper blocks on the stored boundary {pre_top:.2f} s, speed-up "
          f"{pre_full / pre_top:.2f}x (states differ by at most {pre_diff:.1e})")
    print(f"  one-off boundary build (every distinct example, shared by all HT runs, its evaluation part by every seed's draw): {build_s:.2f} s")
    return res


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


if __name__ == "__main__":
    main()
