"""LVDM text-to-video: SD weights converted through the real diffusers loading code (a tiny SD checkpoint
saved to a temp dir); at initialisation the video model equals SD applied per frame; the temporal layers
see frame order and train."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tests.cmd._tiny import tiny_sd_dir
from videogen.core.sd import FrameVAE, SDUNet, sd_text_encoder
from videogen.lvdm import LVDMTextToVideoModule, VideoUNetFromSD


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return tiny_sd_dir(tmp_path_factory.mktemp("sd"))


def test_converted_model_equals_sd_per_frame_at_initialisation(sd_dir):
    video_unet = VideoUNetFromSD.from_sd(str(sd_dir), heads=2)
    image_unet = SDUNet(str(sd_dir))  # the same weights, loaded again
    assert len(video_unet.temporal) == len(video_unet.spatial_names) >= 2
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 500])
    text = torch.randn(2, 12, 16)
    out = video_unet(x, t, text)
    per_frame = torch.stack([image_unet(x[:, :, i], t, text) for i in range(3)], dim=2)
    torch.testing.assert_close(out, per_frame, rtol=1e-4, atol=1e-5)
    for layer in video_unet.temporal.values():  # zero-initialised output projections
        assert layer.proj_out.weight.abs().sum() == 0
        layer.proj_out.weight.data.normal_(0, 0.1)
    moved = video_unet(x, t, text)
    assert not torch.allclose(moved, per_frame, atol=1e-4)
    swapped = video_unet(x[:, :, [1, 0, 2]], t, text)[:, :, [1, 0, 2]]
    assert not torch.allclose(swapped, moved, atol=1e-5)  # relative positions: frame order matters


def test_text_to_video_module_trains_the_temporal_layers_only(sd_dir, tmp_path):
    from videogen.data import SyntheticVideoDataset, VideoDataModule

    unet = VideoUNetFromSD.from_sd(str(sd_dir), heads=2)
    module = LVDMTextToVideoModule(unet, FrameVAE(str(sd_dir)), sd_text_encoder(sd_dir, max_length=12),
                                   lr=1e-3)
    sd_before = {k: v.clone() for k, v in unet.sd.state_dict().items()}
    temporal_before = {k: v.clone() for k, v in unet.temporal.state_dict().items()}
    data = VideoDataModule(SyntheticVideoDataset(4, num_frames=3, size=16), batch_size=2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert all(torch.equal(v, sd_before[k]) for k, v in unet.sd.state_dict().items())
    assert any(not torch.equal(v, temporal_before[k]) for k, v in unet.temporal.state_dict().items())
    video = module.generate(["a red circle"], num_frames=3, height=16, width=16, num_steps=2,
                            generator=torch.Generator().manual_seed(0))
    assert video.shape == (1, 3, 3, 16, 16)


def _recipe_args(sd_dir) -> list[str]:
    """recipes/lvdm_text2video.yaml with the tiny SD checkpoint in place of SD 1.5 and synthetic captioned
    clips."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "lvdm_text2video.yaml"
    synthetic = ("{class_path: videogen.data.SyntheticVideoDataset, "
                 "init_args: {num_videos: 8, num_frames: 3, size: 16}}")
    return ["fit", "--config", str(recipe), f"--model.init_args.unet.init_args.pretrained={sd_dir}",
            "--model.init_args.unet.init_args.heads=2",
            f"--model.init_args.vae.init_args.pretrained={sd_dir}",
            f"--model.init_args.text_encoder.init_args.name_or_path={sd_dir}/text_encoder",
            f"--model.init_args.text_encoder.init_args.tokenizer={sd_dir}/tokenizer",
            "--model.init_args.text_encoder.init_args.max_length=12", f"--data.init_args.dataset={synthetic}",
            "--data.init_args.num_workers=0", "--data.init_args.persistent_workers=false",
            "--data.init_args.pin_memory=false", "--trainer.accelerator=cpu", "--trainer.precision=32",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false"]


def test_the_recipe_runs_with_a_tiny_sd_checkpoint_in_place_of_sd15(sd_dir, tmp_path, monkeypatch):
    from videogen.cli import main

    monkeypatch.chdir(tmp_path)
    assert main([*_recipe_args(sd_dir), "--trainer.devices=1", "--trainer.strategy=auto",
                 "--trainer.fast_dev_run=2"]) == 0


@pytest.mark.ddp
def test_the_recipe_trains_under_its_strategy_with_two_processes(sd_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    strategy = yaml.safe_load((root / "recipes" / "lvdm_text2video.yaml").read_text())["trainer"]["strategy"]
    args = [sys.executable, "-m", "videogen", *_recipe_args(sd_dir), "--trainer.devices=2",
            f"--trainer.strategy={strategy}", "--trainer.max_steps=2", "--data.init_args.batch_size=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (last,) = tmp_path.rglob("last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2


def test_text_to_video_pipeline_follows_the_protocol_and_round_trips(sd_dir, tmp_path):
    """``LVDMTextToVideo``: text required, image refused, seeded, and identical after save_pretrained ->
    ``videogen.load_pretrained`` and after a training checkpoint -> ``from_checkpoint``."""
    from videogen import load_pretrained
    from videogen.core.pipeline import UnsupportedConditionError
    from videogen.data import SyntheticVideoDataset, VideoDataModule
    from videogen.lvdm import LVDMTextToVideo

    unet = VideoUNetFromSD.from_sd(str(sd_dir), heads=2)
    module = LVDMTextToVideoModule(unet, FrameVAE(str(sd_dir)), sd_text_encoder(sd_dir, max_length=12),
                                   lr=1e-2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module,
                datamodule=VideoDataModule(SyntheticVideoDataset(4, num_frames=3, size=16), batch_size=2))
    trainer.save_checkpoint(tmp_path / "t2v.ckpt")
    pipe = module.pipeline(video_size=(16, 16), clip_frames=3).eval()
    kw = dict(num_steps=2, progress=False)
    video = pipe.generate(text=["a red circle", "a blue square"], generator=torch.Generator().manual_seed(0),
                          **kw)
    assert video.shape == (2, 3, 3, 16, 16) and video.abs().max() <= 1
    again = pipe.generate(text=["a red circle", "a blue square"], generator=torch.Generator().manual_seed(0),
                          **kw)
    torch.testing.assert_close(video, again, rtol=0, atol=0)
    other = pipe.generate(text=["a green triangle", "a blue square"],
                          generator=torch.Generator().manual_seed(0), **kw)
    assert not torch.allclose(video[0], other[0])  # the caption reaches the video
    assert pipe.generate(text="a red circle", num_frames=5, num_samples=2, **kw).shape == (2, 3, 5, 16, 16)
    with pytest.raises(UnsupportedConditionError, match="needs text"):
        pipe.generate(num_samples=1, **kw)
    with pytest.raises(UnsupportedConditionError, match="image given"):
        pipe.generate(torch.zeros(1, 3, 16, 16), text="a red circle", **kw)
    with pytest.raises(ValueError, match="divisible"):
        pipe.generate(text="a red circle", height=15, width=16, **kw)
    from videogen.evaluation import generate_split

    counts = generate_split(pipe, SyntheticVideoDataset(2, num_frames=3, size=16), tmp_path / "gen",
                            num_steps=2, progress=False)  # the items' captions are the condition
    assert counts["written"] == 2 and len(list((tmp_path / "gen" / "fake").glob("*.mp4"))) == 2

    pipe.save_pretrained(tmp_path / "t2v")
    loaded = load_pretrained(tmp_path / "t2v")
    assert isinstance(loaded, LVDMTextToVideo)
    torch.testing.assert_close(loaded.generate(text=["a red circle", "a blue square"],
                                               generator=torch.Generator().manual_seed(0), **kw), video)
    from videogen.cli import main

    assert main(["sample", "--model", str(tmp_path / "t2v"), "--out", str(tmp_path / "out"), "--text",
                 "a red circle", "--num-samples", "2", "--num-steps", "2"]) == 0
    assert len(list((tmp_path / "out").glob("sample_*.mp4"))) == 2
    from_ckpt = LVDMTextToVideo.from_checkpoints(tmp_path / "t2v.ckpt", video_size=(16, 16), clip_frames=3)
    torch.testing.assert_close(from_ckpt.generate(text=["a red circle", "a blue square"],
                                                  generator=torch.Generator().manual_seed(0), **kw), video)
    with pytest.raises(ValueError, match="has no 'videogen_pipeline' entry"):
        torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
        LVDMTextToVideo.from_checkpoints(tmp_path / "other.ckpt")
