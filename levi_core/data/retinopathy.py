"""Diabetic Retinopathy (Kaggle 2015) with the paper's quality (resolution) shift (D.1).

Source: the Kaggle manual download that TFDS ``diabetic_retinopathy_detection`` also needs, in
one folder (``--data-dir``): ``trainLabels.csv`` (header ``image,level``; level = grade 0-4) and
``train/<image>.jpeg`` (e.g. ``train/10_left.jpeg``; unzip ``train.zip``). The ``fixture=1``
option loads the generated fixture instead. (A prepared TFDS copy is not read: TFDS's resized
configs have lost the original resolutions that define the shift; its ``original`` config is the
same JPEGs, so point at the manual folder.)

Shift (the paper shows ID and OOD images that differ in style and resolution, without a rule):
  * ID = images whose original width is at least ``min_id_width`` pixels (default 2000; the
    Kaggle images range from about 400 to 5184 pixels wide, mostly 2592 and wider);
  * ``ood/low_resolution`` = the narrower ones. Widths come from the JPEG headers (no decode).
  * The fixture's images are 96 and 40 pixels wide; with ``fixture=1`` the default is 64.
ID is split into train / id_val / id_test by ``val_frac`` = ``test_frac`` = 0.1, ``split_seed`` 0
(by image, so the two eyes of a patient can fall in different splits, as in a per-image split).
Subsampling: at most ``max_id`` ID and ``max_ood`` OOD images (seeded, ``sample_seed``; 0 = all).
Images are resized to ``image_size`` x ``image_size`` (default 224, the paper's size; bilinear,
whole image) as uint8 RGB; the same array is the input of both models (``large["image"]`` and
``small["image"]``). Labels int32 grades 0-4; classification, accuracy, 5 classes. Example ids:
the Kaggle image names.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from levi_core.data import common, fixtures, images
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)
from levi_core.errors import DataError

NAME = "retinopathy"
VERSION = "1"


@dataclasses.dataclass(frozen=True)
class RetinopathyOptions(common.DatasetOptions):
    """The options of a ``retinopathy`` dataset id (``retinopathy:key=value,...``); each field's
    annotation is how its text is read."""

    fixture: bool = False
    min_id_width: int = 2000
    image_size: int = 224
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    max_id: int = 0
    max_ood: int = 0
    sample_seed: int = 0
    cache: bool = True
    cache_dir: str = ""


EXPECTED = ["trainLabels.csv  (columns image,level)", "train/<image>.jpeg  (e.g. train/10_left.jpeg)"]
HOW = (
    "Download the Kaggle 'diabetic-retinopathy-detection' data "
    "(https://www.kaggle.com/c/diabetic-retinopathy-detection/data), unzip train.zip into "
    "train/ next to trainLabels.csv, and pass that folder as --data-dir (the same manual folder "
    "TFDS diabetic_retinopathy_detection uses)."
)


def _read_labels(path: Path) -> list[tuple[str, int]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeError) as e:
        raise DataError(f"{NAME}: cannot read {str(path)!r}: {e}") from None
    if not rows or [h.strip() for h in rows[0]] != ["image", "level"]:
        raise DataError(f"{NAME}: {str(path)!r} must start with the header 'image,level'. {HOW}")
    out = []
    for i, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 2 or not row[1].strip().isdigit() or not 0 <= int(row[1]) <= 4:
            raise DataError(f"{NAME}: {str(path)!r} line {i} is not 'image,level' with level 0-4: {row!r}")
        out.append((row[0].strip(), int(row[1])))
    if not out:
        raise DataError(f"{NAME}: {str(path)!r} lists no images. {HOW}")
    return out


def build(folder: Path, opts: common.DatasetOptions) -> Dataset:
    common.count_build(NAME)
    entries = sorted(_read_labels(folder / "trainLabels.csv"))
    paths = [folder / "train" / f"{name}.jpeg" for name, _ in entries]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{NAME}: {len(missing)} image(s) listed in trainLabels.csv are not in "
            f"{str(folder / 'train')!r} (e.g. {', '.join(missing[:3])}). {HOW}"
        )
    widths = np.array([common.image_size_of(p)[0] for p in paths])
    is_id = widths >= opts["min_id_width"]
    id_idx = np.flatnonzero(is_id)
    ood_idx = np.flatnonzero(~is_id)
    id_idx = id_idx[common.subsample(len(id_idx), opts["max_id"], opts["sample_seed"])]
    ood_idx = ood_idx[common.subsample(len(ood_idx), opts["max_ood"], opts["sample_seed"] + 1)]
    if len(id_idx) == 0 or len(ood_idx) == 0:
        raise DataError(
            f"{NAME}: min_id_width={opts['min_id_width']} puts {len(id_idx)} images in ID and "
            f"{len(ood_idx)} in OOD (widths range {widths.min()}-{widths.max()}); choose another value."
        )
    tr, va, te = common.split_indices(len(id_idx), opts["val_frac"], opts["test_frac"], opts["split_seed"])
    parts = {"train": id_idx[tr], "id_val": id_idx[va], "id_test": id_idx[te], "ood/low_resolution": ood_idx}
    splits = {}
    for role, idx in parts.items():
        imgs = images.load_images([paths[i] for i in idx], opts["image_size"])
        splits[role] = Split(
            example_ids=np.array([entries[i][0] for i in idx]),
            labels=np.array([entries[i][1] for i in idx], dtype=np.int32),
            small={"image": imgs},
            large={"image": imgs},
        )
    shift = (
        f"Quality (resolution) shift. ID: retina images at least {opts['min_id_width']} pixels "
        f"wide ({int(is_id.sum())} images); OOD low_resolution: narrower images "
        f"({int((~is_id).sum())}). All resized to {opts['image_size']}x{opts['image_size']}."
    )
    info = {"options": opts.resolved(), "source": str(folder),
            "width_quantiles": {str(q): float(np.quantile(widths, q)) for q in (0, 0.25, 0.5, 0.75, 1)}}
    return Dataset(name=NAME, task="classification", metric="accuracy", splits=splits, num_classes=5,
                   shift=shift, info=info)


@register_dataset(NAME, modality="vision", batch_size=512, options=RetinopathyOptions)
def load_retinopathy(options: dict[str, str], data_dir: str | None) -> Dataset:
    raw = dict(options)
    if raw.get("fixture", "0").lower() in ("1", "true", "yes"):
        raw.setdefault("min_id_width", "64")
    opts = RetinopathyOptions.parse(NAME, raw)
    if opts["fixture"]:

        data_dir = str(fixtures.fixture_dir(NAME))
    folder = Path(data_dir) if data_dir else None
    if folder is None or not folder.is_dir():
        raise common.missing_files_error(NAME, data_dir, EXPECTED, HOW)
    labels = folder / "trainLabels.csv"
    if not labels.is_file() or not (folder / "train").is_dir():
        flags = [EXPECTED[0] + ("" if labels.is_file() else "  (missing)"),
                 EXPECTED[1] + ("" if (folder / "train").is_dir() else "  (missing)")]
        raise common.missing_files_error(NAME, str(folder), flags, HOW)
    # Source signature: the labels file's content and the image files' names and sizes (hashing
    # tens of GB of JPEGs on every load would cost more than preparing them).
    listing = sorted((p.name, p.stat().st_size) for p in (folder / "train").iterdir())
    sources = {"labels": common.file_signature(labels),
               "images": common.cache_key("listing", "", {}, {"l": str(listing)})}
    return common.load_cached(NAME, VERSION, common.key_options(opts), sources,
                              lambda: build(folder, opts), opts["cache_dir"] or None, opts["cache"])


# ---------------------------------------------------------------- fixture
def _fixture(folder: Path, rng: np.random.Generator) -> None:
    """The Kaggle layout, ``trainLabels.csv`` (``image,level``) and
    ``train/<id>_<left|right>.jpeg``, half of the images 96x72 ("high resolution"), half 40x30.
    The fixture loader uses ``min_id_width=64`` unless the option says otherwise."""
    (folder / "train").mkdir()
    lines = ["image,level"]
    for i in range(24):
        for side in ("left", "right"):
            name = f"{10 + i}_{side}"
            w, h = (96, 72) if i % 2 == 0 else (40, 30)
            fixtures.jpeg(folder / "train" / f"{name}.jpeg", w, h, rng)
            lines.append(f"{name},{int(rng.integers(0, 5))}")
    (folder / "trainLabels.csv").write_text("\n".join(lines) + "\n")


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture(NAME, _fixture, stream=3)


# ---------------------------------------------------------------- tables and presets
register_shift("medical", "Medical (quality)", "retinopathy", "ood/mean", "accuracy")
# cpu: the data is not on the 2-core machines the preset is sized for
register_preset_ids("retinopathy", {"smoke": "retinopathy:fixture=1,image_size=32", "cpu": None})
