"""Frames that tell which source frames a decoded clip holds: frame k is flat grey 20 + 10 k."""

from __future__ import annotations

import numpy as np


def level_frames(num_frames: int, h: int = 16, w: int = 32) -> np.ndarray:
    """uint8 (T, H, W, 3) where frame k is flat grey 20 + 10 k (32 px wide: decord's own decode path)."""
    levels = 20 + 10 * np.arange(num_frames, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, h, w, 3)).copy()


def frame_levels(video) -> np.ndarray:
    """Mean grey level per frame of a float (C, T, H, W) clip in [-1, 1]."""
    return ((video.mean(dim=(0, 2, 3)) + 1) * 127.5).numpy()
