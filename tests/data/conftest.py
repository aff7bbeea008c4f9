"""Small real files made on the fly: videos whose frame k has grey level 20 + 10 k, so a decoded clip
tells which frames it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def level_frames(num_frames: int, h: int = 16, w: int = 32) -> np.ndarray:
    """uint8 (T, H, W, 3) where frame k is flat grey 20 + 10 k."""
    levels = 20 + 10 * np.arange(num_frames, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, h, w, 3)).copy()


def frame_levels(video) -> np.ndarray:
    """Mean grey level per frame of a float (C, T, H, W) clip in [-1, 1]."""
    return ((video.mean(dim=(0, 2, 3)) + 1) * 127.5).numpy()


@pytest.fixture
def make_video():
    from videogen.core.video import write_video

    def make(path: Path, num_frames: int = 12, h: int = 16, w: int = 32, frames: np.ndarray | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, level_frames(num_frames, h, w) if frames is None else frames, fps=8)

    return make
