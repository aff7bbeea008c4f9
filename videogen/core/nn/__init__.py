"""Network blocks shared by two or more models: embeddings, attention, ResBlocks, UNet2D, DiT, discriminators.

See ``docs/architecture.md`` for the contract each block keeps.
"""

from __future__ import annotations

from .attention import GEGLU, Attention, CrossAttnTransformerBlock, FeedForward, SpatialTransformer
from .discriminators import PatchGANDiscriminator
from .dit import DiTBlock, DiTFinalLayer, PatchEmbed, modulate, unpatchify
from .embeddings import (
    LabelEmbedder,
    TimestepEmbedder,
    get_1d_sincos_pos_embed,
    get_2d_sincos_pos_embed,
    timestep_embedding,
)
from .resblocks import Downsample, GroupNorm32, ResBlock, Upsample, conv_nd, normalization, zero_module
from .unet import UNetSkeleton
from .unet2d import TimestepEmbedSequential, UNet2D

__all__ = [
    "Attention",
    "CrossAttnTransformerBlock",
    "DiTBlock",
    "DiTFinalLayer",
    "Downsample",
    "FeedForward",
    "GEGLU",
    "GroupNorm32",
    "LabelEmbedder",
    "PatchEmbed",
    "PatchGANDiscriminator",
    "ResBlock",
    "SpatialTransformer",
    "TimestepEmbedSequential",
    "TimestepEmbedder",
    "UNet2D",
    "UNetSkeleton",
    "Upsample",
    "conv_nd",
    "get_1d_sincos_pos_embed",
    "get_2d_sincos_pos_embed",
    "modulate",
    "normalization",
    "timestep_embedding",
    "unpatchify",
    "zero_module",
]
