"""videogen.data.synthetic: determinism, geometry (object inside, displacement), labels and captions."""

from __future__ import annotations

import time

import pytest
import torch

from videogen.data import DIRECTION_NAMES, SyntheticVideoDataset


def test_items_follow_the_batch_contract():
    ds = SyntheticVideoDataset(4, num_frames=8, size=24)
    item = ds[1]
    assert item["video"].shape == (3, 8, 24, 24) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["label"].dtype == torch.int64 and item["index"].item() == 1
    assert item["trajectory"].shape == (8, 2)
    name = DIRECTION_NAMES[item["label"]]
    assert item["caption"].startswith("the ") and item["caption"].endswith(f"moves {name}")


def test_deterministic_per_index_and_seed():
    a, b = SyntheticVideoDataset(10, seed=5), SyntheticVideoDataset(50, seed=5)
    assert torch.equal(a[7]["video"], b[7]["video"]) and a[7]["caption"] == b[7]["caption"]
    assert not torch.equal(a[7]["video"], SyntheticVideoDataset(10, seed=6)[7]["video"])
    assert not torch.equal(a[7]["video"], a[8]["video"])


@pytest.mark.parametrize("directions", [4, 8])
def test_motion_geometry(directions):
    ds = SyntheticVideoDataset(80, num_frames=16, size=32, directions=directions, seed=1)
    labels, margin = [], ds.margin
    for i in range(len(ds)):
        item = ds[i]
        traj, label = item["trajectory"], int(item["label"])
        labels.append(label)
        step = traj[1:] - traj[:-1]
        assert torch.allclose(step, step[0].expand_as(step), atol=1e-4)  # constant speed
        travel = traj[-1] - traj[0]
        unit = ds.direction_vectors[label]
        assert torch.allclose(travel / travel.norm(), unit, atol=1e-5)  # along the labelled direction
        assert 32 / 3 - 1e-3 <= travel.norm() <= 32 / 2 + 1e-3
        assert traj.min() >= margin - 1e-4 and traj.max() <= 31 - margin + 1e-4  # whole path inside
        video = item["video"]
        # Border pixels are pure background in every frame: the object never touches the edge.
        bg = video[:, 0, 0, 0]
        border = torch.cat([video[:, :, 0], video[:, :, -1], video[:, :, :, 0], video[:, :, :, -1]], -1)
        assert torch.allclose(border, bg[:, None, None].expand_as(border), atol=1e-6)
    assert set(labels) == set(range(directions))


def test_background_differs_from_object_and_distractors_are_static():
    ds = SyntheticVideoDataset(20, num_distractors=2, seed=2)
    for i in range(20):
        v = ds[i]["video"]
        assert (v[:, :, 0, 0] - v.mean(dim=(2, 3))).abs().sum() > 0  # something besides background
        moving = (v[:, 1:] - v[:, :-1]).abs().sum(0) > 1e-6  # (T-1, H, W)
        assert moving.any()
    # Object colour vs background distance is at least min_color_distance (in [0, 1] units).
    ds = SyntheticVideoDataset(50, seed=4)
    for i in range(50):
        item = ds[i]
        v = (item["video"] + 1) / 2
        cx, cy = item["trajectory"][0].round().long().tolist()
        assert (v[:, 0, cy, cx] - v[:, 0, 0, 0]).norm() >= 0.6 - 1e-4


def test_shape_direction_task_and_validation():
    ds = SyntheticVideoDataset(30, task="shape_direction", shapes=("circle", "square"))
    assert ds.num_classes == 8 and ds.class_names[5] == "square left"
    for i in range(30):
        item = ds[i]
        shape, direction = divmod(int(item["label"]), 4)
        assert item["caption"].split()[2] == ds.shapes[shape]
        assert ds.direction_of(item["label"]) == item["direction"] == direction
    with pytest.raises(ValueError, match="directions must be 4 or 8"):
        SyntheticVideoDataset(4, directions=6)
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticVideoDataset(4, speed=0.9)
    with pytest.raises(ValueError, match="unknown colour"):
        SyntheticVideoDataset(4, colors=("mauve",))
    with pytest.raises(IndexError):
        SyntheticVideoDataset(4)[4]


def test_fast_enough_for_cpu_training():
    ds = SyntheticVideoDataset(300)
    start = time.perf_counter()
    for i in range(300):
        ds[i]
    assert time.perf_counter() - start < 5.0  # ~1 ms per 16x32x32 video on an idle core


def test_fixed_background_keeps_every_other_property():
    plain = SyntheticVideoDataset(6, size=16, colors=("white",), motion="bounce", seed=3)
    fixed = SyntheticVideoDataset(6, size=16, colors=("white",), motion="bounce", seed=3,
                                  background=(0, 0, 0))
    for i in range(6):
        a, b = plain[i], fixed[i]
        assert a["caption"] == b["caption"] and torch.equal(a["trajectory"], b["trajectory"])
        assert torch.equal(b["video"][:, :, 0, 0], torch.full((3, b["video"].shape[1]), -1.0))
    with pytest.raises(ValueError, match="closer than min_color_distance"):
        SyntheticVideoDataset(2, colors=("white",), background=(0.9, 0.9, 0.9))
    with pytest.raises(ValueError, match="3 values in"):
        SyntheticVideoDataset(2, background=(0, 0))


def test_bouncing_shapes_stay_inside_and_keep_their_speed():
    ds = SyntheticVideoDataset(6, num_frames=200, size=32, motion="bounce", seed=1)
    for i in range(len(ds)):
        item = ds[i]
        p = item["trajectory"]
        assert (p >= ds.margin - 1e-4).all() and (p <= ds.size - 1 - ds.margin + 1e-4).all()
        steps = (p[1:] - p[:-1]).norm(dim=1)
        lo, hi = (v * ds.size / 15 for v in ds.speed)
        assert steps.max() <= hi + 1e-4 and steps.median() >= lo - 1e-4  # reflections only shorten steps
        border = torch.cat([item["video"][:, :, 0].flatten(1), item["video"][:, :, -1].flatten(1)], 1)
        assert (border.std(dim=1) < 1e-6).all()  # the border pixels stay background
    # The label is the initial direction; short and long versions of a video agree at the start.
    short = SyntheticVideoDataset(6, num_frames=16, size=32, motion="bounce", seed=1)
    torch.testing.assert_close(short[0]["trajectory"], ds[0]["trajectory"][:16])
    with pytest.raises(ValueError, match="motion must be"):
        SyntheticVideoDataset(2, motion="spin")
