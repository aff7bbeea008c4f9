"""Fixtures for the data tests: small real video files made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.helpers import level_frames


@pytest.fixture
def make_video():
    """``make(path, num_frames=12, h=16, w=32, frames=None)`` writes a level-coded video (or ``frames``)."""
    from videogen.core.video import write_video

    def make(path: Path, num_frames: int = 12, h: int = 16, w: int = 32,
             frames: np.ndarray | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_video(path, level_frames(num_frames, h, w) if frames is None else frames, fps=8)

    return make
