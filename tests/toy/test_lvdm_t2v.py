"""The toy LVDM text-to-video trainer (the synthetic benchmark's LVDM text-to-video row): SD-style networks
built untrained, trained from scratch, saved as an ``LVDMTextToVideo`` and loaded back."""

from __future__ import annotations

import json

import torch

from videogen import load_pretrained
from videogen.lvdm import LVDMTextToVideo
from videogen.toy.lvdm_t2v import FrameVAEModule, run_demo


def test_fast_run_saves_a_loadable_text_to_video_pipeline(tmp_path):
    metrics = run_demo(tmp_path, fast=True)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["caption_accuracy"] == metrics["caption_accuracy"]
    assert set(saved["stage_seconds"]) == {"stage 1 (frame VAE)", "stage 2 (text-to-video UNet)"}
    pipe = load_pretrained(tmp_path / "lvdm_t2v")
    assert isinstance(pipe, LVDMTextToVideo)
    # the data-derived latent scale travels with the model (not SD's 0.18215)
    assert abs(pipe.vae.scaling_factor - saved["vae_scaling_factor"]) < 1e-4
    video = pipe.generate(text=["the red circle moves left"], num_steps=2,
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert video.shape == (1, 3, 8, 16, 16) and video.abs().max() <= 1.0


def test_frame_vae_module_overfits_a_batch():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                        latent_channels=4, norm_num_groups=4, layers_per_block=1)
    module = FrameVAEModule(vae, lr=3e-3)
    batch = {"video": torch.rand(2, 3, 2, 8, 8) * 2 - 1}
    opt = module.configure_optimizers()
    module.log = lambda *a, **k: None  # outside a Trainer
    losses = []
    for _ in range(60):
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0]
