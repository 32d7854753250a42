"""Tokenizers for the text backbones: SentencePiece for T5, WordPiece for BERT.

Both return numpy int32 ``(ids [N, L], mask [N, L])`` padded and truncated to a fixed length, so
that a split is tokenized once into arrays and every batch has one static shape (one jit
compilation). The files come from the same folder as the weights (``resolve_weights_dir``).

* T5: ``spiece.model`` through ``sentencepiece``; as transformers' T5 tokenizer, the text is
  encoded, cut to ``max_length - 1`` pieces and ended with ``</s>`` (id 1); padding id 0.
* BERT: ``tokenizer.json`` through ``tokenizers`` when present (its own padding and truncation
  settings, 128 in MiniLM's file, are replaced by ours), else ``vocab.txt`` with
  lower-casing WordPiece; ``[CLS] ... [SEP]``, padding id 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from levi_core.errors import WeightsError


class T5Tokenizer:
    def __init__(self, spiece_model: str | Path, max_length: int = 128):
        import sentencepiece as spm

        if not Path(spiece_model).is_file():
            raise WeightsError(f"T5 tokenizer model {spiece_model} not found")
        self.sp = spm.SentencePieceProcessor(model_file=str(spiece_model))
        self.max_length = max_length
        self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else 1
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else 0

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        L = max_length or self.max_length
        ids = np.full((len(texts), L), self.pad_id, np.int32)
        mask = np.zeros((len(texts), L), np.int32)
        for i, pieces in enumerate(self.sp.encode(list(texts))):
            row = list(pieces[: L - 1]) + [self.eos_id]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


class BertTokenizer:
    def __init__(self, folder: str | Path, max_length: int = 128, lowercase: bool = True):
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer

        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.txt").is_file():
            self.tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lowercase)
        else:
            raise WeightsError(f"no tokenizer.json or vocab.txt in {folder}")
        self.max_length = max_length
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        L = max_length or self.max_length
        self.tok.enable_truncation(max_length=L)
        self.tok.enable_padding(length=L, pad_id=self.pad_id, pad_token="[PAD]")
        enc = self.tok.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in enc], np.int32).reshape(len(texts), L)
        mask = np.asarray([e.attention_mask for e in enc], np.int32).reshape(len(texts), L)
        return ids, mask


def load_tokenizer(name: str, weights_dir: str | Path | None = None, max_length: int = 128):
    """The tokenizer of a text preset (``t5-small``, ``t5-v1_1-small``, ``minilm-l6``)."""
    from levi_core.backbones.config import get_preset
    from levi_core.backbones.weights import resolve_weights_dir
    from levi_core.errors import ConfigError

    family = get_preset(name).config.family
    if family == "vit":
        raise ConfigError(f"backbone {name!r} reads images; it has no tokenizer")
    d = resolve_weights_dir(name, weights_dir)
    if family == "t5":
        return T5Tokenizer(d / "spiece.model", max_length)
    return BertTokenizer(d, max_length)


class HashTokenizer:
    """For random-weight test backbones that ship no tokenizer files: lower-cased words
    (``\\w+``), each mapped to ``3 + crc32(word) % (vocab - 3)``; ``[CLS]`` = 1 first, ``[SEP]`` =
    2 last, padding 0; truncated to ``max_length``. Deterministic across processes (crc32, not
    Python's ``hash()``)."""

    def __init__(self, vocab_size: int, max_length: int):
        self.vocab, self.max_length = int(vocab_size), int(max_length)

    def __call__(self, texts: Sequence[str], max_length: int | None = None):
        import re
        import zlib

        length = max_length or self.max_length
        ids = np.zeros((len(texts), length), np.int32)
        mask = np.zeros((len(texts), length), np.int32)
        for i, t in enumerate(texts):
            words = re.findall(r"\w+", str(t).lower())
            row = [1] + [3 + zlib.crc32(w.encode()) % (self.vocab - 3) for w in words][: length - 2] + [2]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


def tokenizer_for(name: str, weights_dir: str | Path | None, max_length: int):
    """The backbone's own tokenizer, or ``HashTokenizer`` for test backbones without files."""
    from levi_core.backbones.config import get_preset

    preset = get_preset(name)
    if preset.hub_repo is None and preset.package is None:
        return HashTokenizer(preset.config.vocab_size, max_length)
    return load_tokenizer(name, weights_dir, max_length)
