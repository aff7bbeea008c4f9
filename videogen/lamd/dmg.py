"""DMG: the diffusion-based motion generator of LaMD (Sec. 3.2, Table 2).

``MotionGenerator`` is the noise predictor ``eps_theta(z_m^t, t, y)`` of Eq. 5-6: an LDM-style 2D UNet
(``videogen.core.nn.UNet2D``) on the motion latent ``z_m (B, d, h, w)`` that takes the conditions ``y``
through cross-attention (Sec. 3.2: "a 2D-UNet backbone ... with the cross-attention mechanism to
incorporate conditions"). The context tokens are built as follows:

* content ``f_x0 (B, d', h, w)`` -> ``h*w`` tokens -> linear to the token width, plus fixed 2D sin-cos
  positions (cross-attention is blind to key order, so without them the UNet could not tell where each
  content token lies);
* optional class label -> one token from an embedding table with a null row (index ``num_classes``);
* optional text -> the frozen text encoder's per-token features -> linear to the token width
  (Sec. 4.3.3: text embeddings are concatenated with the content features);
* with ``cond_transformer_dim`` set, all tokens go jointly through a small pre-LN transformer (the
  "conditioning transformer" of Table 2) and a final LayerNorm (+ linear to ``context_dim`` if widths
  differ). Without it the projected content tokens are the context directly (BAIR, Landscape).

Null conditions for classifier-free guidance: the null label row, and "no text" = text tokens fully
masked out (``text_mask`` all False), which makes them invisible to the conditioning transformer and to
the UNet's cross-attention, i.e. the same as passing no text at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from videogen.core.nn import get_2d_sincos_pos_embed
from videogen.core.nn.unet2d import UNet2D
from videogen.core.persistence import SavableModule

if TYPE_CHECKING:
    from videogen.core.text import TextEncoder

    from .mcdvae import MCDVAE

__all__ = ["MotionGenerator", "check_stages"]


class MotionGenerator(SavableModule, nn.Module):
    """eps-prediction network on ``z_m`` conditioned on content (+ label or text) by cross-attention.

    Args:
        z_channels: ``d`` of ``z_m``.
        latent_size: ``h = w`` of ``z_m`` (and of ``f_x0``).
        content_dim: ``d'`` of ``f_x0`` (``MCDVAE.content_dim``).
        model_channels, channel_mult, num_res_blocks, attention_resolutions, num_head_channels, dropout:
            UNet2D widths (Table 2: 192, (1,2,4), 2, (1,2,4), dropout 0.2).
        context_dim: width of the cross-attention context ("conditioning embedding dimension", 512).
        cond_transformer_dim: width of the conditioning transformer (512 for NATOPS/MUG/CATER) or None.
        cond_transformer_depth, cond_transformer_heads: its depth and heads (the paper gives neither:
            depth chosen so the parameter count matches Table 2, see docs/lamd.md).
        num_classes: number of class labels (class-guided I2V) or None.
        text_dim: width of the text encoder's tokens (text-image-to-video) or None.
        use_checkpoint: gradient checkpointing in the UNet's attention blocks.
    """

    def __init__(self, z_channels: int = 3, latent_size: int = 32, content_dim: int = 512,
                 model_channels: int = 192, channel_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2,
                 attention_resolutions: Sequence[int] = (1, 2, 4), num_head_channels: int = 32,
                 context_dim: int = 512, cond_transformer_dim: int | None = None,
                 cond_transformer_depth: int = 4, cond_transformer_heads: int = 8,
                 num_classes: int | None = None, text_dim: int | None = None, dropout: float = 0.2,
                 use_checkpoint: bool = False) -> None:
        super().__init__()
        if num_classes is not None and text_dim is not None:
            raise ValueError("give num_classes (class-guided) or text_dim (text-guided), not both")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.z_channels, self.latent_size, self.content_dim = z_channels, latent_size, content_dim
        self.num_classes, self.text_dim = num_classes, text_dim
        token_dim = cond_transformer_dim or context_dim
        self.content_proj = nn.Linear(content_dim, token_dim)
        pos = torch.tensor(get_2d_sincos_pos_embed(token_dim, latent_size), dtype=torch.float32)
        self.register_buffer("content_pos", pos[None], persistent=False)  # (1, h*w, token_dim)
        self.label_embedding = nn.Embedding(num_classes + 1, token_dim) if num_classes is not None else None
        self.text_proj = nn.Linear(text_dim, token_dim) if text_dim is not None else None
        if cond_transformer_dim is not None:
            layer = nn.TransformerEncoderLayer(
                cond_transformer_dim, cond_transformer_heads, 4 * cond_transformer_dim, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True)
            self.cond_transformer = nn.TransformerEncoder(layer, cond_transformer_depth,
                                                          enable_nested_tensor=False)
            self.cond_norm = nn.LayerNorm(cond_transformer_dim)
            self.context_out = nn.Linear(token_dim,
                                         context_dim) if token_dim != context_dim else nn.Identity()
        else:
            self.cond_transformer = None
        self.unet = UNet2D(
            in_channels=z_channels, out_channels=z_channels, model_channels=model_channels,
            channel_mult=tuple(channel_mult), num_res_blocks=num_res_blocks,
            attention_resolutions=tuple(attention_resolutions), num_head_channels=num_head_channels,
            context_dim=context_dim, dropout=dropout, use_checkpoint=use_checkpoint,
        )

    @property
    def null_label(self) -> int:
        """Label index of the unconditional branch of classifier-free guidance."""
        if self.num_classes is None:
            raise ValueError("this MotionGenerator has no class labels")
        return self.num_classes

    # ---- input checks ---------------------------------------------------------------------------
    def validate_inputs(self, z_t: torch.Tensor, content: torch.Tensor, label: torch.Tensor | None = None,
                        text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the constraint when a shape, label or modality does not fit."""
        s, b = self.latent_size, z_t.shape[0]
        if z_t.ndim != 4 or tuple(z_t.shape[1:]) != (self.z_channels, s, s):
            raise ValueError(f"z_t must be (B, d, h, w) = (B, {self.z_channels}, {s}, {s}), got "
                             f"{tuple(z_t.shape)}")
        if content.ndim != 4 or tuple(content.shape) != (b, self.content_dim, s, s):
            raise ValueError(f"content f_x0 must be (B, d', h, w) = ({b}, {self.content_dim}, {s}, {s}), "
                             f"got {tuple(content.shape)}")
        if label is not None:
            if self.num_classes is None:
                raise ValueError("label given, but this MotionGenerator was built without num_classes")
            if label.shape != (b,):
                raise ValueError(f"label must have shape (B,) = ({b},), got {tuple(label.shape)}")
            if label.numel() and (int(label.min()) < 0 or int(label.max()) > self.num_classes):
                raise ValueError(f"label must lie in [0, {self.num_classes - 1}] (or {self.num_classes} = "
                                 f"null), got [{int(label.min())}, {int(label.max())}]")
        if text is not None:
            if self.text_dim is None:
                raise ValueError("text given, but this MotionGenerator was built without text_dim")
            if text.ndim != 3 or text.shape[0] != b or text.shape[2] != self.text_dim:
                raise ValueError(f"text must be (B, L, text_dim) = ({b}, L, {self.text_dim}), got "
                                 f"{tuple(text.shape)}")
            if text_mask is not None and tuple(text_mask.shape) != tuple(text.shape[:2]):
                raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got "
                                 f"{tuple(text_mask.shape)}")
        elif text_mask is not None:
            raise ValueError("text_mask given without text")

    # ---- conditioning ---------------------------------------------------------------------------
    def encode_condition(self, content: torch.Tensor, label: torch.Tensor | None = None,
                         text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Build the cross-attention context ``(B, M, context_dim)`` and its key mask ``(B, M)`` (or None).

        ``M = h*w`` content tokens (+ 1 label token | + L text tokens). ``label=None`` on a class model
        means the null label.
        """
        b = content.shape[0]
        tokens = self.content_proj(content.flatten(2).transpose(1, 2))  # (B, d', h, w) -> (B, h*w, D)
        tokens = tokens + self.content_pos.to(tokens.dtype)
        parts, masks = [tokens], [torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)]
        if self.label_embedding is not None:
            if label is None:
                label = torch.full((b,), self.num_classes, dtype=torch.long, device=content.device)
            parts.append(self.label_embedding(label)[:, None])  # (B, 1, D)
            masks.append(masks[0][:, :1])
        if self.text_proj is not None and text is not None:
            parts.append(self.text_proj(text.to(tokens.dtype)))  # (B, L, text_dim) -> (B, L, D)
            masks.append(torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
                         if text_mask is None else text_mask.to(torch.bool))
        context, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)  # (B, M, D), (B, M)
        if self.cond_transformer is not None:
            context = self.cond_transformer(context, src_key_padding_mask=~mask)
            context = self.context_out(self.cond_norm(context))
        # an all-True key mask is dropped (SDPA's fast path); on the meta device (FLOP counting) it is kept
        return context, (None if mask.device.type != "meta" and bool(mask.all()) else mask)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, content: torch.Tensor | None = None,
                label: torch.Tensor | None = None, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``z_t (B, d, h, w)``, ``t (B,)``, ``content = f_x0 (B, d', h, w)`` -> predicted noise
        ``(B, d, h, w)``.

        The condition does not depend on ``t``: a sampler may build it once with ``encode_condition`` and
        pass ``context`` (``(B, M, context_dim)``) and ``context_mask`` instead of content/label/text.
        """
        if context is None:
            if content is None:
                raise ValueError("MotionGenerator needs `content` (f_x0) or a precomputed `context`")
            self.validate_inputs(z_t, content, label, text, text_mask)
            context, context_mask = self.encode_condition(content, label, text, text_mask)
        elif content is not None or label is not None or text is not None:
            raise ValueError("give either content/label/text or a precomputed context, not both")
        elif context.shape[0] != z_t.shape[0] or context.ndim != 3:
            raise ValueError(f"context must be (B, M, D) with B = {z_t.shape[0]}, got {tuple(context.shape)}")
        return self.unet(z_t, t, context=context, context_mask=context_mask)


def check_stages(mcdvae: MCDVAE, dmg: MotionGenerator, text_encoder: TextEncoder | None) -> None:
    """Raise ``ValueError`` unless the DMG was built for this MCD-VAE's latents (and text encoder)."""
    if tuple(mcdvae.latent_shape) != (dmg.z_channels, dmg.latent_size, dmg.latent_size):
        raise ValueError(f"MCDVAE latent shape {tuple(mcdvae.latent_shape)} != DMG's "
                         f"{(dmg.z_channels, dmg.latent_size, dmg.latent_size)}")
    if mcdvae.content_dim != dmg.content_dim:
        raise ValueError(f"MCDVAE content_dim {mcdvae.content_dim} != DMG content_dim {dmg.content_dim}")
    width = None if text_encoder is None else text_encoder.dim
    if width != dmg.text_dim:
        raise ValueError(f"DMG text_dim={dmg.text_dim} needs a text encoder of that width, got {width}")
