"""LaMD pipeline: generate (samplers, guidance, seeds), motion transfer, save/load, input errors."""

from __future__ import annotations

import pytest
import torch

from tests.lamd._dmg_tiny import FRAMES, RES, random_video, randomize, tiny_clip_dir, tiny_dmg, tiny_mcdvae
from videogen.core.text import HFTextEncoder
from videogen.lamd.pipeline import LaMD

STEPS = 4


@pytest.fixture(scope="module")
def class_pipe():
    return LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=3))).eval()


@pytest.fixture(scope="module")
def text_pipe(tmp_path_factory):
    encoder = HFTextEncoder(str(tiny_clip_dir(tmp_path_factory.mktemp("clip"))), max_length=8,
                            local_files_only=True)
    return LaMD(tiny_mcdvae(), randomize(tiny_dmg(text_dim=16)), text_encoder=encoder).eval()


def _image(batch: int = 2) -> torch.Tensor:
    return random_video(batch)[:, :, 0]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(pipe, **kw):
    kw = {"num_steps": STEPS, "generator": _gen(), "progress": False, **kw}
    return pipe.generate(_image(), **kw)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_samplers_run_and_are_seeded(class_pipe, sampler):
    video = _run(class_pipe, label=[0, 2], sampler=sampler)
    assert video.shape == (2, 3, FRAMES, RES, RES)
    assert video.min() >= -1 and video.max() <= 1 and torch.isfinite(video).all()
    if sampler == "ddpm":  # stochastic steps: the generator makes them reproducible
        torch.testing.assert_close(video, _run(class_pipe, label=[0, 2], sampler=sampler))


def test_ddim_eta_uses_the_generator(class_pipe):
    a = _run(class_pipe, label=1, eta=1.0)
    torch.testing.assert_close(a, _run(class_pipe, label=1, eta=1.0))
    assert not torch.allclose(a, _run(class_pipe, label=1, eta=1.0, generator=_gen(5)))


def test_guidance(class_pipe):
    """Scale 1 is the plain conditional sample (oracle: the diffusion loop run by hand); scale 3 differs."""
    cond = _run(class_pipe, label=[1, 2])
    image = _image()
    content = class_pipe.mcdvae.encode_content(image)
    z = class_pipe.diffusion.sample(class_pipe.dmg, (2, 3, 4, 4), cond={"content": content[0],
                                    "label": torch.tensor([1, 2])}, num_steps=STEPS, generator=_gen(),
                                    progress=False)
    torch.testing.assert_close(cond, class_pipe.mcdvae.decode(z, content).clamp(-1, 1))
    assert not torch.allclose(cond, _run(class_pipe, label=[1, 2], guidance_scale=3.0))
    assert not torch.allclose(cond, _run(class_pipe, label=[0, 0]))


def test_text_generation_and_guidance(text_pipe):
    a = _run(text_pipe, text=["the cone moves left", "a sphere slides"])
    assert a.shape == (2, 3, FRAMES, RES, RES)
    assert not torch.allclose(a, _run(text_pipe, text=["the cone moves left", "a sphere slides"],
                                      guidance_scale=3.0))
    assert not torch.allclose(a, _run(text_pipe, text="zzz"))


def test_guided_text_sample_equals_per_step_conditioning(text_pipe):
    """`generate` builds the DMG condition once; the result equals guided sampling that rebuilds it from
    content/text at every step (null branch: every text token masked out)."""
    texts = ["the cone moves left", "a sphere slides"]
    guided = _run(text_pipe, text=texts, guidance_scale=3.0)
    content = text_pipe.mcdvae.encode_content(_image())
    tokens, mask = text_pipe.text_encoder(texts)
    cond = {"content": content[0], "text": tokens, "text_mask": mask}
    uncond = {**cond, "text_mask": torch.zeros_like(mask)}
    z = text_pipe.diffusion.sample(text_pipe.dmg, (2, 3, 4, 4), cond=cond, uncond=uncond, guidance_scale=3.0,
                                   num_steps=STEPS, generator=_gen(), progress=False)
    torch.testing.assert_close(guided, text_pipe.mcdvae.decode(z, content).clamp(-1, 1))


def test_save_load_roundtrip_same_samples(class_pipe, text_pipe, tmp_path):
    for name, pipe, kw in (("class", class_pipe, {"label": [2, 0], "guidance_scale": 2.0}),
                           ("text", text_pipe, {"text": ["the cone", "b"], "guidance_scale": 2.0})):
        pipe.save_pretrained(tmp_path / name)
        loaded = LaMD.from_pretrained(tmp_path / name)
        assert not loaded.training
        torch.testing.assert_close(_run(loaded, sampler="ddpm", **kw), _run(pipe, sampler="ddpm", **kw))
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        LaMD.from_pretrained(tmp_path / "missing")


def test_transfer_motion_and_reconstruct(class_pipe):
    a, b = random_video(2, seed=1), random_video(2, seed=2)
    out = class_pipe.transfer_motion(a, b)
    mcdvae = class_pipe.mcdvae
    z_b = mcdvae.encode_motion(b, sample=False)[0]
    torch.testing.assert_close(out, mcdvae.decode(z_b, mcdvae.encode_content(a[:, :, 0])).clamp(-1, 1))
    torch.testing.assert_close(class_pipe.transfer_motion(a[:, :, 0], b), out)  # an image works as content
    torch.testing.assert_close(class_pipe.reconstruct(b), class_pipe.transfer_motion(b, b))


def test_input_errors(class_pipe, text_pipe, tmp_path):
    plain = LaMD(tiny_mcdvae(), tiny_dmg())
    img = _image()
    cases = [
        (class_pipe, dict(image=img[..., :8, :8]), "16x16"),           # not the model resolution
        # not divisible by r_s either: the size check of the protocol (check_values) names it first
        (class_pipe, dict(image=torch.zeros(2, 3, 18, 18)), "must be 16x16 for this LaMD model, got 18x18"),
        (class_pipe, dict(image=img[:, :, None]), "4-D"),                  # rank
        (class_pipe, dict(image=img * 3), r"\[-1, 1\]"),                 # range
        (class_pipe, dict(image=img, label=[0, 3]), r"label must lie in \[0, 2\]"),
        (class_pipe, dict(image=img, label=[0, 1, 2]), "batch sizes disagree"),
        (plain, dict(image=img, label=0), "label given, but this LaMD model takes image$"),
        (class_pipe, dict(image=img, text="a"), "text given, but this LaMD model takes image, label$"),
        (class_pipe, dict(label=0), "needs image"),
        (class_pipe, dict(image=img, eta=0.0, mode="x"),
         r"no option \['mode'\]; its model options are \['eta'\]"),
        (plain, dict(image=img, guidance_scale=2.0), "needs a label or a text"),
        (text_pipe, dict(image=img, text=["a", "b", "c"]), "batch sizes disagree"),
    ]
    for pipe, kw, match in cases:
        with pytest.raises(ValueError, match=match):
            pipe.generate(**kw, num_steps=STEPS, progress=False)
    video = random_video(2)
    with pytest.raises(ValueError, match="T=num_frames=4"):
        class_pipe.transfer_motion(video, torch.cat([video, video], dim=2))
    with pytest.raises(ValueError, match="batch sizes differ"):
        class_pipe.transfer_motion(video[:1], video)
    with pytest.raises(ValueError, match="content_dim"):
        LaMD(tiny_mcdvae(), tiny_dmg(content_dim=16))
    with pytest.raises(ValueError, match="text_dim=16 needs a text encoder"):
        LaMD(tiny_mcdvae(), tiny_dmg(text_dim=16))
