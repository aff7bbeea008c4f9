"""PSNR/SSIM: per-frame, per-video averaging vs numpy / torchmetrics on [0, 1] frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from videogen.core.metrics.psnr_ssim import VideoPSNR, VideoSSIM, psnr_per_video, ssim_per_video


def _videos(seed: int, shape=(2, 3, 3, 16, 16)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g) * 2 - 1
    noise = torch.randn(shape, generator=g) * torch.linspace(0.02, 0.3, shape[2]).view(1, 1, -1, 1, 1)
    return (target + noise).clamp(-1, 1), target


def test_psnr_matches_numpy_per_frame_mean():
    preds, target = _videos(0)
    p, t = (preds.numpy().astype(np.float64) + 1) / 2, (target.numpy().astype(np.float64) + 1) / 2
    expected = []
    for b in range(p.shape[0]):
        frames = [10 * np.log10(1.0 / np.mean((p[b, :, i] - t[b, :, i]) ** 2)) for i in range(p.shape[2])]
        expected.append(np.mean(frames))
    np.testing.assert_allclose(psnr_per_video(preds, target).numpy(), expected, rtol=1e-10)
    metric = VideoPSNR()
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    assert metric.compute().item() == pytest.approx(np.mean(expected), rel=1e-10)


def test_per_video_average_differs_from_pooled_mse():
    # Video 0 is almost perfect, video 1 is poor: the mean of PSNRs is far above the PSNR of the pooled MSE.
    target = torch.zeros(2, 3, 2, 16, 16)
    preds = target.clone()
    preds[0] += 0.01
    preds[1] += 0.5
    per_video = psnr_per_video(preds, target)
    pooled = 10 * torch.log10(4.0 / (preds.double() - target.double()).pow(2).mean())
    assert per_video.mean().item() == pytest.approx((per_video[0] + per_video[1]).item() / 2)
    assert per_video.mean().item() - pooled.item() > 10.0
    # identical frames: capped, finite
    assert torch.isfinite(psnr_per_video(target, target)).all()


def test_ssim_matches_torchmetrics_on_unit_range_frames():
    preds, target = _videos(1, (2, 3, 3, 24, 20))
    expected = []
    for b in range(2):
        frames_p = (preds[b].transpose(0, 1) + 1) / 2  # (C, T, H, W) -> (T, C, H, W) in [0, 1]
        frames_t = (target[b].transpose(0, 1) + 1) / 2
        s = structural_similarity_index_measure(frames_p, frames_t, data_range=1.0, reduction="none")
        expected.append(s.double().mean().item())
    torch.testing.assert_close(ssim_per_video(preds, target), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    metric = VideoSSIM()
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(np.mean(expected), abs=1e-6)
    assert ssim_per_video(target, target).min().item() == pytest.approx(1.0, abs=1e-5)


def test_validation_errors():
    x = torch.zeros(1, 3, 2, 8, 8)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        psnr_per_video(x + 2, x)
    with pytest.raises(ValueError, match="same shape"):
        psnr_per_video(x, x[:, :, :1])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_video(x, x)
    with pytest.raises(RuntimeError, match="before any update"):
        VideoPSNR().compute()


@pytest.mark.parametrize("metric_cls", [VideoPSNR, VideoSSIM])
def test_merged_states_equal_one_process(metric_cls):
    """merge_state applies the DDP reductions (sums): two halves give the one-process value exactly."""
    preds, target = _videos(2, (3, 3, 2, 16, 16))
    whole, first, second = metric_cls(), metric_cls(), metric_cls()
    whole.update(preds, target)
    first.update(preds[:1], target[:1])
    second.update(preds[1:], target[1:])
    first.merge_state(second)
    torch.testing.assert_close(first.compute(), whole.compute())
