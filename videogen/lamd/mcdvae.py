"""MCD-VAE: the motion-content decomposed video autoencoder of LaMD (Sec. 3.1, Fig. 2-3).

Three networks:

* ``ImageEncoder`` (E_I): a 2D UNet on the first frame ``x0``.  Its bottleneck gives the content latents
  ``f_x0`` ``(B, d', h, w)`` (the DMG condition) and its up path one feature map per decoder scale
  ``f^1 (h), f^2 (2h), ..., f^k (H)``.
* ``MotionEncoder`` (E_M): a light 3D CNN.  Spatial ResBlock stages with ``(1, 2, 2)`` downsampling
  reach ``h = H / r_s``; temporal stages (``(2, 1, 1)`` strided conv + ResBlocks) reach
  ``folded_frames`` frames; these are folded into channels so that ``r_t = L`` and the temporal axis
  disappears; a conv then gives the information bottleneck's ``(mean, logvar)`` (Eq. 1).
* ``FusionDecoder`` (D_V): the mirror.  ``z_m`` is unfolded back into ``folded_frames`` frames and
  fused with ``f_x0`` (concatenate + 1x1 conv, at the latent scale), a 3D decoder restores the spatial size
  with one content-integration layer per scale (concatenate the same-scale content feature broadcast over time
  + 1x1 conv), then temporal interpolation blocks (temporal upsample + ResBlock) restore ``L`` frames, and an
    output conv gives the video.

D_V reads ``f_x0`` so that the stage-1 loss trains every layer of the DMG's content condition (with
``f^1..f^k`` alone the ``f_x0`` head would never get a gradient and the DMG would be conditioned on an
untrained projection).  The motion latent passes through ``LatentNorm`` (the paper's normalisation layer)
before the decoder and the DMG.  Choices the paper leaves open are listed in ``docs/lamd.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videogen.core.nn import Downsample, ResBlock, Upsample, normalization
from videogen.core.persistence import CONFIG_NAME, WEIGHTS_NAME, SavableModule  # noqa: F401 (re-exported)

__all__ = ["MCDVAE", "LatentNorm"]



def _run(block: nn.Module, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    """Apply ``block``, with activation checkpointing while training when asked."""
    if use_checkpoint and torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(block, x, use_reentrant=False)
    return block(x)


def _out_head(channels: int, out_channels: int, groups: int, dims: int) -> nn.Sequential:
    """``GN -> SiLU -> 3x3 conv``: the head every encoder/decoder ends with."""
    conv = (nn.Conv2d, nn.Conv3d)[dims - 2](channels, out_channels, 3, padding=1)
    return nn.Sequential(normalization(channels, groups), nn.SiLU(), conv)


class LatentNorm(nn.Module):
    """Non-affine per-channel standardisation of ``z_m`` with running statistics (the normalisation layer).

    In training mode each call folds the batch statistics of its input into exponential running averages
    (the first batch initialises them); in both modes the output is ``(z - running_mean) /
    sqrt(running_var + eps)``.  The decoder and the DMG therefore always see the same fixed map once
    stage 1 is trained, and the DMG's target has roughly zero mean and unit variance per channel.
    """

    def __init__(self, channels: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _update(self, z: torch.Tensor) -> None:
        flat = z.detach().float().transpose(0, 1).reshape(z.shape[1], -1)  # (B, d, h, w) -> (d, B*h*w)
        mean, var = flat.mean(1), flat.var(1, unbiased=False)
        m = 1.0 if int(self.num_batches_tracked) == 0 else self.momentum
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(var, m)
        self.num_batches_tracked += 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(z)
        shape = (1, -1) + (1,) * (z.ndim - 2)
        scale = torch.rsqrt(self.running_var + self.eps).view(shape).to(z.dtype)
        return (z - self.running_mean.view(shape).to(z.dtype)) * scale


class ImageEncoder(nn.Module):
    """E_I: 2D UNet on ``x0`` ``(B, C, H, W)`` -> ``[f_x0 (B, d', h, w), f^1 (h), ..., f^k (H)]``."""

    def __init__(self, in_channels: int, channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 dropout: float, groups: int, use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        widths = [channels * m for m in channel_mult]
        rb = dict(dims=2, dropout=dropout, groups=groups)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, prev = nn.ModuleList(), channels
        for width in widths:
            self.down.append(nn.Sequential(*(ResBlock(prev if j == 0 else width, width, **rb)
                                             for j in range(num_res_blocks))))
            prev = width
        self.downsample = nn.ModuleList(Downsample(w, dims=2, stride=2) for w in widths[:-1])
        self.mid = nn.Sequential(ResBlock(prev, prev, **rb), ResBlock(prev, prev, **rb))
        self.content_out = _out_head(prev, prev, groups, dims=2)  # f_x0, d' = widths[-1]
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths))):  # bottom (h) first: the decoder's order
            width = widths[i]
            # input: this scale's up-path map (upsampled to `width`) concatenated with its skip;
            # num_res_blocks + 1 blocks per scale on the up path, as in the LDM UNet
            self.up.append(nn.Sequential(*(ResBlock(2 * width if j == 0 else width, width, **rb)
                                           for j in range(num_res_blocks + 1))))
        self.upsample = nn.ModuleList(
            Upsample(widths[i], widths[i - 1], dims=2, scale=2) for i in reversed(range(1, len(widths)))
        )
        self.content_dim = widths[-1]

    def forward(self, x0: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(x0)
        skips = []
        for i, stage in enumerate(self.down):
            h = _run(stage, h, self.use_checkpoint)
            skips.append(h)  # each scale's map feeds the up path
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = _run(self.mid, h, self.use_checkpoint)
        feats = [self.content_out(h)]
        for i, stage in enumerate(self.up):
            h = _run(stage, torch.cat([h, skips.pop()], dim=1), self.use_checkpoint)
            feats.append(h)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return feats  # [f_x0, f^1 (h), f^2 (2h), ..., f^k (H)]


class MotionEncoder(nn.Module):
    """E_M: ``(B, C, L, H, W)`` -> bottleneck moments ``(B, 2d, h, w)`` (temporal axis folded away)."""

    def __init__(self, in_channels: int, channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 num_temporal_stages: int, folded_frames: int, z_channels: int, dropout: float, groups: int,
                 use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        rb = dict(dims=3, dropout=dropout, groups=groups)
        layers: list[nn.Module] = [nn.Conv3d(in_channels, channels, 3, padding=1)]
        prev = channels
        for i, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(prev, channels * mult, **rb))
                prev = channels * mult
            if i < len(channel_mult) - 1:
                layers.append(Downsample(prev, dims=3, stride=(1, 2, 2)))
        for _ in range(num_temporal_stages):
            layers.append(Downsample(prev, dims=3, stride=(2, 1, 1)))
            layers += [ResBlock(prev, prev, **rb) for _ in range(num_res_blocks)]
        self.layers = nn.ModuleList(layers)
        self.norm_out = nn.Sequential(normalization(prev, groups), nn.SiLU())
        # fold: (B, C, T', h, w) -> (B, C*T', h, w); the bottleneck conv gives (mean, logvar)
        self.to_moments = nn.Conv2d(prev * folded_frames, 2 * z_channels, 3, padding=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = video
        for layer in self.layers:
            h = _run(layer, h, self.use_checkpoint)
        h = self.norm_out(h)
        return self.to_moments(h.flatten(1, 2))  # (B, C, T', h, w) -> (B, C*T', h, w) -> (B, 2d, h, w)


class FusionDecoder(nn.Module):
    """D_V: ``z_m (B, d, h, w)`` + content features -> video ``(B, C, L, H, W)`` (Fig. 3)."""

    def __init__(self, out_channels: int, channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 num_temporal_stages: int, folded_frames: int, z_channels: int, content_widths: Sequence[int],
                 content_dim: int, dropout: float, groups: int, use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint, self.folded_frames = use_checkpoint, folded_frames
        rb = dict(dims=3, dropout=dropout, groups=groups)
        widths = [channels * m for m in reversed(channel_mult)]  # bottom (h) first
        self.width_in = widths[0]
        # unfold: (B, d, h, w) -> (B, C*T', h, w) -> (B, C, T', h, w)
        self.conv_in = nn.Conv2d(z_channels, widths[0] * folded_frames, 3, padding=1)
        self.fuse_content = nn.Conv3d(widths[0] + content_dim, widths[0], 1)  # f_x0 at the latent scale
        self.mid = nn.Sequential(ResBlock(widths[0], widths[0], **rb), ResBlock(widths[0], widths[0], **rb))
        self.fuse = nn.ModuleList(nn.Conv3d(w + c, w, 1) for w, c in zip(widths, content_widths))
        self.scales = nn.ModuleList()
        for i, width in enumerate(widths):
            blocks: list[nn.Module] = [ResBlock(width, width, **rb) for _ in range(num_res_blocks + 1)]
            if i < len(widths) - 1:
                blocks.append(Upsample(width, widths[i + 1], dims=3, scale=(1, 2, 2)))
            self.scales.append(nn.Sequential(*blocks))
        temporal: list[nn.Module] = []
        # temporal interpolation: nearest x2 in time + temporal conv, ResBlock
        for _ in range(num_temporal_stages):
            temporal += [Upsample(widths[-1], dims=3, scale=(2, 1, 1), kernel_size=(3, 1, 1)),
                         ResBlock(widths[-1], widths[-1], **rb)]
        self.temporal = nn.ModuleList(temporal)
        self.conv_out = _out_head(widths[-1], out_channels, groups, dims=3)

    def forward(self, z_m: torch.Tensor, f_x0: torch.Tensor, content: Sequence[torch.Tensor]) -> torch.Tensor:
        b, _, hh, ww = z_m.shape
        h = self.conv_in(z_m).view(b, self.width_in, self.folded_frames, hh, ww)  # (B, C, T', h, w)
        f = f_x0.unsqueeze(2).expand(-1, -1, self.folded_frames, -1, -1)  # (B, d', h, w) -> (B, d', T', h, w)
        h = self.fuse_content(torch.cat([h, f.to(h.dtype)], dim=1))
        h = _run(self.mid, h, self.use_checkpoint)
        for fuse, stage, feat in zip(self.fuse, self.scales, content):
            # (B, C', H', W') -> (B, C', T', H', W')
            feat = feat.unsqueeze(2).expand(-1, -1, h.shape[2], -1, -1)
            h = fuse(torch.cat([h, feat.to(h.dtype)], dim=1))
            h = _run(stage, h, self.use_checkpoint)
        for layer in self.temporal:
            h = _run(layer, h, self.use_checkpoint)  # T' -> 2T' -> ... -> L
        return self.conv_out(h)


class MCDVAE(SavableModule, nn.Module):
    """Motion-content decomposed VAE.  See the module docstring and ``docs/architecture.md``.

    Args:
        resolution: frame size ``H = W``.
        num_frames: clip length ``L`` (= ``r_t``: the motion latent has no temporal axis).
        spatial_downsample: ``r_s``; must equal ``2 ** (len(channel_mult) - 1)``.
        z_channels: ``d``, channels of the motion latent ``z_m (B, d, h, w)``.
        image_channels / motion_channels / decoder_channels: base widths of E_I / E_M / D_V.
        num_res_blocks: ResBlocks per scale (and per temporal stage of E_M).
        folded_frames: frames E_M keeps before folding time into channels (and D_V unfolds into);
            ``num_frames / folded_frames`` must be a power of two: one temporal stage per halving.
        norm_groups: GroupNorm groups (lower it for tiny widths).
    """

    def __init__(self, resolution: int, num_frames: int, in_channels: int = 3, spatial_downsample: int = 4,
                 z_channels: int = 3, image_channels: int = 128, motion_channels: int = 64,
                 decoder_channels: int = 128, channel_mult: Sequence[int] = (1, 2, 4),
                 num_res_blocks: int = 2, folded_frames: int = 4, dropout: float = 0.0, norm_groups: int = 32,
                 latent_norm_momentum: float = 0.01, use_checkpoint: bool = False):
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        if spatial_downsample != 2 ** (len(channel_mult) - 1):
            raise ValueError(f"spatial_downsample (r_s={spatial_downsample}) must equal 2 ** "
                             f"(len(channel_mult) - 1) = {2 ** (len(channel_mult) - 1)} for "
                             f"channel_mult={channel_mult}")
        if resolution % spatial_downsample:
            raise ValueError(f"resolution {resolution} must be divisible by spatial_downsample "
                             f"{spatial_downsample}")
        ratio = num_frames // folded_frames if folded_frames > 0 else 0
        if folded_frames < 1 or num_frames % folded_frames or ratio & (ratio - 1):
            raise ValueError(f"num_frames / folded_frames must be a power of two, got {num_frames} / "
                             f"{folded_frames}")
        self.resolution, self.num_frames, self.in_channels = resolution, num_frames, in_channels
        self.spatial_downsample, self.z_channels = spatial_downsample, z_channels
        n_t = int(math.log2(ratio))
        common = dict(channel_mult=channel_mult, num_res_blocks=num_res_blocks, dropout=dropout,
                      groups=norm_groups, use_checkpoint=use_checkpoint)
        self.image_encoder = ImageEncoder(in_channels, image_channels, **common)
        self.motion_encoder = MotionEncoder(in_channels, motion_channels, num_temporal_stages=n_t,
                                            folded_frames=folded_frames, z_channels=z_channels, **common)
        content_widths = [image_channels * m for m in reversed(channel_mult)]
        self.decoder = FusionDecoder(in_channels, decoder_channels, num_temporal_stages=n_t,
                                     folded_frames=folded_frames, z_channels=z_channels,
                                     content_widths=content_widths,
                                     content_dim=self.image_encoder.content_dim, **common)
        self.latent_norm = LatentNorm(z_channels, momentum=latent_norm_momentum)

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(d, h, w)`` of the motion latent ``z_m``."""
        h = self.resolution // self.spatial_downsample
        return (self.z_channels, h, h)

    @property
    def content_dim(self) -> int:
        """Channels ``d'`` of the content latents ``f_x0`` (the DMG condition)."""
        return self.image_encoder.content_dim

    @property
    def last_layer_weight(self) -> nn.Parameter:
        """Weight of the output conv, for the VQGAN adaptive GAN weight."""
        return self.decoder.conv_out[-1].weight

    # ---- validation ---------------------------------------------------------------------------
    def _check_range(self, x: torch.Tensor, what: str) -> None:
        if x.device.type != "meta" and x.numel() and (x.min() < -1 - 1e-3 or x.max() > 1 + 1e-3):
            raise ValueError(f"{what} values must lie in [-1, 1], got [{x.min().item():.3f}, "
                             f"{x.max().item():.3f}]")

    def _check_frame(self, shape: Sequence[int], what: str) -> None:
        c, hh, ww = shape
        r = self.spatial_downsample
        if c != self.in_channels:
            raise ValueError(f"{what} must have C={self.in_channels} channels, got {c}")
        if hh % r or ww % r:
            raise ValueError(f"{what} H and W must be divisible by spatial_downsample r_s={r}, got {hh}x{ww}")
        if hh != self.resolution or ww != self.resolution:
            raise ValueError(f"{what} must be {self.resolution}x{self.resolution} (resolution), got "
                             f"{hh}x{ww}")

    def validate_video(self, video: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``video`` is ``(B, C, L, H, W)`` with this model's sizes, in [-1,
        1]."""
        if not torch.is_tensor(video) or video.ndim != 5:
            raise ValueError("video must be a 5-D tensor (B, C, T, H, W), got shape "
                             f"{tuple(getattr(video, 'shape', ()))}")
        if video.shape[2] != self.num_frames:
            raise ValueError(f"video must have T=num_frames={self.num_frames} frames (r_t = L), got "
                             f"{video.shape[2]}")
        self._check_frame((video.shape[1], *video.shape[3:]), "video")
        self._check_range(video, "video")

    def validate_image(self, x0: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x0`` is ``(B, C, H, W)`` with this model's sizes, in [-1, 1]."""
        if not torch.is_tensor(x0) or x0.ndim != 4:
            raise ValueError("x0 must be a 4-D tensor (B, C, H, W), got shape "
                             f"{tuple(getattr(x0, 'shape', ()))}")
        self._check_frame(x0.shape[1:], "x0")
        self._check_range(x0, "x0")

    def _check_decode_inputs(self, z_m: torch.Tensor, content: Sequence[torch.Tensor]) -> None:
        if z_m.ndim != 4 or tuple(z_m.shape[1:]) != self.latent_shape:
            raise ValueError(f"z_m must be (B, d, h, w) = (B, {', '.join(map(str, self.latent_shape))}), "
                             f"got {tuple(z_m.shape)}")
        n = len(self.decoder.fuse) + 1
        if len(content) != n:
            raise ValueError(f"content must be the list [f_x0, f^1, ..., f^k] of {n} tensors from "
                             f"encode_content, got {len(content)}")
        if any(f.shape[0] != z_m.shape[0] for f in content):
            raise ValueError("content features and z_m must have the same batch size")

    # ---- the three networks -------------------------------------------------------------------
    def encode_content(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """``x0 (B, C, H, W)`` -> ``[f_x0 (B, d', h, w), f^1 (h), ..., f^k (H)]``."""
        self.validate_image(x0)
        return self.image_encoder(x0)

    def encode_motion(self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``video (B, C, L, H, W)`` -> ``(z_m normalised, mean, logvar)``, each ``(B, d, h, w)``.

        ``sample=True`` draws ``z = mean + eps * std`` (Eq. 1, ``eps`` from ``generator``); ``False`` uses
        the mean.  ``mean``/``logvar`` are the un-normalised posterior moments (for the KL term).
        """
        self.validate_video(video)
        mean, logvar = self.motion_encoder(video).float().chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean
        if sample:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + eps * torch.exp(0.5 * logvar)
        return self.latent_norm(z), mean, logvar

    def decode(self, z_m: torch.Tensor, content: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised ``z_m (B, d, h, w)`` + ``encode_content`` output -> video ``(B, C, L, H, W)``."""
        self._check_decode_inputs(z_m, content)
        return self.decoder(z_m, content[0], content[1:])

    def forward(self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``video`` from its first frame's content and its motion: ``(recon, mean, logvar)``."""
        z_m, mean, logvar = self.encode_motion(video, sample=sample, generator=generator)
        content = self.encode_content(video[:, :, 0])
        return self.decode(z_m, content), mean, logvar
