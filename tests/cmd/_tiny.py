"""Tiny CMD networks and a tiny Stable Diffusion checkpoint (diffusers layout) for the CMD tests."""

from __future__ import annotations

from pathlib import Path

import torch

from videogen.cmd import CMDAutoencoder, ContentDiT, MotionDiT

FRAMES, H, W = 4, 16, 32  # a non-square frame: grid 8 x 16


def tiny_autoencoder(seed: int = 0, **kw) -> CMDAutoencoder:
    torch.manual_seed(seed)
    cfg = dict(in_channels=3, num_frames=FRAMES, height=H, width=W, patch_size=2, hidden_size=32, depth=1,
               heads=2, motion_channels=4)
    return CMDAutoencoder(**{**cfg, **kw})


def tiny_motion_dit(ae: CMDAutoencoder, seed: int = 0, **kw) -> MotionDiT:
    torch.manual_seed(seed)
    d, L, m = ae.motion_shape
    c, h, w = ae.content_shape
    cfg = dict(motion_channels=d, num_frames=L, motion_width=m, content_channels=c, content_height=h,
               content_width=w, patch_size=2, content_patch_size=4, hidden_size=32, depth=1, num_heads=2)
    return MotionDiT(**{**cfg, **kw})


def tiny_content_dit(ae: CMDAutoencoder, seed: int = 0, **kw) -> ContentDiT:
    torch.manual_seed(seed)
    c, h, w = ae.content_shape
    cfg = dict(in_channels=c, height=h, width=w, patch_size=2, hidden_size=32, depth=1, num_heads=2)
    return ContentDiT(**{**cfg, **kw})


def tiny_sd_dir(path: Path) -> Path:
    """A tiny SD checkpoint: UNet2DConditionModel, AutoencoderKL (f = 2), CLIP text model, tokenizer,
    DDPM scheduler config, saved in the diffusers layout."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.lamd._dmg_tiny import tiny_clip_dir

    path = Path(path)
    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                         block_out_channels=(16, 32),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=8).save_pretrained(path / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  norm_num_groups=8, layers_per_block=1).save_pretrained(path / "vae")
    clip = tiny_clip_dir(path / "clip")
    CLIPTextModel.from_pretrained(clip).save_pretrained(path / "text_encoder")
    CLIPTokenizer.from_pretrained(clip).save_pretrained(path / "tokenizer")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                  beta_end=0.012).save_pretrained(path / "scheduler")
    assert CLIPTextConfig.from_pretrained(path / "text_encoder").hidden_size == 16
    return path
