"""videogen.toy.motion: the tracker and motion accuracy against synthetic ground truth."""

from __future__ import annotations

import pytest
import torch

from videogen.data.synthetic import SyntheticVideoDataset
from videogen.toy.motion import MotionAccuracy, motion_accuracy, predict_direction, track_object


def _batch(n=48, **kwargs):
    ds = SyntheticVideoDataset(n, num_frames=8, size=32, seed=3, **kwargs)
    items = [ds[i] for i in range(n)]
    return ds, *(torch.stack([it[k] for it in items]) for k in ("video", "label", "trajectory"))


@pytest.mark.parametrize("directions", [4, 8])
def test_ground_truth_scores_one_and_tracks_within_a_pixel(directions):
    ds, videos, labels, traj = _batch(directions=directions)
    track = track_object(videos)
    assert track.shape == traj.shape
    assert (track - traj).norm(dim=-1).max() < 1.0
    assert motion_accuracy(videos, labels, ds.direction_vectors) == 1.0
    assert torch.equal(predict_direction(videos, ds.direction_vectors), labels)


def test_time_reversed_and_static_videos_score_zero():
    ds, videos, labels, _ = _batch()
    assert motion_accuracy(videos.flip(2), labels, ds.direction_vectors) == 0.0
    static = videos[:, :, :1].expand_as(videos)
    assert motion_accuracy(static, labels, ds.direction_vectors) == 0.0
    assert (predict_direction(static, ds.direction_vectors) == -1).all()
    blank = torch.zeros_like(videos)  # no object at all: NaN track, no direction
    assert torch.isnan(track_object(blank)).all()
    assert (predict_direction(blank, ds.direction_vectors) == -1).all()


def test_mislabelled_videos_count_as_wrong_and_noise_is_tolerated():
    ds, videos, labels, _ = _batch()
    shifted = (labels + 1) % 4  # right<->left, down<->up pairs are all wrong
    assert motion_accuracy(videos, shifted, ds.direction_vectors) == 0.0
    g = torch.Generator().manual_seed(0)
    noisy = (videos + 0.05 * torch.randn(videos.shape, generator=g)).clamp(-1, 1)
    assert motion_accuracy(noisy, labels, ds.direction_vectors) == 1.0


def test_metric_class_accumulates_and_validates():
    ds, videos, labels, _ = _batch(n=16)
    metric = MotionAccuracy(ds.direction_vectors)
    metric.update(videos[:8], labels[:8])
    metric.update(videos[8:].flip(2), labels[8:])
    assert metric.compute().item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one entry per video"):
        motion_accuracy(videos, labels[:3], ds.direction_vectors)
    with pytest.raises(ValueError, match=r"\(D, 2\)"):
        predict_direction(videos, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="rank 5"):
        track_object(videos[0])
