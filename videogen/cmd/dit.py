"""CMD's diffusion transformers (Sec. 3.2 eq. 7-8, App. B.3 Tables 6-7), on the core DiT blocks.

* :class:`ContentDiT`: the content-frame model trained from scratch (class-conditional UCF-101,
  DiT-XL/2 in Table 7): ``x_bar_t (B, C, H, W)`` -> eps.
* :class:`MotionDiT`: the motion model ``eps(z_t, c, x_bar, t)``.  ``z_t (B, D, L, W'+H')`` is an image of
  ``D`` channels, patchified by ``patch_size``; the content frame gets a second patch embedding with its
  own (larger) ``content_patch_size``; each stream has its own fixed 2-D sin-cos positions on its true
  rectangular grid (``position_grid="square"``: the official code's square tables); the tokens are
  concatenated ``[motion ; content]`` and attend jointly through every block; only the motion tokens
  reach the final layer.

Both condition through adaLN-Zero on ``c = t_emb + e`` with ``e`` a class embedding (null row for CFG)
or a learned linear projection of a pooled text feature (CMD's OpenCLIP ViT-H text path); a dropped /
missing text is the zero feature.  Both predict eps only (DiT's learned variance is not used: DDIM with
eta 0 never needs it).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videogen.core.nn import DiTBlock, DiTFinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, unpatchify
from videogen.core.nn.embeddings import get_2d_sincos_pos_embed
from videogen.core.persistence import SavableModule

__all__ = ["ContentDiT", "MotionDiT"]

POSITION_GRIDS = ("true", "square")


def _positions(hidden: int, grid: tuple[int, int], layout: str = "true") -> torch.Tensor:
    """Fixed 2-D sin-cos table ``(1, h*w, D)`` for the tokens of a row-major ``h x w`` grid.

    ``layout="square"`` is the official CMD code's table: the ``N = h*w`` tokens laid on an ``s x s`` grid
    with ``s = int(sqrt(N))`` (right count, wrong positions unless ``h == w``); it exists only when ``N`` is
    a perfect square (otherwise the official code fails to build the model too)."""
    if layout == "square":
        n = grid[0] * grid[1]
        s = int(n ** 0.5)
        if s * s != n:
            raise ValueError(f"position_grid='square' (the official layout) needs a square token count, got "
                             f"{grid[0]}x{grid[1]} = {n} tokens; use position_grid='true'")
        grid = (s, s)
    return torch.from_numpy(get_2d_sincos_pos_embed(hidden, grid)).float().unsqueeze(0)  # (1, h*w, D)


class _ConditionedDiT(SavableModule, nn.Module):
    """Shared part: timestep + (class | text) conditioning, the DiT blocks, save/load."""

    def __init__(self, hidden_size: int, depth: int, num_heads: int, mlp_ratio: float,
                 num_classes: int | None, text_dim: int | None, use_checkpoint: bool):
        super().__init__()
        if num_classes is not None and text_dim is not None:
            raise ValueError("give num_classes (class-conditional) or text_dim (text-conditional), not both")
        self.num_classes, self.text_dim, self.use_checkpoint = num_classes, text_dim, use_checkpoint
        self.t_embedder = TimestepEmbedder(hidden_size)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)  # DiT's initialisation
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # dropout 0 inside the embedder: the training module drops labels (and texts) itself
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, 0.0) if num_classes is not None else None
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        self.text_proj = nn.Linear(text_dim, hidden_size) if text_dim is not None else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))

    @property
    def null_label(self) -> int | None:
        return None if self.y_embedder is None else self.y_embedder.null_class

    def condition(self, t: torch.Tensor, label: torch.Tensor | None,
                  text: torch.Tensor | None) -> torch.Tensor:
        """``c = t_emb + e`` ``(B, hidden)``; a missing label is the null class, a missing text the zero
        feature."""
        c = self.t_embedder(t)
        b = c.shape[0]
        if self.y_embedder is not None:
            if label is None:
                label = torch.full((b,), self.y_embedder.null_class, dtype=torch.long, device=c.device)
            c = c + self.y_embedder(label.long(), train=False)
        elif label is not None:
            raise ValueError("label given, but this model is not class-conditional (num_classes=None)")
        if self.text_proj is not None:
            if text is None:
                text = c.new_zeros(b, self.text_dim)
            if text.shape != (b, self.text_dim):
                raise ValueError(f"text must be pooled features (B, {self.text_dim}), got "
                                 f"{tuple(text.shape)}")
            c = c + self.text_proj(text.to(c.dtype))
        elif text is not None:
            raise ValueError("text given, but this model is not text-conditional (text_dim=None)")
        return c

    def _blocks(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, c,
                           use_reentrant=False) if self.use_checkpoint and x.requires_grad else block(x, c)
        return x


class ContentDiT(_ConditionedDiT):
    """DiT on content frames ``(B, C, H, W)`` (rectangular frames allowed)."""

    def __init__(self, in_channels: int = 3, height: int = 64, width: int = 64, patch_size: int = 2,
                 hidden_size: int = 1152, depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0,
                 num_classes: int | None = 101, text_dim: int | None = None,
                 use_checkpoint: bool = False):
        super().__init__(hidden_size, depth, num_heads, mlp_ratio, num_classes, text_dim,
                         use_checkpoint)
        if height % patch_size or width % patch_size:
            raise ValueError(f"content frame {height}x{width} must be divisible by patch_size {patch_size}")
        self.in_channels, self.patch_size = in_channels, patch_size
        self.grid = (height // patch_size, width // patch_size)
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.register_buffer("pos_embed", _positions(hidden_size, self.grid), persistent=False)
        self.final_layer = DiTFinalLayer(hidden_size, patch_size, in_channels)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.grid[0] * self.patch_size, self.grid[1] * self.patch_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t (B, C, H, W)``, ``t (B,)`` -> eps ``(B, C, H, W)``."""
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"x must be (B, {', '.join(map(str, self.sample_shape))}), got {tuple(x.shape)}")
        h = self.x_embedder(x) + self.pos_embed.to(x)  # (B, N, D)
        c = self.condition(t, label, text)
        h = self.final_layer(self._blocks(h, c), c)  # (B, N, p*p*C)
        return unpatchify(h, self.patch_size, self.in_channels, self.grid)


class MotionDiT(_ConditionedDiT):
    """DiT on motion latents ``(B, D, L, W'+H')`` given the content frame ``(B, C, H, W)``.

    Args:
        motion_channels, num_frames, motion_width: ``D``, ``L`` and ``W' + H'`` of the motion latent.
        content_channels, content_height, content_width: the content frame's ``C, H, W`` (pixels or SD
        latent).
        patch_size: motion patch (2); content_patch_size: the content frame's patch (Table 6: 4; 8 at
        512x1024).
        hidden_size, depth, num_heads, mlp_ratio: DiT size (UCF: L/2 = 1024, 24, 16; WebVid: XL/2).
        num_classes / text_dim: class or text conditioning (neither: only the content frame and t).
        position_grid: ``"true"`` (default): each stream's sin-cos table on its true ``h x w`` token grid.
            ``"square"``: the official code's tables, which lay the ``N`` tokens of each stream on an
            ``int(sqrt(N))`` square (for UCF's 8 x 32 motion grid a 16 x 16 one: the right count, wrong
            positions); only for converted official checkpoints (``videogen.cmd.convert``).
    """

    def __init__(self, motion_channels: int = 8, num_frames: int = 16, motion_width: int = 64,
                 content_channels: int = 3, content_height: int = 64, content_width: int = 64,
                 patch_size: int = 2, content_patch_size: int = 4, hidden_size: int = 1024, depth: int = 24,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_classes: int | None = None,
                 text_dim: int | None = None, use_checkpoint: bool = False, position_grid: str = "true"):
        super().__init__(hidden_size, depth, num_heads, mlp_ratio, num_classes, text_dim,
                         use_checkpoint)
        if position_grid not in POSITION_GRIDS:
            raise ValueError(f"position_grid must be one of {POSITION_GRIDS}, got {position_grid!r}")
        if num_frames % patch_size or motion_width % patch_size:
            raise ValueError(f"motion latent {num_frames}x{motion_width} must be divisible by patch_size "
                             f"{patch_size}")
        if content_height % content_patch_size or content_width % content_patch_size:
            raise ValueError(f"content frame {content_height}x{content_width} must be divisible by "
                             f"content_patch_size {content_patch_size}")
        self.motion_channels, self.patch_size = motion_channels, patch_size
        self.motion_shape = (motion_channels, num_frames, motion_width)
        self.content_shape = (content_channels, content_height, content_width)
        self.grid = (num_frames // patch_size, motion_width // patch_size)
        self.content_grid = (content_height // content_patch_size, content_width // content_patch_size)
        self.x_embedder = PatchEmbed(patch_size, motion_channels, hidden_size)
        self.content_embedder = PatchEmbed(content_patch_size, content_channels, hidden_size)
        self.position_grid = position_grid
        self.register_buffer("pos_embed", _positions(hidden_size, self.grid, position_grid), persistent=False)
        self.register_buffer("content_pos_embed", _positions(hidden_size, self.content_grid, position_grid),
                             persistent=False)
        self.final_layer = DiTFinalLayer(hidden_size, patch_size, motion_channels)

    @property
    def num_tokens(self) -> tuple[int, int]:
        """(motion tokens, content tokens)."""
        return self.grid[0] * self.grid[1], self.content_grid[0] * self.content_grid[1]

    def forward(self, z: torch.Tensor, t: torch.Tensor, content: torch.Tensor,
                label: torch.Tensor | None = None, text: torch.Tensor | None = None) -> torch.Tensor:
        """``z_t (B, D, L, W'+H')``, ``t (B,)``, ``content (B, C, H, W)`` -> eps like ``z_t``."""
        if tuple(z.shape[1:]) != self.motion_shape:
            raise ValueError(f"z must be (B, {', '.join(map(str, self.motion_shape))}), got {tuple(z.shape)}")
        if tuple(content.shape[1:]) != self.content_shape or content.shape[0] != z.shape[0]:
            raise ValueError(f"content must be (B, {', '.join(map(str, self.content_shape))}) with z's "
                             f"batch, got {tuple(content.shape)}")
        motion = self.x_embedder(z) + self.pos_embed.to(z)  # (B, N_m, D)
        frame = self.content_embedder(content.to(z.dtype)) + self.content_pos_embed.to(z)  # (B, N_c, D)
        c = self.condition(t, label, text)
        h = self._blocks(torch.cat([motion, frame], dim=1), c)  # joint attention over [motion ; content]
        h = self.final_layer(h[:, : motion.shape[1]], c)  # motion tokens only -> (B, N_m, p*p*D)
        return unpatchify(h, self.patch_size, self.motion_channels, self.grid)
