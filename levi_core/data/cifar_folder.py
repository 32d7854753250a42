"""CIFAR-10 as files: the image-folder layout, where to find it, and how to read classes of it.

The layout is the one TFDS's ``ImageFolder`` and torchvision's ``ImageFolder`` read:
``<root>/train/<class>/*.jpg`` and ``<root>/test/<class>/*.jpg`` (also ``.jpeg``/``.png``),
class folders named as CIFAR-10's classes. Both the ``cifar_vehicles`` dataset (the vehicle
classes) and the backbone's pre-training command (the animal classes) read it through
``read_classes``, so the two can never disagree on what an image or an id is.

On the project's machines a copy is at ``../shared/data/cifar10`` (never copied into the
project: ``shared_local_dir`` finds it, also from a git worktree; ``$LEVI_CIFAR10_DIR``
overrides, and a non-folder value such as ``none`` disables it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from levi_core.data import common, images
from levi_core.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
SPLITS = ("train", "test")
EXTS = (".jpg", ".jpeg", ".png")
ENV = "LEVI_CIFAR10_DIR"
HOW = (
    "Put CIFAR-10 in the image-folder layout train/<class>/*.jpg and test/<class>/*.jpg "
    "(class folders airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck) and "
    "pass that folder as --data-dir (or --data-dir cifar_vehicles=DIR); on a machine with a "
    "network, option source=tfds reads TFDS cifar10 instead."
)


def shared_local_dir(repo_root: str | Path | None = None) -> Path | None:
    """The CIFAR-10 image folder of this project's machines, if there is one:
    ``$LEVI_CIFAR10_DIR``, else ``<repo root>/../shared/data/cifar10`` (``common.shared_data_dir``)."""
    return common.shared_data_dir("cifar10", "train", ENV, repo_root)


def check_layout(name: str, folder: Path | None, classes: Sequence[str]) -> None:
    """One ``DataError`` naming every missing class folder and the fix (--data-dir)."""
    expected = [f"{s}/{c}/*.jpg" for s in SPLITS for c in classes]
    if folder is None or not folder.is_dir():
        raise common.missing_files_error(name, str(folder) if folder else None, expected, HOW)
    missing = [f"{s}/{c}/" for s in SPLITS for c in classes if not (folder / s / c).is_dir()]
    if missing:
        flags = [e + ("  (missing)" if any(e.startswith(m) for m in missing) else "") for e in expected]
        raise common.missing_files_error(name, str(folder), flags, HOW)


def listing(folder: Path, classes: Sequence[str]) -> list[tuple[str, str, int]]:
    """(split, class, file name, size) signature rows of the files read (sorted): the cache
    key's source signature (hashing 60,000 JPEGs on every load would cost more than it saves)."""
    rows = []
    for s in SPLITS:
        for c in classes:
            for p in sorted((folder / s / c).iterdir()):
                if p.suffix.lower() in EXTS:
                    rows.append((f"{s}/{c}/{p.name}", p.stat().st_size))
    return rows


def read_classes(folder: Path, split: str, classes: Sequence[str], size: int = 32,
                 name: str = "cifar10") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids ``<split>/<class>/<file>``, int32 labels = index in ``classes``, uint8 images
    [N, size, size, 3]) of ``split``'s images of ``classes``, in (class, file name) order."""
    paths, labels = [], []
    for k, c in enumerate(classes):
        d = folder / split / c
        if not d.is_dir():
            raise DataError(f"{name}: {str(d)!r} is missing. {HOW}")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in EXTS)
        if not files:
            raise DataError(f"{name}: no images in {str(d)!r}. {HOW}")
        paths += files
        labels += [k] * len(files)
    ids = np.array([f"{split}/{p.parent.name}/{p.name}" for p in paths])
    return ids, np.array(labels, np.int32), images.load_images(paths, size)
