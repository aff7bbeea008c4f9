"""The one ``generate`` protocol over LaMD, CMD and LVDM (``videogen.core.pipeline``): the same call, the
same output contract, clear errors for conditions a model does not take, clip cutting / chaining,
long LVDM videos, dtype and device, and loading any saved model through ``videogen.load_pretrained``."""

from __future__ import annotations

import pytest
import torch

import videogen
from tests.cmd._tiny import tiny_autoencoder, tiny_content_dit, tiny_motion_dit
from tests.lamd._dmg_tiny import RES, randomize, tiny_dmg, tiny_mcdvae
from videogen.cmd import CMD
from videogen.core.pipeline import UnsupportedConditionError, VideoPipeline
from videogen.lamd import LaMD
from videogen.lvdm import LVDM, ConditionalUNet3D, UNet3D, VideoAutoencoder3D

UNET = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), num_heads=2)


def _lamd() -> LaMD:
    return LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=3))).eval()


def _cmd() -> CMD:
    ae = tiny_autoencoder(height=16, width=16)
    return CMD(ae, randomize(tiny_content_dit(ae, num_classes=3)),
               randomize(tiny_motion_dit(ae, num_classes=3))).eval()


def _lvdm() -> LVDM:
    torch.manual_seed(0)
    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2))).eval()  # f_t 2, f_s 4
    ae.set_latent_normalization(0.5, 0.1)
    pred, interp = randomize(ConditionalUNet3D(**UNET), seed=1), randomize(ConditionalUNet3D(**UNET), seed=2)
    short = randomize(UNet3D(in_channels=4, out_channels=4, **UNET), seed=3)
    return LVDM(ae, pred, interp, keyframe_stride=2, short=short, video_size=(16, 16), clip_frames=8,
                autoregressive=randomize(ConditionalUNet3D(**UNET), seed=4)).eval()


MODELS = {"lamd": _lamd, "cmd": _cmd, "lvdm": _lvdm}
STEPS = 2


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, RES, RES, generator=_gen(5)) * 2 - 1


def _call(model: VideoPipeline, **kw) -> torch.Tensor:
    return model.generate(num_steps=STEPS, generator=_gen(), progress=False, **kw)


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request) -> VideoPipeline:
    return MODELS[request.param]()


def test_one_call_one_contract(model):
    """The same keywords work on every model: (B, C, T, H, W) float32 in [-1, 1], seeded."""
    assert isinstance(model, VideoPipeline)
    kw = {"image": _image()} if "image" in model.required_conditions else {"num_samples": 2}
    if "label" in model.conditions:
        kw["label"] = [0, 2]
    video = _call(model, sampler="ddim", guidance_scale=1.0, **kw)
    assert video.shape == (2, 3, model.clip_frames, RES, RES) and video.dtype == torch.float32
    assert video.abs().max() <= 1 and torch.isfinite(video).all()
    torch.testing.assert_close(_call(model, sampler="ddim", guidance_scale=1.0, **kw), video)
    assert not torch.equal(model.generate(num_steps=STEPS, generator=_gen(1), progress=False, **kw), video)


def test_unsupported_and_missing_conditions_are_named(model):
    name = type(model).__name__
    takes = ", ".join(model.conditions)
    with pytest.raises(UnsupportedConditionError, match=f"text given, but this {name} model takes {takes}$"):
        _call(model, image=_image(), text="a red circle")
    if not model.required_conditions:
        with pytest.raises(UnsupportedConditionError, match="label given") \
                if "label" not in model.conditions else pytest.raises(ValueError, match="label must"):
            _call(model, label=[7, 7])
    else:
        with pytest.raises(UnsupportedConditionError, match=f"this {name} model needs image"):
            _call(model, num_samples=2)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        _call(model, image=_image(2), num_samples=3)
    with pytest.raises(ValueError, match="has no option"):
        _call(model, image=_image(), no_such_option=1)
    with pytest.raises(ValueError, match="dtype must be"):
        _call(model, image=_image(), dtype=torch.int8)


def test_image_to_video_on_every_model(model):
    """Every model animates a given image; LVDM holds it for f_t frames, then predicts."""
    image = _image()
    video = _call(model, image=image)
    assert video.shape == (2, 3, model.clip_frames, RES, RES)
    if isinstance(model, LVDM):
        f_t = model.autoencoder.temporal_factor
        torch.testing.assert_close(video[:, :, :f_t], image[:, :, None].expand(-1, -1, f_t, -1, -1))
    if isinstance(model, CMD):  # the image is the content frame: generate(image=) is animate
        torch.testing.assert_close(video,
                                   model.animate(image, num_steps=STEPS, generator=_gen(), progress=False))


def test_num_frames_cuts_and_chains_clips(model):
    clip = model.clip_frames
    image = _image(1)
    short = _call(model, image=image, num_frames=3)
    assert short.shape[2] == 3
    long = _call(model, image=image, num_frames=2 * clip + 3)
    assert long.shape == (1, 3, 2 * clip + 3, RES, RES)
    if isinstance(model, LaMD):  # chained: the second clip starts from the first clip's last frame
        again = _call(model, image=image)
        torch.testing.assert_close(long[:, :, :clip], again)


def test_lvdm_long_videos_through_generate():
    model = _lvdm()
    video = _call(model, num_samples=1, num_frames=20)
    assert video.shape == (1, 3, 20, RES, RES)
    torch.testing.assert_close(video,
                               model.generate_long(20, num_steps=STEPS, generator=_gen(), progress=False))
    ar = _call(model, num_samples=1, num_frames=20, mode="autoregressive")
    assert ar.shape == video.shape and not torch.equal(ar, video)
    # guidance_scale s is LVDM's unconditional guidance 1 + w
    torch.testing.assert_close(_call(model, num_samples=1, num_frames=20, guidance_scale=1.5),
                               model.generate_long(20, num_steps=STEPS, guidance=0.5, generator=_gen(),
                                                   progress=False))


def test_bfloat16_runs_under_autocast(model):
    kw = {"image": _image()} if model.required_conditions else {"num_samples": 2}
    full = _call(model, **kw)
    half = _call(model, dtype=torch.bfloat16, device="cpu", **kw)
    assert half.dtype == torch.float32 and half.shape == full.shape and torch.isfinite(half).all()
    assert (half - full).abs().mean() < 0.1  # same sample, bf16 rounding only
    assert next(model.parameters()).dtype == torch.float32  # autocast leaves the weights alone


@pytest.mark.parametrize("name", sorted(MODELS))
def test_load_pretrained_returns_the_protocol(name, tmp_path):
    model = MODELS[name]()
    model.save_pretrained(tmp_path / name)
    loaded = videogen.load_pretrained(tmp_path / name)
    assert type(loaded) is type(model) and isinstance(loaded, VideoPipeline)
    assert loaded.conditions == model.conditions
    kw = {"image": _image()}
    torch.testing.assert_close(_call(loaded.eval(), **kw), _call(model, **kw))


@pytest.mark.parametrize("case, message", [
    ("nan image", "NaN or infinite"),
    ("image out of range", r"must lie in \[-1, 1\]"),
    ("image of another size", f"must be {RES}x{RES}"),
    ("label 1.7", "label must be integers"),
    ("guidance nan", "guidance_scale must be a finite number >= 0"),
    ("guidance inf", "guidance_scale must be a finite number >= 0"),
    ("guidance negative", "guidance_scale must be a finite number >= 0"),
    ("eta nan", "eta must be a finite number >= 0"),
    ("100000 frames", "num_frames 100000 is above max_frames 1024"),
])
def test_bad_values_stop_before_any_compute(model, monkeypatch, case, message):
    """Each bad value is refused with a message naming it, and no network runs (forward hooks count)."""
    calls = []
    for module in model.modules():
        monkeypatch.setattr(module, "forward", lambda *a, _f=module.forward,
                            **k: calls.append(1) or _f(*a, **k))
    image = _image()
    kw: dict = {"image": image}
    if "label" in model.conditions:
        kw["label"] = [0, 2]
    bad = {"nan image": {"image": image.clone().fill_(float("nan"))},
           "image out of range": {"image": image * 3},
           "image of another size": {"image": torch.zeros(2, 3, 2 * RES, 2 * RES)},
           "label 1.7": {"label": torch.tensor([1.7, 0.0])},
           "guidance nan": {"guidance_scale": float("nan")}, "guidance inf": {"guidance_scale": float("inf")},
           "guidance negative": {"guidance_scale": -1.0}, "eta nan": {"eta": float("nan")},
           "100000 frames": {"num_frames": 100000}}[case]
    if case == "label 1.7" and "label" not in model.conditions:
        pytest.skip("unconditional model")
    if case == "eta nan" and "eta" not in model._options():
        pytest.skip("no eta option")
    with pytest.raises(ValueError, match=message):
        _call(model, **{**kw, **bad})
    assert not calls
