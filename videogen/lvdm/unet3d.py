"""LVDM's 3D UNet on video latents (Sec. 3.2; spec §2), on the core ResBlocks.

``(B, 4, t, h, w)`` latents + timesteps -> eps.  Every convolution has a ``(1, 3, 3)`` kernel and
resampling is spatial only (time is never resampled); ResBlocks use AdaGN (scale-shift norm).  At the
attention resolutions, a :class:`FactorizedAttention` block attends over space (per frame) and then over
time (per position), each as GN -> qkv -> attention -> zero-initialised projection -> residual.  The
temporal attention has Shaw-style relative positions with **keys and values** tables indexed by
``clamp(j - i, -R, R) + R``; ``R = max_relative_distance`` is fixed (not the clip length), so the
prediction (4 latents) and interpolation (5 latents) models share the short model's tables:

    logit_ij = q_i . (k_j + a^K_{ij}) / sqrt(d),    out_i = sum_j softmax_j(logit)_ij (v_j + a^V_{ij})

(the official code transposes the key term and scales it by ``d^-1/4``, spec bug B1; released weights were
trained with that form, so ``relative_position="official"`` computes it, for converted official checkpoints
(``videogen.lvdm.convert``): ``logit_ij = q_i . k_j / sqrt(d) + q_j . a^K_{ji} / d^(1/4)``).  At the official
configuration
(256 channels, mult 1,2,3,4, 3 blocks, attention at 16^2/8^2/4^2, 4 heads) it has 548,904,580 parameters;
``channel_mult (1, 2, 3, 3)`` gives 418,366,340, the closest to the paper's Table 2 (418M): an inference.

:class:`ConditionalUNet3D` (Sec. 3.3; spec §3): the prediction / interpolation model, the short ``UNet3D``
with one extra input channel (the mask ``m``: 1 = a given latent frame) and an embedding of the
conditioning frames' noise level ``s`` added to the time embedding (**conditional latent perturbation**:
given latents enter as ``q(z_s | z_0)``, s ~ U{0..249} in training, s = 100 at sampling; the last row is a
null level for unconditional samples, in training and sampling alike: the official code embeds s for them
too).  ``from_short`` copies every weight of a trained short model and zero-initialises what is new, so it
starts as the short model.  :func:`mix_given` writes the given latents into the model input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from videogen.core.nn import (
    Downsample,
    ResBlock,
    UNetSkeleton,
    Upsample,
    normalization,
    timestep_embedding,
    zero_module,
)
from videogen.core.persistence import SavableModule

__all__ = ["DEFAULT_DIFFUSION", "RELATIVE_POSITION_FORMS", "ConditionalUNet3D", "FactorizedAttention",
           "UNet3D", "mix_given", "relative_attention"]

#: the schedule of LVDM's official configs (what the short and long models train and sample with)
DEFAULT_DIFFUSION = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.0015,
                     "beta_end": 0.0155, "prediction_type": "epsilon", "loss_type": "l1"}

_K = (1, 3, 3)


RELATIVE_POSITION_FORMS = ("corrected", "official")


def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_k: torch.Tensor,
                       rel_v: torch.Tensor, form: str = "corrected") -> torch.Tensor:
    """``q, k, v (N, heads, T, d)``, ``rel_k, rel_v (T, T, d)`` (``rel[i, j]`` = the table row of ``j - i``)
    -> ``(N, heads, T, d)`` (Shaw et al. 2018).

    ``form="corrected"``: ``logit_ij = q_i . (k_j + a^K_ij) / sqrt(d)``.  ``form="official"``: LVDM's
    ``QKVAttention`` (bug B1), the key term transposed and scaled by ``d^-1/4``:
    ``logit_ij = q_i . k_j / sqrt(d) + q_j . a^K_ji / d^(1/4)``.  The value term is the same in both."""
    d = q.shape[-1]
    if form == "corrected":
        logits = (torch.einsum("nhid,nhjd->nhij", q, k) + torch.einsum("nhid,ijd->nhij", q, rel_k)) * d**-0.5
    elif form == "official":
        logits = torch.einsum("nhid,nhjd->nhij", q, k) * d**-0.5 + torch.einsum("nhjd,jid->nhij", q,
                                                                                  rel_k) * d**-0.25
    else:
        raise ValueError(f"relative_position must be one of {RELATIVE_POSITION_FORMS}, got {form!r}")
    p = logits.float().softmax(dim=-1).to(q.dtype)
    return p @ v + torch.einsum("nhij,ijd->nhid", p, rel_v)


class _AttentionHalf(nn.Module):
    """GN -> Conv1d qkv -> multi-head attention -> zero-init Conv1d -> residual, over the last axis of
    ``(N, C, L)``."""

    def __init__(self, channels: int, heads: int, relative: int | None, form: str = "corrected"):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} must be divisible by heads {heads}")
        if form not in RELATIVE_POSITION_FORMS:
            raise ValueError(f"relative_position must be one of {RELATIVE_POSITION_FORMS}, got {form!r}")
        self.heads, self.head_dim, self.form = heads, channels // heads, form
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))
        self.max_distance = relative
        if relative is not None:
            self.rel_k = nn.Parameter(torch.empty(2 * relative + 1, self.head_dim))
            self.rel_v = nn.Parameter(torch.empty(2 * relative + 1, self.head_dim))
            nn.init.xavier_uniform_(self.rel_k)
            nn.init.xavier_uniform_(self.rel_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, 3, self.heads, self.head_dim, length).permute(1, 0, 2, 4, 3)
        if self.max_distance is None:
            out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, d)
        else:
            pos = torch.arange(length, device=x.device)
            idx = (pos[None, :] - pos[:, None]).clamp(-self.max_distance,
                                                      self.max_distance) + self.max_distance
            out = relative_attention(q, k, v, self.rel_k[idx].to(q.dtype), self.rel_v[idx].to(q.dtype),
                                     self.form)
        out = out.permute(0, 1, 3, 2).reshape(n, c, length)  # (N, heads, L, d) -> (N, C, L)
        return x + self.proj_out(out)


class FactorizedAttention(nn.Module):
    """Spatial attention per frame, then temporal attention (relative positions) per position:
    ``(B, C, T, H, W)``."""

    def __init__(self, channels: int, heads: int, max_relative_distance: int | None = 4,
                 relative_position: str = "corrected"):
        super().__init__()
        self.spatial = _AttentionHalf(channels, heads, None)
        self.temporal = _AttentionHalf(channels, heads, max_relative_distance, relative_position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        xs = self.spatial(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h * w))  # (B*T, C, HW)
        x = xs.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        xt = self.temporal(x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t))  # (B*H*W, C, T)
        return xt.view(b, h, w, c, t).permute(0, 3, 4, 1, 2)


class UNet3D(SavableModule, UNetSkeleton):
    """3D UNet for video latents.  ``forward(x (B, C, T, H, W), t (B,), **extra) -> (B, out, T, H, W)``.

    Args:
        in_channels / out_channels: latent channels (4); prediction / interpolation models take one more
            input channel (the mask), see docs/lvdm.md.
        model_channels, channel_mult, num_res_blocks: width, per-level multipliers, ResBlocks per level.
        attention_resolutions: downsampling factors with attention (official 8, 4, 2 = latent 4^2, 8^2, 16^2).
        num_heads: attention heads; max_relative_distance: R of the temporal tables (None: no positions).
        dropout, use_checkpoint: ResBlock dropout; gradient checkpointing of every block.
        relative_position: "corrected" (default: the Shaw form above) or "official" (LVDM's transposed,
            ``d^-1/4``-scaled key term, bug B1: what the released weights compute; set by the converter).
        temporal_kernel: temporal extent of the ResBlocks' and the in / out convolutions (1: LVDM's
            ``(1, 3, 3)``; 3: ``(3, 3, 3)``, VDM-style, so that neighbouring latents also mix outside the
            temporal attention; tried for the CPU demo and not used there, docs/lvdm.md).  Resampling stays
            ``(1, 3, 3)``.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 4, model_channels: int = 256,
                 channel_mult: Sequence[int] = (1, 2, 3, 4), num_res_blocks: int = 3,
                 attention_resolutions: Sequence[int] = (8, 4, 2), num_heads: int = 4,
                 max_relative_distance: int | None = 4, dropout: float = 0.0, use_checkpoint: bool = False,
                 temporal_kernel: int = 1, relative_position: str = "corrected"):
        super().__init__()
        if relative_position not in RELATIVE_POSITION_FORMS:
            raise ValueError(f"relative_position must be one of {RELATIVE_POSITION_FORMS}, got "
                             f"{relative_position!r}")
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd and >= 1, got {temporal_kernel}")
        self.in_channels, self.out_channels, self.model_channels = in_channels, out_channels, model_channels
        self.use_checkpoint = use_checkpoint
        emb = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        kernel, pad = (temporal_kernel, 3, 3), (temporal_kernel // 2, 1, 1)
        rb = dict(emb_dim=emb, dims=3, dropout=dropout, use_scale_shift_norm=True, kernel_size=kernel)

        def attention(ch: int) -> FactorizedAttention:
            return FactorizedAttention(ch, num_heads, max_relative_distance, relative_position)

        conv_in = nn.Conv3d(in_channels, model_channels, kernel, padding=pad)
        ch = self.build_skeleton(conv_in, model_channels, channel_mult, num_res_blocks, attention_resolutions,
                                 lambda c_in, c_out: ResBlock(c_in, c_out, **rb), attention,
                                 lambda c: Downsample(c, dims=3, stride=(1, 2, 2), kernel_size=_K),
                                 lambda c: Upsample(c, dims=3, scale=(1, 2, 2), kernel_size=_K),
                                 lambda *layers: nn.ModuleList(layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 zero_module(nn.Conv3d(model_channels, out_channels, kernel, padding=pad)))
        self.downsample = 2 ** (len(channel_mult) - 1)

    def _apply_block(self, block: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in block:
            if isinstance(layer, ResBlock):
                h = checkpoint(layer, h, emb, use_reentrant=False) \
                    if self.use_checkpoint and h.requires_grad else layer(h, emb)
            elif self.use_checkpoint and h.requires_grad and isinstance(layer, FactorizedAttention):
                h = checkpoint(layer, h, use_reentrant=False)
            else:
                h = layer(h)
        return h

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """``(B,)`` -> ``(B, 4 * model_channels)``; subclasses add their own embeddings to it."""
        freq = timestep_embedding(t, self.model_channels)
        return self.time_embed(freq.to(self.time_embed[0].weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C_in, T, H, W)``; ``emb`` (optional) is added to the time embedding."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % self.downsample or x.shape[-2] % self.downsample:
            raise ValueError(f"latent H, W must be divisible by {self.downsample}, got {tuple(x.shape[-2:])}")
        e = self.time_embedding(t)
        if emb is not None:
            e = e + emb
        h = self.run_skeleton(x, lambda block, h: self._apply_block(block, h, e))
        return self.out(h)


class ConditionalUNet3D(UNet3D):
    """``UNet3D`` + mask channel + conditioning-noise-level embedding.  See the module docstring."""

    def __init__(self, latent_channels: int = 4, max_noise_level: int = 250, num_given: int = 1,
                 **unet_kwargs: Any):
        """``num_given``: how many leading latents a prediction model is given (official ``n_prevs [1]``);
        the sampler gives it that many of the last latents of each clip.  Interpolation ignores it."""
        if not 1 <= num_given <= 3:
            raise ValueError("num_given must be 1, 2 or 3 of the 4 latents of a prediction clip, got "
                             f"{num_given}")
        super().__init__(in_channels=latent_channels + 1, out_channels=latent_channels, **unet_kwargs)
        self.latent_channels, self.max_noise_level, self.num_given = \
            latent_channels, max_noise_level, num_given
        self.noise_level_embed = nn.Embedding(max_noise_level + 1, 4 * self.model_channels)  # last row: null
        nn.init.zeros_(self.noise_level_embed.weight)

    @property
    def null_level(self) -> int:
        return self.max_noise_level

    @classmethod
    def from_short(cls, short: UNet3D, max_noise_level: int = 250, num_given: int = 1) -> ConditionalUNet3D:
        """Every weight of ``short``; the mask channel's input weights and the level embedding start at
        zero."""
        cfg = {k: v for k, v in short.config.items() if k not in ("in_channels", "out_channels")}
        model = cls(latent_channels=short.in_channels, max_noise_level=max_noise_level, num_given=num_given,
                    **cfg)
        state = short.state_dict()
        conv = "input_blocks.0.0.weight"
        weight = torch.zeros_like(model.state_dict()[conv])
        weight[:, : short.in_channels] = state[conv]
        state[conv] = weight
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"noise_level_embed.weight"}:
            raise ValueError(f"cannot initialise from this short model: missing {missing}, unexpected "
                             f"{unexpected}")
        return model

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None,
                noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C, T, h, w)`` (given latents already in place), ``mask (B, T)`` bool,
        ``noise_level (B,)``."""
        b, _, frames, h, w = x.shape
        mask = torch.zeros(b, frames, dtype=torch.bool, device=x.device) if mask is None else mask
        if mask.shape != (b, frames):
            raise ValueError(f"mask must be (B, T) = {(b, frames)}, got {tuple(mask.shape)}")
        if noise_level is None:
            noise_level = torch.full((b,), self.null_level, dtype=torch.long, device=x.device)
        m = mask[:, None, :, None, None].to(x.dtype).expand(b, 1, frames, h, w)
        return super().forward(torch.cat([x, m], dim=1), t, emb=self.noise_level_embed(noise_level.long()))


def mix_given(z_t: torch.Tensor, z_s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``z_t`` where ``mask (B, t)`` is 0, the given (perturbed) latents ``z_s`` where it is 1:
    ``(B, C, t, h, w)``."""
    m = mask[:, None, :, None, None].to(z_t.dtype)
    return z_t * (1 - m) + z_s * m
