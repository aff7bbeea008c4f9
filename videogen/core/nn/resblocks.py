"""Residual blocks with AdaGN and 2D/3D up/down sampling (ADM/LDM ``openaimodel`` layout).

``ResBlock`` works on images ``(B, C, H, W)`` (``dims=2``) and videos ``(B, C, T, H, W)``
(``dims=3``); a tuple kernel such as ``(1, 3, 3)`` makes a 3D block purely spatial.  ``Downsample``
and ``Upsample`` take per-axis factors, e.g. ``(1, 2, 2)`` (spatial only) or ``(2, 1, 1)`` (temporal
only), and keep sizes exact: ``n -> n / s`` and ``n -> n * s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Downsample", "GroupNorm32", "ResBlock", "Upsample", "conv_nd", "normalization", "zero_module"]


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that normalises in float32 and returns the input dtype (safe for bf16/fp16 inputs
    and for a module whose own weights were cast to bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def normalization(channels: int, groups: int = 32) -> GroupNorm32:
    """GroupNorm with ``groups`` groups, or ``gcd(channels, groups)`` when ``channels`` is not divisible."""
    groups = math.gcd(channels, groups) if channels % groups else groups
    return GroupNorm32(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (so a residual branch starts as the identity) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d/2d/3d`` chosen by ``dims``."""
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](*args, **kwargs)


def _per_axis(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    """Expand an int to a ``dims``-tuple and validate a given tuple's length."""
    out = (value,) * dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != dims or any(v < 1 for v in out):
        raise ValueError(f"{name} must be a positive int or a tuple of {dims} positive ints, got {value}")
    return out


def _same_padding(kernel: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"{name} must be odd on every axis to keep sizes exact, got {kernel}")
    return tuple(k // 2 for k in kernel)


def _check_input(x: torch.Tensor, dims: int, channels: int, who: str) -> None:
    if x.ndim != dims + 2 or x.shape[1] != channels:
        layout = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}[dims]
        raise ValueError(f"{who} expects {layout} with C={channels}, got shape {tuple(x.shape)}")


class ResBlock(nn.Module):
    """``GN-SiLU-conv -> (+emb | AdaGN) -> GN-SiLU-dropout-zero conv``, plus a skip connection.

    With ``use_scale_shift_norm`` the embedding gives ``(scale, shift)`` and the second norm becomes
    ``GN(h) * (1 + scale) + shift`` (AdaGN, ADM); otherwise the embedding is added to ``h``.  The skip
    is a 1x1 conv when the channel count changes.  ``emb_dim=None`` makes an unconditional block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        emb_dim: int | None = None,
        dims: int = 2,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        kernel_size: int | Sequence[int] = 3,
        groups: int = 32,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        kernel = _per_axis(kernel_size, dims, "kernel_size")
        conv_kw = dict(padding=_same_padding(kernel, "kernel_size"))
        self.in_channels, self.out_channels, self.dims = in_channels, out_channels, dims
        self.emb_dim, self.use_scale_shift_norm = emb_dim, use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(in_channels, groups), nn.SiLU(),
                                       conv_nd(dims, in_channels, out_channels, kernel, **conv_kw)
        )
        if emb_dim is not None:
            emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, emb_out))
        self.out_layers = nn.Sequential(
            normalization(out_channels, groups),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(conv_nd(dims, out_channels, out_channels, kernel, **conv_kw)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == in_channels else conv_nd(dims, in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, C_in, *spatial)``, ``emb`` ``(B, emb_dim)`` -> ``(B, C_out, *spatial)``."""
        _check_input(x, self.dims, self.in_channels, "ResBlock")
        h = self.in_layers(x)
        if self.emb_dim is None:
            if emb is not None:
                raise ValueError("this ResBlock was built with emb_dim=None: pass emb=None")
            return self.skip_connection(x) + self.out_layers(h)
        if emb is None or emb.shape != (x.shape[0], self.emb_dim):
            got = None if emb is None else tuple(emb.shape)
            raise ValueError(f"ResBlock needs emb of shape (B, emb_dim) = {(x.shape[0], self.emb_dim)}, got "
                             f"{got}")
        emb_out = self.emb_layers(emb).to(h.dtype)
        emb_out = emb_out.view(*emb_out.shape, *([1] * self.dims))  # (B, E) -> (B, E, 1, ..., 1)
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = emb_out.chunk(2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    """Strided conv (``use_conv``) or average pooling by ``stride`` per axis.

    Every axis must be divisible by its stride; the strided conv uses kernel ``kernel_size`` with
    ``k // 2`` padding so ``n -> n / s`` exactly.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        dims: int = 2,
        stride: int | Sequence[int] = 2,
        use_conv: bool = True,
        kernel_size: int | Sequence[int] = 3,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.channels, self.out_channels, self.dims = channels, out_channels, dims
        self.stride = _per_axis(stride, dims, "stride")
        if use_conv:
            kernel = _per_axis(kernel_size, dims, "kernel_size")
            self.op = conv_nd(
                dims, channels, out_channels, kernel, stride=self.stride,
                padding=_same_padding(kernel, "kernel_size"),
            )
        else:
            if out_channels != channels:
                raise ValueError("Downsample without use_conv cannot change the channel count")
            self.op = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[dims - 1](self.stride, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *sizes)`` -> ``(B, C_out, *(n // s))``."""
        _check_input(x, self.dims, self.channels, "Downsample")
        sizes = tuple(x.shape[2:])
        if any(n % s for n, s in zip(sizes, self.stride)):
            raise ValueError(f"Downsample: input sizes {sizes} must be divisible by the stride {self.stride}")
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` per axis, then an optional same-size conv."""

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        dims: int = 2,
        scale: int | Sequence[int] = 2,
        use_conv: bool = True,
        kernel_size: int | Sequence[int] = 3,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.channels, self.out_channels, self.dims = channels, out_channels, dims
        self.scale = _per_axis(scale, dims, "scale")
        if use_conv:
            kernel = _per_axis(kernel_size, dims, "kernel_size")
            self.conv = conv_nd(
                dims, channels, out_channels, kernel,
                padding=_same_padding(kernel, "kernel_size"),
            )
        elif out_channels != channels:
            raise ValueError("Upsample without use_conv cannot change the channel count")
        else:
            self.conv = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *sizes)`` -> ``(B, C_out, *(n * s))``."""
        _check_input(x, self.dims, self.channels, "Upsample")
        size = tuple(n * s for n, s in zip(x.shape[2:], self.scale))
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
