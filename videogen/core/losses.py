"""Losses shared by the autoencoders of LaMD, CMD and LVDM.

- :func:`kl_diagonal_gaussian` and :class:`DiagonalGaussian`: the VAE posterior and its KL to N(0, I).
- :func:`hinge_d_loss`, :func:`vanilla_d_loss`, :func:`generator_adv_loss`: GAN objectives on logits.
- :func:`adaptive_weight`: VQGAN's (Esser et al. 2021) balance between reconstruction and GAN terms.
- :class:`LPIPSLoss` and :class:`ReconstructionLoss`: perceptual + pixel reconstruction on videos.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from videogen.core.metrics.lpips import build_lpips, lpips_per_video

__all__ = [
    "DiagonalGaussian",
    "LPIPSLoss",
    "ReconstructionLoss",
    "adaptive_weight",
    "generator_adv_loss",
    "hinge_d_loss",
    "kl_diagonal_gaussian",
    "vanilla_d_loss",
]


def kl_diagonal_gaussian(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over all non-batch dims: ``(B, ...) -> (B,)``."""
    if mean.shape != logvar.shape:
        raise ValueError(f"mean and logvar must have the same shape, got {tuple(mean.shape)} and "
                         f"{tuple(logvar.shape)}")
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1)


class DiagonalGaussian:
    """A diagonal Gaussian posterior q(z|x) given by ``mean`` and ``logvar`` (clamped to [-30, 20] as in
    LDM)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(f"mean and logvar must have the same shape, got {tuple(mean.shape)} and "
                             f"{tuple(logvar.shape)}")
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    @classmethod
    def from_moments(cls, moments: torch.Tensor, dim: int = 1) -> DiagonalGaussian:
        """Split an encoder output ``(B, 2C, ...)`` into mean and logvar along ``dim``."""
        mean, logvar = moments.chunk(2, dim=dim)
        return cls(mean, logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (differentiable in mean and logvar)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I) per sample, ``(B,)``."""
        return kl_diagonal_gaussian(self.mean, self.logvar)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss 0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator non-saturating loss 0.5 * (E[softplus(-D(x))] + E[softplus(D(G(z)))])."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_adv_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator adversarial loss: ``"hinge"`` -E[D(G(z))]; ``"vanilla"`` E[softplus(-D(G(z)))]."""
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "vanilla":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"kind must be 'hinge' or 'vanilla', got {kind!r}")


def adaptive_weight(
    rec_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer_weight: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's adaptive GAN weight ||grad_L rec_loss|| / (||grad_L g_loss|| + eps), clamped and detached.

    ``last_layer_weight`` is the decoder's last weight L; both losses must depend on it. The graph is kept
    (``retain_graph=True``) so the caller can still back-propagate the total loss.
    """
    if not last_layer_weight.requires_grad:
        raise ValueError("last_layer_weight must require grad (pass the decoder's final weight)")
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer_weight, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


class LPIPSLoss(nn.Module):
    """Frozen LPIPS as a training loss on images ``(B, C, H, W)`` or videos ``(B, C, T, H, W)``.

    Returns the mean over frames and batch. The LPIPS network never trains and stays in eval mode; its
    parameters are excluded from ``state_dict`` so autoencoder checkpoints do not carry the backbone.

    Args:
        net: ``"alex"``, ``"vgg"`` or ``"squeeze"``.
        pretrained: ``True`` to find torchvision's backbone file in the caches, or its path.
        pnet_rand: random backbone (tests; overrides ``pretrained``).
        frame_chunk: frames per backbone call (bounds memory; checkpointed under autograd).
    """

    def __init__(
        self,
        net: str = "alex",
        pretrained: bool | str | os.PathLike = True,
        pnet_rand: bool = False,
        frame_chunk: int | None = 32,
    ) -> None:
        super().__init__()
        if pretrained is False and not pnet_rand:
            raise ValueError("pretrained=False needs pnet_rand=True (a random backbone is only for tests)")
        path = None if isinstance(pretrained, bool) else pretrained
        # Held in a 1-tuple, outside the module tree, so that state_dict() and parameters() skip it;
        # device and dtype moves (.to(), .cuda(), .half()) are forwarded by _apply.
        self._lpips = (build_lpips(net, path, pnet_rand),)
        self.frame_chunk = frame_chunk

    def _apply(self, fn, recurse: bool = True):
        self._lpips[0]._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if preds.shape != target.shape or preds.ndim not in (4, 5):
            raise ValueError(
                f"preds and target must share a (B, C, H, W) or (B, C, T, H, W) shape, got "
                f"{tuple(preds.shape)} and {tuple(target.shape)}"
            )
        if preds.ndim == 4:
            preds, target = preds.unsqueeze(2), target.unsqueeze(2)  # (B, C, H, W) -> (B, C, 1, H, W)
        return lpips_per_video(self._lpips[0], preds, target, self.frame_chunk).mean()


class ReconstructionLoss(nn.Module):
    """``l1_weight * |x - x_rec| + l2_weight * (x - x_rec)^2 + lpips_weight * LPIPS(x_rec, x)`` (means).

    LVDM uses L1 + LPIPS (weights 1, 1); CMD 4 * L1 + 4 * LPIPS. ``lpips`` is an :class:`LPIPSLoss`
    (built with defaults when ``lpips_weight > 0`` and none is given). ``forward`` returns the total
    and a dict of the detached terms for logging.
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        lpips_weight: float = 1.0,
        lpips: LPIPSLoss | None = None,
    ) -> None:
        super().__init__()
        self.l1_weight, self.l2_weight, self.lpips_weight = l1_weight, l2_weight, lpips_weight
        if lpips_weight > 0 and lpips is None:
            lpips = LPIPSLoss()
        self.lpips = lpips

    def forward(self, reconstruction: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if reconstruction.shape != target.shape:
            raise ValueError(
                f"reconstruction and target must have the same shape, got {tuple(reconstruction.shape)} "
                f"and {tuple(target.shape)}"
            )
        terms: dict[str, torch.Tensor] = {}
        if self.l1_weight:
            terms["l1"] = (reconstruction - target).abs().mean()
        if self.l2_weight:
            terms["l2"] = (reconstruction - target).pow(2).mean()
        if self.lpips_weight:
            terms["lpips"] = self.lpips(reconstruction, target)
        weights = {"l1": self.l1_weight, "l2": self.l2_weight, "lpips": self.lpips_weight}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {k: v.detach() for k, v in terms.items()}
