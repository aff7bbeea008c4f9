"""CMD's stage 1 (Sec. 3.2, App. B.3): :class:`CMDAutoencoderModule` trains the autoencoder.

Pixel mode: ``4 * L1`` over the whole video + ``4 * LPIPS`` on one random frame per video (or all frames),
as the official code; latent mode: MSE between reconstructed and input SD latents (videos are encoded frame
by frame by a frozen ``FrameVAE``, posterior samples in training, means in validation).
:func:`cache_latents` encodes a data set once for the later stages.
"""

from __future__ import annotations

from typing import Any

import torch

from videogen.core.losses import LPIPSLoss
from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.core.sd import FrameVAE
from videogen.core.training import encode_items

from .autoencoder import CMDAutoencoder
from .stage import CMDStage, build_autoencoder

__all__ = ["CMDAutoencoderModule", "cache_latents", "motion_latent_std"]


class CMDAutoencoderModule(CMDStage):
    """Trains a :class:`CMDAutoencoder` (see the module docstring for the losses).

    Args:
        autoencoder: the network (or its config).
        vae: frozen SD VAE for latent mode (videos in the batch stay pixels; they are encoded here).
        l1_weight, lpips_weight: pixel-mode weights (official: 4, 4); ``lpips_weight=0`` builds no LPIPS.
        pixel_loss: ``"l1"`` (official) or ``"l2"`` for the pixel term that ``l1_weight`` weighs (the CPU
            demo uses L2: with L1 alone a small object fades into the background early in training).
        lpips_frames: ``"one"`` random frame per video (official) or ``"all"``.
        lpips_net / lpips_pretrained / lpips_random: the LPIPS backbone (``core.losses.LPIPSLoss``).
        lr, betas: Adam (B.3: 1e-5, (0.5, 0.9)); ``scale_lr``: LDM scaling (off: the paper's rate is
        effective).
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).
    """

    def __init__(self, autoencoder: CMDAutoencoder | dict[str, Any], vae: FrameVAE | None = None,
                 l1_weight: float = 4.0, lpips_weight: float = 4.0, lpips_frames: str = "one",
                 pixel_loss: str = "l1", lpips_net: str = "vgg", lpips_pretrained: bool | str = True,
                 lpips_random: bool = False,
                 lr: float = 1e-5, betas: tuple[float, float] = (0.5, 0.9), scale_lr: bool = False,
                 nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        super().__init__(nan_policy=nan_policy, compile=compile, optimizer=optimizer)
        if lpips_frames not in ("one", "all"):
            raise ValueError(f"lpips_frames must be 'one' or 'all', got {lpips_frames!r}")
        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel_loss must be 'l1' or 'l2', got {pixel_loss!r}")
        self.save_hyperparameters(ignore=["autoencoder", "vae"])
        self.autoencoder = build_autoencoder(autoencoder)
        self.vae = vae
        self.freeze_stages()
        pixel = self.autoencoder.mode == "pixel"
        self.lpips = (LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random)
                      if pixel and lpips_weight > 0 else None)

    def reconstruction_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon, _, _ = self.autoencoder(x)
        if self.autoencoder.mode == "latent":
            mse = (recon.float() - x.float()).square().mean()
            return mse, {"mse": mse.detach()}
        diff = recon.float() - x.float()
        pixel = diff.abs().mean() if self.hparams.pixel_loss == "l1" else diff.square().mean()
        loss, logs = self.hparams.l1_weight * pixel, {self.hparams.pixel_loss: pixel.detach()}
        if self.lpips is not None:
            if self.hparams.lpips_frames == "one":  # one random frame per video (official)
                idx = torch.randint(0, x.shape[2], (x.shape[0],), device=x.device)
                pick = torch.arange(x.shape[0], device=x.device)
                r, t = recon[pick, :, idx].unsqueeze(2), x[pick, :, idx].unsqueeze(2)  # (B, C, 1, H, W)
            else:
                r, t = recon, x
            lp = self.lpips(r, t)
            loss = loss + self.hparams.lpips_weight * lp
            logs["lpips"] = lp.detach()
        return loss, logs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        x = self._ae_input(batch["video"], sample=True)
        loss, logs = self.reconstruction_loss(x)
        if not self.finite_or_skip(loss=loss):
            return None
        self.log_dict({f"train/{k}": v for k, v in {**logs, "loss": loss.detach()}.items()},
                      prog_bar=False, batch_size=x.shape[0], sync_dist=True)
        self.log("train/loss_bar", loss.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self._ae_input(batch["video"], sample=False)
        recon, _, _ = self.autoencoder(x)
        logs = {"val/mse": (recon.float() - x.float()).square().mean()}
        if self.autoencoder.mode == "pixel":
            logs["val/psnr"] = psnr_per_video(recon.clamp(-1, 1), x).mean().float()
        self.log_dict(logs, prog_bar=True, sync_dist=True, batch_size=x.shape[0])

    def configure_optimizers(self):
        return self.make_optimizer(self.autoencoder.parameters(),
                                   self.scaled_lr(self.hparams.lr, self.hparams.scale_lr), "adam",
                                   betas=tuple(self.hparams.betas))

    def trained_networks(self) -> dict[str, torch.nn.Module]:
        return {"autoencoder": self.autoencoder}

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Reconstructions of the first ``num`` batch videos (pixels)."""
        x = self._ae_input(batch["video"][:num], sample=False)
        recon = self.autoencoder(x)[0]
        return self.vae.decode(recon) if self.vae is not None else recon.clamp(-1, 1)


@torch.no_grad()
def cache_latents(autoencoder: CMDAutoencoder, items: list[dict[str, Any]], vae: FrameVAE | None = None,
                      batch_size: int = 64) -> list[dict[str, Any]]:
    """Add ``content_frame`` ``(C, H, W)`` and ``motion_latent`` ``(D, L, W'+H')`` to each item and drop
    ``video``: the content and motion stages then skip the frozen autoencoder at every step.

    The encodings are deterministic (SD VAE posterior means in latent mode), so the stages lose the VAE's
    posterior sampling.  Worth it on a CPU, where the autoencoder pass costs more than a DiT step.
    """
    autoencoder = autoencoder.eval()

    def encode(video: torch.Tensor) -> dict[str, torch.Tensor]:
        content, motion = autoencoder.encode(vae.encode(video, sample=False) if vae is not None else video)
        return {"content_frame": content, "motion_latent": motion}

    return encode_items(items, encode, batch_size)


def motion_latent_std(items: list[dict[str, Any]]) -> float:
    """Std of the ``motion_latent`` entries of :func:`cache_latents` items (all elements pooled);
    ``1 / std`` is the ``motion_scale`` that gives the motion DiT unit-variance data."""
    if not items or "motion_latent" not in items[0]:
        raise ValueError("give items with 'motion_latent' (from cache_latents)")
    return float(torch.stack([item["motion_latent"] for item in items]).double().std())
