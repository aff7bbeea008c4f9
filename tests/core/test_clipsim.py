"""CLIPSIM with a tiny open_clip model saved to a file and loaded back through the real loading code."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from safetensors.torch import save_file

from videogen.core.metrics.clipsim import DEFAULT_MODEL, CLIPSimilarity, load_open_clip, preprocess_frames
from videogen.core.pretrained import MissingWeightsError

TINY = "videogen-test-tiny-clip"
TINY_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Register the tiny config with open_clip, save random weights as open_clip_model.safetensors."""
    d = tmp_path_factory.mktemp("clip")
    (d / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    save_file(model.state_dict(), str(d / "open_clip_model.safetensors"))
    return d, model.eval()


def _videos(seed: int, shape=(2, 3, 3, 40, 48)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _manual_clipsim(model, videos, captions):
    """Frame by frame: [0,1] -> (bicubic short side 32, centre crop) -> CLIP norm -> cosine; mean, mean."""
    tok = SimpleTokenizer(context_length=77)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)
    sims = []
    with torch.no_grad():
        for b, caption in enumerate(captions):
            text = F.normalize(model.encode_text(tok([caption])), dim=-1)[0]
            for t in range(videos.shape[2]):
                frame = (videos[b, :, t] + 1) / 2  # (3, H, W): (40, 48) is resized, (32, 32) used as is
                if frame.shape[1:] == (40, 48):
                    frame = F.interpolate(frame[None], size=(32, 39), mode="bicubic", antialias=True)[0]
                    frame = frame.clamp(0, 1)[:, :, 3:35]  # centre 32 of 39 columns
                img = F.normalize(model.encode_image(((frame - mean) / std)[None]), dim=-1)[0]
                sims.append((img @ text).item())
    return torch.tensor(sims, dtype=torch.float64).view(len(captions), -1).mean(1)


def test_clipsim_from_local_checkpoint_matches_manual(tiny_checkpoint):
    directory, model = tiny_checkpoint
    loaded, tokenizer = load_open_clip(TINY, directory)  # directory lookup of open_clip_model.safetensors
    assert isinstance(tokenizer, SimpleTokenizer)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    videos, captions = _videos(0), ["a red ball moves left", "a blue square"]
    expected = _manual_clipsim(model, videos, captions)

    metric = CLIPSimilarity(TINY, pretrained=directory / "open_clip_model.safetensors", frame_chunk=4)
    metric.update(videos[:1], captions[:1])
    metric.update(videos[1:], captions[1:])
    value = metric.compute().item()
    assert value == pytest.approx(expected.mean().item(), abs=1e-5)
    assert -1.0 <= value <= 1.0  # a raw cosine, not x100


def test_accepts_a_built_model_and_tokenizer_pair(tiny_checkpoint):
    _, model = tiny_checkpoint
    metric = CLIPSimilarity((model, open_clip.get_tokenizer(TINY)), resize="direct")
    videos = _videos(1, (2, 3, 2, 32, 32))  # already at the input size: both resize modes agree
    metric.update(videos, ["one", "two"])
    expected = _manual_clipsim(model, videos, ["one", "two"]).mean().item()
    assert metric.compute().item() == pytest.approx(expected, abs=1e-5)
    metric.train()
    assert not metric.clip_model.training


def test_preprocess_direct_squashes_and_center_crop_keeps_aspect():
    frames = torch.linspace(-1, 1, 48).view(1, 1, 1, 48).expand(1, 3, 24, 48).contiguous()
    crop = preprocess_frames(frames, (16, 16), (0.0,) * 3, (1.0,) * 3, "center_crop")
    direct = preprocess_frames(frames, (16, 16), (0.0,) * 3, (1.0,) * 3, "direct")
    assert crop.shape == direct.shape == (1, 3, 16, 16)
    # the crop keeps the middle half of the horizontal ramp, the squash keeps all of it
    assert crop[0, 0, 0, -1] - crop[0, 0, 0, 0] < 0.6 < direct[0, 0, 0, -1] - direct[0, 0, 0, 0]


def test_errors(tiny_checkpoint, tmp_path, monkeypatch):
    _, model = tiny_checkpoint
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match="open_clip_model.safetensors"):
        CLIPSimilarity(DEFAULT_MODEL, pretrained=tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_open_clip("no-such-model", tmp_path)
    metric = CLIPSimilarity((model, open_clip.get_tokenizer(TINY)))
    with pytest.raises(ValueError, match="one per video"):
        metric.update(_videos(2), ["only one caption"])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metric.update(_videos(2) * 5, ["a", "b"])
    with pytest.raises(ValueError, match="resize"):
        CLIPSimilarity((model, open_clip.get_tokenizer(TINY)), resize="stretch")


def test_default_tokenizer_is_offline_bpe():
    """ViT-B/32's tokenizer is CLIP's SimpleTokenizer; its BPE vocabulary ships inside open_clip."""
    tokenizer = open_clip.get_tokenizer(DEFAULT_MODEL)
    assert isinstance(tokenizer, SimpleTokenizer)
    tokens = tokenizer(["a dog runs"])
    assert tokens.shape == (1, 77) and tokens[0, 0] == tokenizer.sot_token_id
