"""A toy text encoder for the synthetic captions ("the red circle moves left"): a word-level CLIP.

The CPU demos and the synthetic benchmark run without a network, so no pretrained CLIP or T5 exists;
:func:`word_level_clip` builds a randomly initialised, frozen ``CLIPTextModel`` whose tokenizer knows
exactly the caption vocabulary, and returns it as the library's :class:`videogen.core.text.HFTextEncoder`
(so the models and their saved pipelines treat it like any transformers encoder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from videogen.core.text import HFTextEncoder

__all__ = ["word_level_clip"]


def word_level_clip(directory: str | os.PathLike, words: Sequence[str], width: int = 64, layers: int = 1,
                    heads: int = 2, max_length: int = 16, seed: int = 0) -> HFTextEncoder:
    """A randomly initialised ``CLIPTextModel`` with a word-level tokenizer over a closed vocabulary, saved
    to ``directory`` in the transformers layout and loaded back as an :class:`HFTextEncoder`.

    For synthetic captions (the CPU demos and tiny recipes): nothing downloads, and every word of
    ``words`` is one token, so the frozen random encoder still tells captions apart; a model trained on
    its features learns what the words mean.  Words outside ``words`` map to ``[UNK]``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, "[EOS]": 3}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]",
                                                       special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    directory = Path(directory)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                            eos_token="[EOS]").save_pretrained(directory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                                num_hidden_layers=layers, num_attention_heads=heads,
                                max_position_embeddings=max_length, bos_token_id=2, eos_token_id=3,
                                pad_token_id=0)
        CLIPTextModel(config).save_pretrained(directory)
    return HFTextEncoder(str(directory), max_length=max_length, local_files_only=True)
