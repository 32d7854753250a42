"""The project's own pre-trained ViT: export to checkpoint names, seeded pre-training, the
committed weights and their sha256 in what records carry."""

import hashlib
import json
import shutil

import jax
import numpy as np
import pytest

from levi_core.backbones import get_config, init_backbone, load_backbone, resolve_weights_dir
from levi_core.backbones import weights as weights_mod
from levi_core.backbones.convert import convert, export
from levi_core.backbones.pretrain import PretrainConfig, augment, pretrain
from levi_core.errors import WeightsError
from levi_core.settings import VisionSettings

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m 'not slow'` skips it

NAME = "vit-cifar-animals"


@pytest.mark.parametrize("name", ["vit-tiny", "bert-tiny", "t5-tiny"])
def test_export_is_the_inverse_of_convert(name):
    _, params, config = init_backbone(name, seed=3)
    tensors = export(params, config)
    if name == "vit-tiny":  # the hub's layout: [D, C, P, P] convolution, [out, in] linears
        assert tensors["embeddings.patch_embeddings.projection.weight"].shape == (32, 3, 8, 8)
        assert tensors["encoder.layer.0.attention.attention.query.weight"].shape == (32, 32)
    back = convert(tensors, config)
    flat_a = jax.tree_util.tree_leaves_with_path(params)
    flat_b = dict(jax.tree_util.tree_leaves_with_path(back))
    assert len(flat_a) == len(flat_b)
    for path, leaf in flat_a:
        np.testing.assert_array_equal(np.asarray(leaf), flat_b[path])


def test_augment_crops_and_flips_only():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    out = augment(x, np.random.default_rng(1), pad=0)  # no padding: the image or its mirror
    assert all(np.array_equal(o, i) or np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x))
    assert any(np.array_equal(o, i[:, ::-1]) and not np.array_equal(o, i) for o, i in zip(out, x))
    padded = augment(x, np.random.default_rng(1), pad=2)
    assert padded.shape == x.shape and not np.array_equal(padded, out)


def test_pretraining_is_seeded():
    # one block at 16 px: the test's cost is compiling three runs
    config = get_config("vit-tiny", image_size=16, num_layers=1, hidden=16, num_heads=2, mlp_dim=32)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
    y = (np.arange(48) % 3).astype(np.int32)
    x[y == 1, :, :, 0] = 255  # a learnable signal
    pc = PretrainConfig(epochs=2, batch_size=16, lr=3e-3, seed=0)
    a, rep = pretrain(config, (x, y), (x[:12], y[:12]), 3, pc, label=None)
    b, _ = pretrain(config, (x, y), (x[:12], y[:12]), 3, pc, label=None)
    c, _ = pretrain(config, (x, y), (x[:12], y[:12]), 3, PretrainConfig(epochs=2, batch_size=16, lr=3e-3, seed=1),
                    label=None)
    leaves = lambda p: [np.asarray(v) for v in jax.tree_util.tree_leaves(p)]  # noqa: E731
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))
    assert [h["epoch"] for h in rep["history"]] == [1, 2] and 0 <= rep["held_out_accuracy"] <= 1
    # only the body comes back, in the backbone's own tree (the pre-training head is dropped)
    assert set(a) == set(init_backbone(config)[1])


def _manifest():
    return json.loads((weights_mod.BUNDLED_ROOT / NAME / "manifest.json").read_text())


def test_committed_weights_resolve_and_match_their_manifest():
    folder = resolve_weights_dir(NAME)
    assert folder == weights_mod.BUNDLED_ROOT / NAME
    manifest = _manifest()
    data = (folder / "model.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) < 8 << 20  # a few MB: fit to commit
    # the backbone learned its pre-training classes (six: chance is 1/6)
    assert manifest["held_out_accuracy"] > 0.35
    module, params, config = load_backbone(NAME)
    out = module.apply({"params": params}, np.zeros((2, 32, 32, 3), np.float32))
    assert len(out.hidden_states) == config.num_layers + 2
    assert out.hidden_states[-1].shape == (2, config.seq_len, config.hidden)


def test_records_carry_the_weights_sha256(tmp_path, monkeypatch):
    from levi_core.api import backbone_identity

    ident = backbone_identity(VisionSettings(backbone=NAME))
    assert ident["sha256"] == _manifest()["sha256"] and ident["backbone"] == NAME
    assert backbone_identity(VisionSettings(backbone="vit-tiny", weights="random")) == {
        "backbone": "vit-tiny", "weights": "random"}
    # weights that cannot be found were not used (ref/mf, a job on another modality): no sha
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LEVI_WEIGHTS_DIR", raising=False)
    assert backbone_identity(VisionSettings())["sha256"] is None
    # a changed file is caught against its manifest, with the fix
    root = tmp_path / "pretrained"
    shutil.copytree(weights_mod.BUNDLED_ROOT / NAME, root / NAME)
    manifest = _manifest()
    manifest["sha256"] = "0" * 64
    (root / NAME / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(weights_mod, "BUNDLED_ROOT", root)
    with pytest.raises(WeightsError, match="pretrain_cifar_vit"):
        weights_mod.weights_identity(NAME)


def test_feature_cache_names_the_weights_content():
    from levi_core.data import fixtures
    from levi_core.engines.transformer import TransformerEngine

    ds = fixtures.fixture_dataset("cifar_vehicles")
    engine = TransformerEngine(ds, VisionSettings(backbone=NAME))
    assert engine.checkpoint == f"{NAME}:pretrained:{_manifest()['sha256'][:16]}"
