"""ImageNet variants with the paper's domain shift (D.1): ID ImageNet-Sketch; OOD A, R, V2.

Sources, per variant, in one folder (``--data-dir``), the original archives unpacked:
  * ``sketch/<wnid>/*.JPEG`` (ImageNet-Sketch ``ImageNet-Sketch.zip``; 1000 classes, ~50 each),
  * ``imagenet-a/<wnid>/*.jpg`` (``imagenet-a.tar``; 200 classes),
  * ``imagenet-r/<wnid>/*.jpg`` (``imagenet-r.tar``; 200 classes),
  * ``imagenetv2-matched-frequency-format-val/<class index 0-999>/*.jpeg`` (ImageNetV2
    ``imagenetv2-matched-frequency.tar.gz``; option ``v2_dir`` names another variant's folder).
  A variant whose folder is absent is read from a prepared TFDS copy (``imagenet_sketch``,
  ``imagenet_a``, ``imagenet_r``, ``imagenet_v2/matched-frequency``) under ``--data-dir``,
  ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` if there is one. A variant found nowhere is
  downloaded and prepared by TFDS on first use when the network answers (option ``download``:
  ``auto``, the default; ``1`` insists; ``0`` never): Sketch 7.6 GB, A 0.7 GB, R 2.2 GB, V2
  1.3 GB. Offline the missing-files error comes in seconds. ``fixture=1`` loads the fixture.

Labels are the 1000 ImageNet class indices in the standard order (sorted wnids, the list TFDS
ships in ``imagenet2012/labels.txt``), for every variant: ``num_classes`` = 1000. ImageNet-A and
-R cover 200 classes each: ``info["class_subsets"]["ood/a"]`` (and ``"ood/r"``) lists the
1000-class indices present (from the folders), so evaluation can restrict the logits to them,
as their authors do; ``info["class_subsets_wnids"]`` gives the same as wnids.
Shift: ID = ImageNet-Sketch split into train / id_val / id_test (``val_frac`` = ``test_frac`` =
0.1, ``split_seed`` 0, by image); OOD = ``ood/a``, ``ood/r``, ``ood/v2`` (option ``variants``,
default ``a+r+v2``). Subsampling: at most ``max_per_class`` Sketch images per class and
``max_ood`` images per OOD set (seeded by ``sample_seed``; 0 = all, the default). Images are
resized to ``image_size`` (224) square, bilinear, whole image, uint8 RGB; the same array feeds
both models. Note the memory: all of Sketch at 224 is about 7.6 GB; use ``max_per_class`` or a
smaller ``image_size`` on small machines. Example ids: the path inside the folder layout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from levi_core.data import common, fixtures, images
from levi_core.data.base import (Dataset, Split, register_dataset, register_preset_ids,
                                 register_shift)
from levi_core.errors import DataError

NAME = "imagenet"
VERSION = "1"


@dataclasses.dataclass(frozen=True)
class ImageNetOptions(common.DatasetOptions):
    """The options of a ``imagenet`` dataset id (``imagenet:key=value,...``); each field's
    annotation is how its text is read."""

    fixture: bool = False
    download: str = "auto"
    variants: str = "a+r+v2"
    v2_dir: str = "imagenetv2-matched-frequency-format-val"
    image_size: int = 224
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    max_per_class: int = 0
    max_ood: int = 0
    sample_seed: int = 0
    cache: bool = True
    cache_dir: str = ""


TFDS = {"sketch": "imagenet_sketch", "a": "imagenet_a", "r": "imagenet_r", "v2": "imagenet_v2/matched-frequency"}
HOSTS = {"sketch": "drive.google.com", "a": "people.eecs.berkeley.edu", "r": "people.eecs.berkeley.edu",
         "v2": "huggingface.co"}  # where TFDS downloads each from (probed before a download)
TFDS_SPLIT = {"sketch": "test", "a": "test", "r": "test", "v2": "test"}  # TFDS gives each one split
HOW = (
    "Unpack the original archives into one folder and pass it as --data-dir: ImageNet-Sketch "
    "(ImageNet-Sketch.zip -> sketch/), ImageNet-A (imagenet-a.tar -> imagenet-a/), ImageNet-R "
    "(imagenet-r.tar -> imagenet-r/), ImageNetV2 (imagenetv2-matched-frequency.tar.gz -> "
    "imagenetv2-matched-frequency-format-val/); or prepare the TFDS builders imagenet_sketch, "
    "imagenet_a, imagenet_r, imagenet_v2 under --data-dir / $TFDS_DATA_DIR; or run on a machine "
    "with a network, where TFDS downloads them by itself (option download=auto, the default)."
)
EXTS = (".jpg", ".jpeg", ".png")


def _folder_of(variant: str, opts: common.DatasetOptions) -> str:
    return {"sketch": "sketch", "a": "imagenet-a", "r": "imagenet-r", "v2": opts["v2_dir"]}[variant]


def _scan(root: Path, variant: str, wnid_index: dict[str, int]) -> tuple[list[Path], list[int]]:
    """Image paths and 1000-class labels of one variant's folder layout (sorted, deterministic)."""
    paths, labels = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if variant == "v2":
            if not d.name.isdigit() or not 0 <= int(d.name) < 1000:
                raise DataError(f"{NAME}: {str(d)!r}: ImageNetV2 class folders are named 0-999")
            label = int(d.name)
        else:
            if d.name not in wnid_index:
                raise DataError(f"{NAME}: {str(d)!r} is not an ImageNet class id (wnid like n01440764)")
            label = wnid_index[d.name]
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in EXTS:
                paths.append(f)
                labels.append(label)
    if not paths:
        raise DataError(f"{NAME}: no images under {str(root)!r}. {HOW}")
    return paths, labels


def _per_class_sample(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(idx if len(idx) <= k else rng.choice(idx, size=k, replace=False))
    return np.sort(np.array(keep, dtype=np.int64))


def build(folder: Path | None, data_dir: str | None, opts: common.DatasetOptions, variants: list[str],
          wnids: list[str]) -> Dataset:
    common.count_build(NAME)
    wnid_index = {w: i for i, w in enumerate(wnids)}
    size = opts["image_size"]
    loaded: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for v in ["sketch"] + variants:
        root = folder / _folder_of(v, opts) if folder is not None else None
        limit_ood = opts["max_ood"] if v != "sketch" else 0
        if root is not None and root.is_dir():
            paths, labels = _scan(root, v, wnid_index)
            labels = np.array(labels, dtype=np.int32)
            if v == "sketch":
                keep = _per_class_sample(labels, opts["max_per_class"], opts["sample_seed"])
            else:
                keep = common.subsample(len(paths), limit_ood, opts["sample_seed"])
            ids = np.array([str(paths[i].relative_to(folder)) for i in keep])
            imgs = images.load_images([paths[i] for i in keep], size)
            loaded[v] = (ids, labels[keep], imgs)
        else:
            names, labels, imgs = images.read_tfds_images(
                TFDS[v], TFDS_SPLIT[v], data_dir, size, limit_ood, opts["sample_seed"])
            if v == "sketch" and opts["max_per_class"]:
                keep = _per_class_sample(labels, opts["max_per_class"], opts["sample_seed"])
                names, labels, imgs = [names[i] for i in keep], labels[keep], imgs[keep]
            loaded[v] = (np.array([f"{TFDS[v]}/{n}" for n in names]), labels, imgs)
    ids, labels, imgs = loaded.pop("sketch")
    tr, va, te = common.split_indices(len(ids), opts["val_frac"], opts["test_frac"], opts["split_seed"])
    splits = {}
    for role, idx in (("train", tr), ("id_val", va), ("id_test", te)):
        x = imgs[idx]
        splits[role] = Split(example_ids=ids[idx], labels=labels[idx], small={"image": x}, large={"image": x})
    subsets, subsets_wnids = {}, {}
    for v, (vid, vlab, vimg) in loaded.items():
        splits[f"ood/{v}"] = Split(example_ids=vid, labels=vlab, small={"image": vimg}, large={"image": vimg})
        if v in ("a", "r"):
            present = sorted(set(vlab.tolist()))
            subsets[f"ood/{v}"] = present
            subsets_wnids[f"ood/{v}"] = [wnids[i] for i in present]
    shift = (
        f"Domain (style) shift. ID: ImageNet-Sketch ({len(ids)} images, "
        f"{len(set(labels.tolist()))} classes), split train/id_val/id_test "
        f"{1 - opts['val_frac'] - opts['test_frac']:.2f}/{opts['val_frac']:.2f}/{opts['test_frac']:.2f}. "
        f"OOD: " + ", ".join(
            {"a": "ImageNet-A (natural adversarial, its 200-class subset)",
             "r": "ImageNet-R (renditions, its 200-class subset)",
             "v2": "ImageNet-V2 (new test set, 1000 classes)"}[v] for v in variants
        ) + f". Labels are the 1000 ImageNet classes; images resized to {size}x{size}."
    )
    info = {"options": opts.resolved(), "source": str(folder) if folder else "tfds",
            "class_subsets": subsets, "class_subsets_wnids": subsets_wnids}
    return Dataset(name=NAME, task="classification", metric="accuracy", splits=splits,
                   num_classes=1000, shift=shift, info=info)


def _download(variants: list[str], data_dir: str | None, mode: str) -> None:
    """Download and prepare the TFDS builders of ``variants`` (first use of the ``paper``
    preset on a machine with a network; TFDS shows its progress bars). Sizes: Sketch 7.6 GB
    (Google Drive), A 0.7 GB, R 2.2 GB (Berkeley), V2 1.3 GB (Hugging Face). Offline (probed in
    at most 2 s per host) nothing is tried: with ``download=auto`` the caller's missing-files
    error follows, with ``download=1`` an error saying there is no network."""
    hosts = {v: HOSTS[v] for v in variants}
    unreachable = sorted({h for h in hosts.values() if not common.can_download(h)})
    if unreachable:
        if mode == "1":
            why = f"${common.OFFLINE_ENV} is set" if common.offline_forced() else f"{', '.join(unreachable)} unreachable"
            raise DataError(f"{NAME}: download=1 was asked but there is no network ({why}). {HOW}")
        return
    common.quiet_tensorflow()
    import tensorflow_datasets as tfds

    for v in variants:
        try:
            tfds.builder(TFDS[v], data_dir=data_dir).download_and_prepare()
        except Exception as e:  # network drop, disk full, changed URL: say what failed and the fix
            raise DataError(f"{NAME}: downloading TFDS {TFDS[v]} failed ({type(e).__name__}: {e}). {HOW}") from None


@register_dataset(NAME, modality="vision", batch_size=512, options=ImageNetOptions)
def load_imagenet(options: dict[str, str], data_dir: str | None) -> Dataset:
    opts = ImageNetOptions.parse(NAME, options)
    variants = common.parse_list(opts["variants"])
    bad = [v for v in variants if v not in ("a", "r", "v2")]
    if bad:
        raise DataError(f"{NAME}: unknown variant(s) {bad}; variants are a, r, v2 (joined with +)")
    if opts["fixture"]:

        data_dir = str(fixtures.fixture_dir(NAME))
    folder = Path(data_dir) if data_dir else None
    expected = [f"{_folder_of(v, opts)}/..." for v in ["sketch"] + variants]
    if folder is not None and not folder.is_dir():
        raise common.missing_files_error(NAME, data_dir, expected, HOW)
    download = common.parse_download(NAME, opts["download"])
    absent = [v for v in ["sketch"] + variants
              if not (folder is not None and (folder / _folder_of(v, opts)).is_dir())
              and common.tfds_prepared_dir(data_dir, TFDS[v]) is None]
    if absent and download != "0":
        _download(absent, data_dir, download)
    missing = []
    sources: dict[str, str] = {}
    for v in ["sketch"] + variants:
        root = folder / _folder_of(v, opts) if folder is not None else None
        if root is not None and root.is_dir():
            listing = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())
            sources[v] = common.cache_key("listing", "", {}, {"l": str(listing)})
        elif (prepared := common.tfds_prepared_dir(data_dir, TFDS[v])) is not None:
            sources[v] = common.file_signature(prepared / "dataset_info.json")
        else:
            missing.append(f"{_folder_of(v, opts)}/  (missing; or a prepared TFDS {TFDS[v]})")
    if missing:
        flags = [e for e in expected if not any(m.startswith(e[:-3]) for m in missing)] + missing
        raise common.missing_files_error(NAME, data_dir, flags, HOW)
    from levi_core.data.imagenet_classes import imagenet_wnids

    try:
        wnids = imagenet_wnids()
    except (FileNotFoundError, OSError):
        raise DataError(
            f"{NAME}: the list of the 1000 ImageNet class ids (tensorflow_datasets' "
            f"imagenet2012/labels.txt) was not found; install tensorflow-datasets."
        ) from None
    return common.load_cached(NAME, VERSION, common.key_options(opts), sources,
                              lambda: build(folder, data_dir, opts, variants, wnids),
                              opts["cache_dir"] or None, opts["cache"])


# ---------------------------------------------------------------- fixture
def _fixture(folder: Path, rng: np.random.Generator) -> None:
    """``sketch/<wnid>/*.JPEG`` (ImageNet-Sketch zip), ``imagenet-a/<wnid>/*.jpg`` and
    ``imagenet-r/<wnid>/*.jpg`` (the Hendrycks tars, with README.txt),
    ``imagenetv2-matched-frequency-format-val/<class index>/*.jpeg`` (ImageNetV2 tar)."""
    from levi_core.data.imagenet_classes import imagenet_wnids

    wnids = imagenet_wnids()
    classes = [0, 1, 6, 11, 107, 300]  # a few 1000-class indices
    for c in classes:
        d = folder / "sketch" / wnids[c]
        d.mkdir(parents=True)
        for k in range(6):
            fixtures.jpeg(d / f"sketch_{k}.JPEG", 40, 32, rng)
    for variant, subset in (("imagenet-a", [1, 6, 107]), ("imagenet-r", [1, 11, 300])):
        (folder / variant).mkdir()
        (folder / variant / "README.txt").write_text(f"{variant} fixture\n")
        for c in subset:
            d = folder / variant / wnids[c]
            d.mkdir()
            for k in range(3):
                fixtures.jpeg(d / f"{variant}_{k}.jpg", 36, 36, rng)
    v2 = folder / "imagenetv2-matched-frequency-format-val"
    for c in classes:
        d = v2 / str(c)
        d.mkdir(parents=True)
        for k in range(2):
            fixtures.jpeg(d / f"{rng.integers(0, 1 << 40):x}.jpeg", 30, 40, rng)


# the stream is fixed per fixture name, so adding a fixture changes no other's files
fixtures.register_fixture(NAME, _fixture, stream=1)


# ---------------------------------------------------------------- tables and presets
register_shift("imagenet", "ImageNet (domain)", "imagenet", "ood/mean", "accuracy")
# cpu: the data is not on the 2-core machines the preset is sized for
register_preset_ids("imagenet", {"smoke": "imagenet:fixture=1,image_size=32", "cpu": None})
