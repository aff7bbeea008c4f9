"""LVDM's 3D video autoencoder (He et al. 2022, Sec. 3.1; spec §1).

``(B, 3, T, H, W)`` in [-1, 1] -> KL posterior over ``(B, 4, T/4, H/8, W/8)`` -> ``(B, 3, T, H, W)``.

* Every convolution is a "same" convolution with **replicate** padding of ``k - s`` per axis, ``ceil``
  in front and ``floor` behind (the paper's repeat padding; even kernels pad asymmetrically).
* Encoder: conv 3 -> 32; three kernel-4 stages with strides (2,2,2), (2,2,2), (1,2,2) to 64, 128, 256
  channels, one ResBlock each; GN-SiLU-conv to mean and log-variance; a 1x1x1 ``quant_conv``.
* Decoder: 1x1x1 ``post_quant_conv``; three transposed kernel-4 stages (replicate pre-padding) with
  strides (2,2,2), (2,2,2), (1,2,2) to 256, 128, 64 channels, two ResBlocks each; a conv to 3 channels.
* ResBlocks: GN(32, eps 1e-6) - SiLU - conv3 - GN - SiLU - conv3 + identity.

At the official configuration: encoder 7,458,952 + decoder 11,987,715 + 92 (1x1x1 convs) = 19,446,759
parameters (Table 2's "19M").  The latent is normalised as ``z_norm = scale * (z + shift)``; ``scale`` and
``shift`` are buffers set by :meth:`VideoAutoencoder3D.calibrate` from training latents (the official
per-dataset constants are undocumented, LVDM#10) and saved with the weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from videogen.core.persistence import SavableModule

__all__ = ["VideoAutoencoder3D", "SamePadConv3d", "SamePadConvTranspose3d"]



def _triple(x: int | Sequence[int]) -> tuple[int, int, int]:
    return (x, x, x) if isinstance(x, int) else tuple(int(v) for v in x)  # type: ignore[return-value]


def _replicate_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """Pad ``k - s`` per axis with replicate mode, the larger half in front (TATS / LVDM "same" padding)."""
    pads: list[int] = []
    for k, s in zip(reversed(kernel), reversed(stride)):  # F.pad wants (W_front, W_back, H..., T...)
        p = k - s
        pads += [p // 2 + p % 2, p // 2]
    return F.pad(x, pads, mode="replicate")


class SamePadConv3d(nn.Module):
    """``Conv3d`` with replicate "same" padding (output ``ceil(n / s)``) for any kernel, even ones too."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 1):
        super().__init__()
        self.kernel, self.stride = _triple(kernel_size), _triple(stride)
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_replicate_pad(x, self.kernel, self.stride))


class SamePadConvTranspose3d(nn.Module):
    """``ConvTranspose3d`` after replicate pre-padding of ``k - s``: ``n -> n * s`` per axis."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 4,
                 stride: int | Sequence[int] = 2):
        super().__init__()
        self.kernel, self.stride = _triple(kernel_size), _triple(stride)
        self.convt = nn.ConvTranspose3d(in_channels, out_channels, self.kernel, stride=self.stride,
                                        padding=tuple(k - 1 for k in self.kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convt(_replicate_pad(x, self.kernel, self.stride))


def _norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(groups if channels % groups == 0 else 1, channels, eps=1e-6)


class AEResBlock(nn.Module):
    """GN - SiLU - conv3 - GN - SiLU - conv3, plus the input (in = out channels)."""

    def __init__(self, channels: int, norm_groups: int = 32):
        super().__init__()
        self.block = nn.Sequential(_norm(channels, norm_groups), nn.SiLU(),
                                   SamePadConv3d(channels, channels, 3), _norm(channels, norm_groups),
                                   nn.SiLU(), SamePadConv3d(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class VideoAutoencoder3D(SavableModule, nn.Module):
    """The LVDM 3D KL autoencoder.  See the module docstring.

    Args:
        in_channels: video channels (3).
        hidden: stem width (32); stages double it: 64, 128, 256.
        strides: per-stage (T, H, W) strides: ``f_t = prod T``, ``f_s = prod H`` (official 4 and 8).
        z_channels: latent channels (4).
        encoder_res_blocks / decoder_res_blocks: ResBlocks per stage (official 1 and 2).
        norm_groups: GroupNorm groups (official 32; a width not divisible by it gets 1).  Keep several
            channels per group: with one (e.g. 32 groups at width 32) GroupNorm removes each channel's
            mean over the clip, which is the colour of a plain background; a narrow autoencoder then
            cannot reconstruct it (the CPU demo at width 32: 12 dB with 32 groups, 24 dB with 4).
    """

    def __init__(self, in_channels: int = 3, hidden: int = 32,
                 strides: Sequence[Sequence[int]] = ((2, 2, 2), (2, 2, 2), (1, 2, 2)), z_channels: int = 4,
                 encoder_res_blocks: int = 1, decoder_res_blocks: int = 2, norm_groups: int = 32):
        super().__init__()
        strides = [tuple(int(v) for v in s) for s in strides]
        self.in_channels, self.z_channels = in_channels, z_channels
        self.temporal_factor = math.prod(s[0] for s in strides)
        self.spatial_factor = math.prod(s[1] for s in strides)
        widths = [hidden * 2 ** (i + 1) for i in range(len(strides))]  # 64, 128, 256
        enc: list[nn.Module] = [SamePadConv3d(in_channels, hidden, 3)]
        prev = hidden
        for width, stride in zip(widths, strides):
            enc += [SamePadConv3d(prev, width, 4, stride),
                    *(AEResBlock(width, norm_groups) for _ in range(encoder_res_blocks))]
            prev = width
        enc += [_norm(prev, norm_groups), nn.SiLU(), SamePadConv3d(prev, 2 * z_channels, 3)]
        self.encoder = nn.Sequential(*enc)
        self.quant_conv = nn.Conv3d(2 * z_channels, 2 * z_channels, 1)
        self.post_quant_conv = nn.Conv3d(z_channels, z_channels, 1)
        dec: list[nn.Module] = []
        prev = z_channels
        for width, stride in zip(reversed(widths), strides):  # the decoder upsamples time first
            dec += [SamePadConvTranspose3d(prev, width, 4, stride),
                    *(AEResBlock(width, norm_groups) for _ in range(decoder_res_blocks))]
            prev = width
        dec.append(SamePadConv3d(prev, in_channels, 3))
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("shift", torch.zeros(()))

    # ---- shapes -------------------------------------------------------------------------------
    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.z_channels, num_frames // self.temporal_factor, height // self.spatial_factor,
                width // self.spatial_factor)

    def validate_video(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"video must be (B, {self.in_channels}, T, H, W), got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        _, _, t, h, w = x.shape
        if t % self.temporal_factor or h % self.spatial_factor or w % self.spatial_factor:
            raise ValueError(f"T must be a multiple of {self.temporal_factor} and H, W of "
                             f"{self.spatial_factor}, got {t}x{h}x{w}")
        if x.device.type != "meta" and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
            raise ValueError(f"videos must lie in [-1, 1], got [{float(x.min()):.3f}, {float(x.max()):.3f}]")

    # ---- encode / decode ----------------------------------------------------------------------
    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)`` of the posterior, each ``(B, 4, T/4, H/8, W/8)`` (logvar clamped to [-30,
        20])."""
        self.validate_video(x)
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
               normalize: bool = True) -> torch.Tensor:
        """Latents (posterior sample or mean), normalised by ``scale * (z + shift)`` unless
        ``normalize=False``."""
        mean, logvar = self.encode_moments(x)
        z = mean
        if sample:
            z = mean + torch.randn(mean.shape, generator=generator, device=mean.device,
                                   dtype=mean.dtype) * (0.5 * logvar).exp()
        return self.scale * (z + self.shift) if normalize else z

    def decode(self, z: torch.Tensor, normalized: bool = True) -> torch.Tensor:
        """Latents ``(B, 4, t, h, w)`` -> video ``(B, 3, 4t, 8h, 8w)`` (un-normalised first if
        ``normalized``)."""
        if z.ndim != 5 or z.shape[1] != self.z_channels:
            raise ValueError(f"latents must be (B, {self.z_channels}, t, h, w), got {tuple(z.shape)}")
        if normalized:
            z = z / self.scale - self.shift
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor,
                sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(reconstruction, mean, logvar)`` (unnormalised latents: the scale does not matter
        here)."""
        mean, logvar = self.encode_moments(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decoder(self.post_quant_conv(z)), mean, logvar

    # ---- latent normalisation -----------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, videos: Iterable[torch.Tensor], max_latents: int | None = None) -> dict[str, float]:
        """Set ``shift = -mean`` and ``scale = 1 / std`` of posterior-sample latents over ``videos`` (batches
        ``(B, 3, T, H, W)``): the diffusion model then sees unit-variance inputs.  The paper and code leave
        the constants undocumented (LVDM#10); use >= 1,000 training clips.  Returns the statistics."""
        total, total_sq, count, clips = 0.0, 0.0, 0, 0
        for batch in videos:
            z = self.encode(batch, sample=True, normalize=False).double()
            total, total_sq, count = \
                total + float(z.sum()), total_sq + float(z.square().sum()), count + z.numel()
            clips += batch.shape[0]
            if max_latents is not None and clips >= max_latents:
                break
        if count == 0:
            raise ValueError("calibrate needs at least one batch of videos")
        mean = total / count
        std = max((total_sq / count - mean**2) ** 0.5, 1e-8)
        self.shift.fill_(-mean)
        self.scale.fill_(1.0 / std)
        return {"mean": mean, "std": std, "clips": clips}

    def set_latent_normalization(self, scale: float, shift: float = 0.0) -> None:
        """Use given constants (e.g. the official ones with official weights)."""
        self.scale.fill_(scale)
        self.shift.fill_(shift)
