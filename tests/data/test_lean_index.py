"""The lean source index of the real-data layouts: the same sources and items as the per-row objects it
replaced, a bounded memory per row, no file-system call per row at construction, missing files counted
when read; the uint8 item path and the decode-only-the-clip path give the old values."""

from __future__ import annotations

import csv
import gc
import json
import os
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.helpers import level_frames
from videogen.core.training import TrainingModule
from videogen.core.video import from_uint8, read_video, resize_center_crop
from videogen.data import (
    ClassFolderVideos,
    ClipSource,
    CsvCaptionVideos,
    FrameFolderVideos,
    JsonCaptionVideos,
)

HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _old_csv_sources(root: Path, csv_path: Path, template: str) -> list[ClipSource]:
    """The construction the index replaced (per-row dict, Path and dataclass), without the existence check."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [ClipSource(root / template.format(**row), caption=row["name"].strip())
                for row in csv.DictReader(f)]


def test_csv_index_lists_the_sources_of_the_per_row_construction(tmp_path):
    rows = [["1001", "http://x/1", "PT10S", "000001_000050", "  a cat, on a mat  "],
            ["1002", "http://x/2", "PT5S", "000001_000050", 'a "quoted" caption\nover two lines'],
            ["1003", "http://x/3", "PT7S", "000051_000100", "ünïcödé — 雪 ☃"]]
    csv_path = _write_csv(tmp_path / "webvid.csv", rows)
    with open(csv_path, "a", encoding="utf-8") as f:
        f.write("\n1004,http://x/4,PT1S,000051_000100,after a blank line\n")
    for template in ("{videoid}.mp4", "{page_dir}/{videoid}.mp4", "{page_dir}/{videoid!s:>6}_{videoid}.mp4"):
        ds = CsvCaptionVideos(tmp_path, csv_path, path_template=template)
        assert list(ds.sources) == _old_csv_sources(tmp_path, csv_path, template)
        assert len(ds) == 4 and ds.sources[-1].caption == "after a blank line"
    with pytest.raises(ValueError, match="fields must name CSV columns"):
        CsvCaptionVideos(tmp_path, csv_path, path_template="{0}.mp4")
    with pytest.raises(ValueError, match=r"path_template '\{videoid\[9\]\}.mp4' does not format the row"):
        CsvCaptionVideos(tmp_path, csv_path, path_template="{videoid[9]}.mp4")  # one field: formatted on read
    (tmp_path / "short.csv").write_text("videoid,contentUrl,duration,page_dir,name\n1,x,y,z,ok\n2,x\n")
    with pytest.raises(ValueError, match="a row has 2 fields, fewer than the header's 5"):
        CsvCaptionVideos(tmp_path, tmp_path / "short.csv")


def test_other_layouts_list_the_sources_of_the_per_row_construction(tmp_path, make_video):
    root = tmp_path / "UCF-101"
    for cls in ("PlayingGuitar", "ApplyEyeMakeup"):
        for g in (1, 2, 10):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"v_{cls}_g{g}_c01.avi").touch()
    ucf = ClassFolderVideos(root)
    assert ucf.sources[0] == ClipSource(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g1_c01.avi", label=0,
                                        caption="apply eye makeup")
    assert [s.path.name for s in ucf.sources][:3] == ["v_ApplyEyeMakeup_g1_c01.avi",
                                                      "v_ApplyEyeMakeup_g2_c01.avi",
                                                      "v_ApplyEyeMakeup_g10_c01.avi"]
    assert [s.label for s in ucf.sources] == [0, 0, 0, 1, 1, 1]

    entries = {"10": {"video": "b/x.mp4", "caption": 7}, "2": {"video": "a.mp4", "caption": "two"}}
    (tmp_path / "caps.json").write_text(json.dumps(entries))
    cater = JsonCaptionVideos(tmp_path, tmp_path / "caps.json")
    assert list(cater.sources) == [ClipSource(tmp_path / "a.mp4", caption="two"),
                                   ClipSource(tmp_path / "b" / "x.mp4", caption="7")]

    sky = tmp_path / "sky"
    for clip, n in (("v2/c1", 3), ("v10/c1", 2), ("v2/c0", 1)):
        (sky / clip).mkdir(parents=True)
        for k in range(n):
            (sky / clip / f"{k + 1}.jpg").touch()
    (sky / "v2" / "c1" / "notes.txt").touch()
    frames = FrameFolderVideos(sky)
    folders = [sky / "v2" / "c0", sky / "v2" / "c1", sky / "v10" / "c1"]
    assert [s.path for s in frames.sources] == folders
    assert frames.sources[1].frames == tuple(folders[1] / f"{k}.jpg" for k in (1, 2, 3))
    assert frames.sources[2].label is None and frames.sources[2].caption is None


def test_index_memory_per_row_is_bounded(tmp_path):
    n = 20_000  # tracemalloc slows the parse ~9x; the fixed costs are a few KiB, < 0.3 B a row here
    rows = [[str(10_000_000 + i), f"https://example.com/{i}.mp4", "PT00H00M12S",
             f"{i // 50:06d}_{i // 50 + 49:06d}", f"caption {i} of a stock video"] for i in range(n)]
    csv_path = _write_csv(tmp_path / "webvid.csv", rows)
    del rows
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ds = CsvCaptionVideos(tmp_path, csv_path, path_template="{page_dir}/{videoid}.mp4")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    text = ds.index.paths.data.nbytes + ds.index.captions.data.nbytes  # the strings' UTF-8 bytes
    shared = ds._status.nbytes + ds._draws.nbytes  # torch shared memory (not traced)
    per_row = (held - text + shared) / n
    assert per_row < 60, f"{per_row:.1f} bytes per row besides the text"  # per-row objects: ~700
    assert held + shared < (text + 60 * n)
    assert ds.sources[n - 1].caption == f"caption {n - 1} of a stock video"


class _Counter:
    def __init__(self, monkeypatch):
        self.calls = 0
        for module, name in ((os, "stat"), (os, "lstat"), (os, "access"), (os, "scandir"), (os, "listdir")):
            original = getattr(module, name)
            monkeypatch.setattr(module, name, self._wrap(original))

    def _wrap(self, original):
        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)
        return counted


def test_construction_asks_the_file_system_nothing_per_row(tmp_path, monkeypatch):
    n = 2000
    _write_csv(tmp_path / "webvid.csv", [[str(i), "u", "d", "p", f"c{i}"] for i in range(n)])
    (tmp_path / "caps.json").write_text(json.dumps([{"video": f"{i}.mp4", "caption": "c"} for i in range(n)]))
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (tmp_path / "UCF-101" / "A").mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 A\n")
    (lists / "trainlist01.txt").write_text("".join(f"A/v{i}.avi 1\n" for i in range(n)))
    counter = _Counter(monkeypatch)
    built = [CsvCaptionVideos(tmp_path, tmp_path / "webvid.csv"),
             JsonCaptionVideos(tmp_path, tmp_path / "caps.json"),
             ClassFolderVideos(tmp_path / "UCF-101", split="train")]
    assert all(len(ds) == n for ds in built)
    assert counter.calls < 20, counter.calls  # the old construction: two stat calls per row (12000)


def test_missing_file_is_skipped_and_counted_when_read_in_a_worker(tmp_path, make_video):
    make_video(tmp_path / "a.mp4")
    (tmp_path / "caps.json").write_text(json.dumps([{"video": "gone.mp4", "caption": "x"},
                                                    {"video": "a.mp4", "caption": "y"}]))
    ds = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", num_frames=4)
    assert len(ds) == 2 and ds.missing == [] and ds.num_skipped == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
    assert batch["caption"] == ["y", "y"] and batch["index"].tolist() == [1, 1]
    assert ds.missing == [tmp_path / "gone.mp4"] and ds.num_skipped == 1  # counted in the worker, seen here


@pytest.mark.parametrize("size", [None, (12, 20)])
def test_uint8_items_give_the_float_values_on_the_device(tmp_path, make_video, size):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 16, 32, 3), dtype=np.uint8)
    make_video(tmp_path / "v.mp4", frames=frames)
    (tmp_path / "caps.json").write_text(json.dumps([{"video": "v.mp4", "caption": "noise"}]))
    kw = dict(num_frames=4, frame_stride=2, size=size, start="random", seed=3)
    as_float = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", **kw)
    as_uint8 = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", dtype="uint8", **kw)
    module = TrainingModule()
    for _ in range(3):  # three draws: three clip starts, the same in both datasets
        f, u = as_float[0]["video"], as_uint8[0]["video"]
        assert f.dtype == torch.float32 and u.dtype == torch.uint8 and f.shape == u.shape
        batch = module.on_after_batch_transfer({"video": u[None], "label": torch.tensor([1]),
                                                "caption": ["noise"]}, 0)
        assert batch["video"].dtype == torch.float32 and batch["label"].dtype == torch.int64
        # the old float path: the decoded clip (same seed, index, draw) through from_uint8 + resize
        draw = int(as_float._draws[0]) - 1
        clip = read_video(tmp_path / "v.mp4", 4, 2, "random", np.random.default_rng([3, 0, draw]))
        old = from_uint8(clip) if size is None else resize_center_crop(from_uint8(clip), size)
        assert torch.equal(f, old)
        if size is None:
            assert torch.equal(batch["video"][0], old)
        else:  # resized in uint8: rounded to the nearest level
            diff = (batch["video"][0] - old).abs()
            assert float(diff.max()) <= 1 / 127.5 + 1e-6 and float(diff.mean()) < 0.5 / 127.5
    with pytest.raises(ValueError, match="dtype must be one of"):
        JsonCaptionVideos(tmp_path, tmp_path / "caps.json", dtype="float16")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_decoding_only_the_clip_frames_gives_the_span_frames(tmp_path, make_video, suffix):
    levels = level_frames(40, 32, 64)
    noise = np.random.default_rng(1).integers(0, 40, levels.shape, dtype=np.uint8)
    path = make_video(tmp_path / f"v{suffix}", frames=levels // 2 + noise)
    import decord

    every = decord.VideoReader(str(path), num_threads=1).get_batch(list(range(40))).asnumpy()
    every = torch.from_numpy(every)  # (40, H, W, 3): a sequential decode of every frame
    for stride in (2, 3, 4):
        for start in range(0, 40 - 3 * stride, 3):
            wanted = list(range(start, start + 3 * stride + 1, stride))
            span = read_video(path, 4, stride, start, seek=False)
            default = read_video(path, 4, stride, start)  # get_batch(indices)
            assert torch.equal(span, every[wanted]) and torch.equal(default, span), (stride, start)


def test_only_avi_decodes_the_span(tmp_path, make_video, monkeypatch):
    import decord

    asked = []
    get_batch = decord.VideoReader.get_batch
    monkeypatch.setattr(decord.VideoReader, "get_batch",
                        lambda self, indices: asked.append(list(indices)) or get_batch(self, indices))
    for suffix in (".mp4", ".avi"):
        make_video(tmp_path / f"v{suffix}", num_frames=12)
        clip = read_video(tmp_path / f"v{suffix}", 3, 4, 1)
        assert clip.shape == (3, 16, 32, 3)
        np.testing.assert_allclose(clip.float().mean(dim=(1, 2, 3)).numpy(), [30, 70, 110], atol=3)
    # AVI: decord's seeking returned neighbouring frames, so the whole span 1..9 is decoded there
    assert asked == [[1, 5, 9], list(range(1, 10))]
