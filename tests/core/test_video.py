"""videogen.core.video: range conversions, validation, mp4/avi/gif round trips, contact sheets, resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videogen.core.video import (
    check_video,
    clip_indices,
    from_uint8,
    read_video,
    resize_center_crop,
    save_contact_sheet,
    to_uint8,
    write_video,
)


def _gradient_video(t=6, h=24, w=32) -> torch.Tensor:
    """Smooth (C, T, H, W) video in [-1, 1]: codecs keep smooth content nearly exactly."""
    y = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(1, t, h, w)
    x = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(1, t, h, w)
    tt = torch.linspace(-0.5, 0.5, t).view(1, t, 1, 1).expand(1, t, h, w)
    return torch.cat([x, y, tt], 0).clone()


def test_uint8_round_trip_and_layout():
    v = torch.rand(2, 3, 4, 5, 6) * 2 - 1
    u = to_uint8(v)
    assert u.shape == (2, 4, 5, 6, 3) and u.dtype == torch.uint8
    assert u[1, 2, 3, 4, 0] == round((float(v[1, 0, 2, 3, 4]) + 1) * 127.5)
    assert (from_uint8(u) - v).abs().max() <= 1 / 255 + 1e-6
    assert from_uint8(u[0]).shape == (3, 4, 5, 6)  # single video (T,H,W,C) -> (C,T,H,W)
    assert to_uint8(torch.full((1, 3, 1, 1, 1), 5.0)).max() == 255  # clamped
    with pytest.raises(ValueError, match="uint8"):
        from_uint8(torch.zeros(1, 2, 3, 3))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(3, 2, 4, 4), "rank 5"),
        (torch.zeros(1, 3, 2, 4, 4, dtype=torch.uint8), "float"),
        (torch.full((1, 3, 2, 4, 4), 1.5), r"\[-1, 1\]"),
        (torch.full((1, 3, 2, 4, 4), float("nan")), "finite"),
    ],
)
def test_check_video_names_the_constraint(x, match):
    with pytest.raises(ValueError, match=match):
        check_video(x, "sample")
    check_video(torch.zeros(1, 3, 2, 4, 4) + 1.0005)  # within tolerance


def test_clip_indices_stride_and_starts():
    assert clip_indices(20, 4, 3, "first") == [0, 3, 6, 9]
    assert clip_indices(20, 4, 3, "center") == [5, 8, 11, 14]
    assert clip_indices(10, None, 2) == [0, 2, 4, 6, 8]
    starts = {clip_indices(20, 4, 3, "random", np.random.default_rng(i))[0] for i in range(200)}
    assert starts == set(range(11))
    with pytest.raises(ValueError, match="fewer than the clip span 10"):
        clip_indices(9, 4, 3)


@pytest.mark.parametrize("ext", ["mp4", "avi"])
def test_write_read_round_trip(tmp_path, ext):
    v = _gradient_video()
    path = write_video(tmp_path / f"clip.{ext}", v, fps=8)
    frames = read_video(path)
    assert frames.shape == (6, 24, 32, 3) and frames.dtype == torch.uint8
    assert (from_uint8(frames) - v).abs().mean() < 0.03
    clip = read_video(path, num_frames=3, frame_stride=2, start="first")
    assert torch.equal(clip, frames[[0, 2, 4]])


def test_odd_sizes_are_padded_and_gif(tmp_path):
    v = _gradient_video(h=21, w=33)
    frames = read_video(write_video(tmp_path / "odd.mp4", v))
    assert frames.shape == (6, 22, 34, 3)
    import imageio.v3 as iio

    gif = iio.imread(write_video(tmp_path / "a.gif", to_uint8(v)))
    assert gif.shape[:3] == (6, 21, 33)
    with pytest.raises(ValueError, match="unsupported video extension"):
        write_video(tmp_path / "a.xyz", v)


def test_read_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(ValueError, match="0 bytes"):
        read_video(tmp_path / "empty.mp4")


def test_contact_sheet_layout(tmp_path):
    v = torch.rand(3, 3, 8, 5, 7) * 2 - 1
    grid = save_contact_sheet(tmp_path / "sheet.png", v, nrow=2, every=2, padding=1)
    assert grid.shape == (1 + 2 * 6, 1 + 4 * 8, 3)  # 2 rows of videos, 4 kept frames
    u = to_uint8(v)
    assert np.array_equal(grid[1:6, 1 + 8 : 8 + 8], u[0, 2].numpy())  # row 0, column 1 = frame 2
    assert np.array_equal(grid[7:12, 1:8], u[1, 0].numpy())
    import imageio.v3 as iio

    assert np.array_equal(iio.imread(tmp_path / "sheet.png"), grid)


def test_resize_center_crop_keeps_aspect():
    # A 20x40 frame with a vertical stripe pattern: resizing to 10x10 must halve, then crop the centre.
    w = torch.arange(40).float()
    v = (w / 39 * 2 - 1).view(1, 1, 1, 40).expand(3, 2, 20, 40).contiguous()
    out = resize_center_crop(v, 10)
    assert out.shape == (3, 2, 10, 10)
    # Short side 20 -> 10 means the width becomes 20; the crop keeps source columns 10..29.
    assert out[0, 0, 0, 0] > v[0, 0, 0, 9] and out[0, 0, 0, -1] < v[0, 0, 0, 30]
    assert torch.allclose(out[0, 0, 0].mean(), v[0, 0, 0, 10:30].mean(), atol=1e-3)
    tall = resize_center_crop(torch.zeros(2, 3, 1, 30, 10), (12, 8))
    assert tall.shape == (2, 3, 1, 12, 8)
    assert torch.equal(resize_center_crop(v, (20, 40)), v)


def test_widths_that_decord_mishandles_fall_back_to_ffmpeg(tmp_path):
    # decord 0.6 raises a buffer-size error on e.g. 16- or 48-pixel-wide frames; read_video recovers.
    frames = np.stack([np.full((16, 48, 3), 20 + 10 * k, np.uint8) for k in range(8)])
    clip = read_video(write_video(tmp_path / "narrow.mp4", frames), num_frames=3, frame_stride=3)
    assert clip.shape == (3, 16, 48, 3)
    np.testing.assert_allclose(clip.float().mean(dim=(1, 2, 3)).numpy(), [20, 50, 80], atol=2)
