"""LVDM's short-video diffusion model (Sec. 3.2): ``LVDMShortModule`` trains a ``UNet3D`` on the latents
of a frozen ``VideoAutoencoder3D``.

Official settings (spec §2): T = 1000, LDM's "linear" = scaled-linear 0.0015..0.0155, eps prediction,
**L1** loss, AdamW lr 6e-5 (weight decay 0.01), EMA 0.9999.  The latents are normalised by the
autoencoder's ``scale * (z + shift)``; when the autoencoder has never been calibrated (scale 1, shift 0)
and ``calibrate_latents > 0``, the constants are derived at the start of ``fit`` from that many training
clips (rank 0's, broadcast to every rank) and saved with the weights: LVDM's per-dataset constants are
undocumented (LVDM#10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videogen.core.pretrained import load_stage_network
from videogen.core.stages import DiffusionStage
from videogen.core.training import encode_items
from videogen.data.cache import cached_batch

from .autoencoder import VideoAutoencoder3D
from .unet3d import DEFAULT_DIFFUSION, UNet3D

__all__ = ["LVDMShortModule", "batch_latents", "cache_latents", "load_video_autoencoder"]


def load_video_autoencoder(path: str | Path | VideoAutoencoder3D,
                           map_location: str = "cpu") -> VideoAutoencoder3D:
    """The autoencoder from a ``VideoAutoencoder3DModule`` checkpoint or a ``save_pretrained`` directory."""
    if isinstance(path, VideoAutoencoder3D):
        return path
    return load_stage_network(path, VideoAutoencoder3D, "autoencoder", r"(lvdm_\w+?_autoencoder)",
                              "train the autoencoder recipe first "
                              "(recipes/lvdm_*_autoencoder.yaml), or give a save_pretrained directory",
                              map_location)


def batch_latents(autoencoder: VideoAutoencoder3D, batch: dict[str, Any], sample: bool) -> torch.Tensor:
    """The batch's normalised latents ``(B, 4, t, h, w)``: cached by :func:`cache_latents`, or encoded."""
    if "latent" in batch:
        return batch["latent"]
    return autoencoder.encode(batch["video"], sample=sample)


@torch.no_grad()
def cache_latents(autoencoder: VideoAutoencoder3D, items: list[dict[str, Any]],
                        batch_size: int = 32) -> list[dict[str, Any]]:
    """Add ``latent`` (the normalised posterior mean, ``(4, t, h, w)``) to each item and drop ``video``: the
    diffusion stages then skip the frozen autoencoder at every step.  The price is the posterior sampling
    (means instead of fresh samples); worth it on a CPU.  Calibrate the autoencoder first."""
    autoencoder = autoencoder.eval()
    return encode_items(items, lambda video: {"latent": autoencoder.encode(video, sample=False)}, batch_size)


class LVDMShortModule(DiffusionStage):
    """Unconditional short-video diffusion on 3D-autoencoder latents.

    Args:
        unet: the denoiser.
        autoencoder: stage-1 checkpoint / directory / network (frozen).
        calibrate_latents: clips for the latent scale/shift when the autoencoder is uncalibrated (0: never).
        diffusion: ``GaussianDiffusion`` kwargs (default: the official schedule and L1 loss).
        lr, weight_decay, scale_lr: AdamW (official 6e-5, 0.01, unscaled).
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).
    """

    network_name = "unet"
    frozen = ("autoencoder",)
    default_diffusion = DEFAULT_DIFFUSION
    pipeline_name = "videogen.lvdm.LVDM"

    def __init__(self, unet: UNet3D, autoencoder: VideoAutoencoder3D | str, calibrate_latents: int = 1024,
                 diffusion: dict[str, Any] | None = None, lr: float = 6e-5, weight_decay: float = 0.01,
                 scale_lr: bool = False, nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        super().__init__(diffusion, nan_policy=nan_policy, compile=compile, optimizer=optimizer)
        self.save_hyperparameters(ignore=["unet", "autoencoder"])
        self.unet = unet
        self.autoencoder = load_video_autoencoder(autoencoder)
        self.freeze_stages()
        if self.autoencoder.z_channels != unet.in_channels:
            raise ValueError(f"the autoencoder's latents have {self.autoencoder.z_channels} channels, the "
                             f"UNet takes {unet.in_channels}")

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {"autoencoder": (self.autoencoder, "autoencoder."), "short": (self.unet, "unet.")}

    def pipeline_settings(self) -> dict[str, Any]:
        return {"diffusion": self.diffusion_config}

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Normalised latents ``(B, 4, t, h, w)``; no conditions."""
        cached_batch(self, batch, ("latent",))
        return batch_latents(self.autoencoder, batch, sample), {}

    @torch.no_grad()
    def cache_encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What ``videogen cache`` stores: the normalised posterior means ``latent`` ``(B, 4, t, h, w)`` of
        ``batch["video"]`` (no text).  The autoencoder must be calibrated already: the constants
        ``on_fit_start`` would derive are part of the cached latents."""
        if not self.calibrated and self.hparams.calibrate_latents > 0:
            raise ValueError("the autoencoder's latent scale / shift are not calibrated yet: cache after a "
                             "run that calibrated them (or set calibrate_latents: 0 to train uncalibrated)")
        return {"latent": self.autoencoder.encode(batch["video"], sample=False)} if "video" in batch else {}

    @property
    def calibrated(self) -> bool:
        return float(self.autoencoder.scale) != 1.0 or float(self.autoencoder.shift) != 0.0

    @torch.no_grad()
    def on_fit_start(self) -> None:
        super().on_fit_start()  # compile
        if self.calibrated or self.hparams.calibrate_latents <= 0:
            return
        trainer = self.trainer
        if trainer.global_rank == 0:
            loader = trainer.datamodule.train_dataloader() if trainer.datamodule is not None else None
            if loader is None:
                raise ValueError("latent calibration needs the data module's training loader")
            batches = (b["video"].to(self.device) for b in loader)
            self.autoencoder.calibrate(batches, max_latents=self.hparams.calibrate_latents)
        stats = torch.stack([self.autoencoder.scale, self.autoencoder.shift])
        stats = trainer.strategy.broadcast(stats, src=0)
        self.autoencoder.set_latent_normalization(float(stats[0]), float(stats[1]))

    def configure_optimizers(self):
        return self.make_optimizer(self.unet.parameters(),
                                   self.scaled_lr(self.hparams.lr, self.hparams.scale_lr), "adamw",
                                   weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def sample(self, num: int, num_frames: int, height: int, width: int, num_steps: int = 50,
               eta: float = 1.0, generator: torch.Generator | None = None,
               progress: bool = False) -> torch.Tensor:
        """Unconditional videos ``(num, 3, num_frames, height, width)`` in [-1, 1] (DDIM, eta 1 as LVDM)."""
        shape = (num, *self.autoencoder.latent_shape(num_frames, height, width))
        z = self.diffusion.sample(self.unet, shape, num_steps=num_steps, eta=eta, generator=generator,
                                  device=self.device, progress=progress)
        return self.autoencoder.decode(z).clamp(-1, 1)

    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """``num`` unconditional clips of the batch's size from :meth:`sample` (25 DDIM steps, eta 1, a
        generator on the module's device), as before the base existed: the base's pipeline default does
        not apply, since the ``LVDM`` pipeline is built around a prediction model this stage lacks."""
        _, _, t, h, w = batch["video"].shape
        return self.sample(num, t, h, w, num_steps=25,
                           generator=torch.Generator(device=self.device).manual_seed(0))
