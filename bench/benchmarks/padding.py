"""How much of what the text backbone runs is padding, before and after length trimming.

    python -m bench.benchmarks.padding --data-dir /path/to/movielens_100k [--backbone minilm-l6]
                                       [--max-len 128] [--batch-size 200] [--eval-batch-size 256]

Counts, on the real tokenized dataset, the fraction of token positions that are padding:

* before: every batch at ``max_len`` (training) and every split evaluated separately in file
  order at ``max_len`` (evaluation, every row of every split);
* after: training chunks cut to their longest row rounded up to ``SEQ_MULTIPLE`` (the engine's
  ``trim_batch``, chunks as ``training.fit`` forms them); evaluation over each distinct example
  once, in length order, each batch cut the same way (``forward_roles``).

Nothing is run through the model: this is the token arithmetic of the engine's own batching.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from bench.benchmarks.text_engine import add_text_args, text_engine  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.padding",
                                 description=__doc__.split("\n\n")[0])
    add_text_args(ap, "movielens", "minilm-l6", "pretrained")
    ap.add_argument("--eval-batch-size", type=int, default=None)
    args = ap.parse_args(argv)

    import numpy as np

    from levi_core import training
    from levi_core.engines.base import batches
    from levi_core.engines.forward import SEQ_MULTIPLE, distinct_rows

    extra = {"eval_batch_size": args.eval_batch_size} if args.eval_batch_size else {}
    ds, e = text_engine(args, **extra)

    def width(lengths):
        top = int(lengths.max()) if len(lengths) else 1
        return min(args.max_len, -(-max(top, 1) // SEQ_MULTIPLE) * SEQ_MULTIPLE)

    # training: one epoch of the engine's batches, chunked as fit chunks them
    x = e.train_data()
    lengths = x["mask"].sum(axis=1)
    idx = e.batch_order(0, 1)
    chunk = training._chunk_steps(x, idx)
    real = int(lengths[idx].sum())
    before_t = idx.size * args.max_len
    after_t = sum(idx[lo: lo + chunk].size * width(lengths[idx[lo: lo + chunk]].ravel())
                  for lo in range(0, len(idx), chunk))
    # evaluation: every role, full batches of eval_batch_size (the last one padded with rows)
    roles = ds.eval_roles
    xs = [e.inputs(r) for r in roles]
    bs = e.eval_batch_size
    before_e = sum(-(-len(xi["mask"]) // bs) * bs * args.max_len for xi in xs)
    real_e_all = sum(int(xi["mask"].sum()) for xi in xs)
    src, row, _ = distinct_rows([ds.splits[r].example_ids for r in roles], xs)
    starts = np.cumsum([0] + [len(xi["mask"]) for xi in xs])[:-1]
    lens = np.concatenate([xi["mask"].sum(axis=1) for xi in xs])[starts[src] + row]
    lens = np.sort(lens, kind="stable")
    after_e = sum(bs * width(lens[lo:hi]) for lo, hi in batches(len(lens), bs))
    real_e = int(lens.sum())
    res = {
        "train_tokens_real": real, "train_padded_before": 1 - real / before_t,
        "train_padded_after": 1 - real / after_t,
        "eval_rows_before": int(sum(len(xi["mask"]) for xi in xs)), "eval_rows_after": int(len(lens)),
        "eval_padded_before": 1 - real_e_all / before_e, "eval_padded_after": 1 - real_e / after_e,
        "eval_positions_before": before_e, "eval_positions_after": after_e,
    }
    print(f"{args.dataset} with {args.backbone}'s tokenizer, max_len {args.max_len}: "
          f"tokens per row {lengths.min()}-{lengths.max()} (mean {lengths.mean():.1f})")
    print(f"  training (batch {e.batch_size}, chunks of {chunk} steps): padded tokens "
          f"{res['train_padded_before']:.1%} before, {res['train_padded_after']:.1%} after "
          f"({before_t / after_t:.2f}x fewer positions)")
    print(f"  evaluation (batch {bs}, {len(roles)} roles): rows {res['eval_rows_before']} -> "
          f"{res['eval_rows_after']} distinct; padded tokens {res['eval_padded_before']:.1%} before, "
          f"{res['eval_padded_after']:.1%} after ({before_e / after_e:.2f}x fewer positions)")
    return res


if __name__ == "__main__":
    main()
