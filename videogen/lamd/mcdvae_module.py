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

from videogen.core.losses import DiagonalGaussian, LPIPSLoss, ReconstructionLoss
from videogen.core.nn import PatchGANDiscriminator
from videogen.core.pretrained import load_stage_network
from videogen.core.stages import D_LOSSES, AutoencoderGANStage

from .mcdvae import MCDVAE

__all__ = ["MCDVAEModule", "load_mcdvae"]


def _build_autoencoder(autoencoder: MCDVAE | dict[str, Any]) -> MCDVAE:
    """Accept a module, MCDVAE keyword arguments, or a ``{class_path, init_args}`` dict (checkpoints)."""
    if isinstance(autoencoder, MCDVAE):
        return autoencoder
    if isinstance(autoencoder, dict):
        kwargs = autoencoder.get("init_args", autoencoder) if "class_path" in autoencoder else autoencoder
        return MCDVAE(**kwargs)
    raise ValueError(f"autoencoder must be an MCDVAE or its config dict, got {type(autoencoder).__name__}")


class MCDVAEModule(AutoencoderGANStage):
    """Trains an :class:`MCDVAE` with L1 + LPIPS + beta*KL + adaptive-weight GAN (LaMD Eq. 2).

    The training loop, clipping, NaN policy and logging are ``core.stages.AutoencoderGANStage``'s; this
    class builds the networks and runs the MCD-VAE (reconstruction from the first frame's content and
    the video's motion posterior).

    Args:
        autoencoder: the MCD-VAE (or its config dict).
        beta: KL weight (Table 1: 1e-2; 1e-1 for MUG).
        lpips_weight: 0 disables LPIPS (no backbone is built).
        lpips_net / lpips_pretrained / lpips_random: backbone of ``core.losses.LPIPSLoss``: ``True`` finds
            torchvision's file in the caches, a path loads it; ``lpips_random=True`` = random backbone
            (tests).
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
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).
        accumulate: batches per optimiser step (``core.stages.AutoencoderGANStage``: Lightning's
            ``accumulate_grad_batches`` does not apply to this manually optimised stage).

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
        compile: bool | str | dict[str, Any] | None = False,
        optimizer: str | dict[str, Any] | None = None,
        accumulate: int = 1,
    ):
        if rec_loss not in ("l1", "l2"):
            raise ValueError(f"rec_loss must be 'l1' or 'l2', got {rec_loss!r}")
        if disc_loss not in D_LOSSES:
            raise ValueError(f"disc_loss must be one of {sorted(D_LOSSES)}, got {disc_loss!r}")
        if beta < 0 or lpips_weight < 0 or disc_weight < 0:
            raise ValueError("beta, lpips_weight and disc_weight must be >= 0")
        # built in this order (autoencoder, LPIPS, discriminator): it fixes the seeded initialisation
        ae = _build_autoencoder(autoencoder)
        lpips = (LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random)
                 if lpips_weight > 0 else None)
        reconstruction = ReconstructionLoss(l1_weight=float(rec_loss == "l1"),
                                            l2_weight=float(rec_loss == "l2"), lpips_weight=lpips_weight,
                                            lpips=lpips)
        disc = discriminator
        if disc_weight > 0 and disc is None:
            disc = PatchGANDiscriminator(ae.in_channels, disc_channels, disc_layers, dims=3)
        super().__init__(ae, reconstruction, disc, kl_weight=beta, disc_weight=disc_weight,
                         disc_start=disc_start, disc_loss=disc_loss, adaptive_max_weight=adaptive_max_weight,
                         lr=lr, betas=betas, scale_lr=scale_lr, grad_clip=grad_clip, nan_policy=nan_policy,
                         compile=compile, optimizer=optimizer, accumulate=accumulate)
        self.save_hyperparameters(ignore=["autoencoder", "discriminator"])
        # stored as a class_path dict so that both load_from_checkpoint and the CLI rebuild it
        self.hparams["autoencoder"] = {"class_path": "videogen.lamd.MCDVAE", "init_args": ae.config}

    def autoencode(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, DiagonalGaussian]:
        """``video (B, C, L, H, W)`` -> ``(recon (B, C, L, H, W), motion posterior (B, d, h, w))``;
        training samples the posterior only when ``sample_posterior``."""
        recon, mean, logvar = self.autoencoder(video, sample=sample and self.hparams.sample_posterior)
        return recon, DiagonalGaussian(mean, logvar)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        return self.autoencoder.last_layer_weight

    def _kl(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL per latent element of the posterior ``(mean, logvar)``, each ``(B, d, h, w)``."""
        return self.kl_per_element(DiagonalGaussian(mean, logvar))


def load_mcdvae(path: str | Path, map_location: str | torch.device = "cpu") -> MCDVAE:
    """Load a trained :class:`MCDVAE` from a ``save_pretrained`` directory or a Lightning ``.ckpt``.

    Checkpoints are read with ``torch.load(weights_only=True)``: the MCD-VAE comes from the checkpoint's
    pipeline record (``videogen.core.persistence``).
    """
    return load_stage_network(path, MCDVAE, "mcdvae", r"(lamd_\w+?_mcdvae)",
                              "give the .ckpt that a stage-1 recipe writes, or an MCDVAE.save_pretrained "
                              "directory", map_location)
