"""Contract tests for PatchGANDiscriminator (2D, 2D on video frames, 3D)."""

from __future__ import annotations

import pytest
import torch

from videogen.core.nn import PatchGANDiscriminator


def test_pix2pix_param_count_by_hand():
    with torch.device("meta"):
        disc = PatchGANDiscriminator(3, ndf=64, n_layers=3)
    widths = [3, 64, 128, 256, 512]
    expected = 3 * 64 * 16 + 64  # first conv has a bias, no norm
    for ci, co in zip(widths[1:-1], widths[2:]):
        expected += ci * co * 16 + 2 * co  # bias-free conv + BatchNorm affine
    expected += 512 * 16 + 1  # 1-channel head
    assert sum(p.numel() for p in disc.parameters()) == expected == 2_765_633


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_2d_patch_logits_shape_and_grads(norm):
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(3, ndf=8, n_layers=3, norm=norm)
    x = torch.randn(2, 3, 32, 32)
    logits = disc(x)
    # three stride-2 convs (32 -> 4), then two kernel-4 stride-1 convs (4 -> 3 -> 2)
    assert logits.shape == (2, 1, 2, 2)
    logits.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_2d_on_video_folds_time_into_batch():
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(3, ndf=8, n_layers=2, norm="group").eval()
    video = torch.randn(2, 3, 4, 16, 16)
    logits = disc(video)
    assert logits.shape == (2, 1, 4, 2, 2)
    # frame 2 of sample 1 is scored on its own
    torch.testing.assert_close(logits[1, :, 2], disc(video[1:2, :, 2])[0])


@pytest.mark.parametrize("frames, expected_t", [(16, 2), (8, 1), (1, 1)])
def test_3d_video_discriminator_shapes(frames, expected_t):
    disc = PatchGANDiscriminator(3, ndf=8, n_layers=3, dims=3, norm="group")
    logits = disc(torch.randn(1, 3, frames, 32, 32))
    assert logits.shape == (1, 1, expected_t, 2, 2)
    logits.mean().backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_input_errors():
    with pytest.raises(ValueError, match="C=3"):
        PatchGANDiscriminator(3, ndf=8)(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        PatchGANDiscriminator(3, ndf=8, dims=3)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        PatchGANDiscriminator(norm="instance")
