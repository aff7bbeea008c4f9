"""The CMD CPU demo (``videogen demo --model cmd``): text-to-video on captioned synthetic moving shapes.

Trains the three CMD stages through their LightningModules on :class:`videogen.data.SyntheticVideoDataset`
(one shape of 3 kinds and 5 colours moving right / left / down / up; captions such as "the red circle
moves left"): the autoencoder (pixel mode, 4 * L2), the content-frame DiT and the motion DiT, both
conditioned on the pooled features of a frozen, randomly initialised word-level CLIP text encoder
(``videogen.toy.text.word_level_clip``: no Stable Diffusion or OpenCLIP weights exist on the machine).
Then it generates one video per held-out caption (content DDIM + CFG, then motion DDIM) and writes:

- ``samples.mp4`` / ``samples.gif`` and ``contact_sheet.png`` (one row per video: the generated content
  frame, then the frames), ``captions.txt`` (the caption of each tile, in order);
- ``cmd/``: the trained pipeline (``CMD.from_pretrained``; ``videogen sample --model DIR --text ...``);
- ``metrics.json``: ``motion_accuracy`` (the tracked object moves in the caption's direction; chance
  0.25), ``caption_accuracy`` (its colour and shape are the caption's, read back by
  ``videogen.toy.scoring.caption_accuracy``; chance 1/15), colour and shape accuracy apart, the autoencoder's
  held-out ``recon_psnr``, ``animate_motion_accuracy`` (image-to-video: a held-out first frame as the
  content frame), wall time and settings.  Toy-setting numbers, not paper numbers.

Held-out captions are those of videos from another seed: the 60 colour-shape-direction combinations
all occur in training, so this measures conditioning, not compositional generalisation.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from videogen.core.files import atomic_write_text
from videogen.toy.common import fit_stage, materialise, mean_psnr, stack_items, start_demo, tile, upscale

__all__ = ["CMDDemoConfig", "heldout_set", "run_demo"]


@dataclasses.dataclass
class CMDDemoConfig:
    """Sizes and schedules of the CMD demo; ``fast()`` shrinks everything for tests (seconds)."""

    size: int = 32
    num_frames: int = 8
    object_size: float = 0.3
    # distance over the clip (bounce: per 16 frames), fraction of the frame
    speed: tuple[float, float] = (1 / 3, 1 / 2)
    motion: str = "linear"  # or "bounce" (the synthetic benchmark's common data)
    directions: int = 4
    num_train: int = 2000
    num_heldout: int = 64
    display_scale: int = 4
    text_width: int = 64
    # stage 1: autoencoder (patch 4 -> grid 8 x 8, motion latent 8 x 8 x 16)
    ae_hidden: int = 64
    ae_depth: int = 2
    ae_motion_channels: int = 8  # D; the paper's 8 (D 4 at 800 steps: shape read back from recons 0.34)
    ae_patch: int = 4
    content_patch: int = 4  # the content DiT's patch on the 32 x 32 content frame: 8 x 8 tokens
    # the motion DiT's second patch embedding, over the content frame: 4 x 4 tokens
    motion_content_patch: int = 8
    pixel_loss: str = "l2"
    ae_lr: float = 1e-3
    ae_steps: int = 1600  # 800: 27.2 dB, shape 0.42 from recons; 1600: 29.75 dB, shape 0.78 (docs/cmd.md)
    ae_batch: int = 8
    # stage 2a / 2b: content DiT and motion DiT
    dit_hidden: int = 128
    dit_depth: int = 4
    dit_lr: float = 1e-3
    # v-prediction: with eps, DDIM samples of these briefly trained DiTs diverged (docs/cmd.md)
    dit_prediction: str = "v_prediction"
    content_steps: int = 1500
    motion_steps: int = 1500
    dit_batch: int = 32
    # EMA of the DiTs' weights (core's EMA callback, with warm-up); None: last weights
    dit_ema: float | None = 0.995
    cond_drop_prob: float = 0.1
    # the motion DiT's data: motion_scale * z; "std": 1 / std of the cached training latents (spec O14)
    motion_scale: float | str = 1.0
    # sampling
    sampler: str = "ddim"  # content and motion (core samplers: ddim, dpm++, unipc, ...)
    content_sample_steps: int = 50
    motion_sample_steps: int = 50
    guidance_scale: float = 4.0
    motion_guidance_scale: float = 2.0

    @classmethod
    def brief(cls) -> CMDDemoConfig:
        """Fewer steps, for the three-model tour (``make demo``): autoencoder 800 with D 4 (at 400 steps,
        23.5 dB, the motion DiT's videos did not move; with D 8 at 800 steps motion_accuracy was 0.14),
        content DiT 300, motion DiT 700 and UniPC at 20 sampling steps (the tour, with the first install, has
        to fit in 15 minutes).  With 1,000 training videos instead of 2,000 its videos did not move (motion
        accuracy 0.27 sampled with DDIM 50, 0.25 with UniPC 20)."""
        return cls(ae_steps=800, ae_motion_channels=4, content_steps=300, motion_steps=700,
                   sampler="unipc", content_sample_steps=20, motion_sample_steps=20)

    @classmethod
    def fast(cls) -> CMDDemoConfig:
        return cls(num_train=16, num_heldout=4, ae_steps=2, content_steps=2, motion_steps=2, ae_batch=4,
                   dit_batch=4, ae_hidden=16, dit_hidden=16, dit_depth=1, ae_depth=1, text_width=16,
                   content_sample_steps=2, motion_sample_steps=2)


def _data_kw(cfg: CMDDemoConfig) -> dict[str, Any]:
    return dict(num_frames=cfg.num_frames, size=cfg.size, directions=cfg.directions,
                object_size=cfg.object_size, speed=tuple(cfg.speed), motion=cfg.motion)


def heldout_set(cfg: CMDDemoConfig, seed: int):
    """The demo's held-out captioned videos (another seed than the training set's), as an
    ``InMemoryDataset``."""
    from videogen.data import SyntheticVideoDataset

    return materialise(SyntheticVideoDataset(cfg.num_heldout, seed=seed + 10_000, **_data_kw(cfg)))


def run_demo(out_dir: str | Path = "outputs/demo_cmd", seed: int = 0, fast: bool = False,
             config: CMDDemoConfig | None = None) -> dict[str, Any]:
    """Train the three CMD stages on captioned synthetic data, generate from held-out captions, score and
    write the demo files; return the metrics."""
    from videogen.cmd import (
        CMDAutoencoderModule,
        CMDContentModule,
        CMDMotionModule,
        cache_latents,
        motion_latent_std,
    )
    from videogen.cmd.autoencoder import CMDAutoencoder
    from videogen.cmd.dit import ContentDiT, MotionDiT
    from videogen.cmd.pipeline import CMD
    from videogen.core.video import save_contact_sheet, write_video
    from videogen.data import CAPTION_WORDS, COLORS, SHAPES, SyntheticVideoDataset, direction_vectors
    from videogen.toy.motion import motion_accuracy
    from videogen.toy.scoring import caption_accuracy
    from videogen.toy.text import word_level_clip

    start = time.perf_counter()
    cfg = config or (CMDDemoConfig.fast() if fast else CMDDemoConfig())
    out = start_demo(out_dir, seed)

    train = materialise(SyntheticVideoDataset(cfg.num_train, seed=seed, **_data_kw(cfg)))
    heldout = heldout_set(cfg, seed)
    videos, directions = stack_items(heldout, "video"), stack_items(heldout, "direction")
    captions = [item["caption"] for item in heldout.items]
    loader_gen = torch.Generator().manual_seed(seed)

    stage_seconds: dict[str, float] = {}

    def fit(module, data, steps: int, name: str) -> None:
        first = name.startswith("stage 1")
        fit_stage(module, data, steps, cfg.ae_batch if first else cfg.dit_batch, name, loader_gen,
                  stage_seconds, ema_decay=None if first else cfg.dit_ema)

    text = word_level_clip(out / "text_encoder", CAPTION_WORDS, width=cfg.text_width, seed=seed)

    # ---- stage 1: autoencoder (content frame + motion latent) -----------------------------------
    torch.manual_seed(seed)
    ae = CMDAutoencoder(in_channels=3, num_frames=cfg.num_frames, height=cfg.size, width=cfg.size,
                        patch_size=cfg.ae_patch, hidden_size=cfg.ae_hidden, depth=cfg.ae_depth, heads=4,
                        motion_channels=cfg.ae_motion_channels)
    # 4 * L2 pixel loss; no LPIPS (its backbone would need downloaded weights)
    stage1 = CMDAutoencoderModule(ae, lpips_weight=0.0, pixel_loss=cfg.pixel_loss, lr=cfg.ae_lr,
                                  betas=(0.9, 0.99))
    fit(stage1, train, cfg.ae_steps, "stage 1 (autoencoder)")
    ae.eval()
    with torch.no_grad():
        recon = torch.cat([ae(v)[0] for v in videos.split(16)])
    recon_psnr = mean_psnr(recon, videos)
    print(f"[demo] stage 1 held-out reconstruction PSNR: {recon_psnr:.2f} dB")
    latents = cache_latents(ae, train.items)  # one autoencoder pass per video, not per step

    # ---- stage 2a / 2b: content DiT and motion DiT (text = pooled caption features) --------------
    c, h, w = ae.content_shape
    d, frames, m = ae.motion_shape
    dit = dict(hidden_size=cfg.dit_hidden, depth=cfg.dit_depth, num_heads=4, text_dim=text.dim,
               num_classes=None)
    torch.manual_seed(seed + 1)
    content_model = ContentDiT(in_channels=c, height=h, width=w, patch_size=cfg.content_patch, **dit)
    diffusion = {"prediction_type": cfg.dit_prediction}  # DiT's linear 1e-4..0.02 schedule otherwise
    stage2a = CMDContentModule(content_model, ae, text_encoder=text, cond_drop_prob=cfg.cond_drop_prob,
                               lr=cfg.dit_lr, diffusion=diffusion)
    fit(stage2a, latents, cfg.content_steps, "stage 2a (content-frame DiT)")
    torch.manual_seed(seed + 2)
    motion_model = MotionDiT(motion_channels=d, num_frames=frames, motion_width=m, content_channels=c,
                             content_height=h, content_width=w, patch_size=2,
                             content_patch_size=cfg.motion_content_patch, **dit)
    z_std = motion_latent_std(latents)
    motion_scale = 1.0 / z_std if cfg.motion_scale == "std" else float(cfg.motion_scale)
    print(f"[demo] motion latent std {z_std:.4f}; the motion DiT trains on {motion_scale:.4f} * z")
    stage2b = CMDMotionModule(motion_model, ae, text_encoder=text, cond_drop_prob=cfg.cond_drop_prob,
                              lr=cfg.dit_lr, diffusion=diffusion, motion_scale=motion_scale)
    fit(stage2b, latents, cfg.motion_steps, "stage 2b (motion DiT)")

    # ---- generation from held-out captions ----------------------------------------------------
    pipe = CMD(ae, content_model.eval(), motion_model.eval(), stage2a.diffusion_config,
               stage2b.diffusion_config, text_encoder=text, motion_scale=motion_scale).eval()
    gen = torch.Generator().manual_seed(seed)
    print(f"[demo] generating {len(captions)} videos from held-out captions ({cfg.sampler}; content "
          f"{cfg.content_sample_steps} steps, CFG {cfg.guidance_scale}; motion {cfg.motion_sample_steps} "
          f"steps, CFG {cfg.motion_guidance_scale})")
    content = pipe.sample_content(len(captions), text=captions, num_steps=cfg.content_sample_steps,
                                  sampler=cfg.sampler, guidance_scale=cfg.guidance_scale, generator=gen)
    z = pipe.sample_motion(content, text=captions, num_steps=cfg.motion_sample_steps, sampler=cfg.sampler,
                           guidance_scale=cfg.motion_guidance_scale, generator=gen)
    with torch.no_grad():
        fake = ae.decode(content, z).clamp(-1, 1)  # (N, C, T, H, W)
    dirs = direction_vectors(cfg.directions)
    motion_acc = motion_accuracy(fake, directions, dirs)
    cap = caption_accuracy(fake, captions)
    real_cap = caption_accuracy(videos, captions)  # the reader itself on real videos (should be 1)
    animated = pipe.animate(videos[:, :, 0], text=captions, num_steps=cfg.motion_sample_steps,
                            sampler=cfg.sampler, guidance_scale=cfg.motion_guidance_scale, generator=gen)
    animate_acc = motion_accuracy(animated, directions, dirs)

    # ---- files ----------------------------------------------------------------------------------
    show = fake[:16]
    write_video(out / "samples.mp4", tile(upscale(show, cfg.display_scale)), fps=4)
    write_video(out / "samples.gif", tile(upscale(show, cfg.display_scale)), fps=4)
    sheet = torch.cat([content[:16, :, None].clamp(-1, 1), show], dim=2)  # content frame + generated frames
    save_contact_sheet(out / "contact_sheet.png", upscale(sheet, cfg.display_scale))
    (out / "captions.txt").write_text("\n".join(captions[:16]) + "\n")
    pipe.save_pretrained(out / "cmd")

    metrics = {
        "motion_accuracy": round(float(motion_acc), 4),
        "caption_accuracy": round(cap["caption_accuracy"], 4),
        "colour_accuracy": round(cap["colour_accuracy"], 4),
        "shape_accuracy": round(cap["shape_accuracy"], 4),
        "animate_motion_accuracy": round(float(animate_acc), 4),
        "recon_psnr": round(recon_psnr, 3),
        "motion_latent_std": round(z_std, 4),
        "motion_scale": round(motion_scale, 4),
        "chance_motion_accuracy": round(1.0 / cfg.directions, 4),
        "chance_caption_accuracy": round(1.0 / (len(COLORS) * len(SHAPES)), 4),
        "caption_accuracy_of_real_videos": round(real_cap["caption_accuracy"], 4),
        "stage_seconds": stage_seconds,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seed": seed,
        "setting": "toy: synthetic captioned moving shapes, CPU; not a paper number",
        "config": dataclasses.asdict(cfg),
        "num_heldout": len(captions),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    print(f"[demo] motion_accuracy {metrics['motion_accuracy']} (chance 0.25), caption_accuracy "
          f"{metrics['caption_accuracy']} (chance {metrics['chance_caption_accuracy']}), recon_psnr "
          f"{metrics['recon_psnr']} dB, wall {metrics['wall_seconds']} s -> {out}")
    return metrics
