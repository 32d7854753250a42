"""Common corruptions of small images, with CIFAR-10-C's constants (Hendrycks & Dietterich 2019).

ImageNet-C and CIFAR-10-C apply the same corruption formulas with different constants: the
32 px CIFAR-10-C used milder ones (a 224 px constant such as a Gaussian blur of sigma 6 erases a
32 px image). TFDS ships the ImageNet-C functions (``tensorflow_datasets.image_classification.
corruptions``) with the 224 px constants built into each function, and most of them need
OpenCV or scikit-image; so the formulas are written here with CIFAR-10-C's constants per
severity (``CONSTANTS``), and TFDS's ``plasma_fractal`` (the fog texture, size-agnostic) is used
as it is, at CIFAR-10-C's map size of 32. The functions and their constants:

  * ``gaussian_noise``: add N(0, c) per pixel and channel (pixels in [0, 1]);
    c = 0.04, 0.06, 0.08, 0.09, 0.10 (ImageNet-C: 0.08 ... 0.38);
  * ``gaussian_blur``: Gaussian filter of sigma c per channel; c = 0.4, 0.6, 0.7, 0.8, 1
    (ImageNet-C: 1 ... 6);
  * ``fog``: add c0 times a plasma fractal of roughness decay c1, rescaled;
    c = (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75) (ImageNet-C: (1.5, 2) ...);
  * ``contrast``: scale the deviation from the image mean by c; c = 0.75, 0.5, 0.4, 0.3, 0.15
    (ImageNet-C: 0.4 ... 0.05);
  * ``jpeg_compression``: re-encode as JPEG of quality c; c = 80, 65, 58, 50, 40
    (ImageNet-C: 25 ... 7);
  * ``pixelate``: box-downsample to c times the size and box-upsample back;
    c = 0.95, 0.9, 0.85, 0.75, 0.65 (ImageNet-C: 0.6 ... 0.25).

One family each of CIFAR-10-C's four (noise, blur, weather, digital, the last three times).
Each function maps one uint8 [H, W, 3] image and a ``numpy.random.Generator`` (for the random
ones) to a uint8 image; ``corrupt(images, name, severity, seed, ids)`` applies one corruption
to a batch deterministically: each image draws from a stream of (seed, a hash of its example
id), so an image gets the same pixels whatever else is in the batch. Pixel values are rounded to
the nearest integer.
"""

from __future__ import annotations

import io

import numpy as np

CONSTANTS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "fog": ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
NAMES = tuple(CONSTANTS)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    f = x / 255.0
    return _to_uint8(np.clip(f + rng.normal(scale=c, size=f.shape), 0, 1))


def gaussian_blur(x: np.ndarray, c: float, rng: np.random.Generator | None = None) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    # sigma 0 along the channel axis: each channel is blurred on its own
    return _to_uint8(np.clip(gaussian_filter(x / 255.0, sigma=(c, c, 0), mode="nearest"), 0, 1))


def fog(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    from tensorflow_datasets.image_classification.corruptions import plasma_fractal

    f = x / 255.0
    peak = f.max()
    h, w = f.shape[:2]
    size = 1 << max(5, int(np.ceil(np.log2(max(h, w)))))  # CIFAR-10-C: 32 for 32 px images
    # TFDS's fractal draws from NumPy's global generator: seed it from this image's stream and
    # put the global state back, so that nothing else is disturbed
    state = np.random.get_state()
    np.random.seed(int(rng.integers(0, 2**32 - 1)))
    try:
        texture = plasma_fractal(mapsize=size, wibbledecay=c[1])[:h, :w, None]
    finally:
        np.random.set_state(state)
    f = f + c[0] * texture
    return _to_uint8(np.clip(f * peak / (peak + c[0]), 0, 1))


def contrast(x: np.ndarray, c: float, rng: np.random.Generator | None = None) -> np.ndarray:
    f = x / 255.0
    mean = f.mean(axis=(0, 1), keepdims=True)
    return _to_uint8(np.clip((f - mean) * c + mean, 0, 1))


def jpeg_compression(x: np.ndarray, c: int, rng: np.random.Generator | None = None) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=int(c))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def pixelate(x: np.ndarray, c: float, rng: np.random.Generator | None = None) -> np.ndarray:
    from PIL import Image

    h, w = x.shape[:2]
    im = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(im.resize((w, h), Image.BOX), dtype=np.uint8)


FUNCTIONS = {"gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "fog": fog,
             "contrast": contrast, "jpeg_compression": jpeg_compression, "pixelate": pixelate}


def resolution(images: np.ndarray, low: int) -> np.ndarray:
    """Down-sample to ``low`` x ``low`` and up-sample back (both bilinear): the loss of detail of
    a low-resolution capture at the input size, the analogue of Retinopathy's quality shift."""
    from PIL import Image

    out = np.empty_like(images)
    for i, x in enumerate(images):
        h, w = x.shape[:2]
        small = Image.fromarray(x).resize((low, low), Image.BILINEAR)
        out[i] = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.uint8)
    return out


def _stream_key(example_id) -> int:
    import hashlib

    return int(hashlib.sha256(str(example_id).encode()).hexdigest()[:15], 16)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0,
            ids=None) -> np.ndarray:
    """``images`` [N, H, W, 3] uint8 under corruption ``name`` at ``severity`` 1-5; ``ids``
    (one per image; default: the positions) key each image's random stream."""
    from levi_core.errors import ConfigError

    if name not in FUNCTIONS:
        raise ConfigError(f"unknown corruption {name!r}; known: {', '.join(NAMES)}")
    if not 1 <= severity <= 5:
        raise ConfigError(f"corruption severity must be 1-5, got {severity}")
    fn, c = FUNCTIONS[name], CONSTANTS[name][severity - 1]
    out = np.empty_like(images)
    keys = range(len(images)) if ids is None else [_stream_key(i) for i in ids]
    for i, (x, key) in enumerate(zip(images, keys)):
        out[i] = fn(x, c, np.random.default_rng([seed, key]))
    return out
