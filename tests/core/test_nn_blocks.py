"""Contract tests for videogen.core.nn embeddings, attention and ResBlock/Downsample/Upsample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videogen.core.nn import (
    Attention,
    CrossAttnTransformerBlock,
    Downsample,
    LabelEmbedder,
    ResBlock,
    SpatialTransformer,
    TimestepEmbedder,
    Upsample,
    get_2d_sincos_pos_embed,
    normalization,
    timestep_embedding,
)


def perturb_zero_params(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised parameters small random values so that gradients flow through them."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def assert_grads_reach_all(module: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached: {missing}"


# ---------------------------------------------------------------- embeddings


def test_timestep_embedding_formula_and_dtype():
    t = torch.tensor([0, 10, 999])
    emb = timestep_embedding(t, 6, max_period=100)
    assert emb.shape == (3, 6) and emb.dtype == torch.float32
    freqs = [100 ** (-i / 3) for i in range(3)]
    expected = [[math.cos(tt * f) for f in freqs] + [math.sin(tt * f) for f in freqs] for tt in (0, 10, 999)]
    torch.testing.assert_close(emb, torch.tensor(expected), rtol=1e-5, atol=1e-5)
    odd = timestep_embedding(t, 7)
    assert odd.shape == (3, 7) and torch.all(odd[:, -1] == 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert timestep_embedding(t.float(), 8).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        timestep_embedding(t[None], 8)


def test_timestep_embedder_shape():
    emb = TimestepEmbedder(32, freq_dim=16)
    out = emb(torch.tensor([1, 500]))
    assert out.shape == (2, 32)
    assert not torch.allclose(out[0], out[1])


def test_label_embedder_null_row_and_dropout():
    torch.manual_seed(0)
    emb = LabelEmbedder(10, 8, dropout_prob=0.5)
    assert emb.embedding_table.num_embeddings == 11 and emb.null_class == 10
    labels = torch.arange(10)
    emb.eval()
    torch.testing.assert_close(emb(labels), emb.embedding_table.weight[:10])
    forced = emb(labels, force_drop_ids=torch.ones(10, dtype=torch.long))
    torch.testing.assert_close(forced, emb.embedding_table.weight[10].expand(10, 8))
    emb.train()
    dropped = emb.token_drop(torch.zeros(4000, dtype=torch.long))
    frac = (dropped == 10).float().mean().item()
    assert 0.45 < frac < 0.55
    no_dropout = LabelEmbedder(10, 8, dropout_prob=0.0).train()
    torch.testing.assert_close(no_dropout(labels), no_dropout.embedding_table.weight[:10])
    with pytest.raises(ValueError, match="lie in"):
        emb(torch.tensor([11]))


def test_2d_sincos_pos_embed_non_square_and_dit_layout():
    pe = get_2d_sincos_pos_embed(8, (2, 3))
    assert pe.shape == (6, 8)
    # token (row i, column j) = index i*3+j; first half encodes the column, second half the row.
    quarter_freqs = 1.0 / 10000 ** (np.arange(2) / 2.0)
    i, j = 1, 2
    expected = np.concatenate(
        [np.sin(j * quarter_freqs), np.cos(j * quarter_freqs), np.sin(i * quarter_freqs),
         np.cos(i * quarter_freqs)]
    )
    np.testing.assert_allclose(pe[i * 3 + j], expected)
    assert get_2d_sincos_pos_embed(16, 4).shape == (16, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        get_2d_sincos_pos_embed(6, 2)


# ---------------------------------------------------------------- attention


def manual_attention(attn: Attention, x, context=None, mask=None):
    """softmax(Q K^T / sqrt(d)) V written out, as the oracle for the SDPA path."""
    context = x if context is None else context
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    q = attn.to_q(x).view(b, n, h, d).transpose(1, 2)
    k = attn.to_k(context).view(b, -1, h, d).transpose(1, 2)
    v = attn.to_v(context).view(b, -1, h, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, N, M)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, h * d)
    return attn.to_out(out)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_attention_matches_manual_softmax(qkv_bias):
    torch.manual_seed(0)
    attn = Attention(16, heads=2, dim_head=8, context_dim=12, qkv_bias=qkv_bias).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    torch.testing.assert_close(attn(x, ctx), manual_attention(attn, x, ctx), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn(x, ctx, mask), manual_attention(attn, x, ctx, mask), rtol=1e-5, atol=1e-5)
    # padded keys really are ignored: changing them does not change sample 1
    ctx2 = ctx.clone()
    ctx2[1, 4:] += 5.0
    torch.testing.assert_close(attn(x, ctx2, mask)[1], attn(x, ctx, mask)[1])
    with pytest.raises(ValueError, match="mask"):
        attn(x, ctx, mask[:, :3])
    with pytest.raises(ValueError, match="context_dim"):
        attn(x, torch.randn(2, 7, 16))


def test_self_attention_default_context():
    torch.manual_seed(0)
    attn = Attention(16, heads=4, dim_head=4).eval()
    x = torch.randn(3, 6, 16)
    torch.testing.assert_close(attn(x), manual_attention(attn, x), rtol=1e-5, atol=1e-5)


def test_cross_attn_block_shapes_and_context_rules():
    block = CrossAttnTransformerBlock(16, heads=2, dim_head=8, context_dim=10)
    x = torch.randn(2, 9, 16)
    assert block(x, torch.randn(2, 3, 10)).shape == x.shape
    with pytest.raises(ValueError, match="needs a context"):
        block(x)
    self_only = CrossAttnTransformerBlock(16, heads=2, dim_head=8)
    assert self_only(x).shape == x.shape


@pytest.mark.parametrize("context_dim", [None, 6])
def test_spatial_transformer_identity_at_init_and_grads(context_dim):
    gen = torch.Generator().manual_seed(0)
    st = SpatialTransformer(8, heads=2, dim_head=4, depth=2, context_dim=context_dim)
    x = torch.randn(2, 8, 4, 6, generator=gen)
    ctx = None if context_dim is None else torch.randn(2, 3, context_dim, generator=gen)
    torch.testing.assert_close(st(x, ctx), x)  # zero-init proj_out: starts as the identity
    perturb_zero_params(st, gen)
    out = st(x, ctx)
    assert out.shape == x.shape
    assert_grads_reach_all(st, out.square().mean())


def test_spatial_transformer_checkpoint_same_outputs_and_grads():
    gen = torch.Generator().manual_seed(0)
    st = SpatialTransformer(8, heads=2, dim_head=4, depth=2, context_dim=6)
    perturb_zero_params(st, gen)
    x = torch.randn(2, 8, 4, 4, generator=gen, requires_grad=True)
    ctx = torch.randn(2, 3, 6, generator=gen)
    results = []
    for flag in (False, True):
        st.use_checkpoint = flag
        st.zero_grad()
        x.grad = None
        out = st(x, ctx)
        out.square().sum().backward()
        results.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in st.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- ResBlock / sampling


def test_normalization_groups_and_bf16():
    assert normalization(64).num_groups == 32
    assert normalization(16).num_groups == 16
    assert normalization(48).num_groups == 16
    gn = normalization(8)
    x = torch.randn(2, 8, 3, 3).bfloat16()
    out = gn(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), gn(x.float()), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "dims, shape, kernel",
    [(2, (2, 8, 6, 4), 3), (3, (2, 8, 3, 4, 6), 3), (3, (2, 8, 3, 4, 6), (1, 3, 3))],
)
@pytest.mark.parametrize("scale_shift", [True, False])
def test_resblock_shapes_and_grads(dims, shape, kernel, scale_shift):
    gen = torch.Generator().manual_seed(0)
    block = ResBlock(8, 16, emb_dim=12, dims=dims, kernel_size=kernel, use_scale_shift_norm=scale_shift,
                     groups=4)
    x = torch.randn(*shape, generator=gen)
    emb = torch.randn(2, 12, generator=gen)
    out = block(x, emb)
    assert out.shape == (2, 16, *shape[2:]) and out.dtype == torch.float32
    # zero-init output conv: the block starts as its skip connection
    torch.testing.assert_close(out, block.skip_connection(x))
    perturb_zero_params(block, gen)
    assert_grads_reach_all(block, block(x, emb).square().mean())


def test_resblock_without_embedding_and_errors():
    block = ResBlock(8, dims=2, groups=4)
    x = torch.randn(1, 8, 4, 4)
    assert block(x).shape == x.shape and isinstance(block.skip_connection, torch.nn.Identity)
    with pytest.raises(ValueError, match="emb_dim=None"):
        block(x, torch.randn(1, 4))
    with pytest.raises(ValueError, match="C=8"):
        block(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        ResBlock(8, kernel_size=2)
    with pytest.raises(ValueError, match="emb of shape"):
        ResBlock(8, emb_dim=4, groups=4)(x)


@pytest.mark.parametrize("use_conv", [True, False])
@pytest.mark.parametrize(
    "dims, shape, factor, expected",
    [
        (2, (1, 4, 8, 6), 2, (8 // 2, 6 // 2)),
        (3, (1, 4, 4, 8, 6), (1, 2, 2), (4, 4, 3)),
        (3, (1, 4, 4, 8, 6), (2, 1, 1), (2, 8, 6)),
        (3, (1, 4, 4, 8, 6), 2, (2, 4, 3)),
    ],
)
def test_downsample_upsample_exact_sizes(use_conv, dims, shape, factor, expected):
    x = torch.randn(*shape)
    down = Downsample(4, dims=dims, stride=factor, use_conv=use_conv)
    y = down(x)
    assert y.shape == (1, 4, *expected)
    up = Upsample(4, dims=dims, scale=factor, use_conv=use_conv)
    assert up(y).shape == x.shape
    if not use_conv:
        # average pooling gives block means; nearest upsampling repeats each value s times per axis
        torch.testing.assert_close(y, {2: F.avg_pool2d, 3: F.avg_pool3d}[dims](x, factor))
        repeated = y
        for axis, s in enumerate(down.stride):
            repeated = repeated.repeat_interleave(s, dim=2 + axis)
        torch.testing.assert_close(up(y), repeated)


def test_sampling_channel_change_and_errors():
    x = torch.randn(1, 4, 2, 8, 8)
    assert Downsample(4, 6, dims=3, stride=(1, 2, 2), kernel_size=(1, 3, 3))(x).shape == (1, 6, 2, 4, 4)
    assert Upsample(4, 6, dims=3, scale=(1, 2, 2), kernel_size=(1, 3, 3))(x).shape == (1, 6, 2, 16, 16)
    with pytest.raises(ValueError, match="divisible by the stride"):
        Downsample(4, dims=3, stride=(2, 2, 2))(torch.randn(1, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="channel count"):
        Downsample(4, 8, use_conv=False)
    with pytest.raises(ValueError, match="channel count"):
        Upsample(4, 8, use_conv=False)
    with pytest.raises(ValueError, match="tuple of 3"):
        Downsample(4, dims=3, stride=(2, 2))
