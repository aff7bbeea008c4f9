"""Diffusion Transformer building blocks (Peebles & Xie 2023, "DiT").

``PatchEmbed`` turns a latent image into tokens, ``DiTBlock`` is the adaLN-Zero transformer block
(the conditioning vector ``c`` regresses shift/scale/gate for attention and MLP; the regression is
zero-initialised so every block starts as the identity), ``DiTFinalLayer`` maps tokens back to
patches (zero-initialised: the model starts by predicting 0) and ``unpatchify`` reassembles them.
Each block initialises itself as the DiT reference does (Xavier-uniform linears, zero biases).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention

__all__ = ["DiTBlock", "DiTFinalLayer", "PatchEmbed", "modulate", "unpatchify"]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, N, D)`` * (1 + scale) + shift with per-sample ``(B, D)`` shift/scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _xavier_linears(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _ada_ln(hidden_size: int, n_chunks: int) -> nn.Sequential:
    """``SiLU -> Linear(D, n*D)``, zero-initialised (the "Zero" of adaLN-Zero)."""
    linear = nn.Linear(hidden_size, n_chunks * hidden_size)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.SiLU(), linear)


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` -> ``(B, (H/p)*(W/p), D)`` tokens in row-major patch order (Conv2d, stride p)."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size, self.in_channels = patch_size, in_channels
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        nn.init.xavier_uniform_(self.proj.weight.view(hidden_size, -1))  # as a Linear on flattened patches
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(
                f"PatchEmbed expects (B, {self.in_channels}, H, W) with H, W divisible by patch size {p}, "
                f"got {tuple(x.shape)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, N, D)


class DiTBlock(nn.Module):
    """adaLN-Zero block: ``x += gate_msa * Attn(modulate(LN x)); x += gate_mlp * MLP(modulate(LN x))``."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        hidden_mlp = int(hidden_size * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, hidden_size // num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_mlp), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden_mlp, hidden_size)
        )
        _xavier_linears(self)
        self.adaLN_modulation = _ada_ln(hidden_size, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, N, D)``, conditioning ``c`` ``(B, D)`` -> ``(B, N, D)``."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6,
                                                                                                        dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class DiTFinalLayer(nn.Module):
    """``modulate(LN x)`` -> zero-init ``Linear(D, p*p*out_channels)``: ``(B, N, D)`` -> ``(B, N, p*p*C)``."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.adaLN_modulation = _ada_ln(hidden_size, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def unpatchify(
    x: torch.Tensor, patch_size: int, out_channels: int, grid_size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """``(B, h*w, p*p*C)`` patch tokens (row-major) -> ``(B, C, h*p, w*p)``; a square grid by default."""
    b, n, d = x.shape
    p, c = patch_size, out_channels
    if grid_size is None:
        h = w = int(round(n**0.5))
    else:
        h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    if h * w != n or d != p * p * c:
        raise ValueError(
            f"unpatchify: got {n} tokens of width {d}, expected grid {h}x{w} = {h * w} tokens of width p*p*C "
            f"= {p * p * c}"
        )
    x = x.reshape(b, h, w, p, p, c)
    x = torch.einsum("bhwpqc->bchpwq", x)  # (B, h, w, p, p, C) -> (B, C, h, p, w, p)
    return x.reshape(b, c, h * p, w * p)
