"""Small generated stand-ins for each dataset, in that dataset's exact raw format.

The real datasets may not be committed (their licenses forbid redistribution). These fixtures
exercise the whole path from raw files to arrays offline, in seconds: the tests use them, and
the ``smoke`` preset loads them with the option ``fixture=1`` (e.g. ``movielens:fixture=1``) or
``fixture_dataset(name)``.

Each dataset module writes its own fixture and registers it here
(``register_fixture(name, generator, stream)``; the generator's docstring says what it writes):
``movielens``, ``amazon`` (the 2014 TSV files) and ``amazon2023`` (the 2023 files, read by the
``amazon`` dataset with ``fixture=2023``), ``retinopathy``, ``imagenet``, ``cifar_vehicles``.
``write_fixture(name, folder, seed=0) -> folder`` writes one; everything depends only on
``seed`` and the fixture's own random stream.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from levi_core.errors import ConfigError

FIXTURE_VERSION = "1"


@dataclass(frozen=True)
class Fixture:
    """A registered fixture: ``generator(folder, rng)`` writes the raw files into ``folder``
    from ``rng``, a generator seeded by ``[seed, stream]``."""

    generator: Callable[[Path, np.random.Generator], None]
    stream: int


_FIXTURES: dict[str, Fixture] = {}


def register_fixture(name: str, generator: Callable[[Path, np.random.Generator], None],
                     stream: int) -> None:
    """Register the fixture ``name`` (a dataset module calls it at import). ``stream`` is the
    fixture's own random stream: a number no other fixture uses, fixed for good, so that adding
    a fixture never changes another one's files (and the fingerprints of its runs)."""
    taken = {f.stream: n for n, f in _FIXTURES.items() if n != name}
    if stream in taken:
        raise ConfigError(f"fixture {name!r}: stream {stream} is {taken[stream]!r}'s; "
                          f"use an unused one (taken: {', '.join(map(str, sorted(taken)))})")
    _FIXTURES[name] = Fixture(generator, stream)


def fixture_names() -> list[str]:
    return sorted(_FIXTURES)


def jpeg(path: Path, w: int, h: int, rng: np.random.Generator, ext_format: str = "JPEG") -> None:
    """A ``w`` x ``h`` noisy image of one random colour (the image fixtures' pixels)."""
    from PIL import Image

    base = rng.integers(0, 256, size=(1, 1, 3))
    noise = rng.integers(-40, 40, size=(h, w, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=ext_format, quality=80)


def write_fixture(name: str, folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the fixture of dataset ``name`` into ``folder`` (created; must be empty or absent)."""
    if name not in _FIXTURES:
        raise ConfigError(f"no fixture for dataset {name!r}; fixtures: {', '.join(fixture_names())}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fixture = _FIXTURES[name]
    fixture.generator(folder, np.random.default_rng([seed, fixture.stream]))
    return folder


def fixture_dir(name: str, seed: int = 0, root: str | None = None) -> Path:
    """The fixture of ``name`` under the data cache (``<cache>/fixtures``), written once."""
    from levi_core.data.cache import cache_root

    base = cache_root(root) / "fixtures"
    final = base / f"{name}-v{FIXTURE_VERSION}-seed{seed}"
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=base))
    write_fixture(name, tmp, seed)
    try:
        os.rename(tmp, final)
    except OSError:  # written concurrently by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def fixture_dataset(name: str, **options: object):
    """Load dataset ``name`` from its fixture: ``fixture_dataset("movielens", val_frac=0.2)``."""
    from levi_core.data.base import load_dataset

    opts = ",".join(f"{k}={v}" for k, v in {"fixture": 1, **options}.items())
    return load_dataset(f"{name}:{opts}")
