"""Where a fine-tuning step's time goes, JAX against PyTorch.

    python -m bench.benchmarks.step_breakdown [--backbone minilm-l6] [--batch 32] [--seq-len 64]
                                              [--steps 5] [--no-torch] [--no-profile]

``bench speed`` says whether the step is at parity with PyTorch; this says where the
difference lies, in three parts, on the step ``bench speed`` times (a regression head on the
mean-pooled last layer, MSE loss, Adam over every parameter, same inputs and weights):

1. **Split**: milliseconds of the forward pass (the loss, under training), of the backward pass
   (forward + backward minus forward) and of the Adam update, in each library.
2. **Matrix products at the backbone's own shapes**: the rate (GFLOP/s) of each linear layer's
   forward product, its input gradient ``g @ w.T`` and its weight gradient ``x.T @ g``, in
   XLA (as ``levi_core.backbones.layers.matmul`` computes them) and in PyTorch. The share of a
   step spent in matrix products is large, so the two libraries' GEMM speed bounds the ratio.
3. **XLA's profile of the JAX step** (``jax.profiler`` with XLA:CPU's per-operation trace
   events), each operation's time attributed by its ``op_name`` to a part of the model:
   linear layers, the attention core (scores, softmax, weighted sum and their layout copies),
   activation (GELU / ReLU), norms, embeddings, the rest of the model (residual adds, pooling,
   loss), and the optimizer; forward and backward separately. Operations that XLA runs
   concurrently each count their own time, so the parts add up to about the step's wall time
   on a machine that is otherwise idle, not exactly to it.

Figures are for the machine it runs on and swing with other load: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

from bench.benchmarks import speed

# op_name fragments -> part of the model (first match wins; see ``part_of``)
_PARTS = (
    ("embeddings", re.compile(r"/embed_(?!ln)|/embed/|/pos_embed|patch_embed|/embedding")),
    ("norms", re.compile(r"/(ln_\w+|embed_ln|final_ln|ln|pre_ln|norm\w*)/")),
    ("activation", re.compile(r"/(gelu|relu)\b|jit\((gelu|relu)\)")),
    ("linear layers", re.compile(r"dot_general|/(qkv|out|ff_in|ff_out|mlp_in|mlp_out|wi|wi_0|wi_1|wo)/")),
    ("attention core", re.compile(r"/attention_core/|/attn/|/attention/")),
)
PART_ORDER = ("linear layers", "attention core", "activation", "norms", "embeddings",
              "rest of the model", "optimizer")


def part_of(op_name: str) -> tuple[str, str]:
    """``(part, pass)`` of one HLO operation from its ``op_name`` metadata. ``pass`` is
    "backward" under autodiff's transpose, "forward" under its jvp, "optimizer" outside both.

    A dot inside the attention core is the core's, not a linear layer's: the core's ops carry
    the ``attention_core`` scope (``layers.SelfAttention``), which is tested before the dot rule.
    """
    if "transpose(jvp(" in op_name:
        phase = "backward"
    elif "jvp(" in op_name:
        phase = "forward"
    else:
        return "optimizer", "optimizer"
    if "/attention_core/" in op_name:
        return "attention core", phase
    for part, pattern in _PARTS:
        if pattern.search(op_name):
            return part, phase
    return "rest of the model", phase


# --------------------------------------------------------------------------------- 1. split
def _ms(fn, steps: int, warmup: int) -> float:
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    t0 = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / steps * 1e3


def jax_split(config, params, inputs, mask, steps, warmup) -> dict:
    import jax

    loss_fn, update, _, tree, state, args = speed.jax_step_parts(config, params, inputs, mask)
    loss_j, grad_j, update_j = jax.jit(loss_fn), jax.jit(jax.value_and_grad(loss_fn)), jax.jit(update)
    g = grad_j(tree, *args)[1]
    fwd = _ms(lambda: loss_j(tree, *args), steps, warmup)
    fwd_bwd = _ms(lambda: grad_j(tree, *args), steps, warmup)
    opt = _ms(lambda: update_j(g, state, tree), steps, warmup)
    return {"forward": fwd, "backward": fwd_bwd - fwd, "optimizer": opt}


def torch_split(model, config, inputs, mask, steps, warmup) -> dict:
    loss, params, opt, _ = speed.torch_step_parts(model, config, inputs, mask)

    def fwd_bwd():
        for p in params:
            p.grad = None
        loss().backward()

    fwd_bwd()
    fwd = _ms(loss, steps, warmup)
    both = _ms(fwd_bwd, steps, warmup)
    return {"forward": fwd, "backward": both - fwd, "optimizer": _ms(opt.step, steps, warmup)}


# ---------------------------------------------------------------------- 2. matrix products
def linear_shapes(config) -> list[tuple[str, int, int]]:
    """(name, in, out) of one block's linear layers."""
    if config.family == "t5":
        inner = config.num_heads * config.d_kv
        ff = [("wi", config.d_model, config.d_ff), ("wo", config.d_ff, config.d_model)]
        return [("qkv", config.d_model, 3 * inner), ("out", inner, config.d_model)] + ff
    width = config.mlp_dim if config.family == "vit" else config.intermediate
    return [("qkv", config.hidden, 3 * config.hidden), ("out", config.hidden, config.hidden),
            ("ff_in", config.hidden, width), ("ff_out", width, config.hidden)]


def matmul_rates(config, rows: int, steps: int, warmup: int, use_torch: bool) -> list[dict]:
    """GFLOP/s of each linear layer's three products at ``rows`` (= batch x tokens) rows."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from levi_core.backbones.layers import matmul

    rng = np.random.default_rng(0)
    out = []
    for name, k, n in linear_shapes(config):
        x = jnp.asarray(rng.normal(size=(rows, k)).astype(np.float32))
        w = jnp.asarray(rng.normal(size=(k, n)).astype(np.float32))
        g = jnp.asarray(rng.normal(size=(rows, n)).astype(np.float32))
        _, vjp = jax.vjp(matmul, x, w)
        back = jax.jit(lambda g: vjp(g))
        fwd = jax.jit(matmul)
        gflop = 2 * rows * k * n / 1e9
        row = {"layer": name, "shape": f"{rows}x{k} @ {k}x{n}",
               "jax_forward": gflop / _ms(lambda: fwd(x, w), steps, warmup) * 1e3,
               # input and weight gradient together, as XLA runs them in one program
               "jax_backward": 2 * gflop / _ms(lambda: back(g), steps, warmup) * 1e3}
        if use_torch:
            import torch

            xt, wt, gt = (torch.tensor(np.asarray(a)) for a in (x, w, g))
            row["torch_forward"] = gflop / _ms(lambda: xt @ wt, steps, warmup) * 1e3
            row["torch_backward"] = 2 * gflop / _ms(lambda: (gt @ wt.T, xt.T @ gt), steps, warmup) * 1e3
        out.append(row)
    return out


# ------------------------------------------------------------------------------ 3. profile
def _op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> its op_name metadata, from a compiled module's text."""
    names = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            names.setdefault(m.group(1), op.group(1) if op else "")
    return names


def profile_step(config, params, inputs, mask, steps: int) -> tuple[dict, float]:
    """Milliseconds per step by (part, pass), from XLA:CPU's per-operation trace events, and
    the step's wall milliseconds while traced."""
    import jax

    from jax.profiler import ProfileData

    *_, step, tree, state, args = speed.jax_step_parts(config, params, inputs, mask)
    compiled = jax.jit(step).lower(tree, state, *args).compile(
        compiler_options={"xla_cpu_enable_xprof_traceme": True})
    names = _op_names(compiled.as_text())
    for _ in range(2):
        jax.block_until_ready(compiled(tree, state, *args))
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        t0 = time.perf_counter()
        for _ in range(steps):
            jax.block_until_ready(compiled(tree, state, *args))
        wall = (time.perf_counter() - t0) / steps * 1e3
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        if not files:
            raise RuntimeError("jax.profiler wrote no trace; is this jax build's profiler available?")
        data = ProfileData.from_file(files[0])
    ms = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:  # an HLO operation (thunk), not a runtime or Python event
                    ms[part_of(names[event.name])] += event.duration_ns / 1e6 / steps
    return dict(ms), wall


# ---------------------------------------------------------------------------------- output
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.step_breakdown",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="minilm-l6")
    p.add_argument("--batch", type=int, default=None, help="default: 32 for text, 8 for ViT-B/16")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--no-profile", action="store_true", help="skip part 3 (XLA's profile)")
    args = p.parse_args(argv)
    if not os.path.exists("/dev/nvidia0"):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench speed

    import numpy as np

    from levi_core.backbones import get_config, init_backbone, load_params

    config = get_config(args.backbone)
    batch = args.batch or speed.DEFAULT_BATCH.get(args.backbone, 8)
    inputs, mask = speed._inputs(config, batch, args.seq_len, np.random.default_rng(0))
    use_torch = not args.no_torch and speed._have_torch()
    with tempfile.TemporaryDirectory() as tmp:
        if use_torch:
            model, path = speed._torch_model(args.backbone, config, tmp)
            params = load_params(config, path)
        else:
            model, (_, params, _) = None, init_backbone(config, 0)
        tokens = mask.shape[1] if config.family != "vit" else config.seq_len
        print(f"{args.backbone}, batch {batch} x {tokens} tokens, float32, "
              f"{'same weights in both libraries' if use_torch else 'JAX only'}", flush=True)

        print("\n1. Step split, ms (forward = the loss under training; backward = forward + "
              "backward - forward)")
        jx = jax_split(config, params, inputs, mask, args.steps, args.warmup)
        th = torch_split(model, config, inputs, mask, args.steps, args.warmup) if use_torch else None
        for part in ("forward", "backward", "optimizer"):
            line = f"   {part:10s} JAX {jx[part]:8.1f}"
            if th:
                line += f"   PyTorch {th[part]:8.1f}   JAX/PyTorch time {jx[part] / th[part]:.2f}"
            print(line, flush=True)
        total = sum(jx.values())
        line = f"   {'step':10s} JAX {total:8.1f}"
        if th:
            line += f"   PyTorch {sum(th.values()):8.1f}   speed ratio (PyTorch time / JAX) " \
                    f"{sum(th.values()) / total:.2f}"
        print(line)

        print(f"\n2. Matrix products of one block at {batch * tokens} rows, GFLOP/s "
              "(backward = input and weight gradients)")
        for row in matmul_rates(config, batch * tokens, max(args.steps, 10), args.warmup, use_torch):
            line = (f"   {row['layer']:7s} {row['shape']:24s} JAX fwd {row['jax_forward']:6.0f} "
                    f"bwd {row['jax_backward']:6.0f}")
            if use_torch:
                line += f"   PyTorch fwd {row['torch_forward']:6.0f} bwd {row['torch_backward']:6.0f}"
            print(line, flush=True)

    if not args.no_profile:
        ms, wall = profile_step(config, params, inputs, mask, args.steps)
        print(f"\n3. XLA's profile of the JAX step, ms per step (wall {wall:.0f} ms while traced)")
        print(f"   {'part':18s} {'forward':>8s} {'backward':>9s} {'total':>8s}")
        grand = 0.0
        for part in PART_ORDER[:-1]:
            f, b = ms.get((part, "forward"), 0.0), ms.get((part, "backward"), 0.0)
            grand += f + b
            print(f"   {part:18s} {f:8.1f} {b:9.1f} {f + b:8.1f}")
        opt = ms.get(("optimizer", "optimizer"), 0.0)
        grand += opt
        print(f"   {'optimizer':18s} {'':8s} {'':9s} {opt:8.1f}")
        print(f"   {'sum of operations':18s} {'':8s} {'':9s} {grand:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
