"""Contract tests for the DiT blocks: patchify round trip, adaLN-Zero identity at init, gradients,
and the published DiT-L/2 and DiT-XL/2 parameter counts of a model assembled from these blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videogen.core.nn import (
    DiTBlock,
    DiTFinalLayer,
    LabelEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    get_2d_sincos_pos_embed,
    unpatchify,
)


class AssembledDiT(nn.Module):
    """Class-conditional DiT (Peebles & Xie) put together from the core blocks, as a model package would."""

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 num_classes=1000, learn_sigma=True):
        super().__init__()
        self.patch_size, self.out_channels = patch_size, in_channels * (2 if learn_sigma else 1)
        self.grid = input_size // patch_size
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, dropout_prob=0.1)
        pos = torch.from_numpy(get_2d_sincos_pos_embed(hidden_size, self.grid)).float()
        self.pos_embed = nn.Parameter(pos[None], requires_grad=False)  # fixed, counted as in DiT
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads) for _ in range(depth))
        self.final_layer = DiTFinalLayer(hidden_size, patch_size, self.out_channels)

    def forward(self, x, t, y):
        tokens = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (B, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        return unpatchify(self.final_layer(tokens, c), self.patch_size, self.out_channels)


def perturb_zero_params(module: nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised parameters small random values so that gradients flow through them."""
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))


def manual_patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, h*w, p*p*C), the token layout DiT's final layer predicts."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def test_unpatchify_inverts_patchify_non_square():
    x = torch.randn(2, 3, 4, 6)
    tokens = manual_patchify(x, 2)
    torch.testing.assert_close(unpatchify(tokens, 2, 3, grid_size=(2, 3)), x)
    square = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(unpatchify(manual_patchify(square, 4), 4, 5), square)
    with pytest.raises(ValueError, match="tokens"):
        unpatchify(tokens, 2, 3)  # 6 tokens are not a square grid


def test_patch_embed_is_linear_on_patches():
    torch.manual_seed(0)
    embed = PatchEmbed(2, 3, 16)
    x = torch.randn(2, 3, 4, 6)
    tokens = embed(x)
    assert tokens.shape == (2, 6, 16)
    # the conv equals a Linear over flattened (C, p, p) patches, tokens in row-major order
    patches = x.reshape(2, 3, 2, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 12)
    expected = patches @ embed.proj.weight.reshape(16, 12).T + embed.proj.bias
    torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by patch size"):
        embed(torch.randn(1, 3, 5, 4))


def test_dit_block_identity_at_init_then_learns_gradients():
    gen = torch.Generator().manual_seed(0)
    block = DiTBlock(32, num_heads=4)
    x, c = torch.randn(2, 5, 32, generator=gen), torch.randn(2, 32, generator=gen)
    torch.testing.assert_close(block(x, c), x)  # adaLN-Zero: gates start at 0
    perturb_zero_params(block, gen)
    out = block(x, c)
    assert out.shape == x.shape and not torch.allclose(out, x)
    out.square().mean().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DiTBlock(30, num_heads=4)


def test_dit_block_modulation_formula():
    """With scale = shift = 0 and gate = 1 the block is a plain pre-LN transformer block."""
    torch.manual_seed(0)
    block = DiTBlock(16, num_heads=2).eval()
    with torch.no_grad():
        bias = block.adaLN_modulation[1].bias.view(6, 16)
        bias[2] = 1.0  # gate_msa
        bias[5] = 1.0  # gate_mlp
    x, c = torch.randn(2, 4, 16), torch.randn(2, 16)
    ln = nn.functional.layer_norm
    h = x + block.attn(ln(x, (16,), eps=1e-6))
    expected = h + block.mlp(ln(h, (16,), eps=1e-6))
    torch.testing.assert_close(block(x, c), expected)


def test_assembled_tiny_dit_forward_and_grads():
    gen = torch.Generator().manual_seed(0)
    model = AssembledDiT(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                         num_classes=3)
    x = torch.randn(4, 4, 8, 8, generator=gen)
    out = model(x, torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3]))
    assert out.shape == (4, 8, 8, 8)
    assert torch.all(out == 0)  # zero-init final layer
    perturb_zero_params(model, gen)
    model(x, torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3])).square().mean().backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing


@pytest.mark.parametrize("depth, hidden, paper_millions", [(24, 1024, 458.1), (28, 1152, 675.1)])
def test_dit_paper_param_counts(depth, hidden, paper_millions):
    with torch.device("meta"):
        model = AssembledDiT(hidden_size=hidden, depth=depth)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - paper_millions) / paper_millions < 0.005, n
