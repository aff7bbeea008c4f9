"""Tiny stage-1/stage-2 LaMD models shared by the DMG, DMGModule and pipeline tests (CPU, milliseconds)."""

from __future__ import annotations

import torch

from videogen.lamd.dmg import MotionGenerator
from videogen.lamd.mcdvae import MCDVAE

RES, FRAMES, LATENT = 16, 4, 4  # 4 x 16 x 16 clips, r_s = 4 -> z_m (3, 4, 4)


def tiny_mcdvae(seed: int = 0) -> MCDVAE:
    torch.manual_seed(seed)
    return MCDVAE(resolution=RES, num_frames=FRAMES, image_channels=8, motion_channels=8, decoder_channels=8,
                  channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=FRAMES, norm_groups=4).eval()


def tiny_dmg(seed: int = 0, **kw) -> MotionGenerator:
    """content_dim 32 = tiny_mcdvae().content_dim; cond transformer only when a label/text is used."""
    torch.manual_seed(seed)
    cfg = dict(z_channels=3, latent_size=LATENT, content_dim=32, model_channels=16, channel_mult=(1, 2),
               num_res_blocks=1, attention_resolutions=(1, 2), num_head_channels=8, context_dim=16,
               dropout=0.0)
    if kw.get("num_classes") is not None or kw.get("text_dim") is not None:
        cfg.update(cond_transformer_dim=16, cond_transformer_depth=1, cond_transformer_heads=2)
    return MotionGenerator(**{**cfg, **kw})


@torch.no_grad()
def randomize(module: torch.nn.Module, std: float = 0.1, seed: int = 1) -> torch.nn.Module:
    """Redraw the all-zero parameters: zero-initialised output layers would otherwise make an untrained
    network ignore its inputs (constant output), hiding whether conditions reach it."""
    gen = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


def tiny_clip_dir(path):
    """A tiny CLIPTextModel (width 16) + a CLIPTokenizer over a 54-token character vocabulary, saved to
    ``path``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": 52, "<|endoftext|>": 53})
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=54, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=24, bos_token_id=52,
                            eos_token_id=53, pad_token_id=53, projection_dim=8)
    CLIPTextModel(config).save_pretrained(path)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    return path


def random_video(batch: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, FRAMES, RES, RES, generator=gen) * 2 - 1  # (B, C, T, H, W) in [-1, 1]
