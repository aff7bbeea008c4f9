"""PatchGAN discriminators (pix2pix ``NLayerDiscriminator``, as used by VQGAN/LDM autoencoders).

``dims=2`` scores image patches; given a video ``(B, C, T, H, W)`` it scores every frame on its own
(time folded into the batch) and returns ``(B, 1, T, h, w)`` logits.  ``dims=3`` is a video
discriminator with Conv3d: kernel 4 with stride 2 in space as in 2D, and kernel 3 / padding 1 in time
(stride 2 in the downsampling layers), so that short clips never shrink to zero frames.
"""

from __future__ import annotations

import torch
from torch import nn

from .resblocks import normalization

__all__ = ["PatchGANDiscriminator"]


class PatchGANDiscriminator(nn.Module):
    """``n_layers`` strided conv blocks (width ``ndf * min(2**i, 8)``), one stride-1 block and a
    1-channel conv head; LeakyReLU(0.2); BatchNorm or GroupNorm between; pix2pix N(0, 0.02) init.

    Args:
        in_channels: image/video channels.
        ndf: width of the first layer.
        n_layers: number of stride-2 layers (the receptive field grows with it: 70x70 for 3).
        dims: 2 (image/per-frame) or 3 (Conv3d video discriminator).
        norm: ``"batch"`` (pix2pix/VQGAN) or ``"group"`` (batch-size independent).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, dims: int = 2,
                 norm: str = "batch"):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_channels, self.dims = in_channels, dims
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        kernel = 4 if dims == 2 else (3, 4, 4)

        def stride(s: int):
            return s if dims == 2 else (s, s, s)

        padding = 1  # kernel 4, padding 1: stride 2 halves even sizes; time (kernel 3) keeps or halves

        def norm_layer(ch: int) -> nn.Module:
            if norm == "group":
                return normalization(ch)
            return nn.BatchNorm2d(ch) if dims == 2 else nn.BatchNorm3d(ch)

        def block(ch_in: int, ch_out: int, s: int) -> list[nn.Module]:
            return [conv(ch_in, ch_out, kernel, stride(s), padding, bias=False), norm_layer(ch_out),
                    nn.LeakyReLU(0.2, True)]

        layers: list[nn.Module] = [conv(in_channels, ndf, kernel, stride(2), padding),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += block(ndf * prev, ndf * mult, 2)
        prev, mult = mult, min(2**n_layers, 8)
        layers += block(ndf * prev, ndf * mult, 1)
        layers.append(conv(ndf * mult, 1, kernel, stride(1), padding))
        self.main = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits: ``(B, C, H, W)`` -> ``(B, 1, h, w)``; ``(B, C, T, H, W)`` -> ``(B, 1, t, h, w)``."""
        if x.shape[1] != self.in_channels or x.ndim not in ((4, 5) if self.dims == 2 else (5,)):
            layout = "(B, C, H, W) or (B, C, T, H, W)" if self.dims == 2 else "(B, C, T, H, W)"
            raise ValueError(f"PatchGANDiscriminator(dims={self.dims}) expects {layout} with "
                             f"C={self.in_channels}, got {tuple(x.shape)}")
        if self.dims == 2 and x.ndim == 5:
            b, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B, C, T, H, W) -> (B*T, C, H, W)
            logits = self.main(frames)  # (B*T, 1, h', w')
            return logits.reshape(b, t, *logits.shape[1:]).transpose(1, 2)  # -> (B, 1, T, h', w')
        return self.main(x)
