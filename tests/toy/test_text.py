"""videogen.toy.text.word_level_clip: a random word-level CLIP over a closed vocabulary, saved and loaded back
as the library's HFTextEncoder (nothing downloads)."""

from __future__ import annotations

import torch

from videogen.core.text import HFTextEncoder, load_text_encoder
from videogen.toy.text import word_level_clip


def test_word_level_clip_tells_words_apart_and_round_trips(tmp_path):
    enc = word_level_clip(tmp_path / "clip", ["the", "red", "blue", "circle"], width=16, max_length=8, seed=0)
    assert isinstance(enc, HFTextEncoder)
    tokens, mask = enc(["the red circle", "the blue circle"])
    assert tokens.shape == (2, 8, 16) and mask.sum(1).tolist() == [5, 5]  # [BOS] three words [EOS]
    assert not torch.allclose(tokens[0], tokens[1])
    enc.save_pretrained(tmp_path / "saved")
    again = load_text_encoder(tmp_path / "saved")
    torch.testing.assert_close(again(["the red circle"])[0], tokens[:1])
    # the same seed builds the same encoder
    twin = word_level_clip(tmp_path / "twin", ["the", "red", "blue", "circle"], width=16, max_length=8,
                           seed=0)
    torch.testing.assert_close(twin(["the red circle"])[0], tokens[:1])
