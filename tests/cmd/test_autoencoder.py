"""CMD autoencoder: the official configuration's parameter counts, shapes (square and non-square), the
content frame as a convex combination of frames, positions that see frame order, and learning."""

from __future__ import annotations

import pytest
import torch

from tests.cmd._tiny import FRAMES, H, W, tiny_autoencoder
from videogen.cmd import CMDAutoencoder


@pytest.mark.parametrize("kwargs, expected", [
    ({}, 47_359_510),  # UCF-101, pixels 3x16x64x64 (official ProjectedAutoencoder, counted from its modules)
    ({"in_channels": 4, "mode": "latent"}, 47_365_656),  # SD latents 4x16x64x64 (512x512)
    ({"in_channels": 4, "mode": "latent", "width": 128}, 47_365_656),  # 4x16x64x128 (512x1024)
])
def test_official_configuration_parameter_counts(kwargs, expected):
    with torch.device("meta"):
        ae = CMDAutoencoder(**kwargs)
    assert sum(p.numel() for p in ae.parameters()) == expected


def test_depth_12_of_table5_is_an_option():
    with torch.device("meta"):
        ae = CMDAutoencoder(depth=12)
    assert abs(sum(p.numel() for p in ae.parameters()) / 1e6 - 71.0) < 0.1  # spec: 71.0M


@pytest.mark.parametrize("height, width", [(16, 32), (32, 16), (16, 16)])
def test_shapes_round_trip_on_square_and_rectangular_grids(height, width):
    ae = tiny_autoencoder(height=height, width=width)
    x = torch.rand(2, 3, FRAMES, height, width) * 2 - 1
    recon, content, motion = ae(x)
    assert recon.shape == x.shape and content.shape == (2, 3, height, width)
    assert motion.shape == (2, 4, FRAMES, width // 2 + height // 2) == (2, *ae.motion_shape)
    assert recon.min() >= -1 and recon.max() <= 1  # pixel mode: 2 sigmoid - 1
    assert motion.abs().max() <= 1  # tanh


def test_official_512x1024_latent_shapes_on_meta():
    with torch.device("meta"):
        ae = CMDAutoencoder(in_channels=4, mode="latent", height=64, width=128)
        content, motion = ae.encode(torch.empty(1, 4, 16, 64, 128))
        video = ae.decode(content, motion)
    # 8 x 16 x (64 + 32)
    assert tuple(content.shape) == (1, 4, 64, 128) and tuple(motion.shape) == (1, 8, 16, 96)
    assert tuple(video.shape) == (1, 4, 16, 64, 128)


def test_content_frame_is_a_per_pixel_convex_combination_of_the_frames():
    ae = tiny_autoencoder()
    with torch.no_grad():  # sharper softmax weights than at initialisation
        ae.to_logit.weight.mul_(50)
    x = torch.rand(2, 3, FRAMES, H, W) * 2 - 1
    content, _ = ae.encode(x)
    assert (content >= x.min(dim=2).values - 1e-5).all() and (content <= x.max(dim=2).values + 1e-5).all()
    assert not torch.allclose(content, x.mean(dim=2), atol=1e-3)  # learned weights, not the plain mean
    still = x[:, :, :1].expand(-1, -1, FRAMES, -1, -1)
    torch.testing.assert_close(ae.encode(still)[0], still[:, :, 0])  # weights sum to 1 over time
    uniform = tiny_autoencoder(uniform_content=True)
    torch.testing.assert_close(uniform.encode(x)[0], x.mean(dim=2))  # the Table 4b ablation


def test_positions_are_applied_permuting_frames_changes_the_encoding():
    """The official code builds rotary embeddings and never applies them, so its encoder is blind to frame
    order (up to the permutation); ours is not."""
    ae = tiny_autoencoder()
    x = torch.rand(1, 3, FRAMES, H, W) * 2 - 1
    perm = torch.tensor([2, 0, 3, 1])
    _, motion = ae.encode(x)
    _, motion_perm = ae.encode(x[:, :, perm])
    assert not torch.allclose(motion[:, :, perm], motion_perm, atol=1e-4)
    # without the rotary positions (rotary=False, the official behaviour) the encoder is
    # permutation-equivariant: the same check then holds exactly
    official = tiny_autoencoder(rotary=False)
    official.load_state_dict(ae.state_dict())
    torch.testing.assert_close(official.encode(x)[1][:, :, perm], official.encode(x[:, :, perm])[1])


def test_complex_pair_rotation_equals_rotating_q_and_k_separately():
    """The attention takes q and k in pair order and turns them by one complex multiply with cached phases;
    the oracle is the per-call ``rotary`` of each of q and k on the plain ``qkv`` projection (1-D over
    frames, axial 2-D over the grid).  In float64 they agree to rounding, outputs and input gradients alike.
    Phases first built under inference mode must still serve a training step."""
    import torch.nn.functional as F

    from videogen.cmd.autoencoder import _pair_order, _rotary_phases, _RotaryAttention, rotary

    torch.manual_seed(0)
    attn = _RotaryAttention(32, 2).double()

    def reference(x, axes):
        b, n, c = x.shape
        q, k, v = attn.qkv(x).view(b, n, 3, 2, 16).permute(2, 0, 3, 1, 4)

        def rot(t):
            if len(axes) == 1:
                return rotary(t, torch.arange(axes[0]))
            h, w = axes
            return torch.cat([rotary(t[..., :8], torch.arange(h).repeat_interleave(w)),
                              rotary(t[..., 8:], torch.arange(w).repeat(h))], dim=-1)

        out = F.scaled_dot_product_attention(rot(q), rot(k), v)
        return attn.proj(out.transpose(1, 2).reshape(b, n, c))

    for axes, n in (((5,), 5), ((3, 4), 12)):
        x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
        ours, ref = attn(x, axes), reference(x, axes)
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
        grad = torch.randn_like(ref)
        (ours_grad,), (ref_grad,) = torch.autograd.grad(ours, x, grad), torch.autograd.grad(ref, x, grad)
        torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-6, atol=1e-9)
        without = _RotaryAttention(32, 2, rotary=False).double()
        without.load_state_dict(attn.state_dict())
        assert (without(x, axes) - ref).abs().max() > 1e-3  # the positions do change the output
    x = torch.randn(2, 21, 32, dtype=torch.float64, requires_grad=True)
    _pair_order.cache_clear()
    _rotary_phases.cache_clear()
    with torch.inference_mode():  # as Lightning's sanity check: the first call of a layout validates
        attn(x.detach(), (7, 3))  # its phases and pair order made in inference mode
    attn(x, (7, 3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_inputs_are_refused():
    ae = tiny_autoencoder()
    with pytest.raises(ValueError, match=r"\(B, C, L, H, W\)"):
        ae.encode(torch.zeros(1, 3, FRAMES + 1, H, W))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ae.encode(torch.full((1, 3, FRAMES, H, W), 3.0))
    with pytest.raises(ValueError, match="even"):
        CMDAutoencoder(height=18, width=32)
    content, motion = ae.encode(torch.zeros(1, 3, FRAMES, H, W))
    with pytest.raises(ValueError, match="motion_latent"):
        ae.decode(content, motion[..., :-1])


def test_save_pretrained_round_trip(tmp_path):
    ae = tiny_autoencoder()
    ae.save_pretrained(tmp_path)
    again = CMDAutoencoder.from_pretrained(tmp_path)
    x = torch.rand(1, 3, FRAMES, H, W) * 2 - 1
    torch.testing.assert_close(again(x)[0], ae(x)[0])


def test_tiny_autoencoder_learns_to_reconstruct_moving_shapes():
    """4 L1 (the official pixel loss without LPIPS) on 8 synthetic clips: the error falls at least 3x."""
    from videogen.data import SyntheticVideoDataset

    data = SyntheticVideoDataset(8, num_frames=FRAMES, size=16, seed=0)
    x = torch.stack([data[i]["video"] for i in range(8)])  # (8, 3, 4, 16, 16)
    ae = tiny_autoencoder(height=16, width=16, hidden_size=48)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = 4 * (ae(x)[0] - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])
