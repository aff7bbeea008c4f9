"""Text encoders: tiny models of the real classes, saved to a tmp dir and loaded back (nothing downloads)."""

from __future__ import annotations

import pytest
import torch

from tests.lamd._dmg_tiny import tiny_clip_dir
from videogen.core.text import HFTextEncoder, OpenCLIPTextEncoder, load_text_encoder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("tiny_clip"))


def test_hf_text_encoder_shapes_mask_and_roundtrip(clip_dir, tmp_path):
    enc = HFTextEncoder(str(clip_dir), max_length=12, local_files_only=True)
    tokens, mask = enc(["the cone moves", "a"])
    assert tokens.shape == (2, 12, 16) and mask.shape == (2, 12) and mask.dtype == torch.bool
    # 'the cone moves' = bos + 12 chars... truncated at 12; 'a' = bos, a, eos.
    assert mask[0].all() and mask[1].sum() == 3
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training  # stays frozen in eval mode
    enc.save_pretrained(tmp_path / "saved")
    again = load_text_encoder(tmp_path / "saved")
    assert isinstance(again, HFTextEncoder) and again.max_length == 12
    torch.testing.assert_close(again(["the cone moves", "a"])[0], tokens)
    # Different captions give different tokens (the encoder is actually used).
    assert not torch.allclose(enc(["b"])[0], enc(["z"])[0])


def test_text_encoder_errors(tmp_path, clip_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFTextEncoder(str(tmp_path / "missing_dir"))
    with pytest.raises(FileNotFoundError, match="not found"):
        OpenCLIPTextEncoder("ViT-H-14", tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError):
        load_text_encoder(tmp_path / "nothing")
    enc = HFTextEncoder(str(clip_dir), max_length=8, local_files_only=True)
    with pytest.raises(ValueError, match="list of strings"):
        enc("a bare string")


def test_open_clip_text_encoder_roundtrip(tmp_path):
    import open_clip

    config = {"embed_dim": 8,
              "vision_cfg": {"image_size": 16, "layers": 1, "width": 8, "patch_size": 8, "head_width": 8},
              "text_cfg": {"context_length": 10, "vocab_size": 49408, "width": 8, "heads": 1, "layers": 1}}
    torch.manual_seed(0)
    full = open_clip.model.CLIP(**config)
    torch.save(full.state_dict(), tmp_path / "tiny_clip.pt")
    enc = OpenCLIPTextEncoder("tiny", tmp_path / "tiny_clip.pt", model_config=config)
    tokens, mask = enc(["a red cone slides", "hi"])
    assert tokens.shape == (2, 10, 8) and enc.dim == 8 and enc.max_length == 10
    assert mask[1].sum() == 3  # sot, 'hi', eot
    # The pooled feature at the EOT token equals OpenCLIP's own encode_text (before projection).
    ids = enc.tokenizer(["hi"])
    pooled = full.encode_text(ids) @ torch.linalg.pinv(full.text_projection)
    torch.testing.assert_close(enc(["hi"])[0][0, 2], pooled[0], atol=1e-4, rtol=1e-4)
    enc.save_pretrained(tmp_path / "saved")
    again = load_text_encoder(tmp_path / "saved")
    torch.testing.assert_close(again(["a red cone slides", "hi"])[0], tokens)


def test_relative_text_encoder_path_is_recorded_absolute(clip_dir, monkeypatch):
    """A checkpoint's text-encoder config must load from any working directory (LaMD.from_checkpoint)."""
    monkeypatch.chdir(clip_dir.parent)
    enc = HFTextEncoder(f"./{clip_dir.name}", max_length=12, local_files_only=True)
    assert enc.config["name_or_path"] == str(clip_dir.resolve())


def test_pooled_is_the_masked_mean_of_the_token_features(clip_dir):
    enc = HFTextEncoder(str(clip_dir), max_length=12, local_files_only=True)
    tokens, mask = enc(["ab", "abcdef"])
    pooled = enc.pooled(["ab", "abcdef"])
    assert pooled.shape == (2, enc.dim)
    n = int(mask[0].sum())
    torch.testing.assert_close(pooled[0], tokens[0, :n].mean(0))
