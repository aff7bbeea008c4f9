"""videogen.data.video: real layouts, clip sampling, aspect-preserving resize, skipping broken inputs."""

from __future__ import annotations

import json
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.helpers import frame_levels, level_frames
from videogen.data import ClassFolderVideos, CsvCaptionVideos, FrameFolderVideos, JsonCaptionVideos


@pytest.fixture
def ucf(tmp_path, make_video):
    """UCF-101 layout: UCF-101/<class>/*.avi next to ucfTrainTestlist/ with a non-alphabetical classInd."""
    root = tmp_path / "UCF-101"
    for cls in ("PlayingGuitar", "ApplyEyeMakeup"):
        for g in (1, 2):
            make_video(root / cls / f"v_{cls}_g0{g}_c01.avi")
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 PlayingGuitar\n2 ApplyEyeMakeup\n")
    (lists / "trainlist01.txt").write_text(
        "PlayingGuitar/v_PlayingGuitar_g01_c01.avi 1\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\n")
    return root


def test_class_folders_with_split_lists(ucf):
    every = ClassFolderVideos(ucf, num_frames=4)
    assert len(every) == 4 and every.classes == ["PlayingGuitar", "ApplyEyeMakeup"]
    train = ClassFolderVideos(ucf, split="train", num_frames=4, start="first")
    assert [s.path.name for s in train.sources] == ["v_PlayingGuitar_g01_c01.avi",
                                                    "v_ApplyEyeMakeup_g01_c01.avi"]
    item = train[1]
    assert item["label"].item() == 1 and item["caption"] == "apply eye makeup"
    assert item["video"].shape == (3, 4, 16, 32)
    test = ClassFolderVideos(ucf, split="test", num_frames=4)
    assert len(test) == 1 and test[0]["label"].item() == 1
    with pytest.raises(FileNotFoundError, match="split list"):
        ClassFolderVideos(ucf, split="test", fold=2)


def test_frame_stride_and_start_are_applied(ucf):
    first = ClassFolderVideos(ucf, num_frames=4, frame_stride=3, start="first")[0]["video"]
    np.testing.assert_allclose(frame_levels(first), [20, 50, 80, 110], atol=3)
    center = ClassFolderVideos(ucf, num_frames=3, frame_stride=2, start="center")[0]["video"]
    np.testing.assert_allclose(frame_levels(center), [50, 70, 90], atol=3)  # span 5 of 12: start 7 // 2
    a = ClassFolderVideos(ucf, num_frames=2, frame_stride=2, start="random", seed=1)
    b = ClassFolderVideos(ucf, num_frames=2, frame_stride=2, start="random", seed=1)
    starts_a = [round((frame_levels(a[0]["video"])[0] - 20) / 10) for _ in range(12)]
    starts_b = [round((frame_levels(b[0]["video"])[0] - 20) / 10) for _ in range(12)]
    assert starts_a == starts_b  # reproducible per (seed, index, draw)
    assert len(set(starts_a)) > 3 and max(starts_a) <= 9  # a new start each epoch, clip stays inside


def test_resize_keeps_aspect_ratio(tmp_path, make_video):
    # 16x48 frames whose columns go dark -> bright; size 8 must take the middle third, not squash.
    ramp = np.linspace(0, 255, 48).astype(np.uint8)
    frames = np.broadcast_to(ramp[None, None, :, None], (6, 16, 48, 3)).copy()
    make_video(tmp_path / "wide" / "a.mp4", frames=frames)
    (tmp_path / "caps.json").write_text(json.dumps({"0": {"video": "wide/a.mp4", "caption": "a ramp"}}))
    item = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", num_frames=2, size=8)[0]
    assert item["video"].shape == (3, 2, 8, 8) and item["caption"] == "a ramp"
    row = (item["video"][0, 0].mean(0) + 1) * 127.5  # column levels of the crop
    assert 80 < row[0] < row[-1] < 175  # middle third of 0..255, increasing; squashing gives ~0..255
    tall = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", num_frames=2, size=(12, 6))[0]
    assert tall["video"].shape == (3, 2, 12, 6)


def test_broken_inputs_are_skipped_and_counted(tmp_path, make_video):
    root = tmp_path / "videos"
    good = make_video(root / "good.mp4")
    (root / "empty.mp4").touch()
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    make_video(root / "one_frame.mp4", num_frames=1)
    make_video(root / "short.mp4", num_frames=3)
    rows = ["videoid,contentUrl,duration,page_dir,name"]
    rows += [f"{v},http://x/{v},PT1S,000,clip {v}" for v
             in ("empty", "absent", "truncated", "one_frame", "short", "good")]  # absent: never downloaded
    (tmp_path / "webvid.csv").write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is checked (or warned about) at construction
        ds = CsvCaptionVideos(root, tmp_path / "webvid.csv", num_frames=8, start="first")
    assert len(ds) == 6 and ds.missing == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = ds[0]  # empty -> absent -> truncated -> one_frame -> short -> good
        assert item["caption"] == "clip good" and item["index"].item() == 5
        ds[1]
        ds[2]  # already known broken: no new warnings
    assert len([w for w in caught if "skipping unreadable" in str(w.message)]) == 4
    assert len([w for w in caught if "skipping missing video" in str(w.message)]) == 1
    assert ds.num_skipped == 5 and {p.stem for p in ds.skipped} == {"empty", "absent", "truncated",
                                                                    "one_frame", "short"}
    assert [p.name for p in ds.missing] == ["absent.mp4"]

    only_broken = CsvCaptionVideos(root, tmp_path / "webvid.csv", path_template="{videoid}.mp4",
                                   num_frames=20)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="all 6 videos are unreadable"):
        only_broken[0]


def test_skip_count_is_shared_with_loader_workers(tmp_path, make_video):
    make_video(tmp_path / "a.mp4")
    (tmp_path / "b.mp4").touch()
    (tmp_path
     / "caps.json").write_text(json.dumps([{"video": "a.mp4", "caption": "x"},
                                           {"video": "b.mp4", "caption": "y"}]))
    ds = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", num_frames=4)
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
    assert batch["video"].shape == (2, 3, 4, 16, 32) and batch["caption"] == ["x", "x"]
    assert ds.num_skipped == 1  # counted in the worker process, seen here


def test_frame_folders_natural_order_and_bad_images(tmp_path):
    root = tmp_path / "sky_train"
    frames = level_frames(12)
    for clip in ("a/a1", "a/a2", "b/b1"):
        (root / clip).mkdir(parents=True)
        for k in range(12):  # names 1.png .. 12.png: natural order differs from string order
            iio.imwrite(root / clip / f"{k + 1}.png", frames[k])
    (root / "b" / "b1" / "4.png").write_bytes(b"not a png")
    (root / "c" / "c1").mkdir(parents=True)
    iio.imwrite(root / "c" / "c1" / "1.png", frames[0][..., 0])  # a single grey frame: too short
    ds = FrameFolderVideos(root, num_frames=4, frame_stride=3, start="first")
    assert [s.path.name for s in ds.sources] == ["a1", "a2", "b1", "c1"]
    np.testing.assert_allclose(frame_levels(ds[0]["video"]), [20, 50, 80, 110], atol=0.01)
    assert "label" not in ds[0] and "caption" not in ds[0]
    with pytest.warns(UserWarning, match="skipping unreadable"):
        assert ds[2]["index"].item() == 0  # b1 (bad image) and c1 (1 frame) skipped, wraps to a1
    assert ds.num_skipped == 2
    gray = FrameFolderVideos(root / "c", num_frames=1)[0]["video"]
    assert gray.shape == (3, 1, 16, 32) and torch.allclose(gray[0], gray[2])


def test_empty_or_missing_roots_raise(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found no videos"):
        FrameFolderVideos(tmp_path / "empty")
    with pytest.raises(ValueError, match="found no videos"):
        ClassFolderVideos(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="root"):
        ClassFolderVideos(tmp_path / "nope")
    (tmp_path / "bad.csv").write_text("videoid,contentUrl\n1,x\n")
    with pytest.raises(ValueError, match=r"lacks columns \['name'\]"):
        CsvCaptionVideos(tmp_path, tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="start must be"):
        FrameFolderVideos(tmp_path, start="middle")
