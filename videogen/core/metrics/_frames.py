"""Frame helpers shared by the frame-level video metrics (FID, LPIPS, CLIPSIM, PSNR/SSIM).

Those metrics score a video frame by frame: they validate the ``(B, C, T, H, W)`` input once and then
fold time into the batch.
"""

from __future__ import annotations

import torch

from videogen.core.video import check_video

__all__ = ["check_video_pair", "to_frames"]


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """Fold time into the batch: ``(B, C, T, H, W) -> (B*T, C, H, W)``, frames of video b contiguous."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def check_video_pair(preds: torch.Tensor, target: torch.Tensor, channels: int | None = 3) -> None:
    """Raise ``ValueError`` unless both are ``(B, C, T, H, W)`` videos in [-1, 1] of the same shape."""
    check_video(preds, "preds")
    check_video(target, "target")
    if preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape, got {tuple(preds.shape)} and "
                         f"{tuple(target.shape)}")
    if channels is not None and preds.shape[1] != channels:
        raise ValueError(f"videos must have {channels} channels (B, {channels}, T, H, W), got "
                         f"{tuple(preds.shape)}")
