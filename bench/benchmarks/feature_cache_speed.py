"""How much the frozen-feature cache saves: one LEVI epoch on cached layer states vs. the same
epoch recomputing the frozen backbone at every step.

    python -m bench.benchmarks.feature_cache_speed                       # bert-tiny, MovieLens fixture
    python -m bench.benchmarks.feature_cache_speed --backbone minilm-l6 --weights pretrained \\
        --dataset movielens:max_train=3000,max_eval=1000 --max-len 64 --batch-size 200

Both variants train the same thing (LEVI's small model + one adapting layer per block, Adam)
on the same batches; they differ only in where the layer states come from. Each variant is
compiled and warmed up on one step first, then ``--epochs`` epochs are timed; the per-epoch
time printed is the median. The one-off cost of building the cache (one forward pass over the
training split) is printed too: every lp / levi / a3 / layer/<k> job on the same large model
reads the same cache, so it is paid once.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.feature_cache_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="bert-tiny")
    ap.add_argument("--weights", default="random", choices=("random", "pretrained"))
    ap.add_argument("--dataset", default="movielens:fixture=1")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per variant")
    ap.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (0: all)")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from levi_core.data.base import load_dataset
    from levi_core.engines import engine_for
    from levi_core.engines.forward import _pooled
    from levi_core.methods.registry import RunContext
    from levi_core.models.small import RecSmall, TaskHeads
    from levi_core.settings import Settings
    from levi_core.training import task_loss

    ds = load_dataset(args.dataset, args.data_dir)
    if ds.modality != "text":
        raise SystemExit("this benchmark runs text datasets (movielens, amazon)")
    typed = Settings.from_mapping({"text": {"backbone": args.backbone, "weights": args.weights,
                                            "max_len": args.max_len, "batch_size": args.batch_size}})
    engine = engine_for(RunContext(ds, 0, {}, typed, None))
    module, config, bparams = engine.module, engine.config, engine.pretrained_body()
    train = ds.splits["train"]
    x = engine.inputs("train")
    L = config.num_layers

    t = time.perf_counter()
    states = engine.forward_role({"body": bparams, "head": engine.new_head(0)}, "train", True)[1]
    build_s = time.perf_counter() - t
    states = jnp.asarray(states[1:].astype(np.float32))  # [L, N, D]

    small = RecSmall(tuple((k, int(v)) for k, v in sorted(ds.vocab_sizes.items())), 32, (512, 256))
    model = TaskHeads(small=small, adapter_hidden=256, n_out=1, out_bias=float(train.labels.mean()))
    small_in = {k: jnp.asarray(v) for k, v in train.small.items()}
    params = model.init(jax.random.PRNGKey(0), {k: v[:2] for k, v in small_in.items()},
                        tuple(states[j, :2] for j in range(L)))["params"]
    tx = optax.adam(1e-3)
    y = jnp.asarray(train.labels)

    def loss_of(p, sm, sts, yb):
        out = model.apply({"params": p}, sm, sts)
        return task_loss(out, yb, "regression")

    def update(p, opt, sm, sts, yb):
        loss, g = jax.value_and_grad(loss_of)(p, sm, sts, yb)
        u, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, u), opt, loss

    @jax.jit
    def step_cached(p, opt, rows):
        sm = {k: v[rows] for k, v in small_in.items()}
        return update(p, opt, sm, tuple(states[j, rows] for j in range(L)), y[rows])

    ids, mask = jnp.asarray(x["ids"]), jnp.asarray(x["mask"])

    @jax.jit
    def step_recompute(p, opt, rows, bp):
        pooled = jax.lax.stop_gradient(_pooled(module, config, bp, {"ids": ids[rows], "mask": mask[rows]}))
        sm = {k: v[rows] for k, v in small_in.items()}
        return update(p, opt, sm, tuple(pooled[j] for j in range(1, L + 1)), y[rows])

    bs = min(args.batch_size, len(train))
    steps = len(train) // bs
    if args.max_steps:
        steps = min(steps, args.max_steps)
    rng = np.random.default_rng(0)

    def time_variant(call):
        p, opt = params, tx.init(params)
        rows0 = jnp.asarray(rng.permutation(len(train))[:bs])
        jax.block_until_ready(call(p, opt, rows0))  # compile + warm up
        times = []
        for _ in range(args.epochs):
            perm = rng.permutation(len(train))
            t0 = time.perf_counter()
            for i in range(steps):
                p, opt, loss = call(p, opt, jnp.asarray(perm[i * bs:(i + 1) * bs]))
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    cached = time_variant(step_cached)
    recompute = time_variant(lambda p, o, r: step_recompute(p, o, r, bparams))
    res = {"backbone": args.backbone, "dataset": args.dataset, "train_examples": len(train),
           "steps_per_epoch": steps, "batch_size": bs, "cached_s_per_epoch": cached,
           "recompute_s_per_epoch": recompute, "speedup": recompute / cached,
           "cache_build_s": build_s}
    print(f"{args.backbone} on {args.dataset}: {len(train)} train examples, {steps} steps of {bs}")
    print(f"  LEVI epoch, cached features:      {cached:8.3f} s")
    print(f"  LEVI epoch, recomputing backbone: {recompute:8.3f} s")
    print(f"  speed-up: {recompute / cached:.1f}x  (one-off cache build over train: {build_s:.2f} s)")
    return res


if __name__ == "__main__":
    main()
