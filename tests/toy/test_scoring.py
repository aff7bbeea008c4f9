"""Scoring generated videos against the synthetic set's rules: captions (colour + shape) and bouncing motion.
The scorers must accept the real videos, and reject wrong captions, static, shuffled and turned-back
videos."""

from __future__ import annotations

import pytest
import torch

from videogen.data import SyntheticVideoDataset
from videogen.toy.scoring import caption_accuracy, describe_objects, long_motion_accuracy, parse_caption


def _videos(ds: SyntheticVideoDataset) -> torch.Tensor:
    return torch.stack([ds[i]["video"] for i in range(len(ds))])


def test_caption_reader_is_right_on_real_videos_and_near_chance_on_wrong_captions():
    ds = SyntheticVideoDataset(120, num_frames=8, size=32, object_size=0.3, seed=5)
    videos, captions = _videos(ds), [ds[i]["caption"] for i in range(len(ds))]
    assert caption_accuracy(videos, captions) == {"colour_accuracy": 1.0, "shape_accuracy": 1.0,
                                                  "caption_accuracy": 1.0}
    shuffled = caption_accuracy(videos, captions[1:] + captions[:1])
    assert shuffled["caption_accuracy"] < 0.25  # chance 1/15
    # A blurred (as generated videos are) copy still reads right most of the time.
    kernel = torch.ones(3, 1, 1, 3, 3) / 9
    blurred = torch.nn.functional.conv3d(videos, kernel, padding=(0, 1, 1), groups=3)
    blurred[..., 0, :], blurred[..., -1, :] = videos[..., 0, :], videos[..., -1, :]
    blurred[..., 0], blurred[..., -1] = videos[..., 0], videos[..., -1]
    assert caption_accuracy(blurred, captions)["caption_accuracy"] >= 0.9


def test_an_empty_video_matches_no_caption_and_bad_captions_are_refused():
    assert describe_objects(torch.zeros(1, 3, 4, 32, 32)) == [(None, None)]
    assert caption_accuracy(torch.zeros(1, 3, 4, 32, 32),
                            ["the red circle moves up"])["caption_accuracy"] == 0
    assert parse_caption("the white triangle moves down-left") == ("white", "triangle", "down-left")
    with pytest.raises(ValueError, match="not a synthetic caption"):
        parse_caption("a cat jumps")
    with pytest.raises(ValueError, match="one caption per video"):
        caption_accuracy(torch.zeros(2, 3, 4, 32, 32), ["the red circle moves up"])


def test_long_motion_accuracy_accepts_real_bouncing_and_rejects_broken_motion():
    ds = SyntheticVideoDataset(6, num_frames=128, size=32, motion="bounce", seed=3)
    real = _videos(ds)
    score = long_motion_accuracy(real, ds)
    assert score["long_motion_accuracy"] == 1.0 and score["windows"] == 6 * 8
    assert long_motion_accuracy(real[:, :, :1].expand_as(real), ds)["long_motion_accuracy"] == 0.0  # static
    assert long_motion_accuracy(real[:, :, torch.randperm(128)], ds)["long_motion_accuracy"] == 0.0  # jumps
    # Turning back mid-air (a reversed copy glued on): only the windows holding the turn can fail.
    # 88 frames
    turned = torch.cat([real[:, :, :40], real[:, :, :40].flip(2)[:, :, 1:], real[:, :, :9]], dim=2)
    per_video = long_motion_accuracy(turned, ds)["per_video"]
    assert min(per_video) >= 4 / 5 and sum(per_video) / len(per_video) < 1.0
    empty = torch.zeros(1, 3, 32, 32, 32)
    assert long_motion_accuracy(empty, ds)["long_motion_accuracy"] == 0.0
    with pytest.raises(ValueError, match="at least 16 frames"):
        long_motion_accuracy(real[:, :, :8], ds)
