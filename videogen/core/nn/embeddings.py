"""Timestep, class-label and fixed positional embeddings shared by the diffusion backbones.

The sinusoidal timestep embedding follows ADM/LDM/DiT (``[cos, sin]`` halves, frequencies
``max_period ** (-i / half)``) and is always computed in float32 so that bf16 autocast cannot round
large timesteps together.  ``LabelEmbedder`` keeps one extra "null" row for classifier-free guidance
(DiT style), and ``get_2d_sincos_pos_embed`` gives the fixed (MAE/DiT) 2D sin-cos positions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = [
    "LabelEmbedder",
    "TimestepEmbedder",
    "get_1d_sincos_pos_embed",
    "get_2d_sincos_pos_embed",
    "timestep_embedding",
]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Args:
        t: ``(B,)`` timesteps (int or float).
        dim: embedding width; an odd width gets one zero column at the end.
        max_period: the lowest frequency is ``1 / max_period``.

    Returns:
        ``(B, dim)`` float32 tensor ``[cos(t * f_i), sin(t * f_i)]``.
    """
    if t.ndim != 1:
        raise ValueError(f"timestep_embedding expects t of shape (B,), got {tuple(t.shape)}")
    if dim < 2:
        raise ValueError(f"timestep_embedding needs dim >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoid of width ``freq_dim`` followed by ``Linear -> SiLU -> Linear`` to ``dim_out``."""

    def __init__(self, dim_out: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim_out), nn.SiLU(), nn.Linear(dim_out, dim_out))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``(B,)`` timesteps -> ``(B, dim_out)``."""
        freq = timestep_embedding(t, self.freq_dim, self.max_period)
        # Under autocast the Linear picks its own dtype; outside it, match the weights.
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class-label embedding table with a null row (index ``num_classes``) for classifier-free guidance.

    During training each label is replaced by the null class with probability ``dropout_prob``;
    ``force_drop_ids`` (``(B,)``, 1 = drop) overrides the random choice, e.g. to build the
    unconditional half of a CFG batch.  The table has ``num_classes + 1`` rows whatever the dropout.
    """

    def __init__(self, num_classes: int, dim: int, dropout_prob: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"LabelEmbedder needs num_classes >= 1, got {num_classes}")
        if not 0.0 <= dropout_prob < 1.0:
            raise ValueError(f"dropout_prob must lie in [0, 1), got {dropout_prob}")
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_class(self) -> int:
        """Index of the "no label" row used for the unconditional branch of CFG."""
        return self.num_classes

    def token_drop(
        self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None, generator=None
    ) -> torch.Tensor:
        """Replace dropped labels by the null class."""
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device, generator=generator) < self.dropout_prob
        else:
            drop = force_drop_ids.to(labels.device) == 1
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def forward(
        self, labels: torch.Tensor, train: bool | None = None, force_drop_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B,)`` int64 labels in ``[0, num_classes]`` -> ``(B, dim)``.

        ``train`` defaults to ``self.training``; ``labels == num_classes`` selects the null row.
        """
        if labels.ndim != 1:
            raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
        n_rows = self.embedding_table.num_embeddings
        if labels.numel() and not labels.is_meta and (int(labels.min()) < 0 or int(labels.max()) >= n_rows):
            raise ValueError(f"labels must lie in [0, {n_rows - 1}], got [{int(labels.min())}, "
                             f"{int(labels.max())}]")
        train = self.training if train is None else train
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


def get_1d_sincos_pos_embed(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """``(M,)`` positions -> ``(M, embed_dim)`` float64 ``[sin, cos]`` embedding (MAE convention)."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos position embedding needs an even embed_dim, got {embed_dim}")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # (D/2,)
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)  # (M, D/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int | tuple[int, int]) -> np.ndarray:
    """Fixed 2D sin-cos positions for a ``(h, w)`` token grid (an int means square).

    Returns ``(h*w, embed_dim)`` float64 in row-major (h, w) token order; the first half of the
    channels encodes the column (w) index and the second half the row (h) index, as in MAE/DiT.
    """
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if embed_dim % 4:
        raise ValueError(f"2D sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    grid_h, grid_w = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                                 indexing="ij")
    emb_w = get_1d_sincos_pos_embed(embed_dim // 2, grid_w)  # (h*w, D/2)
    emb_h = get_1d_sincos_pos_embed(embed_dim // 2, grid_h)  # (h*w, D/2)
    return np.concatenate([emb_w, emb_h], axis=1)
