"""Attention blocks on ``F.scaled_dot_product_attention`` (LDM layout).

``Attention`` is multi-head (cross-)attention over token sequences; ``CrossAttnTransformerBlock`` is
LDM's BasicTransformerBlock (pre-LN self-attention, cross-attention, GEGLU feed-forward, each with a
residual); ``SpatialTransformer`` runs those blocks over the pixels of a ``(B, C, H, W)`` feature map
between a GroupNorm + 1x1 ``proj_in`` and a zero-initialised 1x1 ``proj_out``, so that a freshly
inserted transformer starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .resblocks import normalization, zero_module

__all__ = ["Attention", "CrossAttnTransformerBlock", "FeedForward", "GEGLU", "SpatialTransformer"]


class Attention(nn.Module):
    """Multi-head attention: queries from ``x``, keys/values from ``context`` (``x`` when None).

    Args:
        dim: query width ``D``.
        heads, dim_head: ``inner = heads * dim_head``.
        context_dim: key/value source width (defaults to ``dim``).
        dropout: dropout on the output projection.
        qkv_bias: biases on the q/k/v projections (LDM: none; DiT/ViT: yes).
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        context_dim: int | None = None,
        dropout: float = 0.0,
        qkv_bias: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = dim if context_dim is None else context_dim
        self.heads, self.dim_head, self.context_dim = heads, dim_head, context_dim
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(B, N, D)``, ``context`` ``(B, M, context_dim)``, ``mask`` ``(B, M)`` bool key
        padding mask (True = attend; each row needs at least one True, else SDPA gives NaN) ->
        ``(B, N, D)``."""
        context = x if context is None else context
        if context.shape[-1] != self.context_dim:
            raise ValueError(f"context width {context.shape[-1]} != context_dim {self.context_dim}")
        b, n, _ = x.shape
        m = context.shape[1]
        if mask is not None:
            if mask.shape != (b, m):
                raise ValueError(f"key padding mask must have shape (B, M) = {(b, m)}, got "
                                 f"{tuple(mask.shape)}")
            mask = mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, M) broadcast over heads and queries

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, L, h*d) -> (B, h, L, d)
            return t.view(b, -1, self.heads, self.dim_head).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head)  # (B, N, h*d)
        return self.to_out(out)


class GEGLU(nn.Module):
    """``Linear(dim, 2*inner)``; one half gates the other through GELU (Shazeer 2020)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> mult*dim -> dim_out`` (LDM ``FeedForward(glu=True)``)."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttnTransformerBlock(nn.Module):
    """Pre-LN ``x += attn1(LN x); x += attn2(LN x, context); x += FF(LN x)``.

    With ``context_dim=None`` the second attention is another self-attention (LDM behaviour); with a
    ``context_dim`` it attends to the ``context`` tokens passed to ``forward``.
    """

    def __init__(
        self, dim: int, heads: int, dim_head: int, context_dim: int | None = None, dropout: float = 0.0
    ):
        super().__init__()
        self.attn1 = Attention(dim, heads, dim_head, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim, dropout=dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.has_context = context_dim is not None

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(B, N, D)``; ``context`` ``(B, M, context_dim)`` with optional key mask ``(B, M)``."""
        if self.has_context and context is None:
            raise ValueError("this block was built with context_dim: forward needs a context tensor")
        if not self.has_context and context is not None:
            raise ValueError("this block was built without context_dim: pass context=None")
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context=context, mask=mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the ``H*W`` pixels of a feature map (LDM ``SpatialTransformer``).

    ``(B, C, H, W)`` -> GroupNorm -> 1x1 conv to ``heads*dim_head`` -> ``depth`` x
    ``CrossAttnTransformerBlock`` -> zero-init 1x1 conv back to ``C`` -> + input.
    ``use_checkpoint`` recomputes each block in the backward pass to save activation memory.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            CrossAttnTransformerBlock(inner, heads, dim_head, context_dim, dropout) for _ in range(depth)
        )
        self.proj_out = zero_module(nn.Conv2d(inner, channels, 1))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``, ``context`` ``(B, M, context_dim)`` -> ``(B, C, H, W)``."""
        if x.ndim != 4:
            raise ValueError(f"SpatialTransformer expects (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x))
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, inner, H, W) -> (B, H*W, inner)
        for block in self.transformer_blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, context, mask, use_reentrant=False)
            else:
                tokens = block(tokens, context, mask)
        tokens = tokens.transpose(1, 2).reshape(b, -1, h, w)  # (B, H*W, inner) -> (B, inner, H, W)
        return x + self.proj_out(tokens)
