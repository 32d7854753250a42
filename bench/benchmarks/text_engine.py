"""What the text benchmarks share: their data/backbone flags and the engine built from them."""

from __future__ import annotations

import argparse


def add_text_args(ap: argparse.ArgumentParser, dataset: str, backbone: str, weights: str) -> None:
    ap.add_argument("--dataset", default=dataset)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--backbone", default=backbone)
    ap.add_argument("--weights", default=weights, choices=("random", "pretrained"))
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None)


def text_engine(args, cache_dir: str | None = None, **text):
    """(dataset, TransformerEngine) for the flags of ``add_text_args`` (plus ``text`` settings)."""
    from levi_core.data.base import load_dataset
    from levi_core.engines import engine_for
    from levi_core.methods.registry import RunContext
    from levi_core.settings import Settings

    ds = load_dataset(args.dataset, args.data_dir)
    text = {"backbone": args.backbone, "weights": args.weights, "max_len": args.max_len,
            **({"batch_size": args.batch_size} if args.batch_size else {}), **text}
    return ds, engine_for(RunContext(ds, 0, {}, Settings.from_mapping({"text": text}), None,
                                     cache_dir=cache_dir))
