"""The official LVDM text-to-video checkpoint converts onto videogen's official block layout.

Oracles (tests/fixtures/lvdm_t2v/README.md): a tiny checkpoint in the official key layout with the official
UNet / VAE / CLIP outputs computed by the official modules, and the key set and shapes of the released
``t2v.ckpt`` built from the official modules and config at full size.
"""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest
import torch

from tests.lamd._dmg_tiny import tiny_clip_dir
from videogen.core.persistence import read_foreign_checkpoint
from videogen.lvdm.convert_text2video import (
    TEXT2VIDEO_PRESET,
    official_text2video_state,
    text2video_components,
    text2video_from_official,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lvdm_t2v"


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(state dict of the tiny official checkpoint, its params, official inputs/outputs, tokenizer dir)."""
    from safetensors.torch import load_file

    tmp = tmp_path_factory.mktemp("t2v")
    ckpt = tmp / "t2v_tiny.ckpt"
    ckpt.write_bytes(lzma.decompress((FIXTURES / "t2v_tiny.ckpt.xz").read_bytes()))
    state = read_foreign_checkpoint(ckpt, "official LVDM text-to-video checkpoint")["state_dict"]
    params = json.loads((FIXTURES / "t2v_tiny_params.json").read_text())
    return state, params, load_file(str(FIXTURES / "t2v_tiny_io.safetensors")), tiny_clip_dir(tmp / "clip")


@pytest.fixture(scope="module")
def pipe(official):
    state, params, _, tokenizer = official
    return text2video_from_official(state, params, tokenizer=tokenizer)


@torch.no_grad()
def test_the_converted_networks_reproduce_the_official_outputs(official, pipe):
    """UNet noise prediction with text context (6 frames, relative positions clipped at 3), the VAE decoder
    and the CLIP token states equal the official modules' at 1e-5 relative in float32."""
    _, _, io, _ = official
    assert pipe.unet.temporal_layout == "official"
    eps = pipe.unet(io["x"], io["t"], io["context"])
    assert eps.shape == io["eps"].shape == (2, 4, 6, 8, 8)
    assert _relative(eps, io["eps"]) < 1e-5
    assert _relative(pipe.vae.vae.decode(io["z"]).sample, io["decoded"]) < 1e-5
    states = pipe.text_encoder.model(input_ids=io["input_ids"]).last_hidden_state
    assert _relative(states, io["text_states"]) < 1e-5
    # the oracle is sensitive to what the layout adds: frame order (temporal attention) and the clip-wide
    # GroupNorm (one frame changed moves the others)
    swapped = pipe.unet(io["x"][:, :, [1, 0, 2, 3, 4, 5]], io["t"], io["context"])[:, :, [1, 0, 2, 3, 4, 5]]
    assert _relative(swapped, io["eps"]) > 1e-3
    x = io["x"].clone()
    x[:, :, 5] *= 3
    assert _relative(pipe.unet(x, io["t"], io["context"])[:, :, 0], io["eps"][:, :, 0]) > 1e-3


def test_the_released_key_set_maps_completely_on_meta():
    """Every key of the released t2v.ckpt (official modules at full size) has its place, with its shape, in
    the official-layout pipeline, and every weight of the pipeline is given: 958.9M UNet parameters of which
    99.4M temporal, as the official UNet."""
    released = json.loads(gzip.open(FIXTURES / "t2v_ckpt_keys.json.gz").read())
    state = {key: torch.empty(shape, device="meta") for key, shape in released["keys"]}
    assert len(state) == 1431
    weights = official_text2video_state(state, TEXT2VIDEO_PRESET)
    with torch.device("meta"):
        parts = text2video_components(TEXT2VIDEO_PRESET)
    text = {k.removeprefix("text_model."): v for k, v in weights["text_model"].items()}
    unet = parts["unet"]
    for module, given in ((unet.sd.unet, weights["unet"]), (unet.temporal, weights["temporal"]),
                          (parts["vae"], weights["vae"]), (parts["text_model"], text)):
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in given.items()} == expected
    assert sum(p.numel() for p in unet.parameters()) == released["num_unet_params"] == 958_924_964
    assert sum(p.numel() for p in unet.temporal.parameters()) == released["num_temporal_params"] == 99_404_000
    assert len(weights["temporal"]) == 288  # 16 transformer blocks x (2 attentions x 7 + 2 norms x 2)


def test_a_checkpoint_of_another_model_is_refused_in_one_line(official):
    state, params, _, tokenizer = official

    def refused(bad: dict, match: str, **kw) -> None:
        with pytest.raises(ValueError, match=match) as info:
            text2video_from_official(bad, params, tokenizer=tokenizer, **kw)
        assert "\n" not in str(info.value)

    key = next(k for k in state if ".attn2_tmp.to_q." in k)
    refused({k: v for k, v in state.items() if k != key}, "missing temporal weight")
    refused({**state, "model_ema.decay": torch.tensor(0.9999)}, r"unexpected key model_ema\.decay")
    refused({**state, "betas": state["betas"] * 2}, "not the schedule")
    unconditional = {k: v for k, v in state.items() if not k.startswith("cond_stage_model.")}
    refused(unconditional, "missing text model weight")
    conv = next(k for k, v in state.items() if v.ndim == 5 and v.shape[-1] == 3)
    refused({**state, conv: state[conv].repeat(1, 1, 3, 1, 1)}, "3D convolution over time")
    with pytest.raises(ValueError, match="holds no tokenizer"):
        text2video_from_official(state, params)
    with pytest.raises(ValueError, match="unsupported official settings.*kernel_size_t"):
        temporal_kernel = {**params, "unet_config": {**params["unet_config"], "kernel_size_t": 3}}
        text2video_from_official(state, temporal_kernel, tokenizer=tokenizer)


@torch.no_grad()
def test_save_pretrained_and_load_pretrained_reproduce_the_pipeline(official, pipe, tmp_path, monkeypatch):
    from videogen import load_pretrained
    from videogen.lvdm import LVDMTextToVideo, VideoUNetFromSD

    _, _, io, _ = official
    pipe.save_pretrained(tmp_path / "t2v")
    loaded = load_pretrained(tmp_path / "t2v")
    assert isinstance(loaded, LVDMTextToVideo) and loaded.timesteps == "official"
    assert loaded.unet.temporal_layout == "official" and loaded.video_size == (16, 16)
    torch.testing.assert_close(loaded.unet(io["x"], io["t"], io["context"]), io["eps"], rtol=1e-5, atol=1e-5)
    unet = VideoUNetFromSD.from_pretrained(tmp_path / "t2v" / "unet")
    assert unet.config["temporal_layout"] == "official"
    kw = dict(text=["a red circle"], num_steps=2, num_frames=3, progress=False)
    video = pipe.generate(generator=torch.Generator().manual_seed(0), **kw)
    assert video.shape == (1, 3, 3, 16, 16)
    torch.testing.assert_close(loaded.generate(generator=torch.Generator().manual_seed(0), **kw), video)

    # official=True samples with the official DDIM timesteps (981 ... 1 for 50 steps), False with videogen's
    seen = []
    original = loaded.diffusion.sample

    def spy(*args, **kwargs):
        seen.append(kwargs["sampler"])
        return original(*args, **kwargs)

    monkeypatch.setattr(loaded.diffusion, "sample", spy)
    loaded.generate(**kw)
    seen[-1].set_timesteps(50)
    assert seen[-1].timesteps[0] == 981 and seen[-1].timesteps[-1] == 1
    state, params, _, tokenizer = official
    corrected = text2video_from_official(state, params, official=False, tokenizer=tokenizer)
    assert corrected.timesteps == "videogen"
    torch.testing.assert_close(corrected.unet(io["x"], io["t"], io["context"]), io["eps"], rtol=1e-5,
                               atol=1e-5)
