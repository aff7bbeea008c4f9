"""The CMD autoencoder (Yu et al., ICLR 2024, Sec. 3.2 eq. 3-6): a video as one content frame + motion.

``x (B, C, L, H, W)`` -> patch embedding (``Linear(C p^2, C')`` per ``p x p`` patch) -> TimeSformer
encoder ``f_B`` (per block: temporal attention over the L frames at each position, spatial attention over
the ``H' x W'`` patches of each frame, GEGLU feed-forward; pre-LN, residual) -> tokens ``u (B, L, H'W', C')``.

* Content head ``f_I`` (eq. 3): per-frame ``ConvTranspose2d(C', C, p, p)`` logits ``(B, L, C, H, W)``,
  softmax over L, **content frame** ``x_bar = sum_l w_l * x_l``: a per-pixel, per-channel convex
  combination of the frames (in pixel mode it stays in [-1, 1]).
* Motion head ``f_M`` (eq. 4): ``u`` as ``(B, C', L, H', W')``; the mean over H' -> 1x1 conv -> ``(D, L, W')``
  and the mean over W' -> another 1x1 conv -> ``(D, L, H')``; ``tanh``; concatenated along the last axis:
  **motion latent** ``z (B, D, L, W' + H')`` (``z[..., :W']`` is indexed by w, ``z[..., W':]`` by h).
* Decoder (eq. 5-6): ``g_I`` patch-embeds ``x_bar``; ``g_M`` maps the two motion parts back to C' with
  1x1 convs; eq. 6 is the broadcast sum ``v_{l,h,w} = v_bar_{h,w} + v^h_{l,h} + v^w_{l,w}``; a second
  TimeSformer ``g_B``; a per-frame ``ConvTranspose2d(C', C, p, p)``; pixel mode ``2 sigmoid - 1``,
  latent mode linear.

Positions are applied (the official code builds rotary embeddings and never uses them): rotary
embeddings on the head dimension, 1-D over frames in temporal attention and axial 2-D (half the head
dimension for the row, half for the column) in spatial attention, as PVDM does.  ``rotary=False`` is the
official behaviour (no positions at all: the encoder is blind to frame order), kept to run converted
official checkpoints as they were trained (``videogen.cmd.convert``).  The rotations add no parameters,
so the official configuration (C' 384, depth 8, 8 heads of 48, D 8, p 2) has 47,359,510 parameters in
pixel mode (RGB) and 47,365,656 in Stable-Diffusion-latent mode (4 channels), as the official modules.
Non-square grids (e.g. 32 x 64 latents of 512 x 1024 videos) work.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from videogen.core.nn import FeedForward
from videogen.core.persistence import SavableModule

__all__ = ["CMDAutoencoder", "TimeSformerBlock", "rotary"]



def _rotary_angles(positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` positions -> ``cos, sin`` of shape ``(N, dim / 2)`` (RoFormer frequencies, base 10000)."""
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None] * freqs[None]
    return angles.cos(), angles.sin()


def rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (..., N, d)`` by ``positions (N,)``: pairs ``(x_i, x_{i+d/2})`` turn by ``pos * f_i``."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary embeddings need an even dimension, got {d}")
    cos, sin = _rotary_angles(positions, d)
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


@functools.lru_cache(maxsize=64)
def _rotary_phases(axes: tuple[int, ...], head_dim: int, device: torch.device) -> torch.Tensor:
    """``e^{i angle}`` of every rotation pair, complex ``(N, 1, 1, d / 2)``, computed once per token layout.

    ``axes = (n,)``: one group (the whole head dimension) turned by the 1-D position; ``(h, w)``: two groups
    (each half of the head dimension) turned by the row and by the column of a row-major ``h x w`` grid.
    Pair ``j`` of group ``g`` is ``(x_i, x_{i + m})`` with ``i = g * 2m + j`` (``m = d / 2G``), as in
    :func:`rotary`.  Built outside inference mode, so that tables first made while sampling also serve
    training."""
    with torch.inference_mode(False), torch.no_grad():
        if len(axes) == 1:
            positions = [torch.arange(axes[0], device=device)]
        else:
            h, w = axes
            positions = [torch.arange(h, device=device).repeat_interleave(w),  # row-major grid: rows
                         torch.arange(w, device=device).repeat(h)]  # and columns
        phases = [torch.complex(*_rotary_angles(p, head_dim // len(axes))) for p in positions]  # (N, m) each
        return torch.cat(phases, dim=-1)[:, None, None].contiguous()  # (N, 1, 1, G * m)


@functools.lru_cache(maxsize=64)
def _pair_order(width: int, heads: int, head_dim: int, groups: int, device: torch.device) -> torch.Tensor:
    """Rows of the q and k projections ``(2C,)`` reordered so that each rotation pair ``(x_i, x_{i + m})``
    of :func:`rotary` is adjacent: the projection then yields ``(re, im)`` pairs and the rotation is one
    complex multiply.  q and k are permuted alike inside each head, which leaves every ``q . k`` (and so
    the attention) unchanged.  Built outside inference mode, like the phases: an index first made during a
    validation pass (Lightning's sanity check) must still be saved for a training step's backward."""
    with torch.inference_mode(False):
        rows = torch.arange(2 * width, device=device).view(2, heads, groups, 2, head_dim // (2 * groups))
        return rows.transpose(-1, -2).reshape(-1)


class _RotaryAttention(nn.Module):
    """Multi-head self-attention (timm layout: one ``qkv`` Linear with bias, ``proj``) with rotary positions.

    ``axes``: ``(n,)`` rotates the whole head dimension by a 1-D position; ``(h, w)`` rotates the first half
    by the row and the second half by the column of a row-major ``h x w`` grid.

    With positions, q and k come from their rows of ``qkv`` with each rotation pair adjacent
    (:func:`_pair_order`) and turn by one complex multiply with cached phases; v comes from its own rows.
    The rotated q, k and v are all the attention keeps for backward, as without positions: a training step
    costs 1.02-1.03x the time and 1.00-1.01x the memory of ``rotary=False`` (bench ``cmd_rotary_cost``).
    """

    def __init__(self, dim: int, heads: int, rotary: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim, self.use_rotary = heads, dim // heads, rotary
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        b, n, c = x.shape  # (B', N, C')
        if self.use_rotary:
            q, k, v = self._rotated_qkv(x, tuple(axes))
        else:
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B', h, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def _rotated_qkv(self, x: torch.Tensor, axes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """q, k (rotated, head dimension in pair order) and v, each ``(B', h, N, d)``."""
        b, n, c = x.shape
        weight, bias = self.qkv.weight, self.qkv.bias
        order = _pair_order(c, self.heads, self.head_dim, len(axes), x.device)
        qk = F.linear(x, weight[order], bias[order]).view(b, n, 2, self.heads, self.head_dim // 2, 2)
        turned = torch.view_as_complex(qk.float()) * _rotary_phases(axes, self.head_dim, x.device)
        q, k = torch.view_as_real(turned).flatten(-2).to(qk.dtype).permute(2, 0, 3, 1, 4)
        v = F.linear(x, weight[2 * c:], bias[2 * c:]).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        return q, k, v


class TimeSformerBlock(nn.Module):
    """Divided space-time block: ``x += T-attn(LN x); x += S-attn(LN x); x += GEGLU-FF(LN x)``
    (``rotary=False``: attention without positions, the official code's behaviour)."""

    def __init__(self, dim: int, heads: int, rotary: bool = True):
        super().__init__()
        self.norm_t, self.attn_t = nn.LayerNorm(dim), _RotaryAttention(dim, heads, rotary)
        self.norm_s, self.attn_s = nn.LayerNorm(dim), _RotaryAttention(dim, heads, rotary)
        self.norm_ff, self.ff = nn.LayerNorm(dim), FeedForward(dim, mult=4)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``x (B, L, N = H'W', C')`` -> same shape."""
        b, L, n, c = x.shape
        xt = x.transpose(1, 2).reshape(b * n, L, c)  # attend over time at each position
        xt = xt + self.attn_t(self.norm_t(xt), (L,))
        x = xt.view(b, n, L, c).transpose(1, 2)
        xs = x.reshape(b * L, n, c)  # attend over the patches of each frame
        xs = xs + self.attn_s(self.norm_s(xs), grid)
        xs = xs + self.ff(self.norm_ff(xs))
        return xs.view(b, L, n, c)


class CMDAutoencoder(SavableModule, nn.Module):
    """Content-frame / motion-latent autoencoder.  See the module docstring.

    Args:
        in_channels: C (3 for pixel videos, 4 for Stable-Diffusion latents).
        num_frames: L (16 in every CMD experiment).
        height, width: input frame size H x W (pixels, or latent size in latent mode); divisible by
            ``patch_size``, and ``H / p``, ``W / p`` even (the motion DiT patchifies ``z`` by 2).
        patch_size: p.
        hidden_size: C' (384).
        depth: TimeSformer blocks of the encoder and (as many) of the decoder (official code 8; Table 5: 12).
        heads: attention heads (8: head width 48).
        motion_channels: D (8).
        mode: ``"pixel"`` (``2 sigmoid - 1`` output) or ``"latent"`` (linear output).
        uniform_content: the Table 4b ablation "without weighted sum": ``x_bar`` is the plain frame mean.
        use_checkpoint: gradient checkpointing of the TimeSformer blocks.
        rotary: rotary positions in every attention (default).  ``False`` reproduces the official code,
            which builds rotary embeddings but never applies them (NVlabs/CMD#3): no positions, so the
            encoder cannot tell the frames' order; only for converted official checkpoints.
    """

    def __init__(self, in_channels: int = 3, num_frames: int = 16, height: int = 64, width: int = 64,
                 patch_size: int = 2, hidden_size: int = 384, depth: int = 8, heads: int = 8,
                 motion_channels: int = 8, mode: str = "pixel", uniform_content: bool = False,
                 use_checkpoint: bool = False, rotary: bool = True):
        super().__init__()
        if mode not in ("pixel", "latent"):
            raise ValueError(f"mode must be 'pixel' or 'latent', got {mode!r}")
        p = patch_size
        if height % p or width % p or (height // p) % 2 or (width // p) % 2:
            raise ValueError(f"height {height} and width {width} must be divisible by patch_size {p}, with "
                             f"even H/p and W/p (the motion latent is patchified by 2)")
        if rotary and (hidden_size // heads) % 4:
            raise ValueError(f"head width hidden_size / heads = {hidden_size / heads} must be divisible by 4 "
                             "(axial rotary positions)")
        self.in_channels, self.num_frames, self.height, self.width = in_channels, num_frames, height, width
        self.patch_size, self.mode, self.uniform_content = p, mode, uniform_content
        self.grid = (height // p, width // p)  # (H', W')
        self.motion_channels, self.use_checkpoint, self.rotary = motion_channels, use_checkpoint, rotary
        self.patch_embed = nn.Linear(in_channels * p * p, hidden_size)  # encoder pre-layer
        self.encoder = nn.ModuleList(TimeSformerBlock(hidden_size, heads, rotary) for _ in range(depth))
        self.to_logit = nn.ConvTranspose2d(hidden_size, in_channels, p, stride=p)  # f_I
        self.pre_xt = nn.Conv2d(hidden_size, motion_channels, 1)  # f_M, W'-part (mean over H')
        self.pre_yt = nn.Conv2d(hidden_size, motion_channels, 1)  # f_M, H'-part (mean over W')
        self.content_embed = nn.Linear(in_channels * p * p, hidden_size)  # g_I
        self.post_xt = nn.Conv2d(motion_channels, hidden_size, 1)  # g_M
        self.post_yt = nn.Conv2d(motion_channels, hidden_size, 1)
        self.decoder = nn.ModuleList(TimeSformerBlock(hidden_size, heads, rotary) for _ in range(depth))
        self.to_out = nn.ConvTranspose2d(hidden_size, in_channels, p, stride=p)  # per-frame post-layer

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def content_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the content frame."""
        return (self.in_channels, self.height, self.width)

    @property
    def motion_shape(self) -> tuple[int, int, int]:
        """``(D, L, W' + H')`` of the motion latent."""
        return (self.motion_channels, self.num_frames, self.grid[1] + self.grid[0])

    def validate_video(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.num_frames, self.height, self.width)
        if not torch.is_tensor(x) or x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"video must be (B, C, L, H, W) = (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(getattr(x, 'shape', ()))}")
        if self.mode == "pixel" and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
            raise ValueError(f"pixel videos must lie in [-1, 1], got [{float(x.min()):.3f}, "
                             f"{float(x.max()):.3f}]")

    # ---- pieces ---------------------------------------------------------------------------------
    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B', C, H, W)`` -> ``(B', H'W', p*p*C)`` in (p1 p2 c) order."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B', H', W', p1, p2, C)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def _tokens_to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B', H'W', C')`` -> ``(B', C', H', W')``."""
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, *self.grid)

    def _run(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint(block, x, self.grid, use_reentrant=False)
            else:
                x = block(x, self.grid)
        return x

    # ---- encode / decode ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, L, H, W)`` -> ``(content_frame (B, C, H, W), motion_latent (B, D, L, W' + H'))``."""
        self.validate_video(x)
        b, c, L, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * L, c, h, w)  # (B*L, C, H, W)
        u = self.patch_embed(self._patchify(frames)).view(b, L, -1, self.patch_embed.out_features)
        u = self._run(self.encoder, u)  # (B, L, H'W', C')
        return self._content_frame(x, u), self._motion(u)

    def _content_frame(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        b, c, L, h, w = x.shape
        if self.uniform_content:
            return x.mean(dim=2)
        logits = self.to_logit(self._tokens_to_map(u.reshape(b * L, *u.shape[2:])))  # (B*L, C, H, W)
        weights = logits.view(b, L, c, h, w).float().softmax(dim=1)  # over time, per pixel and channel
        return (x.transpose(1, 2).float() * weights).sum(dim=1).to(x.dtype)  # (B, C, H, W)

    def _motion(self, u: torch.Tensor) -> torch.Tensor:
        b, L, n, c = u.shape
        grid = u.permute(0, 3, 1, 2).reshape(b, c, L, *self.grid)  # (B, C', L, H', W')
        along_w = self.pre_xt(grid.mean(dim=3))  # mean over H' -> (B, C', L, W') -> (B, D, L, W')
        along_h = self.pre_yt(grid.mean(dim=4))  # mean over W' -> (B, D, L, H')
        return torch.tanh(torch.cat([along_w, along_h], dim=-1))  # (B, D, L, W' + H')

    def decode(self, content_frame: torch.Tensor, motion_latent: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` + ``(B, D, L, W' + H')`` -> video ``(B, C, L, H, W)``."""
        if tuple(content_frame.shape[1:]) != self.content_shape:
            raise ValueError(f"content_frame must be (B, {', '.join(map(str, self.content_shape))}), "
                             f"got {tuple(content_frame.shape)}")
        if tuple(motion_latent.shape[1:]) != self.motion_shape \
                or motion_latent.shape[0] != content_frame.shape[0]:
            raise ValueError(f"motion_latent must be (B, {', '.join(map(str, self.motion_shape))}) with the "
                             f"content frame's batch, got {tuple(motion_latent.shape)}")
        hp, wp = self.grid
        b, L = content_frame.shape[0], self.num_frames
        v_bar = self.content_embed(self._patchify(content_frame))  # (B, H'W', C')
        along_w = self.post_xt(motion_latent[..., :wp])  # (B, C', L, W')
        along_h = self.post_yt(motion_latent[..., wp:])  # (B, C', L, H')
        # eq. 6: v_{l,h,w} = v_bar_{h,w} + v^h_{l,h} + v^w_{l,w}  -> (B, L, H', W', C')
        v = (v_bar.view(b, 1, hp, wp, -1) + along_h.permute(0, 2, 3, 1)[:, :, :, None]
             + along_w.permute(0, 2, 3, 1)[:, :, None])
        v = self._run(self.decoder, v.reshape(b, L, hp * wp, -1))  # (B, L, H'W', C')
        out = self.to_out(self._tokens_to_map(v.reshape(b * L, hp * wp, -1)))  # (B*L, C, H, W)
        if self.mode == "pixel":
            out = 2 * torch.sigmoid(out) - 1
        return out.view(b, L, *self.content_shape).transpose(1, 2)  # (B, C, L, H, W)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(reconstruction, content_frame, motion_latent)``."""
        content, motion = self.encode(x)
        return self.decode(content, motion), content, motion
