"""LVDM text-to-video trained from scratch at toy scale: the synthetic benchmark's text-to-video row for LVDM.

LVDM's text-to-video model (``videogen.lvdm.VideoUNetFromSD``) is a Stable Diffusion UNet with temporal
attention layers on per-frame SD-VAE latents.  No SD weights exist on a machine without a network, so
this trainer builds **the same classes at toy size, untrained**, and trains them on captioned synthetic
moving shapes:

1. a diffusers ``AutoencoderKL`` (f = 2: a 16 x 16 frame -> 4 x 8 x 8) per frame, L2 + a 1e-6 KL term
   (:class:`FrameVAEModule`); its latent scale is then derived from data (1 / std of the training latents;
   SD's 0.18215 belongs to SD's VAE);
2. a ``UNet2DConditionModel`` (cross-attention to the token states of a frozen, randomly initialised
   word-level CLIP text encoder, ``videogen.toy.text.word_level_clip``) made a video model by
   :class:`VideoUNetFromSD`, trained with :class:`LVDMTextToVideoModule` with ``train_spatial=True`` (every
   weight learns; from SD weights the default trains the temporal layers only).

It writes ``lvdm_t2v/`` (an :class:`LVDMTextToVideo` directory, ``videogen.load_pretrained``) and
``metrics.json`` (held-out VAE PSNR, the stages' seconds, and direction / colour / caption accuracy of
videos generated from held-out captions).  Choices for this toy (not the paper's): v-prediction (as the
other CPU demos, whose briefly trained networks diverged under eps-prediction DDIM), EMA 0.995, DDIM 50
steps with eta 0 and CFG 4 against "" (LVDM's script: eta 1, CFG 15).  Toy-setting numbers.

Only the frame VAE's trainer is defined here: :class:`FrameVAEModule` stands in for the pretrained SD VAE
that the library loads frozen, so it is toy code; the video UNet and its training are the library's
(``VideoUNetFromSD``, ``LVDMTextToVideoModule`` of :mod:`videogen.lvdm`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from videogen.core.files import atomic_write_text
from videogen.core.training import TrainingModule
from videogen.toy.common import fit_stage, materialise, mean_psnr, stack_items, start_demo

__all__ = ["FrameVAEModule", "LVDMT2VDemoConfig", "run_demo"]


@dataclasses.dataclass
class LVDMT2VDemoConfig:
    """Data, sizes and schedules of the toy text-to-video run; ``fast()`` shrinks everything for tests."""

    size: int = 16
    num_frames: int = 8
    object_size: float = 0.25
    speed: tuple[float, float] = (2 / 3, 1.0)
    motion: str = "bounce"
    directions: int = 4
    num_train: int = 2000
    num_heldout: int = 64
    text_width: int = 64
    # stage 1: per-frame AutoencoderKL (two blocks: f = 2), frames of batch_size videos per step
    vae_channels: tuple[int, ...] = (32, 64)
    vae_kl_weight: float = 1e-6
    vae_lr: float = 1e-3
    vae_steps: int = 600  # 400 steps: 16.0 dB held-out
    vae_batch: int = 8
    # stage 2: UNet2DConditionModel (cross-attention at both levels) + temporal layers
    unet_channels: tuple[int, ...] = (32, 64)
    unet_head_dim: int = 8
    temporal_heads: int = 4
    unet_lr: float = 1e-3
    unet_steps: int = 1000
    unet_batch: int = 8  # 16: 0.56 s per step on 2 cores
    unet_ema: float | None = 0.995
    prediction_type: str = "v_prediction"
    cond_drop_prob: float = 0.1
    # sampling
    sample_steps: int = 50
    sample_eta: float = 0.0
    guidance_scale: float = 4.0

    @classmethod
    def fast(cls) -> LVDMT2VDemoConfig:
        return cls(num_train=8, num_heldout=2, vae_steps=2, unet_steps=2, vae_batch=2, unet_batch=2,
                   text_width=16, vae_channels=(8, 16), unet_channels=(8, 16), unet_head_dim=4,
                   temporal_heads=2, sample_steps=2)


class FrameVAEModule(TrainingModule):
    """Trains a diffusers ``AutoencoderKL`` on the frames of ``batch["video"]`` ``(B, 3, T, H, W)``:
    L2 reconstruction of a posterior sample + ``kl_weight`` x the KL to N(0, I) (summed per frame)."""

    def __init__(self, vae: torch.nn.Module, kl_weight: float = 1e-6, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters(ignore=["vae"])
        self.vae = vae

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        video = batch["video"]
        frames = video.transpose(1, 2).reshape(-1, *video.shape[1:2], *video.shape[3:])  # (B*T, 3, H, W)
        posterior = self.vae.encode(frames).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        rec, kl = F.mse_loss(recon, frames), posterior.kl().mean()
        loss = rec + self.hparams.kl_weight * kl
        if not self.finite_or_skip(loss=loss):
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.hparams.lr, betas=(0.9, 0.99))


def _data_kw(cfg: LVDMT2VDemoConfig) -> dict[str, Any]:
    return dict(num_frames=cfg.num_frames, size=cfg.size, object_size=cfg.object_size, speed=tuple(cfg.speed),
                motion=cfg.motion, directions=cfg.directions)


def run_demo(out_dir: str | Path = "outputs/lvdm_t2v_toy", seed: int = 0, fast: bool = False,
             config: LVDMT2VDemoConfig | None = None) -> dict[str, Any]:
    """Train the toy VAE and text-to-video UNet on captioned synthetic videos, score generated videos from
    held-out captions, save the pipeline; return the metrics (see the module docstring)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from videogen.core.sd import FrameVAE, SDUNet
    from videogen.data import CAPTION_WORDS, SyntheticVideoDataset, direction_vectors
    from videogen.lvdm import LVDMTextToVideoModule, VideoUNetFromSD
    from videogen.toy.motion import motion_accuracy
    from videogen.toy.scoring import caption_accuracy
    from videogen.toy.text import word_level_clip

    start = time.perf_counter()
    cfg = config or (LVDMT2VDemoConfig.fast() if fast else LVDMT2VDemoConfig())
    out = start_demo(out_dir, seed)
    train = materialise(SyntheticVideoDataset(cfg.num_train, seed=seed, **_data_kw(cfg)))
    heldout = materialise(SyntheticVideoDataset(cfg.num_heldout, seed=seed + 10_000, **_data_kw(cfg)))
    videos, directions = stack_items(heldout, "video"), stack_items(heldout, "direction")
    captions = [item["caption"] for item in heldout.items]
    loader_gen = torch.Generator().manual_seed(seed)
    stage_seconds: dict[str, float] = {}
    text = word_level_clip(out / "text_encoder", CAPTION_WORDS, width=cfg.text_width, seed=seed)

    # ---- stage 1: per-frame VAE, then its latent scale from data ------------------------------------
    torch.manual_seed(seed)
    groups = min(8, cfg.vae_channels[0])
    vae = AutoencoderKL(in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
                        up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
                        block_out_channels=tuple(cfg.vae_channels), latent_channels=4, norm_num_groups=groups,
                        layers_per_block=1, sample_size=cfg.size)
    fit_stage(FrameVAEModule(vae, cfg.vae_kl_weight, cfg.vae_lr), train, cfg.vae_steps, cfg.vae_batch,
              "stage 1 (frame VAE)", loader_gen, stage_seconds)
    frame_vae = FrameVAE(vae=vae)
    calib = stack_items(materialise(torch.utils.data.Subset(train, range(min(len(train), 256)))), "video")
    frame_vae.calibrate(calib.split(64))
    recon = frame_vae.decode(frame_vae.encode(videos, sample=False))
    recon_psnr = mean_psnr(recon, videos)
    print(f"[demo] stage 1 held-out reconstruction PSNR: {recon_psnr:.2f} dB; latent scale "
          f"{frame_vae.scaling_factor:.4f} (1 / std over {calib.shape[0]} training videos' latents)")

    # ---- stage 2: text-to-video UNet, every weight trained --------------------------------------------
    torch.manual_seed(seed + 1)
    levels = len(cfg.unet_channels)
    unet2d = UNet2DConditionModel(sample_size=cfg.size // frame_vae.downsample, in_channels=4, out_channels=4,
                                  layers_per_block=1, block_out_channels=tuple(cfg.unet_channels),
                                  down_block_types=("CrossAttnDownBlock2D",) * levels,
                                  up_block_types=("CrossAttnUpBlock2D",) * levels,
                                  cross_attention_dim=text.dim, attention_head_dim=cfg.unet_head_dim,
                                  norm_num_groups=min(8, cfg.unet_channels[0]))
    unet = VideoUNetFromSD(SDUNet(unet=unet2d), heads=cfg.temporal_heads)
    stage2 = LVDMTextToVideoModule(unet, frame_vae, text, train_spatial=True,
                                   cond_drop_prob=cfg.cond_drop_prob,
                                   diffusion={"prediction_type": cfg.prediction_type}, lr=cfg.unet_lr)
    fit_stage(stage2, train, cfg.unet_steps, cfg.unet_batch, "stage 2 (text-to-video UNet)", loader_gen,
              stage_seconds, ema_decay=cfg.unet_ema)

    # ---- held-out captions -> videos ----------------------------------------------------------------------
    pipe = stage2.pipeline(video_size=(cfg.size, cfg.size), clip_frames=cfg.num_frames).eval()
    print(f"[demo] generating {len(captions)} videos from held-out captions (DDIM {cfg.sample_steps}, "
          f"CFG {cfg.guidance_scale})")
    fake = pipe.generate(text=captions, num_steps=cfg.sample_steps, guidance_scale=cfg.guidance_scale,
                         eta=cfg.sample_eta, generator=torch.Generator().manual_seed(seed), progress=False)
    pipe.save_pretrained(out / "lvdm_t2v")
    dirs = direction_vectors(cfg.directions)
    cap = caption_accuracy(fake, captions)
    metrics = {
        "direction_accuracy_first_4_frames": round(float(motion_accuracy(fake[:, :, :4], directions, dirs)),
                                                   4),
        "caption_accuracy": round(cap["caption_accuracy"], 4),
        "colour_accuracy": round(cap["colour_accuracy"], 4),
        "shape_accuracy": round(cap["shape_accuracy"], 4),
        "recon_psnr": round(recon_psnr, 3),
        "vae_scaling_factor": round(frame_vae.scaling_factor, 5),
        "stage_seconds": stage_seconds,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seed": seed,
        "setting": "toy: synthetic captioned moving shapes, SD-style networks trained from scratch, CPU",
        "config": dataclasses.asdict(cfg),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    print(f"[demo] LVDM text-to-video toy: caption_accuracy {metrics['caption_accuracy']} (colour "
          f"{metrics['colour_accuracy']}), direction {metrics['direction_accuracy_first_4_frames']}, "
          f"wall {metrics['wall_seconds']} s -> {out}")
    return metrics
