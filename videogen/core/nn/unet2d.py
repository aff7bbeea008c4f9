"""LDM-style 2D UNet (``openaimodel.UNetModel`` with ``SpatialTransformer`` attention).

The module layout, and so the parameter count, matches LDM's ``UNetModel`` built with
``use_spatial_transformer=True`` (plus one extra null row in the class table for classifier-free
guidance): an encoder of ``num_res_blocks`` ResBlocks per level with a strided-conv Downsample between
levels, a middle ResBlock-Transformer-ResBlock, and a decoder of ``num_res_blocks + 1`` ResBlocks per
level fed by skip connections, with nearest+conv Upsample between levels.  A SpatialTransformer
follows every ResBlock whose downsample factor ``ds`` is in ``attention_resolutions``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import SpatialTransformer
from .embeddings import LabelEmbedder, TimestepEmbedder
from .resblocks import Downsample, ResBlock, Upsample, normalization, zero_module
from .unet import UNetSkeleton

__all__ = ["TimestepEmbedSequential", "UNet2D"]


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that hands the time embedding to ResBlocks and the context to SpatialTransformers."""

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, mask)
            else:
                x = layer(x)
        return x


class UNet2D(UNetSkeleton):
    """Denoiser ``forward(x (B,C,H,W), t (B,), context=None, y=None) -> (B, out_channels, H, W)``.

    Args:
        in_channels, out_channels, model_channels: widths; level ``i`` has
        ``model_channels * channel_mult[i]``.
        channel_mult: width multiplier per level; H and W must be divisible by ``2 ** (len - 1)``.
        num_res_blocks: ResBlocks per encoder level (the decoder has one more).
        attention_resolutions: downsample factors (1, 2, 4, ...) that get a SpatialTransformer.
        num_heads / num_head_channels: fixed head count, or (if ``num_head_channels != -1``) fixed head width.
        context_dim: cross-attention context width; None makes every transformer self-attention only.
        num_classes: class-conditional model; ``y`` (``(B,)``, ``num_classes`` = null class) is embedded
            and added to the time embedding (width ``4 * model_channels``).
        use_checkpoint: recompute every block in the backward pass (saves activation memory).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        model_channels: int,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (1, 2, 4),
        num_heads: int = 8,
        num_head_channels: int = -1,
        context_dim: int | None = None,
        num_classes: int | None = None,
        dropout: float = 0.0,
        transformer_depth: int = 1,
        use_checkpoint: bool = False,
        use_scale_shift_norm: bool = True,
        groups: int = 32,
    ):
        super().__init__()
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("set either num_heads or num_head_channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.channel_mult = tuple(channel_mult)
        self.context_dim, self.num_classes = context_dim, num_classes
        self.use_checkpoint = use_checkpoint
        time_embed_dim = 4 * model_channels
        self.time_embed = TimestepEmbedder(time_embed_dim, freq_dim=model_channels)
        self.label_emb = (
            LabelEmbedder(num_classes, time_embed_dim, 0.0) if num_classes is not None else None
        )

        def res(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(ch_in, ch_out, time_embed_dim, 2, dropout, use_scale_shift_norm, groups=groups)

        def attn(ch: int) -> SpatialTransformer:
            if num_head_channels == -1:
                heads, dim_head = num_heads, ch // num_heads
            else:
                heads, dim_head = ch // num_head_channels, num_head_channels
            if heads * dim_head != ch:
                raise ValueError(f"attention width {ch} is not divisible into heads (num_heads={num_heads}, "
                                 f"num_head_channels={num_head_channels})")
            return SpatialTransformer(ch, heads, dim_head, transformer_depth, context_dim, dropout)

        conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        ch = self.build_skeleton(conv_in, model_channels, self.channel_mult, num_res_blocks,
                                 attention_resolutions, res, attn, lambda c: Downsample(c, dims=2),
                                 lambda c: Upsample(c, dims=2), TimestepEmbedSequential)
        self.out = nn.Sequential(
            normalization(ch, groups), nn.SiLU(),
                                 zero_module(nn.Conv2d(model_channels, out_channels, 3, padding=1))
        )

    @property
    def null_class(self) -> int:
        """Label of the unconditional (CFG) class row."""
        if self.label_emb is None:
            raise ValueError("this UNet2D has no class embedding (num_classes=None)")
        return self.label_emb.null_class

    def _check_inputs(self, x, t, context, y) -> torch.Tensor:
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet2D expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"UNet2D: H and W must be divisible by {factor}, got {tuple(x.shape[2:])}")
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
        if (context is None) != (self.context_dim is None):
            raise ValueError("context must be given exactly when context_dim is set "
                             f"(context_dim={self.context_dim})")
        if (y is None) != (self.num_classes is None):
            raise ValueError("y must be given exactly when num_classes is set "
                             f"(num_classes={self.num_classes}; pass y = null_class for unconditional "
                             "samples)")
        return t

    def _run(self, block: nn.Module, *args) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``, ``t`` ``(B,)``, ``context`` ``(B, M, context_dim)`` with optional key
        mask ``(B, M)``, ``y`` ``(B,)`` -> ``(B, out_channels, H, W)``."""
        t = self._check_inputs(x, t, context, y)
        emb = self.time_embed(t)  # (B, 4 * model_channels)
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        h = self.run_skeleton(x, lambda block, h: self._run(block, h, emb, context, context_mask))
        return self.out(h)
