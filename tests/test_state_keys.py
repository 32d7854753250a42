"""The names of cached layer states on disk, pinned.

The feature cache finds an entry by the sha256 of its key fields (``features.cache_key``): the
pre-trained model's states (``<cache_dir>/features/``), ht's stored lower half
(``<cache_dir>/boundary/``) and a trained model's states (``<cache_dir>/trained_states/``),
plus the metadata a trained job writes beside its states (``features.json``, checked by every
job that reads them). Should any field of those keys change, however harmless the change looks
in the code, every existing cache is silently recomputed (a backbone pass over every dataset) and a
results folder's stored states stop matching. The values below were computed by the code that
built these keys before they were gathered into one function; they must never change without
a deliberate decision to rebuild every cache. One such decision: ht's boundary is stored in two
parts (the training split's, the evaluation splits'), each named by its own splits, so that the
seeds' training draws share the evaluation part; its names were pinned again then.
"""

from __future__ import annotations

import numpy as np
import pytest

from levi_core import features
from levi_core.data.base import Dataset, Split
from levi_core.engines import half
from levi_core.engines.transformer import TransformerEngine
from levi_core.settings import TextSettings, VisionSettings

ROLES = ["train", "id_val", "id_test", "ood/shifted"]
TRAIN_FP, EVAL_FP, ALL_FP = "cfadb98ef8d27574", "9320272f3a3372a2", "eb7b582b06fc460d"

# case -> (settings, its pooling and max_len, the names on disk: the pre-trained entries of the
# training role and of one evaluation role, the boundary's two part folders (training split,
# evaluation splits), the trained-states folder)
CASES = {
    "text": (TextSettings(backbone="bert-tiny", weights="random", max_len=64), "mean", 64,
             ("64872e7fa2632befe6394bc150b11b06", "43ec719df108f45041b3ef533bd47339"),
             ("6ef229d69846807fb6370f98162e2592", "43ec5c86e80742ef9cce28537a10eac3"), "dd08f7711dd3fdca0aa23d7113ab7c77"),
    # a compute dtype other than float32 is part of every key (float32 entries kept the
    # pre-trained key they had before the option existed)
    "text-bf16": (TextSettings(backbone="bert-tiny", weights="random", max_len=64,
                               compute_dtype="bfloat16"), "mean", 64,
                  ("3a0ba26b63f47740e83a7823482b52f3", "e707bbf8ac22873693a2449cd4f9bde4"),
                  ("3c05518514cad930b2e025aa1b4f0fc9", "85358cd045a436ef8017d415cad1bdc5"), "3784948d764a84fa6e8a3a8d65e6bd4e"),
    "vision": (VisionSettings(backbone="vit-tiny", weights="random"), "cls", None,
               ("e8a7d9f5db9d2d57b098f8bbc4a71b89", "15abf04d25a4c639eb6f6a531727656a"),
               ("f38a59d750f8072fadd5ddc2b8acdc34", "82585f740c9d22b49a2edfecb1285716"), "823646525051f239a467814205ea7dde"),
}


def _dataset(modality: str) -> Dataset:
    """A small hand-made dataset (not a fixture generator, whose output may evolve)."""
    splits = {}
    for i, role in enumerate(ROLES):
        n = 4 + i
        ids = np.array([f"{role}-{j}" for j in range(n)])
        large = ({"text": np.array([f"row {j} of {role}" for j in range(n)])} if modality == "text"
                 else {"image": np.zeros((n, 8, 8, 3), np.uint8)})
        splits[role] = Split(ids, np.arange(n, dtype=np.float32), {}, large)
    return Dataset(name=f"pin-{modality}", task="regression", metric="rmse", splits=splits,
                   modality=modality)


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_cache_keys_are_unchanged(case, tmp_path, monkeypatch):
    settings, pooling, max_len, files, boundary, trained = CASES[case]
    modality = "vision" if case == "vision" else "text"
    engine = TransformerEngine(_dataset(modality), settings, cache_dir=str(tmp_path))
    pretrained = {"checkpoint": f"{settings.backbone}:random:seed0", "max_len": max_len,
                  "pooling": pooling}
    if settings.compute_dtype != "float32":
        pretrained["compute_dtype"] = settings.compute_dtype

    # the pre-trained model's states: one key per group of roles (training split apart)
    seen = []

    def cached_states(cache_dir, key, roles, compute, resumable=False):
        seen.append((dict(key), list(roles)))
        return {r: np.zeros((1, 1, 1), np.float16) for r in roles}

    monkeypatch.setattr(features, "cached_states", cached_states)
    engine._pretrained_states(ROLES)
    assert seen == [({**pretrained, "fingerprint": TRAIN_FP}, ["train"]),
                    ({**pretrained, "fingerprint": EVAL_FP}, ROLES[1:])]
    # the entries' file names (features/<name>.npz) for a training and an evaluation role
    assert (features.cache_key({**seen[0][0], "role": "train"}),
            features.cache_key({**seen[1][0], "role": "id_val"})) == files

    # ht's stored lower half: a training part and an evaluation part
    k, parts = half._applies(engine)
    assert parts == [["train"], ROLES[1:]]
    for roles, name in zip(parts, boundary, strict=True):
        folder, lock = half._boundary_paths(engine, k, roles)
        assert (folder.name, lock.name) == (name, name + ".lock")
        assert folder.parent == tmp_path / "boundary"

    # a trained model's states, named by its parameters' bytes
    dep = tmp_path / "dep"
    dep.mkdir()
    (dep / "params.npz").write_bytes(b"fixed parameter bytes")
    monkeypatch.setattr(features, "build_once", lambda lock, done, build: None)
    assert engine._trained_states(dep, ROLES) == tmp_path / "trained_states" / trained

    # what a trained job records beside its states, and every reader expects
    assert engine._feature_meta() == {"backbone": settings.backbone, "fingerprint": ALL_FP,
                                      "max_len": max_len, "pooling": pooling, "weights": "random"}


def test_the_pins_can_fail(tmp_path):
    """Another max_len is another entry: the pinned names do depend on the settings."""
    s = TextSettings(backbone="bert-tiny", weights="random", max_len=32)
    engine = TransformerEngine(_dataset("text"), s, cache_dir=str(tmp_path))
    k, parts = half._applies(engine)
    assert half._boundary_paths(engine, k, parts[1])[0].name != CASES["text"][4][1]
    assert engine._feature_meta()["max_len"] == 32
