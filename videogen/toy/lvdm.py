"""The LVDM CPU demo (``videogen demo --model lvdm``): long videos of bouncing shapes, hierarchical vs
autoregressive.

Trains, through their LightningModules, the 3D autoencoder (L2; no LPIPS or GAN on the CPU), the short
unconditional 3D UNet, and three models started from it (``from_short``): the keyframe prediction and the
interpolation models of hierarchical sampling and the autoregressive baseline's prediction model on
consecutive latents, on :class:`videogen.data.SyntheticVideoDataset` with ``motion="bounce"`` (one shape
moving at constant speed and reflecting off the walls, so the motion rule holds for any length; white
shapes on black by default, see docs/lvdm.md).  Then it generates unconditional videos of
``long_frames`` (256) frames in both modes and writes:

- ``hierarchical.mp4`` / ``autoregressive.mp4`` (a grid of the generated videos) and ``contact_sheet.png``
  (every 16th frame of the first videos, hierarchical rows then autoregressive rows);
- ``lvdm/``: the trained pipeline (``LVDM.from_pretrained``; ``videogen sample --model DIR``);
- ``metrics.json``: ``num_frames`` and ``long_motion_accuracy`` of each mode (the fraction of 16-frame
  windows in which the object is tracked and bounces as the synthetic rule says;
  ``videogen.toy.scoring.long_motion_accuracy``), the clip and UNet-call counts of each mode, the
  autoencoder's held-out ``recon_psnr``, the score of real bouncing videos and of a static video, wall
  time and settings.  Toy-setting numbers, not paper numbers.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from videogen.core.files import atomic_write_text
from videogen.toy.common import fit_stage, materialise, mean_psnr, stack_items, start_demo, tile, upscale

__all__ = ["LVDMDemoConfig", "run_demo"]


@dataclasses.dataclass
class LVDMDemoConfig:
    """Sizes and schedules of the LVDM demo; ``fast()`` shrinks everything for tests (seconds)."""

    size: int = 16
    clip_frames: int = 16
    # white shapes on black: with random backgrounds and five colours the UNets draw no object in this
    # budget (long_motion_accuracy 0.0, docs/lvdm.md); the synthetic benchmark keeps the shared colours
    colors: tuple[str, ...] = ("white",)
    background: tuple[float, float, float] | None = (0.0, 0.0, 0.0)
    object_size: float = 0.25
    speed: tuple[float, float] = (2 / 3, 1.0)  # per 16 frames: >= 2/3 px per frame at 16 px, so the tracker's
    # jitter does not hide the motion (at (1/3, 1/2) some real videos score < 1)
    num_train: int = 1500
    num_heldout: int = 32
    long_frames: int = 256
    num_long: int = 8
    display_scale: int = 8
    # stage 1: 3D autoencoder (one stage, strides (2, 2, 2): f_t 2, f_s 2, a 16 x 16 x 16 clip ->
    # 4 x 8 x 8 x 8), trained on 8-frame clips with an L2 pixel loss; no ResBlocks and 4 GroupNorm groups
    # (docs/lvdm.md: with 32 groups at width 32 or with ResBlocks it does not learn in this budget)
    ae_hidden: int = 16
    ae_strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2),)
    ae_norm_groups: int = 4
    ae_res_blocks: int = 0
    ae_pixel_loss: str = "l2"
    ae_frames: int = 8
    ae_lr: float = 1e-3
    ae_steps: int = 800
    ae_batch: int = 8
    # stage 2: short UNet3D; stage 3: prediction / interpolation (keyframes 2 latents = 4 frames apart) and
    # the autoregressive baseline's prediction model (consecutive latents); attention only at the 4 x 4
    # level and the middle, lr 2e-3 (at 5e-4, and with attention at 8 x 8 too, the UNet learned 2-3x slower
    # per second: docs/lvdm.md)
    unet_channels: int = 24
    unet_attention: tuple[int, ...] = (2,)
    unet_lr: float = 2e-3
    short_steps: int = 1500
    long_steps: int = 1200
    unet_batch: int = 16
    # EMA of the UNets' weights (core's EMA callback, with warm-up); None samples the last weights
    unet_ema: float | None = 0.995
    keyframe_stride: int = 2
    # latents a prediction model is given (LVDM: 1).  One latent is 2 frames: too little to tell the direction
    # (keyframe windows reversed mid-frame, docs/lvdm.md); 2 keyframes are 4 frames apart.  Both modes use it.
    num_given: int = 2
    # diffusion: v-prediction and an L2 loss (LVDM's eps + L1 drifted into saturated noise over long chains
    # in this budget, docs/lvdm.md); sampling: DDIM, deterministic (eta 0) at 30 steps
    prediction_type: str = "v_prediction"
    diffusion_loss: str = "l2"
    sample_steps: int = 30
    sampler: str = "ddim"
    sample_eta: float = 0.0
    guidance: float = 0.1

    @classmethod
    def brief(cls) -> LVDMDemoConfig:
        """Fewer training clips and steps, 1 long video per mode and UniPC at 10 sampling steps (within 2% of
        200 DDIM steps in the sampler study, docs/diffusion.md), for the three-model tour (``make demo``,
        which with the first install has to fit in 15 minutes on 2 cores)."""
        return cls(num_train=800, ae_steps=450, short_steps=250, long_steps=200, num_long=1, sampler="unipc",
                   sample_steps=10)

    def data_kwargs(self) -> dict[str, Any]:
        """The :class:`videogen.data.SyntheticVideoDataset` keywords of this demo's bouncing shapes (the
        scorer ``long_motion_accuracy`` reads its motion rule from such a dataset)."""
        return dict(size=self.size, object_size=self.object_size, speed=tuple(self.speed), motion="bounce",
                    colors=tuple(self.colors),
                    background=None if self.background is None else tuple(self.background))

    @classmethod
    def fast(cls) -> LVDMDemoConfig:
        return cls(num_train=8, num_heldout=2, long_frames=32, num_long=1, ae_steps=2, short_steps=2,
                   long_steps=2, ae_batch=2, unet_batch=2, unet_channels=8, sample_steps=2)


def _unet_kwargs(cfg: LVDMDemoConfig) -> dict[str, Any]:
    return dict(model_channels=cfg.unet_channels, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=tuple(cfg.unet_attention), num_heads=2, max_relative_distance=8)


def run_demo(out_dir: str | Path = "outputs/demo_lvdm", seed: int = 0, fast: bool = False,
                  config: LVDMDemoConfig | None = None) -> dict[str, Any]:
    """Train LVDM's stages on bouncing shapes, generate long videos both ways, score and write the files."""
    from videogen.core.video import save_contact_sheet, write_video
    from videogen.data import SyntheticVideoDataset
    from videogen.lvdm import ConditionalUNet3D, LVDMLongModule, autoregressive_clips, hierarchical_plan
    from videogen.lvdm.autoencoder import VideoAutoencoder3D
    from videogen.lvdm.autoencoder_module import VideoAutoencoder3DModule
    from videogen.lvdm.pipeline import LVDM
    from videogen.lvdm.short_module import LVDMShortModule, cache_latents
    from videogen.lvdm.unet3d import UNet3D
    from videogen.toy.scoring import long_motion_accuracy

    start = time.perf_counter()
    cfg = config or (LVDMDemoConfig.fast() if fast else LVDMDemoConfig())
    out = start_demo(out_dir, seed)

    data_kw = cfg.data_kwargs()
    train = materialise(SyntheticVideoDataset(cfg.num_train, num_frames=cfg.clip_frames, seed=seed,
                                              **data_kw))
    heldout = materialise(SyntheticVideoDataset(cfg.num_heldout, num_frames=cfg.clip_frames,
                                                seed=seed + 10_000, **data_kw))
    long_real = SyntheticVideoDataset(cfg.num_long, num_frames=cfg.long_frames, seed=seed + 20_000, **data_kw)
    videos = stack_items(heldout, "video")
    loader_gen = torch.Generator().manual_seed(seed)

    stage_seconds: dict[str, float] = {}

    def fit(module, data, steps: int, batch: int, name: str, ema: float | None = None) -> None:
        fit_stage(module, data, steps, batch, name, loader_gen, stage_seconds, ema_decay=ema)

    # ---- stage 1: 3D autoencoder ------------------------------------------------------------------
    torch.manual_seed(seed)
    ae = VideoAutoencoder3D(hidden=cfg.ae_hidden, strides=cfg.ae_strides, z_channels=4,
                            norm_groups=cfg.ae_norm_groups, encoder_res_blocks=cfg.ae_res_blocks,
                            decoder_res_blocks=cfg.ae_res_blocks)
    stage1 = VideoAutoencoder3DModule(ae, lpips_weight=0.0, disc_weight=0.0, lr=cfg.ae_lr, betas=(0.9, 0.99),
                                      pixel_loss=cfg.ae_pixel_loss)
    # The autoencoder is convolutional in time: it trains on 8-frame clips (half the cost) and encodes 16.
    short_clips = [{"video": item["video"][:, :cfg.ae_frames]} for item in train.items]
    fit(stage1, short_clips, cfg.ae_steps, cfg.ae_batch, "stage 1 (3D autoencoder)")
    ae.eval()
    with torch.no_grad():
        recon_psnr = mean_psnr(torch.cat([ae(v, sample=False)[0].clamp(-1, 1) for v in videos.split(8)]),
                               videos)
        # latent scale / shift from data
        ae.calibrate((b["video"] for b in DataLoader(train, batch_size=16)), max_latents=1024)
    print(f"[demo] stage 1 held-out reconstruction PSNR: {recon_psnr:.2f} dB")
    latents = cache_latents(ae, train.items)  # one autoencoder pass per clip, not per step

    # ---- stage 2: short model; stage 3: prediction and interpolation from it -------------------------
    torch.manual_seed(seed + 1)
    short = UNet3D(in_channels=4, out_channels=4, **_unet_kwargs(cfg))
    diffusion = {"prediction_type": cfg.prediction_type, "loss_type": cfg.diffusion_loss}
    stage2 = LVDMShortModule(short, ae, calibrate_latents=0, lr=cfg.unet_lr, diffusion=diffusion)
    fit(stage2, latents, cfg.short_steps, cfg.unet_batch, "stage 2 (short UNet3D)", cfg.unet_ema)
    long_models: dict[str, ConditionalUNet3D] = {}
    for name, mode, stride in (("prediction", "prediction", cfg.keyframe_stride),
                               ("interpolation", "interpolation", cfg.keyframe_stride),
                               ("autoregressive", "prediction", 1)):
        net = ConditionalUNet3D.from_short(short, num_given=cfg.num_given)
        module = LVDMLongModule(net, ae, mode=mode, keyframe_stride=stride, lr=cfg.unet_lr,
                                diffusion=diffusion)
        fit(module, latents, cfg.long_steps, cfg.unet_batch, f"stage 3 ({name})", cfg.unet_ema)
        long_models[name] = net.eval()

    # ---- long videos, both ways ---------------------------------------------------------------------
    pipe = LVDM(ae, long_models["prediction"], long_models["interpolation"], stage2.diffusion_config,
                cfg.keyframe_stride, short.eval(), (cfg.size, cfg.size), cfg.clip_frames,
                long_models["autoregressive"]).eval()
    results: dict[str, Any] = {}
    samples = {}
    for mode in ("hierarchical", "autoregressive"):
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        print(f"[demo] {cfg.num_long} videos of {cfg.long_frames} frames, {mode}")
        fake = pipe.generate_long(cfg.long_frames, batch=cfg.num_long, mode=mode, num_steps=cfg.sample_steps,
                                  sampler=cfg.sampler, guidance=cfg.guidance, generator=gen,
                                  eta=cfg.sample_eta)
        score = long_motion_accuracy(fake, long_real)
        samples[mode] = fake
        results[mode] = {"num_frames": int(fake.shape[2]),
                         "long_motion_accuracy": round(score["long_motion_accuracy"], 4),
                         "per_video": [round(v, 3) for v in score["per_video"]],
                         "seconds_per_video": round((time.perf_counter() - t0) / cfg.num_long, 2)}
    f_t, r = ae.temporal_factor, cfg.keyframe_stride
    plan = hierarchical_plan(cfg.long_frames, f_t, r, given=cfg.num_given)
    ar_clips = autoregressive_clips(cfg.long_frames, f_t, given=cfg.num_given)
    calls = 2 * cfg.sample_steps  # guidance: a conditional and an unconditional call per step
    results["hierarchical"].update(clips=plan["prediction_clips"] + plan["interpolation_clips"],
                                   unet_calls=calls
                                   * (plan["prediction_clips"] + plan["interpolation_clips"]))
    results["autoregressive"].update(clips=ar_clips, unet_calls=calls * ar_clips)
    real = torch.stack([long_real[i]["video"] for i in range(cfg.num_long)])
    real_score = long_motion_accuracy(real, long_real)["long_motion_accuracy"]
    static_score = long_motion_accuracy(real[:, :, :1].expand_as(real), long_real)["long_motion_accuracy"]

    # ---- files ----------------------------------------------------------------------------------
    for mode, fake in samples.items():
        write_video(out / f"{mode}.mp4", tile(upscale(fake[:4], cfg.display_scale)), fps=16)
    rows = torch.cat([samples["hierarchical"][:2], samples["autoregressive"][:2]])[:, :, ::16]
    save_contact_sheet(out / "contact_sheet.png", upscale(rows, cfg.display_scale))
    pipe.save_pretrained(out / "lvdm")

    metrics = {
        "num_frames": results["hierarchical"]["num_frames"],
        "long_motion_accuracy": {m: results[m]["long_motion_accuracy"] for m
                                 in ("hierarchical", "autoregressive")},
        "modes": results,
        "recon_psnr": round(recon_psnr, 3),
        "long_motion_accuracy_of_real_videos": round(real_score, 4),
        "long_motion_accuracy_of_a_static_video": round(static_score, 4),
        "stage_seconds": stage_seconds,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seed": seed,
        "setting": "toy: synthetic bouncing shapes, CPU; not a paper number",
        "config": dataclasses.asdict(cfg),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    print(f"[demo] {metrics['num_frames']} frames; long_motion_accuracy hierarchical "
          f"{metrics['long_motion_accuracy']['hierarchical']}, autoregressive "
          f"{metrics['long_motion_accuracy']['autoregressive']}; wall {metrics['wall_seconds']} s -> {out}")
    return metrics
