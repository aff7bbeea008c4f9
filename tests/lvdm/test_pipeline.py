"""The LVDM inference pipeline: short clips, predict / interpolate on given videos, save / load (also through
``videogen sample`` and ``load_pretrained``), building it from the recipes' checkpoints, and its errors."""

from __future__ import annotations

import pytest
import torch

from videogen import load_pretrained
from videogen.cli import main
from videogen.lvdm import LVDM, ConditionalUNet3D, UNet3D, VideoAutoencoder3D

UNET = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
            num_heads=2)


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw zero-initialised weights: an untrained UNet with zero output layers ignores its input."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return module


@pytest.fixture
def pipe() -> LVDM:
    torch.manual_seed(0)
    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2))).eval()  # f_t 2, f_s 4
    ae.set_latent_normalization(0.5, 0.1)
    pred = _randomised(ConditionalUNet3D(**UNET), 1)
    interp = _randomised(ConditionalUNet3D(**UNET), 2)
    short = _randomised(UNet3D(in_channels=4, out_channels=4, **UNET), 3)
    ar = _randomised(ConditionalUNet3D(**UNET), 4)
    return LVDM(ae, pred, interp, keyframe_stride=2, short=short, video_size=(16, 16), clip_frames=8,
                autoregressive=ar).eval()


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_short_clips_predict_and_interpolate_shapes(pipe):
    clip = pipe.generate(num_samples=2, num_steps=2, generator=_gen(), progress=False)
    assert clip.shape == (2, 3, 8, 16, 16) and clip.abs().max() <= 1
    without_short = LVDM(pipe.autoencoder, pipe.prediction, pipe.interpolation, keyframe_stride=2,
                         video_size=(16, 16), clip_frames=8, autoregressive=pipe.autoregressive)
    assert without_short.generate(num_samples=1, num_frames=8, num_steps=2, generator=_gen()).shape == (1, 3,
                                                                                                        8, 16,
                                                                                                        16)
    given = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    for frames in (5, 12, 30):
        for mode in ("hierarchical", "autoregressive"):
            nxt = pipe.predict(given, frames, mode=mode, num_steps=2, generator=_gen(), progress=False)
            assert nxt.shape == (2, 3, frames, 16, 16)
    middle = pipe.interpolate(given, torch.rand(2, 3, 4, 16, 16) * 2 - 1, num_steps=2, generator=_gen())
    assert middle.shape == (2, 3, 2, 16, 16)  # (stride - 1) latents x f_t frames


def test_predict_depends_on_the_given_video(pipe):
    a, b = torch.rand(2, 1, 3, 4, 16, 16, generator=_gen()) * 2 - 1  # not constant: GroupNorm maps those to 0
    pa = pipe.predict(a, 8, num_steps=2, generator=_gen(), progress=False)
    pb = pipe.predict(b, 8, num_steps=2, generator=_gen(), progress=False)
    assert (pa - pb).abs().mean() > 1e-3


def test_save_and_load_round_trip_also_through_the_cli(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "lvdm")
    again = load_pretrained(tmp_path / "lvdm")
    assert isinstance(again, LVDM) and again.video_size == (16, 16) and again.keyframe_stride == 2
    assert float(again.autoencoder.scale) == 0.5
    torch.testing.assert_close(again.generate(num_samples=1, num_steps=2, generator=_gen(), progress=False),
                               pipe.generate(num_samples=1, num_steps=2, generator=_gen(), progress=False))
    for mode in ("hierarchical", "autoregressive"):
        torch.testing.assert_close(again.generate_long(12, num_steps=2, generator=_gen(), progress=False,
                                                       mode=mode),
                                   pipe.generate_long(12, num_steps=2, generator=_gen(), progress=False,
                                                      mode=mode))
    assert main(["sample", "--model", str(tmp_path / "lvdm"), "--out", str(tmp_path / "out"), "--num-samples",
                 "2", "--num-steps", "2"]) == 0
    assert len(list((tmp_path / "out").glob("sample_*.mp4"))) == 2


def test_bad_inputs_and_checkpoints_are_refused(pipe, tmp_path):
    with pytest.raises(ValueError, match="multiple of 2 frames"):
        pipe.predict(torch.zeros(1, 3, 3, 16, 16), 8)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        pipe.predict(torch.zeros(3, 4, 16, 16), 8)
    no_size = LVDM(pipe.autoencoder, pipe.prediction)
    with pytest.raises(ValueError, match="give height and width"):
        no_size.generate(num_samples=1)
    with pytest.raises(ValueError, match="interpolation model"):
        no_size.generate_long(16, 16, 16)
    with pytest.raises(FileNotFoundError, match="model_index.json not found"):
        LVDM.from_pretrained(tmp_path)
    from videogen.core.persistence import CKPT_KEY, checkpoint_record

    interp = ConditionalUNet3D(**UNET)  # an interpolation checkpoint given alone
    record = checkpoint_record("videogen.lvdm.LVDM", {"interpolation": (interp, "unet.")}, {})
    torch.save({"state_dict": {f"unet.{k}": v for k, v in interp.state_dict().items()}, CKPT_KEY: record},
               tmp_path / "interp.ckpt")
    with pytest.raises(ValueError,
                       match=r"LVDM also needs autoencoder, prediction .*lvdm_\*_prediction.yaml"):
        LVDM.from_checkpoints(tmp_path / "interp.ckpt")


def test_generate_unconditional_without_a_recipe(pipe, tmp_path, capsys):
    """`videogen generate --num-samples N` on a saved pipeline: N unconditional videos and a manifest, no
    recipe and no real clips (the FVD protocol of Sky Time-lapse / Taichi with converted weights)."""
    import json

    from videogen.core.video import read_video

    pipe.save_pretrained(tmp_path / "lvdm")
    out = tmp_path / "gen"
    base = ["generate", "--model", str(tmp_path / "lvdm"), "--out", str(out), "--num-steps", "2"]
    assert main(base) == 2  # neither --recipe nor --num-samples
    assert "--num-samples" in capsys.readouterr().err
    assert main([*base, "--num-samples", "3", "--batch-size", "2"]) == 0
    videos = sorted((out / "fake").glob("*.mp4"))
    assert [v.name for v in videos] == ["000000_s000.mp4", "000001_s000.mp4", "000002_s000.mp4"]
    assert tuple(read_video(videos[0]).shape) == (8, 16, 16, 3)  # one clip of clip_frames
    assert len((out / "fake" / "manifest.jsonl").read_text().splitlines()) == 3
    assert not (out / "real").exists()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 3
