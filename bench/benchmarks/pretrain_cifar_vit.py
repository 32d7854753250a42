"""Pre-train the ``vit-cifar-animals`` backbone and write its committed weights.

The ``cpu`` preset's real-image shift (dataset ``cifar_vehicles``: CIFAR-10's vehicles, OOD
their corrupted test images) needs a pre-trained image transformer, and none can be obtained
offline. This command trains the project's ViT from scratch on the six animal classes of
CIFAR-10's training split (30,000 images; the backbone never sees a vehicle), reports its
accuracy on the animal images of the test split (6,000, never trained on), and writes

    levi_core/backbones/pretrained/vit-cifar-animals/model.safetensors  (Hugging Face ViT names)
    levi_core/backbones/pretrained/vit-cifar-animals/manifest.json      (sha256, accuracy, recipe)

which are committed, so a fresh clone runs the cpu tables with no manual step. Deterministic
for a seed (see ``levi_core.backbones.pretrain``); the defaults are what the committed weights
were trained with (26 minutes on the shared 2-core machine, 2 epochs):

    python -m bench.benchmarks.pretrain_cifar_vit [--data-dir ../shared/data/cifar10]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from levi_core.backbones.config import get_config, get_preset
from levi_core.backbones.convert import export
from levi_core.backbones.pretrain import PretrainConfig, pretrain
from levi_core.backbones.weights import BUNDLED_ROOT, count_params
from levi_core.data import cifar_folder

NAME = "vit-cifar-animals"


def main(argv=None) -> int:
    d = PretrainConfig()
    ap = argparse.ArgumentParser(prog="python -m bench.benchmarks.pretrain_cifar_vit",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None,
                    help="CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg); "
                         "default: ../shared/data/cifar10 or $LEVI_CIFAR10_DIR")
    ap.add_argument("--out", default=str(BUNDLED_ROOT / NAME), help="folder for the two files")
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--max-train", type=int, default=0, help="first N training images (a quick check); 0 = all")
    args = ap.parse_args(argv)

    folder = Path(args.data_dir) if args.data_dir else cifar_folder.shared_local_dir()
    cifar_folder.check_layout(NAME, folder, cifar_folder.ANIMALS)
    t0 = time.perf_counter()
    _, y_tr, x_tr = cifar_folder.read_classes(folder, "train", cifar_folder.ANIMALS, name=NAME)
    _, y_te, x_te = cifar_folder.read_classes(folder, "test", cifar_folder.ANIMALS, name=NAME)
    if args.max_train:
        x_tr, y_tr = x_tr[: args.max_train], y_tr[: args.max_train]
    print(f"read {len(x_tr)} training and {len(x_te)} held-out animal images from {folder} "
          f"in {time.perf_counter() - t0:.0f}s", flush=True)

    config = get_config(NAME)
    pc = dataclasses.replace(d, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    body, report = pretrain(config, (x_tr, y_tr), (x_te, y_te), len(cifar_folder.ANIMALS), pc,
                            label=f"pre-training {NAME}", log=lambda s: print(s, flush=True))

    from safetensors.numpy import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / get_preset(NAME).files[0]
    save_file(export(body, config), str(weights), metadata={"format": "pt"})
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest = {
        "backbone": NAME,
        "file": weights.name,
        "sha256": sha,
        "bytes": weights.stat().st_size,
        "parameters": count_params(body),
        "config": dataclasses.asdict(config),
        "pretraining": {
            "data": "CIFAR-10 training split, classes " + ", ".join(cifar_folder.ANIMALS)
                    + f" ({len(x_tr)} images)",
            "held_out": f"CIFAR-10 test split, the same classes ({len(x_te)} images)",
            "recipe": dataclasses.asdict(pc),
            "command": "python -m bench.benchmarks.pretrain_cifar_vit " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "held_out_accuracy": report["held_out_accuracy"],
        "chance_accuracy": round(1 / len(cifar_folder.ANIMALS), 4),
        "history": report["history"],
        "train_seconds": report["seconds"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"held-out accuracy {report['held_out_accuracy']:.4f} (chance {1 / 6:.4f}); "
          f"{report['seconds'] / 60:.1f} min; wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, "
          f"sha256 {sha})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
