"""Training the LVDM 3D autoencoder (Sec. 3.1; spec §1): ``VideoAutoencoder3DModule``.

Per frame: ``rec = |x - x_hat| + lpips_weight * LPIPS(x, x_hat)``; with a learned log-variance
``nll = rec / exp(logvar) + logvar`` (the official code builds that log-variance and never optimises it:
here it is in the optimiser); ``+ kl_weight * KL`` (official 0); from ``disc_start`` on, a 2D PatchGAN
applied to every frame with the hinge loss and VQGAN's adaptive weight x ``disc_weight`` (0.5).  Adam
betas (0.5, 0.9), manual optimisation with one optimiser per network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videogen.core.losses import (
    LPIPSLoss,
    adaptive_weight,
    generator_adv_loss,
    hinge_d_loss,
    kl_diagonal_gaussian,
)
from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.core.nn import PatchGANDiscriminator
from videogen.core.training import TrainingModule

from .autoencoder import VideoAutoencoder3D

__all__ = ["VideoAutoencoder3DModule"]


def _frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class VideoAutoencoder3DModule(TrainingModule):
    """Trains a :class:`VideoAutoencoder3D`.

    Args:
        autoencoder: the network or its config dict.
        lpips_weight: LPIPS term (official 1.0; 0 builds no LPIPS); ``lpips_net`` etc. as ``LPIPSLoss``.
        learn_logvar: train the scalar log-variance of the reconstruction likelihood (official: built, never
            trained); ``logvar_init`` its start (0).
        kl_weight: KL weight (official 0).
        disc_weight, disc_start: adaptive-weight factor (0.5) and first generator step of the GAN (50001);
            ``disc_weight=0`` builds no discriminator.
        lr, betas, scale_lr: Adam for both networks (official 3.6e-5, (0.5, 0.9), unscaled).
        pixel_loss: "l1" (official) or "l2" (the CPU demo: it learns a small autoencoder's colours faster).
    """

    pipeline_name = "videogen.lvdm.LVDM"  # stage 1: its checkpoint holds the pipeline's autoencoder

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {"autoencoder": (self.autoencoder, "autoencoder.")}

    def __init__(self, autoencoder: VideoAutoencoder3D | dict[str, Any], lpips_weight: float = 1.0,
                 lpips_net: str = "vgg", lpips_pretrained: bool | str = True, lpips_random: bool = False,
                 learn_logvar: bool = True, logvar_init: float = 0.0, kl_weight: float = 0.0,
                 disc_weight: float = 0.5, disc_start: int = 50001, disc_channels: int = 64, disc_layers: int = 3,
                 lr: float = 3.6e-5, betas: tuple[float, float] = (0.5, 0.9), scale_lr: bool = False,
                 pixel_loss: str = "l1", nan_policy: str = "raise"):
        super().__init__(nan_policy=nan_policy)
        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel_loss must be 'l1' or 'l2', got {pixel_loss!r}")
        self.save_hyperparameters(ignore=["autoencoder"])
        if not isinstance(autoencoder, VideoAutoencoder3D):
            kwargs = autoencoder.get("init_args", autoencoder) if "class_path" in autoencoder else autoencoder
            autoencoder = VideoAutoencoder3D(**kwargs)
        self.autoencoder = autoencoder
        self.hparams["autoencoder"] = {"class_path": "videogen.lvdm.VideoAutoencoder3D", "init_args": autoencoder.config}
        self.lpips = LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random) if lpips_weight > 0 else None
        self.logvar = nn.Parameter(torch.full((), float(logvar_init)), requires_grad=learn_logvar)
        self.discriminator = (PatchGANDiscriminator(autoencoder.in_channels, disc_channels, disc_layers, dims=2)
                              if disc_weight > 0 else None)
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False

    def _rec(self, recon: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        err = recon - video
        l1 = err.abs().mean()
        logs = {"l1": l1.detach()}
        rec = l1 if self.hparams.pixel_loss == "l1" else err.square().mean()
        if self.lpips is not None:
            lp = self.lpips(recon, video)  # mean over frames
            rec = rec + self.hparams.lpips_weight * lp
            logs["lpips"] = lp.detach()
        return rec, logs

    def generator_loss(self, video: torch.Tensor, gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        recon, mean, logvar = self.autoencoder(video, sample=True)
        rec, logs = self._rec(recon, video)
        nll = rec / self.logvar.exp() + self.logvar
        kl = kl_diagonal_gaussian(mean, logvar).mean() / mean[0].numel()
        loss = nll + self.hparams.kl_weight * kl
        if gan:
            g_loss = generator_adv_loss(self.discriminator(_frames(recon)), "hinge")
            weight = self.hparams.disc_weight * adaptive_weight(nll, g_loss, self.autoencoder.decoder[-1].conv.weight)
            loss = loss + weight * g_loss
            logs.update(g_loss=g_loss.detach(), disc_adaptive_weight=weight)
        logs.update(rec_loss=rec.detach(), nll=nll.detach(), kl=kl.detach(), logvar=self.logvar.detach())
        return loss, logs, recon

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = batch["video"]
        opts = self.optimizers()
        opt_g = opts[0] if isinstance(opts, list) else opts
        gan = self.discriminator is not None and int(self.gen_steps) >= self.hparams.disc_start
        if self.discriminator is not None:
            self.toggle_optimizer(opt_g)
        loss, logs, recon = self.generator_loss(video, gan)
        if self.finite_or_skip(rec_loss=logs["rec_loss"], loss=loss):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
            self.gen_steps += 1
        if self.discriminator is not None:
            self.untoggle_optimizer(opt_g)
        if gan:
            opt_d = opts[1]
            self.toggle_optimizer(opt_d)
            real, fake = self.discriminator(_frames(video)), self.discriminator(_frames(recon.detach()))
            d_loss = hinge_d_loss(real, fake)
            if self.finite_or_skip(d_loss=d_loss):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_loss)
                opt_d.step()
            self.untoggle_optimizer(opt_d)
            logs["d_loss"] = d_loss.detach()
        self.log_dict({f"train/{k}": v for k, v in {**logs, "loss": loss.detach()}.items()},
                      batch_size=video.shape[0], sync_dist=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = batch["video"]
        recon = self.autoencoder(video, sample=False)[0]
        rec, _ = self._rec(recon, video)
        self.log_dict({"val/rec_loss": rec, "val/psnr": psnr_per_video(recon.clamp(-1, 1), video).mean().float()},
                      prog_bar=True, sync_dist=True, batch_size=video.shape[0])

    def configure_optimizers(self):
        kw = dict(lr=self.scaled_lr(self.hparams.lr, self.hparams.scale_lr), betas=tuple(self.hparams.betas))
        params = list(self.autoencoder.parameters()) + ([self.logvar] if self.logvar.requires_grad else [])
        opt_g = torch.optim.Adam(params, **kw)
        if self.discriminator is None:
            return opt_g
        return [opt_g, torch.optim.Adam(self.discriminator.parameters(), **kw)]

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        return self.autoencoder(batch["video"][:num], sample=False)[0].clamp(-1, 1)
