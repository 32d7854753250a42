"""Image helpers shared by the vision loaders: batch decoding and the TFDS reader."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from levi_core.data import common


def load_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """Decode and resize every path to [N, size, size, 3] uint8 (PIL releases the GIL while
    decoding, so a few threads help)."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    if not paths:
        return out
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, arr in enumerate(pool.map(lambda p: common.load_image(p, size), paths)):
            out[i] = arr
    return out


def read_tfds_images(name: str, split: str, data_dir: str | None, size: int, max_n: int, seed: int):
    """(file names, labels, images) of a prepared TFDS image dataset, ``download=False``.

    Images are decoded by TFDS and resized like local files (bilinear, whole image)."""
    from PIL import Image

    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    prepared = common.tfds_prepared_dir(data_dir, name)
    builder = tfds.builder(name, data_dir=str(prepared.parents[1] if "/" not in name else prepared.parents[2]))
    n = builder.info.splits[split].num_examples
    keep = set(common.subsample(n, max_n, seed).tolist())
    names, labels, images = [], [], []
    for i, ex in enumerate(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))):
        if i not in keep:
            continue
        fname = ex.get("file_name", ex.get("name", str(i).encode()))
        names.append(fname.decode() if isinstance(fname, bytes) else str(fname))
        labels.append(int(ex["label"]))
        im = Image.fromarray(ex["image"]).convert("RGB").resize((size, size), Image.BILINEAR)
        images.append(np.asarray(im, dtype=np.uint8))
    return names, np.array(labels, np.int32), np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
