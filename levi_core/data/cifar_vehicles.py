"""CIFAR-10 vehicles under common corruptions: a real-image shift that runs offline (beyond the paper).

The paper's vision data (Kaggle Retinopathy, ImageNet-Sketch/A/R/V2) and its ImageNet-21k ViT
cannot be obtained on a machine without a network; CIFAR-10 can. This dataset keeps the paper's
three distributions apart:

  * pre-training (not part of this dataset): the six animal classes of the training split, on
    which the project's own ``vit-cifar-animals`` backbone was trained
    (``python -m bench.benchmarks.pretrain_cifar_vit``); the backbone never sees a vehicle;
  * ID (fine-tuning): the four vehicle classes of the training split (labels 0-3 = airplane,
    automobile, ship, truck; 20,000 images), split into ``train`` / ``id_val`` by a seeded
    random permutation (``val_frac`` = 0.1, ``split_seed`` = 0: 18,000 / 2,000);
    ``id_test`` = the vehicle images of the test split (4,000);
  * OOD: those 4,000 test images under CIFAR-10-C's corruptions (Hendrycks & Dietterich 2019)
    at ``severity`` = 3 of 5, one ``ood/<corruption>`` set each (option ``corruptions``, joined
    with ``+``; default: gaussian_noise, gaussian_blur, fog, contrast, jpeg_compression,
    pixelate: noise, blur, weather and three digital ones), with CIFAR-10-C's own 32 px constants
    (``levi_core.data.corruptions`` lists them; not ImageNet-C's, which TFDS's functions carry),
    the random ones seeded by ``corruption_seed`` and the example id; and ``ood/resolution``:
    the same images bilinearly down-sampled to ``low_resolution`` = 16 px and up-sampled back,
    the analogue of Retinopathy's quality shift (``low_resolution=0`` leaves it out).

Sources (``source`` = auto | files | tfds):
  * files: the image-folder layout of TFDS's ``ImageFolder`` (and torchvision's),
    ``<--data-dir>/train/<class>/*.jpg`` and ``test/<class>/*.jpg``, class folders named as
    CIFAR-10's classes (only the vehicle folders are read). With no ``--data-dir`` the project
    machines' copy at ``../shared/data/cifar10`` is used (``$LEVI_CIFAR10_DIR`` overrides);
  * tfds: TFDS ``cifar10`` (``train`` and ``test``), a prepared copy under ``--data-dir``,
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``, or downloaded by TFDS (160 MB) when the
    network answers (``download`` = auto | 1 | 0, as for ``movielens``); ids are
    ``tfds/<split>/<TFDS id>``. ``auto`` reads the folder when there is one, else TFDS.
  TFDS's ``cifar10_corrupted`` is not read: its sets cover all ten classes at one severity each
  and would need 19 downloads; the OOD sets here are made from the ID test images by the same
  formulas and constants, so both sources give one definition of the shift.

Images are uint8 RGB at ``image_size`` (32: CIFAR-10's own size; another size resizes
bilinearly after corrupting); the same array feeds both models. Labels int32 0-3; accuracy.
Example ids: ``<split>/<class>/<file>``; in an OOD set ``<set>/test/<class>/<file>`` (an id
names one input across splits, and the engines run each distinct id once, so a corrupted image
must not share its original's id; the suffix names the original). ``fixture=1`` loads the generated fixture (a few 32 px JPEGs per class
in the same layout). The prepared arrays are cached and fingerprinted as every dataset's
(``levi_core.data.cache``); the source signature is the list of file names and sizes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from levi_core.data import cifar_folder, common, corruptions, fixtures
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)
from levi_core.errors import ConfigError, DataError

NAME = "cifar_vehicles"
VERSION = "1"


@dataclasses.dataclass(frozen=True)
class CifarVehiclesOptions(common.DatasetOptions):
    """The options of a ``cifar_vehicles`` dataset id (``cifar_vehicles:key=value,...``); each field's
    annotation is how its text is read."""

    fixture: bool = False
    source: str = "auto"
    download: str = "auto"
    corruptions: str = "+".join(corruptions.NAMES)
    severity: int = 3
    corruption_seed: int = 0
    low_resolution: int = 16
    image_size: int = 32
    val_frac: float = 0.1
    split_seed: int = 0
    cache: bool = True
    cache_dir: str = ""


CLASSES = cifar_folder.VEHICLES
TFDS_NAME = "cifar10"
TFDS_HOST = "storage.googleapis.com"  # where TFDS downloads cifar10 from


def _read_tfds(data_dir: str | None, split: str, download: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels 0-3, images) of the vehicles of TFDS cifar10's ``split``."""
    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    if common.tfds_prepared_dir(data_dir, TFDS_NAME) is None:
        if download == "0" or not common.can_download(TFDS_HOST):
            raise common.missing_files_error(
                NAME, data_dir, ["a prepared TFDS cifar10, or train/<class>/*.jpg + test/<class>/*.jpg"],
                cifar_folder.HOW)
        builder.download_and_prepare()
    names = builder.info.features["label"].names
    keep = {names.index(c): k for k, c in enumerate(CLASSES)}
    ids, labels, images = [], [], []
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        label = int(ex["label"])
        if label in keep:
            ids.append(f"tfds/{split}/{ex['id'].decode() if isinstance(ex['id'], bytes) else ex['id']}")
            labels.append(keep[label])
            images.append(ex["image"])
    order = np.argsort(ids, kind="stable")  # canonical order: results must not depend on TFDS's
    return (np.array(ids)[order], np.array(labels, np.int32)[order],
            np.stack(images)[order] if images else np.zeros((0, 32, 32, 3), np.uint8))


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BILINEAR)) for x in images])


def build(folder: Path | None, data_dir: str | None, opts: common.DatasetOptions, names: list[str],
          download: str) -> Dataset:
    common.count_build(NAME)
    if folder is not None:
        tr_ids, tr_y, tr_x = cifar_folder.read_classes(folder, "train", CLASSES, name=NAME)
        te_ids, te_y, te_x = cifar_folder.read_classes(folder, "test", CLASSES, name=NAME)
    else:
        tr_ids, tr_y, tr_x = _read_tfds(data_dir, "train", download)
        te_ids, te_y, te_x = _read_tfds(data_dir, "test", download)
    tr, va, _ = common.split_indices(len(tr_ids), opts["val_frac"], 0.0, opts["split_seed"])
    size = opts["image_size"]

    def split(ids, y, x, ood: str = ""):
        x = _resize(x, size)
        if ood:
            ids = np.array([f"{ood}/{i}" for i in ids])
        return Split(example_ids=ids, labels=y, small={"image": x}, large={"image": x})

    splits = {"train": split(tr_ids[tr], tr_y[tr], tr_x[tr]),
              "id_val": split(tr_ids[va], tr_y[va], tr_x[va]),
              "id_test": split(te_ids, te_y, te_x)}
    for c in names:
        x = corruptions.corrupt(te_x, c, opts["severity"], opts["corruption_seed"], te_ids)
        splits[f"ood/{c}"] = split(te_ids, te_y, x, c)
    if opts["low_resolution"]:
        splits["ood/resolution"] = split(te_ids, te_y, corruptions.resolution(te_x, opts["low_resolution"]),
                                         "resolution")
    shift = (
        f"Corruption shift on real images. ID: CIFAR-10's vehicles ({', '.join(CLASSES)}), "
        f"training split {len(tr)}/{len(va)} train/id_val, test split {len(te_ids)} id_test. "
        f"OOD: the id_test images under CIFAR-10-C's {', '.join(names)} at severity "
        f"{opts['severity']} of 5 (CIFAR-10-C's 32 px constants)"
        + (f", and down-sampled to {opts['low_resolution']} px and back (resolution)"
           if opts["low_resolution"] else "")
        + ". The backbone was pre-trained on the animal classes only."
    )
    info = {"options": opts.resolved(), "source": str(folder) if folder else "tfds",
            "classes": list(CLASSES),
            "corruption_constants": {c: corruptions.CONSTANTS[c][opts["severity"] - 1] for c in names}}
    return Dataset(name=NAME, task="classification", metric="accuracy", splits=splits,
                   num_classes=len(CLASSES), shift=shift, info=info)


@register_dataset(NAME, modality="vision", batch_size=512, options=CifarVehiclesOptions)
def load_cifar_vehicles(options: dict[str, str], data_dir: str | None) -> Dataset:
    opts = CifarVehiclesOptions.parse(NAME, options)
    names = common.parse_list(opts["corruptions"])
    bad = [c for c in names if c not in corruptions.FUNCTIONS]
    if bad:
        raise ConfigError(f"{NAME}: unknown corruption(s) {', '.join(bad)}; known: "
                          f"{', '.join(corruptions.NAMES)} (joined with +)")
    if not 1 <= opts["severity"] <= 5:
        raise ConfigError(f"{NAME}: severity={opts['severity']}; CIFAR-10-C's severities are 1-5")
    if not 0 <= opts["low_resolution"] < opts["image_size"]:
        raise ConfigError(f"{NAME}: low_resolution={opts['low_resolution']} must be 0 (no "
                          f"resolution set) or below image_size={opts['image_size']}")
    if not names and not opts["low_resolution"]:
        raise ConfigError(f"{NAME}: no OOD set: give corruptions or low_resolution")
    source = opts["source"]
    if source not in ("auto", "files", "tfds"):
        raise ConfigError(f"{NAME}: source={source!r}; use auto, files or tfds")
    download = common.parse_download(NAME, opts["download"])
    if opts["fixture"]:

        data_dir, source = str(fixtures.fixture_dir(NAME)), "files"
    folder: Path | None = None
    if source != "tfds":
        folder = Path(data_dir) if data_dir else cifar_folder.shared_local_dir()
        has_folder = folder is not None and (folder / "train").is_dir()
        if source == "files" or has_folder or common.tfds_prepared_dir(data_dir, TFDS_NAME) is None \
                and download == "0":
            cifar_folder.check_layout(NAME, folder, CLASSES)
        elif not has_folder:
            folder = None  # auto with no folder: TFDS (prepared, or downloaded when online)
    if folder is not None:
        sources = {"images": common.cache_key("listing", "", {}, {"l": str(cifar_folder.listing(folder, CLASSES))})}
    else:
        prepared = common.tfds_prepared_dir(data_dir, TFDS_NAME)
        sources = {"tfds": common.file_signature(prepared / "dataset_info.json") if prepared else "download"}
    try:
        return common.load_cached(NAME, VERSION, common.key_options(opts), sources,
                                  lambda: build(folder, data_dir, opts, names, download),
                                  opts["cache_dir"] or None, opts["cache"])
    except ImportError as e:  # fog needs tensorflow-datasets' corruption helpers
        raise DataError(f"{NAME}: {e}; install tensorflow-datasets (a project dependency)") from None


# ---------------------------------------------------------------- fixture
def _fixture(folder: Path, rng: np.random.Generator) -> None:
    """The CIFAR-10 image folder, ``train/<class>/NNNN.jpg`` (10 per class) and
    ``test/<class>/NNNN.jpg`` (5 per class) for all ten classes, 32 x 32; each class has its own
    mean colour, so a model can learn something from them."""
    from PIL import Image

    from levi_core.data.cifar_folder import CLASSES

    for split, n in (("train", 10), ("test", 5)):
        for k, c in enumerate(CLASSES):
            d = folder / split / c
            d.mkdir(parents=True)
            colour = np.array([(k * 97) % 256, (k * 57 + 80) % 256, (k * 31 + 160) % 256])
            for i in range(n):
                noise = rng.integers(-30, 30, size=(32, 32, 3))
                arr = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.jpg", format="JPEG", quality=90)


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture(NAME, _fixture, stream=5)


# ---------------------------------------------------------------- tables and presets
# beyond the paper: the real-image shift that runs offline, cpu preset only (paper and smoke
# leave it out, so that their jobs and CI's cost stay as they were); scored on a fixed sample of
# 2,000 id_val / id_test images and 1,000 per OOD set
register_shift("cifar", "CIFAR-10 vehicles (corruption)", "cifar_vehicles", "ood/mean", "accuracy")
register_preset_ids("cifar_vehicles", {"paper": None, "smoke": None,
                                       "cpu": "cifar_vehicles:max_eval=2000,max_ood=1000"})
