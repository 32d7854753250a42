"""The 1000 ImageNet class ids (WordNet ids) in the standard label order: data of its own,
read by the ImageNet loader and by the fixture generator alike."""

from __future__ import annotations

from pathlib import Path


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet class ids (wnids) in the standard order (label index = position), from
    the labels file that tensorflow-datasets ships, found without importing TFDS."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("tensorflow_datasets is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "imagenet2012" / "labels.txt"
    return path.read_text().split()
