"""PSNR and SSIM of videos, averaged per frame, then per video, then over videos.

Protocol (the one video prediction papers report): each frame gets its own PSNR / SSIM, a video's score
is the mean over its frames, and the metric is the mean over videos. This is not the PSNR of the MSE
pooled over the whole set, which weights badly reconstructed frames differently.

Value range: inputs are in [-1, 1]. PSNR depends only on differences, so it is computed there with
``data_range=2``, which equals PSNR on [0, 1] with ``data_range=1``. SSIM's luminance term depends on
the absolute means (it is not shift invariant), so frames are first mapped to [0, 1] and SSIM uses
``data_range=1``, the convention of the published numbers (skimage / torchmetrics on [0, 1] images).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

from videogen.core.metrics._frames import check_video_pair, to_frames

__all__ = ["VideoPSNR", "VideoSSIM", "psnr_per_video", "ssim_per_video"]

DATA_RANGE = 2.0  # PSNR on [-1, 1]
MSE_FLOOR = 1e-10  # identical frames would give +inf dB; the floor caps PSNR at ~106 dB for range 2


def psnr_per_video(preds: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """PSNR of each video, the mean of per-frame PSNRs in dB: ``(B, C, T, H, W) x 2 -> (B,)`` float64."""
    check_video_pair(preds, target, channels=None)
    err = (preds.double() - target.double()).pow(2)
    mse = err.mean(dim=(1, 3, 4)).clamp_min(MSE_FLOOR)  # (B, C, T, H, W) -> (B, T)
    return (10.0 * torch.log10(data_range**2 / mse)).mean(dim=1)


def ssim_per_video(
    preds: torch.Tensor, target: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """SSIM of each video, the mean of per-frame SSIMs on [0, 1] frames: ``(B, C, T, H, W) x 2 -> (B,)``.

    Gaussian window ``kernel_size`` x ``kernel_size`` with ``sigma`` (11 and 1.5, Wang et al. 2004);
    frames must be at least ``kernel_size`` pixels high and wide.
    """
    check_video_pair(preds, target, channels=None)
    b, _, t, h, w = preds.shape
    if min(h, w) < kernel_size:
        raise ValueError(f"SSIM needs frames of at least {kernel_size}x{kernel_size} pixels, got {h}x{w}")
    per_frame = structural_similarity_index_measure(
        to_frames((preds.float() + 1) / 2),  # (B, C, T, H, W) in [-1, 1] -> (B*T, C, H, W) in [0, 1]
        to_frames((target.float() + 1) / 2),
        data_range=1.0,
        kernel_size=kernel_size,
        sigma=sigma,
        reduction="none",
    )
    return per_frame.double().view(b, t).mean(dim=1)  # (B*T,) -> (B,)


class _PerVideoMean(Metric):
    """Sum of per-video scores and their count; ``compute`` returns the mean over all videos seen."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _per_video(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        scores = self._per_video(preds, target)
        self.score_sum += scores.sum()
        self.num_videos += scores.numel()

    def compute(self) -> torch.Tensor:
        if self.num_videos == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        return self.score_sum / self.num_videos


class VideoPSNR(_PerVideoMean):
    """Mean over videos of the per-frame-averaged PSNR (dB); inputs ``(B, C, T, H, W)`` in [-1, 1]."""

    def _per_video(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return psnr_per_video(preds, target)


class VideoSSIM(_PerVideoMean):
    """Mean over videos of the per-frame-averaged SSIM; inputs ``(B, C, T, H, W)`` in [-1, 1]."""

    def __init__(self, kernel_size: int = 11, sigma: float = 1.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel_size, self.sigma = kernel_size, sigma

    def _per_video(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_per_video(preds, target, kernel_size=self.kernel_size, sigma=self.sigma)
