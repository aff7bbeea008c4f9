"""DMGModule: a Lightning fit on synthetic clips with a frozen tiny MCD-VAE, CFG condition dropout,
samples."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tests.lamd._dmg_tiny import FRAMES, RES, random_video, tiny_clip_dir, tiny_dmg, tiny_mcdvae
from videogen.core.text import HFTextEncoder
from videogen.data import SyntheticVideoDataset, VideoDataModule
from videogen.lamd.dmg_module import DMGModule
from videogen.lamd.pipeline import LaMD


def test_fit_trains_only_the_dmg(tmp_path):
    tiny_mcdvae().save_pretrained(tmp_path / "stage1")  # the stage-1 model given by path, as in the recipes
    module = DMGModule(tiny_dmg(num_classes=4), str(tmp_path / "stage1"), lr=1e-3, cond_drop_prob=0.5,
                       sample_steps=3)
    mcdvae = module.mcdvae
    frozen = {k: v.clone() for k, v in mcdvae.state_dict().items()}  # weights + LatentNorm statistics
    before = {k: v.clone() for k, v in module.dmg.state_dict().items()}
    data = VideoDataModule(SyntheticVideoDataset(8, num_frames=FRAMES, size=RES, directions=4),
                           val_dataset=SyntheticVideoDataset(4, num_frames=FRAMES, size=RES, seed=1),
                           batch_size=4)
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/loss" in trainer.callback_metrics
    changed = [k for k, v in module.dmg.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the DMG did not train"
    for k, v in mcdvae.state_dict().items():
        assert torch.equal(v, frozen[k]), f"frozen MCD-VAE changed: {k}"
    assert not mcdvae.training and all(not p.requires_grad for p in mcdvae.parameters())
    # The trained module turns into an inference pipeline and draws videos for the sample logger.
    videos = module.sample_videos({"video": random_video(3), "label": torch.tensor([0, 1, 2])}, num=2)
    assert videos.shape == (2, 3, FRAMES, RES, RES)
    pipe = LaMD.from_modules(mcdvae, module)
    assert pipe.dmg is module.dmg
    # A DMG checkpoint alone rebuilds the whole pipeline.
    trainer.save_checkpoint(tmp_path / "dmg.ckpt")
    loaded = LaMD.from_checkpoints(tmp_path / "dmg.ckpt")
    image = random_video(2)[:, :, 0]
    kw = dict(label=[1, 3], num_steps=3, sampler="ddpm", guidance_scale=2.0, progress=False)
    torch.testing.assert_close(loaded.generate(image, generator=torch.Generator().manual_seed(0), **kw),
                               pipe.generate(image, generator=torch.Generator().manual_seed(0), **kw))


def test_condition_dropout_for_cfg(tmp_path):
    encoder = HFTextEncoder(str(tiny_clip_dir(tmp_path / "clip")), max_length=6, local_files_only=True)
    module = DMGModule(tiny_dmg(text_dim=16), tiny_mcdvae(), text_encoder=encoder, cond_drop_prob=0.999,
                       content_drop_prob=0.999)
    batch = {"video": random_video(3), "caption": ["a cone", "b", "the sphere"]}
    z_m, cond = module.encode_batch(batch, drop=False)
    assert z_m.shape == (3, 3, 4, 4) and cond["text"].shape == (3, 6, 16) and cond["text_mask"].any()
    _, dropped = module.encode_batch(batch, drop=True)
    assert not dropped["text_mask"].any()  # text gone (masked) ...
    assert not dropped["content"].any()  # ... and, with content_drop_prob, the content too
    labelled = DMGModule(tiny_dmg(num_classes=4), tiny_mcdvae(), cond_drop_prob=0.999)
    _, cond = labelled.encode_batch({"video": random_video(3), "label": torch.tensor([0, 1, 2])}, drop=True)
    assert cond["label"].tolist() == [4, 4, 4]  # the null class
    assert torch.isfinite(labelled.training_step({"video": random_video(3),
                                                  "label": torch.tensor([0, 1, 2])}, 0))


def test_module_errors():
    with pytest.raises(ValueError, match="content_dim"):
        DMGModule(tiny_dmg(content_dim=16), tiny_mcdvae())
    with pytest.raises(ValueError, match="needs a text encoder"):
        DMGModule(tiny_dmg(text_dim=16), tiny_mcdvae())
    with pytest.raises(ValueError, match="cond_drop_prob"):
        DMGModule(tiny_dmg(), tiny_mcdvae(), cond_drop_prob=1.0)
    module = DMGModule(tiny_dmg(num_classes=4), tiny_mcdvae())
    with pytest.raises(ValueError, match="batch\\['label'\\]"):
        module.training_step({"video": random_video(2)}, 0)


def test_cached_latents_feed_sample_videos_and_validation_is_fixed():
    """Batches from cache_latents have no video: sample_videos animates their stored first frames; the
    validation loss uses the posterior mean and fixed noise, so it is the same on every call."""
    from torch.utils.data import default_collate

    from videogen.lamd.dmg_module import cache_latents

    module = DMGModule(tiny_dmg(num_classes=4), tiny_mcdvae(), sample_steps=2)
    data = SyntheticVideoDataset(3, num_frames=FRAMES, size=RES, directions=4)
    items = cache_latents(module.mcdvae, [data[i] for i in range(3)])
    batch = default_collate(items)
    assert "video" not in batch and batch["first_frame"].shape == (3, 3, RES, RES)
    assert module.sample_videos(batch, num=2).shape == (2, 3, FRAMES, RES, RES)
    module.log = lambda *a, **k: None
    video_batch = default_collate([data[i] for i in range(3)])
    first = module.validation_step(video_batch, 0)
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(first, module.validation_step(video_batch, 0))
