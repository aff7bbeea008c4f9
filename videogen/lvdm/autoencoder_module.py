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

from videogen.core.losses import DiagonalGaussian, LPIPSLoss, ReconstructionLoss
from videogen.core.nn import PatchGANDiscriminator
from videogen.core.stages import AutoencoderGANStage

from .autoencoder import VideoAutoencoder3D

__all__ = ["VideoAutoencoder3DModule"]


def _frames(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class VideoAutoencoder3DModule(AutoencoderGANStage):
    """Trains a :class:`VideoAutoencoder3D`.

    The training loop, clipping, NaN policy and logging are ``core.stages.AutoencoderGANStage``'s; this
    class adds the learned log-variance of the likelihood and the per-frame 2D discriminator.

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
        grad_clip: optional max gradient norm for both optimisers (default none, as the official code).
        accumulate: batches per optimiser step (official 2, ``accumulate_grad_batches``; Lightning's own
            accumulation does not apply to this manually optimised stage; see
            ``core.stages.AutoencoderGANStage``).
    """

    pipeline_name = "videogen.lvdm.LVDM"  # stage 1: its checkpoint holds the pipeline's autoencoder

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {"autoencoder": (self.autoencoder, "autoencoder.")}

    def __init__(self, autoencoder: VideoAutoencoder3D | dict[str, Any], lpips_weight: float = 1.0,
                 lpips_net: str = "vgg", lpips_pretrained: bool | str = True, lpips_random: bool = False,
                 learn_logvar: bool = True, logvar_init: float = 0.0, kl_weight: float = 0.0,
                 disc_weight: float = 0.5, disc_start: int = 50001, disc_channels: int = 64,
                 disc_layers: int = 3, lr: float = 3.6e-5, betas: tuple[float, float] = (0.5, 0.9),
                 scale_lr: bool = False,
                 pixel_loss: str = "l1", nan_policy: str = "raise", grad_clip: float | None = None,
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None, accumulate: int = 1):
        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel_loss must be 'l1' or 'l2', got {pixel_loss!r}")
        # built in this order (autoencoder, LPIPS, discriminator): it fixes the seeded initialisation
        ae = autoencoder
        if not isinstance(ae, VideoAutoencoder3D):
            kwargs = ae.get("init_args", ae) if "class_path" in ae else ae
            ae = VideoAutoencoder3D(**kwargs)
        lpips = (LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random)
                 if lpips_weight > 0 else None)
        reconstruction = ReconstructionLoss(l1_weight=float(pixel_loss == "l1"),
                                            l2_weight=float(pixel_loss == "l2"), lpips_weight=lpips_weight,
                                            lpips=lpips)
        disc = (PatchGANDiscriminator(ae.in_channels, disc_channels, disc_layers, dims=2)
                if disc_weight > 0 else None)
        super().__init__(ae, reconstruction, disc, kl_weight=kl_weight, disc_weight=disc_weight,
                         disc_start=disc_start, disc_loss="hinge", lr=lr, betas=betas, scale_lr=scale_lr,
                         grad_clip=grad_clip, nan_policy=nan_policy, compile=compile, optimizer=optimizer,
                         accumulate=accumulate)
        self.save_hyperparameters(ignore=["autoencoder"])
        self.hparams["autoencoder"] = {"class_path": "videogen.lvdm.VideoAutoencoder3D",
                                       "init_args": ae.config}
        self.logvar = nn.Parameter(torch.full((), float(logvar_init)), requires_grad=learn_logvar)

    def autoencode(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, DiagonalGaussian]:
        """``video (B, 3, T, H, W)`` -> ``(recon (B, 3, T, H, W), posterior (B, 4, T/4, H/8, W/8))``."""
        recon, mean, logvar = self.autoencoder(video, sample=sample)
        return recon, DiagonalGaussian(mean, logvar)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        return self.autoencoder.decoder[-1].conv.weight

    def disc_input(self, video: torch.Tensor) -> torch.Tensor:
        """The 2D PatchGAN judges every frame: ``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``."""
        return _frames(video)

    def nll(self, rec: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``rec / exp(s) + s`` with the learned scalar log-variance ``s``."""
        nll = rec / self.logvar.exp() + self.logvar
        return nll, {"nll": nll.detach(), "logvar": self.logvar.detach()}

    def reconstruction_loss(self, recon: torch.Tensor, video: torch.Tensor
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """As the base, and the L1 error is logged under ``l1`` with the L2 pixel loss too."""
        rec, logs = super().reconstruction_loss(recon, video)
        if "l1" not in logs:
            logs = {"l1": (recon - video).abs().mean().detach(), **logs}
        return rec, logs

    _rec = reconstruction_loss

    def generator_parameters(self):
        return list(self.autoencoder.parameters()) + ([self.logvar] if self.logvar.requires_grad else [])
