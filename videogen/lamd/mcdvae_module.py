"""Stage 1 of LaMD: training the MCD-VAE (Eq. 2) as a LightningModule, and ``load_mcdvae``.

Loss of the autoencoder (per batch)::

    L_GEN = mean |x - x_hat| + lpips_weight * LPIPS(x_hat, x) + beta * KL_mean
    L     = L_GEN + disc_weight * lambda_adapt * L_adv      (from ``disc_start`` on)

``KL_mean`` is the KL of the motion posterior to N(0, I) averaged over latent elements and batch (the
same per-element averaging as the L1 term), so ``beta`` (1e-2 in Table 1) weighs one latent element
against one pixel value.  ``lambda_adapt`` is VQGAN's adaptive weight computed on the decoder's last
layer.  The video discriminator (a 3D PatchGAN by default) uses the paper's log-loss (``"vanilla"``)
or ``"hinge"``.  Two Adam optimisers, manual optimisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.core.losses import (
    LPIPSLoss,
    adaptive_weight,
    generator_adv_loss,
    hinge_d_loss,
    kl_diagonal_gaussian,
    vanilla_d_loss,
)
from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.core.nn import PatchGANDiscriminator
from videogen.core.pretrained import load_stage_network
from videogen.core.training import TrainingModule

from .mcdvae import MCDVAE

__all__ = ["MCDVAEModule", "load_mcdvae"]

_D_LOSSES = {"vanilla": vanilla_d_loss, "hinge": hinge_d_loss}


def _build_autoencoder(autoencoder: MCDVAE | dict[str, Any]) -> MCDVAE:
    """Accept a module, MCDVAE keyword arguments, or a ``{class_path, init_args}`` dict (checkpoints)."""
    if isinstance(autoencoder, MCDVAE):
        return autoencoder
    if isinstance(autoencoder, dict):
        kwargs = autoencoder.get("init_args", autoencoder) if "class_path" in autoencoder else autoencoder
        return MCDVAE(**kwargs)
    raise ValueError(f"autoencoder must be an MCDVAE or its config dict, got {type(autoencoder).__name__}")


class MCDVAEModule(TrainingModule):
    """Trains an :class:`MCDVAE` with L1 + LPIPS + beta*KL + adaptive-weight GAN (LaMD Eq. 2).

    Args:
        autoencoder: the MCD-VAE (or its config dict).
        beta: KL weight (Table 1: 1e-2; 1e-1 for MUG).
        lpips_weight: 0 disables LPIPS (no backbone is built).
        lpips_net / lpips_pretrained / lpips_random: backbone of ``core.losses.LPIPSLoss``: ``True`` finds
            torchvision's file in the caches, a path loads it; ``lpips_random=True`` = random backbone (tests).
        disc_weight: scale of the adaptive GAN weight; 0 disables the GAN (no discriminator, one optimiser).
        disc_start: generator steps before the GAN terms start.
        disc_loss: ``"vanilla"`` (the paper's log D / log(1 - D)) or ``"hinge"``.
        discriminator: a custom video discriminator (default ``PatchGANDiscriminator(dims=3)``).
        lr, betas: Adam for both optimisers (Table 1: 5e-5; betas as VQGAN/LDM).
        scale_lr: multiply ``lr`` by devices x nodes x batch x accumulation (the LDM codebase's rule for
            its ``base_learning_rate``); False uses ``lr`` as the effective rate.
        grad_clip: optional max gradient norm for both optimisers.
        sample_posterior: train the decoder on ``z ~ q`` (True) or on the posterior mean.
        rec_loss: pixel term, ``"l1"`` (the paper's Eq. 2) or ``"l2"``. Without LPIPS and GAN (e.g. the
            CPU demo) L1 lets a small moving object fade into the background, its median under
            uncertainty, for hundreds of steps; L2 keeps it (docs/lamd.md, "CPU demo").
        nan_policy: ``"raise"`` stops at a non-finite loss naming the step and term; ``"skip"`` skips
            the step (single device only).

    Lightning's ``global_step`` counts optimiser steps, two per batch once the GAN is on; ``disc_start``
    counts generator steps (the ``gen_steps`` buffer, kept across resumes).  Under DDP the
    discriminator takes no part in the generator's backward before ``disc_start``: the recipes use
    ``strategy: ddp_find_unused_parameters_true``.
    """

    pipeline_name = "videogen.lamd.LaMD"  # stage 1: its checkpoint holds the pipeline's MCD-VAE

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {"mcdvae": (self.autoencoder, "autoencoder.")}

    def __init__(
        self,
        autoencoder: MCDVAE | dict[str, Any],
        beta: float = 1e-2,
        lpips_weight: float = 1.0,
        lpips_net: str = "alex",
        lpips_pretrained: bool | str = True,
        lpips_random: bool = False,
        disc_weight: float = 0.5,
        disc_start: int = 50001,
        disc_loss: str = "vanilla",
        disc_channels: int = 64,
        disc_layers: int = 3,
        discriminator: nn.Module | None = None,
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.5, 0.9),
        grad_clip: float | None = None,
        adaptive_max_weight: float = 1e4,
        sample_posterior: bool = True,
        rec_loss: str = "l1",
        scale_lr: bool = False,
        nan_policy: str = "raise",
    ):
        super().__init__(nan_policy=nan_policy)
        if rec_loss not in ("l1", "l2"):
            raise ValueError(f"rec_loss must be 'l1' or 'l2', got {rec_loss!r}")
        if disc_loss not in _D_LOSSES:
            raise ValueError(f"disc_loss must be one of {sorted(_D_LOSSES)}, got {disc_loss!r}")
        if beta < 0 or lpips_weight < 0 or disc_weight < 0:
            raise ValueError("beta, lpips_weight and disc_weight must be >= 0")
        self.save_hyperparameters(ignore=["autoencoder", "discriminator"])
        self.autoencoder = _build_autoencoder(autoencoder)
        # stored as a class_path dict so that both load_from_checkpoint and the CLI rebuild it
        self.hparams["autoencoder"] = {"class_path": "videogen.lamd.MCDVAE", "init_args": self.autoencoder.config}
        self.lpips = (LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random)
                      if lpips_weight > 0 else None)
        if disc_weight > 0 and discriminator is None:
            discriminator = PatchGANDiscriminator(self.autoencoder.in_channels, disc_channels, disc_layers, dims=3)
        self.discriminator = discriminator if disc_weight > 0 else None
        # generator steps taken (persisted, so that disc_start survives resuming)
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False

    # ---- losses -------------------------------------------------------------------------------
    def _rec_loss(self, recon: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        diff = recon - video
        pixel = diff.abs().mean() if self.hparams.rec_loss == "l1" else diff.pow(2).mean()
        logs = {self.hparams.rec_loss: pixel.detach()}
        rec = pixel
        if self.lpips is not None:
            lp = self.lpips(recon, video)
            rec = rec + self.hparams.lpips_weight * lp
            logs["lpips"] = lp.detach()
        return rec, logs

    @staticmethod
    def _kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL per latent element: ``(B,)`` sums / elements per sample, averaged over the batch."""
        return kl_diagonal_gaussian(mean, logvar).mean() / mean[0].numel()

    def _gan_active(self) -> bool:
        return self.discriminator is not None and int(self.gen_steps) >= self.hparams.disc_start

    # ---- training -----------------------------------------------------------------------------
    def generator_loss(self, video: torch.Tensor, gan: bool
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Eq. 2 for the autoencoder (E_I, E_M, D_V): ``(loss, logs, recon)``; ``gan`` adds the weighted
        adversarial term."""
        recon, mean, logvar = self.autoencoder(video, sample=self.hparams.sample_posterior)
        rec, logs = self._rec_loss(recon, video)
        kl = self._kl(mean, logvar)
        loss = rec + self.hparams.beta * kl
        if gan:
            g_loss = generator_adv_loss(self.discriminator(recon), self.hparams.disc_loss)
            weight = self.hparams.disc_weight * adaptive_weight(
                rec, g_loss, self.autoencoder.last_layer_weight, self.hparams.adaptive_max_weight)
            loss = loss + weight * g_loss
            logs.update(g_loss=g_loss.detach(), disc_adaptive_weight=weight)
        logs.update(rec_loss=rec.detach(), kl=kl.detach())
        return loss, logs, recon

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        video = batch["video"]
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        gan = self._gan_active()

        # generator (E_I, E_M, D_V) step
        if self.discriminator is not None:
            self.toggle_optimizer(opt_g)
        loss, logs, recon = self.generator_loss(video, gan)
        if not self.finite_or_skip(**{k: v for k, v in logs.items() if k in ("rec_loss", "kl", "g_loss")}):
            if self.discriminator is not None:
                self.untoggle_optimizer(opt_g)
            return None
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(opt_g)
        opt_g.step()
        if self.discriminator is not None:
            self.untoggle_optimizer(opt_g)
        self.gen_steps += 1

        # discriminator step
        if gan:
            opt_d = optimizers[1]
            self.toggle_optimizer(opt_d)
            logits_real, logits_fake = self.discriminator(video), self.discriminator(recon.detach())
            d_loss = _D_LOSSES[self.hparams.disc_loss](logits_real, logits_fake)
            if self.finite_or_skip(d_loss=d_loss):
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_loss)
                self._clip(opt_d)
                opt_d.step()
            self.untoggle_optimizer(opt_d)
            logs.update(d_loss=d_loss.detach(), logits_real=logits_real.detach().mean(),
                        logits_fake=logits_fake.detach().mean())

        logs.update(loss=loss.detach(), gen_steps=self.gen_steps.float())
        # sync_dist: under DDP the logged values are averages over ranks, not rank 0's alone
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=video.shape[0],
                      sync_dist=True)
        self.log("train/rec_loss_bar", logs["rec_loss"], prog_bar=True, logger=False, batch_size=video.shape[0])
        return loss.detach()

    def _clip(self, opt) -> None:
        if self.hparams.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    # ---- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        video = batch["video"]
        recon, mean, logvar = self.autoencoder(video, sample=False)
        rec, _ = self._rec_loss(recon, video)
        psnr = psnr_per_video(recon.clamp(-1, 1), video).mean()
        self.log_dict({"val/psnr": psnr.float(), "val/rec_loss": rec, "val/kl": self._kl(mean, logvar)},
                      prog_bar=True, sync_dist=True, batch_size=video.shape[0])

    def configure_optimizers(self):
        kw = dict(lr=self.scaled_lr(self.hparams.lr, self.hparams.scale_lr), betas=tuple(self.hparams.betas))
        opt_g = torch.optim.Adam(self.autoencoder.parameters(), **kw)
        if self.discriminator is None:
            return opt_g
        return [opt_g, torch.optim.Adam(self.discriminator.parameters(), **kw)]


def load_mcdvae(path: str | Path, map_location: str | torch.device = "cpu") -> MCDVAE:
    """Load a trained :class:`MCDVAE` from a ``save_pretrained`` directory or a Lightning ``.ckpt``.

    Checkpoints are read with ``torch.load(weights_only=True)``: the MCD-VAE comes from the checkpoint's
    pipeline record (``videogen.core.persistence``).
    """
    return load_stage_network(path, MCDVAE, "mcdvae", r"(lamd_\w+?_mcdvae)",
                              "give the .ckpt that a stage-1 recipe writes, or an MCDVAE.save_pretrained directory",
                              map_location)
