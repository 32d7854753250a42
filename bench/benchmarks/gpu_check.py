"""The prepared GPU check: one command, under 8 minutes on a single NVIDIA GPU.

    python -m bench.benchmarks.gpu_check [--json gpu_check.json] [--budget-s 420]

1. ``bench speed`` for MiniLM-L6, T5-small and ViT-B/16, in float32 and bfloat16 (random T5 and
   ViT weights: speed does not depend on the values), printing examples/s, each pass's
   achieved FLOP/s against the measured matmul rate, and MFU against the datasheet peak.
2. A timing-only pass of Table 1's MovieLens column at paper scale with random T5-small
   weights: the training step of ``ft``/``fs``/``lp_ft`` (all parameters) and of ``ht`` (the
   tuned blocks only, on the stored boundary: ``levi_core.engines.half``) at the paper's batch
   of 200 and the length MovieLens' sentences pad to (80 tokens after trimming), and the
   evaluation forward pass over length-bucketed batches, each timed after compiling; printed
   as examples/s and MFU, then the projected time of the column: the paper preset's job counts
   (``bench.jobs.plan``) times 3 epochs of the 72,914 training ratings and one evaluation pass
   over the 99,989 distinct evaluated examples per trained model. Jobs on cached features
   (lp, levi, references) are a rounding error next to these and are left out.

No data is needed (token ids are drawn with MovieLens' length distribution: 50-78 tokens).
Without a GPU the same code runs on tiny random backbones with a handful of steps, which
checks the script in seconds; its figures mean nothing. The step time printed is the median of
the timed steps; compile time is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Table 1, MovieLens column, paper preset: the data's sizes (levi_core.data.movielens on the
# genuine ml-100k; bench.benchmarks.padding prints them) and the preset's epochs
ML_TRAIN, ML_EVAL_DISTINCT, EPOCHS, BATCH, EVAL_BATCH = 72_914, 99_989, 3, 200, 1024
ML_LENGTHS = (50, 78)


def _full_tuning() -> tuple[str, ...]:
    """The catalog's methods that train every parameter of the large model (ft, fs, lp_ft, a1)."""
    from levi_core.methods.catalog import LARGE_TRAINING, tuning_of

    return tuple(m for m in LARGE_TRAINING if tuning_of(m) == "all")


def _gpu() -> bool:
    return Path("/dev/nvidia0").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def _median_step(fn, steps: int) -> float:
    import numpy as np

    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def table1_timing(backbone: str, dtype: str, steps: int, eval_batch: int = EVAL_BATCH,
                  rng_seed: int = 0) -> dict:
    """Examples/s and MFU of the three passes Table 1's MovieLens column is made of."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from bench.benchmarks.speed import device_peak, program_flops
    from levi_core.backbones import build_module, get_config, init_backbone
    from levi_core.backbones.outputs import masked_mean
    from levi_core.engines.forward import _forward, _top, compute_cast
    from levi_core.training import make_optimizer
    import flax.linen as nn

    config = get_config(backbone)
    module = build_module(config)
    body = init_backbone(config, 0)[1]
    head = nn.Dense(1)
    params = {"body": body, "head": head.init(jax.random.PRNGKey(0), jnp.zeros((1, config.hidden_size)))["params"]}
    rng = np.random.default_rng(rng_seed)
    T = 80

    def text(batch):
        lengths = rng.integers(ML_LENGTHS[0], ML_LENGTHS[1] + 1, batch)
        ids = rng.integers(2, config.vocab_size, (batch, T)).astype(np.int32)
        mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
        return jnp.asarray(ids * mask), jnp.asarray(mask)

    ids, mask = text(BATCH)
    y = jnp.zeros((BATCH,), jnp.float32)
    k = config.num_layers // 2
    hidden = jnp.zeros((BATCH, T, config.hidden_size), jnp.float32)
    res = {}

    def trainer(loss_of, labels=None):
        tx = make_optimizer("adam", labels)

        @jax.jit
        def step(p, s, *batch):
            loss, g = jax.value_and_grad(loss_of)(p, *batch)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, jax.tree_util.tree_map(lambda a: -1e-4 * a, u)), s, loss

        return step, tx.init(params)

    def full_loss(p, ids, mask, y):
        h = module.apply({"params": compute_cast(p["body"], dtype)}, ids, mask).last
        pred = head.apply({"params": p["head"]}, masked_mean(h.astype(jnp.float32), mask))
        return jnp.mean((pred[:, 0] - y) ** 2)

    def top_loss(p, hidden, mask, y):
        out = _top(module, config, k, dtype, p["body"], {"h": hidden, "mask": mask})
        pred = head.apply({"params": p["head"]}, masked_mean(out.hidden_states[-1].astype(jnp.float32), mask))
        return jnp.mean((pred[:, 0] - y) ** 2)

    from levi_core.backbones import tuning

    half_labels = {"body": tuning.mode_labels({"backbone": body}, "half", config.num_layers)["backbone"],
                   "head": jax.tree_util.tree_map(lambda _: "train", params["head"])}
    peak = device_peak(dtype)
    for name, loss_of, batch, labels in (("train_full", full_loss, (ids, mask, y), None),
                                         ("train_ht", top_loss, (hidden, mask, y), half_labels)):
        step, opt = trainer(loss_of, labels)
        t0 = time.perf_counter()
        state = {"p": params, "s": opt}

        def once():
            state["p"], state["s"], loss = step(state["p"], state["s"], *batch)
            jax.block_until_ready(loss)

        once()
        compile_s = time.perf_counter() - t0
        secs = _median_step(once, steps)
        flops = program_flops(step, params, opt, *batch)
        res[name] = {"ex_s": BATCH / secs, "step_s": secs, "compile_s": compile_s,
                     "mfu": flops / secs / peak if flops and peak else None, "flops": flops}
    # evaluation: length-bucketed batches, each cut to its longest row (16-multiples)
    eids, emask = text(eval_batch)
    order = np.argsort(np.asarray(emask).sum(1))
    eids, emask = eids[order], emask[order]
    width = 64  # most MovieLens eval batches, sorted by length, fit 64 tokens
    batch = {"ids": eids[:, :width], "mask": emask[:, :width]}
    fwd = jax.jit(lambda p, b: _forward(module, config, head, p, b, dtype=dtype))
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(params, batch))
    compile_s = time.perf_counter() - t0
    secs = _median_step(lambda: jax.block_until_ready(fwd(params, batch)), steps)
    flops = program_flops(fwd, params, batch)
    res["eval_forward"] = {"ex_s": eval_batch / secs, "step_s": secs, "compile_s": compile_s,
                           "mfu": flops / secs / peak if flops and peak else None, "flops": flops}
    return res


def projected_table1(timing: dict) -> dict:
    """Seconds for Table 1's MovieLens column under the paper preset, from the timed passes."""
    from bench.jobs import plan
    from bench.specs import get_table

    jobs = [j for j in plan(get_table("table1"), "paper") if j.dataset.startswith("movielens")]
    count = {}
    for j in jobs:
        count[j.method] = count.get(j.method, 0) + 1
    steps = EPOCHS * (ML_TRAIN // BATCH)
    full = sum(count.get(m, 0) for m in _full_tuning())
    ht = count.get("ht", 0)
    train_s = (full * steps * timing["train_full"]["step_s"] + ht * steps * timing["train_ht"]["step_s"])
    evals = full + ht + 2 * count.get("ft_zeroshot", 0) + 1  # + the frozen features, once
    eval_s = evals * ML_EVAL_DISTINCT / timing["eval_forward"]["ex_s"]
    return {"jobs": count, "train_s": train_s, "eval_s": eval_s, "total_s": train_s + eval_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.gpu_check",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 GPU, 2 CPU)")
    ap.add_argument("--cpu", action="store_true", help="the CPU fallback even with a GPU")
    args = ap.parse_args(argv)
    gpu = _gpu() and not args.cpu
    if not gpu:
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    from bench.benchmarks import speed

    steps = args.steps or (20 if gpu else 2)
    backbones = list(speed.DEFAULT_BACKBONES) if gpu else ["bert-tiny", "t5-tiny", "vit-tiny"]
    t5 = "t5-small" if gpu else "t5-tiny"
    dev = jax.devices()[0]
    print(f"gpu_check on {dev.platform} ({dev.device_kind})"
          + ("" if gpu else ": no GPU, CPU fallback on tiny backbones (figures mean nothing)"), flush=True)
    t_start = time.perf_counter()
    out = {"device": f"{dev.platform} {dev.device_kind}", "speed": [], "table1": {}}
    # 1. bench speed, both dtypes (PyTorch left out: its CUDA build is not part of the check)
    speed_args = ["--backbones", *backbones, "--dtype", "float32", "bfloat16", "--no-torch",
                  "--steps", str(steps), "--warmup", "2"]
    if args.json:
        speed_args += ["--json", str(args.json.with_suffix(".speed.json"))]
    if not gpu:
        speed_args += ["--seq-len", "32"]
    speed.main(speed_args)
    print(f"  (bench speed done at {time.perf_counter() - t_start:.0f} s)", flush=True)
    # 2. Table 1, MovieLens column, timing only
    for dtype in ("float32", "bfloat16"):
        timing = table1_timing(t5, dtype, steps, EVAL_BATCH if gpu else 64)
        proj = projected_table1(timing)
        out["table1"][dtype] = {"timing": timing, "projection": proj}
        print(f"Table 1 MovieLens column, {t5} random weights, {dtype}:")
        for name, r in timing.items():
            mfu = f", MFU {r['mfu']:.1%}" if r["mfu"] is not None else ""
            print(f"  {name:13s} {r['ex_s']:10.1f} ex/s  ({r['step_s'] * 1e3:.1f} ms/step, "
                  f"compile {r['compile_s']:.1f} s{mfu})")
        print(f"  projected: {proj['total_s'] / 60:.1f} min ({proj['train_s'] / 60:.1f} min training "
              f"{sum(proj['jobs'].get(m, 0) for m in _full_tuning() + ('ht',))} large models x {EPOCHS} "
              f"epochs, {proj['eval_s'] / 60:.1f} min evaluation); jobs {proj['jobs']}", flush=True)
    print(f"gpu_check finished in {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
