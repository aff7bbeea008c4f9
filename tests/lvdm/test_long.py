"""LVDM long video: the frame arithmetic of hierarchical sampling, prediction/interpolation models that start
as the short model, their training (generated frames only in the loss), exact-length long videos in both
modes, given latents kept exactly, and chunked decoding that streams and matches full decoding away from
seams."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from videogen.data import SyntheticVideoDataset, VideoDataModule
from videogen.lvdm import (
    LVDM,
    ConditionalUNet3D,
    LVDMLongModule,
    UNet3D,
    VideoAutoencoder3D,
    autoregressive_clips,
    hierarchical_plan,
)

UNET = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
            num_heads=2)


def _ae() -> VideoAutoencoder3D:
    torch.manual_seed(0)
    return VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2))).eval()  # f_t 2, f_s 4


@pytest.mark.parametrize("frames, keyframes, pred, latents, out", [
    # spec §3: the correct form for a 1024-frame request (official code: 356 frames)
    (1024, 65, 22, 257, 1028), (256, 17, 6, 65, 260),
    (16, 2, 1, 5, 20),
])
def test_hierarchical_plan_counts(frames, keyframes, pred, latents, out):
    plan = hierarchical_plan(frames)
    assert (plan["keyframes"], plan["prediction_clips"], plan["latents"], plan["frames"]) == (keyframes, pred,
                                                                                              latents, out)
    assert plan["interpolation_clips"] == keyframes - 1 and plan["frames"] >= frames


def test_models_initialised_from_the_short_one_start_identical():
    torch.manual_seed(0)
    short = UNet3D(**UNET)
    for p in short.parameters():
        if not p.any():
            p.data.normal_(0, 0.05)
    long = ConditionalUNet3D.from_short(short)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([3, 600])
    mask = torch.tensor([[True, False, False, False, True], [False] * 5])
    torch.testing.assert_close(long(x, t, mask=mask, noise_level=torch.tensor([100, 250])), short(x, t))
    assert long.noise_level_embed.weight.abs().sum() == 0 and long.in_channels == 5


@pytest.mark.parametrize("mode", ["prediction", "interpolation"])
def test_long_module_trains(mode, tmp_path):
    ae = _ae()
    frames = 4 * (3 * 2 + 1) if mode == "prediction" else 2 * 3  # stride 2: 7 latents / 3 latents
    module = LVDMLongModule(ConditionalUNet3D(**UNET), ae, mode=mode, keyframe_stride=2, lr=1e-3)
    data = VideoDataModule(SyntheticVideoDataset(8, num_frames=frames + (frames % 2), size=32), batch_size=4)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    z0 = module.clip_latents(torch.rand(2, 3, frames + (frames % 2), 32, 32) * 2 - 1, sample=False)
    assert z0.shape[2] == (4 if mode == "prediction" else 3)


def test_generate_long_returns_exactly_the_requested_frames_and_keeps_given_latents():
    torch.manual_seed(0)
    pipe = LVDM(_ae(), ConditionalUNet3D(**UNET), ConditionalUNet3D(**UNET), keyframe_stride=2,
                autoregressive=ConditionalUNet3D(**UNET))
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for frames, mode in ((22, "hierarchical"), (9, "hierarchical"), (18, "autoregressive")):
        video = pipe.generate_long(frames, 32, 32, num_steps=2, generator=gen(), progress=False, mode=mode,
                                   chunk_latents=3)
        assert video.shape == (1, 3, frames, 32, 32) and video.abs().max() <= 1
    given = torch.randn(1, 4, 2, 8, 8)
    clip = pipe.sample_clip(pipe.interpolation, 3, (8, 8), 1, given=given, given_at=(0, 2), num_steps=2,
                            generator=gen())
    assert torch.equal(clip[:, :, [0, 2]], given)  # the given latents come back exactly
    streamed = []
    assert pipe.generate_long(22, 32, 32, num_steps=2, generator=gen(), progress=False, chunk_latents=3,
                              on_chunk=streamed.append) is None
    whole = pipe.generate_long(22, 32, 32, num_steps=2, generator=gen(), progress=False, chunk_latents=3)
    torch.testing.assert_close(torch.cat(streamed, dim=2), whole)


def test_autoregressive_mode_needs_a_model_of_consecutive_latents():
    """The keyframe model's clips are keyframe_stride latents apart: chaining them as consecutive latents
    would speed the motion up, so autoregressive sampling takes a stride-1 prediction model or refuses."""
    from tests.lamd._dmg_tiny import randomize

    torch.manual_seed(0)
    # non-zero outputs (the zero-initialised layers would make every model give the same video)
    keyframes, consecutive = randomize(ConditionalUNet3D(**UNET),
                                       seed=1), randomize(ConditionalUNet3D(**UNET), seed=2)
    pipe = LVDM(_ae(), keyframes, ConditionalUNet3D(**UNET), keyframe_stride=2)
    with pytest.raises(ValueError, match="keyframe_stride 1"):
        pipe.generate_long(18, 32, 32, num_steps=2, mode="autoregressive", progress=False)
    kw = dict(num_steps=2, mode="autoregressive", progress=False)
    with_ar = LVDM(pipe.autoencoder, keyframes, pipe.interpolation, keyframe_stride=2,
                   autoregressive=consecutive)
    stride_one = LVDM(pipe.autoencoder, consecutive, keyframe_stride=1)
    video = with_ar.generate_long(18, 32, 32, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(video,
                               stride_one.generate_long(18, 32, 32,
                                                        generator=torch.Generator().manual_seed(0),
                                                               **kw))
    keyframe_chain = LVDM(pipe.autoencoder, keyframes, keyframe_stride=1)  # what the old code chained
    assert not torch.allclose(video,
                              keyframe_chain.generate_long(18, 32, 32,
                                                           generator=torch.Generator().manual_seed(0),
                                                                  **kw))


def test_chunked_decoding_approaches_full_decoding_with_overlap():
    """The decoder's GroupNorm normalises over all frames it sees, so chunks differ from one full decode
    everywhere, a little; context latents on both sides shrink the difference, and context covering the
    whole sequence removes it."""
    pipe = LVDM(_ae(), ConditionalUNet3D(**UNET))
    z = torch.randn(1, 4, 12, 8, 8)
    with torch.no_grad():
        full = pipe.autoencoder.decode(z).clamp(-1, 1)
    errors = [float((pipe.decode_chunked(z, chunk_latents=6, overlap=o) - full).abs().mean()) for o
              in (0, 1, 2, 3)]
    assert errors == sorted(errors, reverse=True) and errors[3] < errors[0] / 4
    torch.testing.assert_close(pipe.decode_chunked(z, chunk_latents=6, overlap=6), full)
    assert pipe.decode_chunked(z, num_frames=17, chunk_latents=5).shape[2] == 17  # cropped to the request


def test_official_prediction_model_size():
    """Short model + 256 x 9 mask-channel weights + a 251 x 1024 level table = the official 549,163,908; the
    official interpolation model (549,181,060) has 17,152 more relative-position rows because its tables grow
    with the clip length; ours share the short model's (fixed maximum distance)."""
    with torch.device("meta"):
        model = ConditionalUNet3D()
    assert sum(p.numel() for p in model.parameters()) == 549_163_908 == 549_181_060 - 17_152


def test_prediction_models_given_two_latents_are_trained_and_chained_with_two(tmp_path):
    """``num_given`` (the official ``n_prevs``): training gives the first n latents, every chained clip is
    given the last n latents so far and adds 4 - n, the clip counts follow, and ``predict`` continues from n
    latents of the given video (keyframe_stride apart when hierarchical)."""
    with pytest.raises(ValueError, match="num_given"):
        ConditionalUNet3D(num_given=4, **UNET)
    ae = _ae()
    net = ConditionalUNet3D(num_given=2, **UNET)
    module = LVDMLongModule(net, ae, mode="prediction", keyframe_stride=2)
    assert module._mask(3, 4, torch.tensor([True, False, True])).tolist() == [
        [True, True, False, False], [False] * 4, [True, True, False, False]]
    torch.manual_seed(0)
    pipe = LVDM(ae, net, ConditionalUNet3D(**UNET), keyframe_stride=2,
                autoregressive=ConditionalUNet3D(num_given=2, **UNET))
    calls = []
    sample_clip = pipe.sample_clip

    def spy(model, frames, *args, given=None, given_at=(), **kw):
        out = sample_clip(model, frames, *args, given=given, given_at=given_at, **kw)
        calls.append((model, given, given_at, out))
        return out

    pipe.sample_clip = spy
    kw = dict(num_steps=2, progress=False)
    for frames, mode in ((40, "hierarchical"), (30, "autoregressive")):
        calls.clear()
        video = pipe.generate_long(frames, 32, 32, mode=mode, generator=torch.Generator().manual_seed(0),
                                   **kw)
        assert video.shape[2] == frames
        model = net if mode == "hierarchical" else pipe.autoregressive
        chain = [c for c in calls if c[0] is model]
        plan = hierarchical_plan(frames, 2, 2, given=2)
        assert len(chain) == (plan["prediction_clips"] if mode == "hierarchical"
                              else autoregressive_clips(frames, 2, given=2))
        for (_, _, _, prev), (_, given, given_at, _) in zip(chain, chain[1:]):
            assert given_at == (0, 1) and torch.equal(given, prev[:, :, -2:])  # the last two latents so far
    calls.clear()
    context = torch.rand(1, 3, 6, 32, 32) * 2 - 1  # 3 latents: keyframes 0 and 2 are the given pair
    with pytest.raises(ValueError, match="continues from 3 latents"):
        pipe.predict(context[:, :, :4], 8, **kw)
    out = pipe.predict(context, 8, generator=torch.Generator().manual_seed(0), **kw)
    assert out.shape[2] == 8
    z = ae.encode(context, sample=False)
    torch.testing.assert_close(calls[0][1], z[:, :, [0, 2]])
    assert pipe.context_latents("autoregressive") == 2
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    still = pipe.generate(image=image, num_frames=12, generator=torch.Generator().manual_seed(0), **kw)
    assert still.shape[2] == 12 and torch.equal(still[:, :, :6], image[:, :, None].expand(-1, -1, 6, -1, -1))
    pipe.sample_clip = sample_clip
    pipe.save_pretrained(tmp_path / "lvdm")
    loaded = LVDM.from_pretrained(tmp_path / "lvdm")
    assert loaded.prediction.num_given == 2 and loaded.autoregressive.num_given == 2
