"""Bench tables ``data_index``, ``data_workers``, ``data_decode``: the real-data path at WebVid scale.

- ``data_index``: construction time and memory of ``CsvCaptionVideos`` over a synthetic WebVid-layout CSV
  (``videoid, contentUrl, duration, page_dir, name``; files absent, as nothing is checked per row), the
  lean index vs the per-row construction it replaced (kept here only, :func:`_old_index`: a ``ClipSource``
  dataclass + ``Path`` + caption per row and two ``Path.is_file`` calls per row).  Each is built in a fresh
  process; "held" is its RSS after construction minus before, "peak" its peak RSS.
- ``data_workers``: memory growth of 4 forked DataLoader workers over one epoch of reads of the index
  alone (no decoding: each item reads its row's path and caption), the sum of the workers' private
  memory (``/proc/<pid>/smaps_rollup``) at the end minus after their first batch.  Per-row Python
  objects are copied page by page as reference counts touch them; NumPy columns are not written.
- ``data_decode``: clips per second per DataLoader worker (one thread: ``torch.set_num_threads(1)`` and
  one decoding thread in every backend; a new reader per clip as in a worker) for each decoder backend
  that loads (decord, PyAV, torchcodec: ``videogen.core.decoders``), random 16-frame clips at stride 4
  from generated 64-frame libx264 MP4s (WebVid's 336x596 and 720p): the decode alone (uint8
  ``(T, H, W, C)``) and the loader's item (``dtype="uint8"``, resized and centre-cropped to 256x256 and
  512x1024).  The decoders' frames are checked identical on every clip timed.

The 10.7M-row index numbers in docs/data.md come from a one-off run of this module's command line:
``python -m videogen.bench.data --rows 10700000 --impl lean`` (and ``--impl old`` at 1M rows, scaled).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videogen.bench.harness import register_table

__all__ = ["build_decode_table", "build_index_table", "build_workers_table", "write_webvid_csv"]

HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]
_WORDS = ("aerial view of a city at night, time lapse of clouds over mountains, woman walking on the beach "
          "at sunset, close up of hands typing on a laptop keyboard, slow motion water splash").split()


def write_webvid_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A WebVid-10M-layout CSV of ``rows`` rows: captions of 6-16 stock words (~60 characters, WebVid's
    typical length), ``page_dir`` folders of 50 videos."""
    rng = np.random.default_rng(seed)
    words = np.array(_WORDS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            lengths = rng.integers(6, 17, n)
            picks = rng.integers(0, len(words), (n, 16))
            writer.writerows(
                [str(1_000_000_000 + i), f"https://ak.picdn.net/shutterstock/videos/{1_000_000_000 + i}/"
                 "preview/stock-footage.mp4", "PT00H00M15S",
                 f"{i // 50 * 50 + 1:06d}_{i // 50 * 50 + 50:06d}", " ".join(words[picks[k, :lengths[k]]])]
                for k, i in enumerate(range(start, start + n)))
    return path


# ----------------------------------------------------------------------------- index construction


def _old_index(root: Path, csv_path: Path, template: str = "{videoid}.mp4") -> list:
    """The per-row construction that the lean index replaced (for comparison only): one ``ClipSource``
    per row, two ``is_file`` calls per row; every row is kept (as if its file existed)."""
    from videogen.data.clips import ClipSource

    with open(csv_path, newline="", encoding="utf-8") as f:
        sources = [ClipSource(root / template.format(**row), caption=row["name"].strip())
                   for row in csv.DictReader(f)]
    for source in sources:  # the files are absent here: the results are dropped, every row is kept
        source.path.is_file()  # the missing list
        source.path.is_file()  # the kept list
    return sources


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def _index_child(impl: str, root: str, csv_path: str) -> dict[str, Any]:
    """Build one index in this process; its time, rows and memory (run in a fresh process)."""
    import gc

    from videogen.data import CsvCaptionVideos

    gc.collect()
    before = _rss_mib()
    start = time.perf_counter()
    if impl == "old":
        index = _old_index(Path(root), Path(csv_path))
    else:
        index = CsvCaptionVideos(root, csv_path)
    seconds = time.perf_counter() - start
    gc.collect()
    held = _rss_mib() - before
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"rows": len(index), "seconds": seconds, "held_mib": held, "peak_mib": peak}


def _run_index_child(impl: str, root: Path, csv_path: Path) -> dict[str, Any]:
    code = ("import json, sys; from videogen.bench.data import _index_child; "
            "print(json.dumps(_index_child(*sys.argv[1:])))")
    out = subprocess.run([sys.executable, "-c", code, impl, str(root), str(csv_path)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_index_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    rows = 20_000 if quick else 100_000
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = write_webvid_csv(tmp / "results_train.csv", rows)
        for impl, label in (("old", "per-row ClipSource + 2 is_file (before)"), ("lean", "lean index (now)")):
            r = _run_index_child(impl, tmp, csv_path)
            out.append({"index": label, "rows": r["rows"], "seconds": round(r["seconds"], 3),
                        "rows/s": round(r["rows"] / r["seconds"]),
                        "held MiB": round(r["held_mib"], 1),
                        "held B/row": round(r["held_mib"] * 2**20 / r["rows"], 1),
                        "peak MiB": round(r["peak_mib"], 1),
                        "10.7M rows s (scaled)": round(r["seconds"] * 10.7e6 / r["rows"], 1),
                        "10.7M rows GiB (scaled)": round(r["held_mib"] * 10.7e6 / r["rows"] / 1024, 2)})
    return out


# ----------------------------------------------------------------------------- worker memory


class _RowsOnly(torch.utils.data.Dataset):
    """Items that read only a row of the index (path and caption), no decoding."""

    def __init__(self, dataset: Any, old: bool) -> None:
        self.dataset, self.old = dataset, old
        self.rows = list(dataset.sources) if old else None  # the old layout: a list of ClipSource

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> int:
        source = self.rows[i] if self.old else self.dataset.index.source(i)
        return len(str(source.path)) + len(source.caption)


def _private_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        text = f.read()
    return sum(int(v) for v in re.findall(r"Private_(?:Clean|Dirty):\s+(\d+)", text)) / 1024


def _worker_growth(dataset: Any, old: bool, workers: int = 4) -> float:
    import multiprocessing

    loader = torch.utils.data.DataLoader(_RowsOnly(dataset, old), batch_size=512, num_workers=workers,
                                         multiprocessing_context=multiprocessing.get_context("fork"))
    it = iter(loader)
    batches = len(loader)
    next(it)
    pids = [w.pid for w in it._workers]
    start = sum(_private_mib(p) for p in pids)
    for k in range(1, batches):
        next(it)
        if k == batches - workers - 1:  # every worker still alive, nearly all rows read
            end = sum(_private_mib(p) for p in pids)
    del it
    return end - start


def build_workers_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    from videogen.data import CsvCaptionVideos

    rows = 20_000 if quick else 100_000
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = CsvCaptionVideos(tmp, write_webvid_csv(tmp / "results_train.csv", rows))
        for old, label in ((True, "per-row ClipSource list (before)"), (False, "lean index (now)")):
            growth = _worker_growth(dataset, old)
            out.append({"index": label, "rows read (1 epoch)": rows, "workers": 4,
                        "workers' growth MiB": round(growth, 1),
                        "B/row": round(growth * 2**20 / rows, 1)})
    return out


# ----------------------------------------------------------------------------- decoding


def _write_test_video(path: Path, frames: int, h: int, w: int) -> Path:
    """A textured pattern that moves each frame (so the encoder has real work, as with stock footage)."""
    from videogen.core.video import write_video

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h // 8 + 1, w // 8 + frames + 1, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(texture, 8, 0), 8, 1)  # 8x8 blocks
    video = np.stack([big[:h, 8 * t // 2:8 * t // 2 + w] for t in range(frames)])
    return write_video(path, video, fps=25)


def _clips_per_second(methods: dict[Any, Any], starts: list[int]) -> dict[Any, float]:
    """Clips per second of each method over the same starts, the methods interleaved clip by clip (so that
    a change of machine load hits every method alike)."""
    seconds = dict.fromkeys(methods, 0.0)
    for fn in methods.values():
        fn(starts[0])  # warm-up (library load, page cache)
    for s in starts:
        for name, fn in methods.items():
            begin = time.perf_counter()
            fn(s)
            seconds[name] += time.perf_counter() - begin
    return {name: len(starts) / t for name, t in seconds.items()}


def _usable_decoders() -> list[str]:
    """The decoder backends that load here (decord, PyAV, torchcodec), in the ``"auto"`` order."""
    from videogen.core.decoders import resolve_decoder

    usable = []
    for name in ("decord", "pyav", "torchcodec"):
        try:
            resolve_decoder(name)
        except (ImportError, RuntimeError):
            continue
        usable.append(name)
    return usable


#: (source video H, W, item size): WebVid's 336x596 previews -> 256x256, 720p -> 512x1024
#: (source height, width, item size): WebVid's 336x596 to 256^2; 512x1024 kept as is (the issue's
#: dataset-path-vs-raw-decode comparison: no resize); 720p to 512x1024 (resize and crop)
DECODE_SETTINGS = ((336, 596, (256, 256)), (512, 1024, (512, 1024)), (720, 1280, (512, 1024)))


def _decode_rows(folder: Path, h: int, w: int, size: tuple[int, int], clips: int,
                 decoders: list[str]) -> list[dict[str, Any]]:
    from videogen.core.video import read_video
    from videogen.data import JsonCaptionVideos, collate

    num_frames, stride, length = 16, 4, 64
    span = (num_frames - 1) * stride + 1
    path = _write_test_video(folder / f"v{h}x{w}.mp4", length, h, w)
    (folder / f"v{h}.json").write_text(json.dumps([{"video": path.name, "caption": "x"}]))
    starts = [int(s) for s in np.random.default_rng(0).integers(0, length - span + 1, clips)]
    # the loader's work: a uint8 item (the WebVid recipes' dtype), resized and centre-cropped to ``size``
    dataset = JsonCaptionVideos(folder, folder / f"v{h}.json", num_frames=num_frames, frame_stride=stride,
                                size=size, dtype="uint8")

    for s in sorted(set(starts)):  # every decoder gives the same frames for every clip timed
        clips_of = [read_video(path, num_frames, stride, s, decoder=d) for d in decoders]
        if not all(torch.equal(clips_of[0], c) for c in clips_of[1:]):
            raise AssertionError(f"decoders {decoders} disagree on the clip from frame {s} of {path.name}")

    def item(decoder: str, s: int) -> torch.Tensor:  # the dataset's __getitem__ work: decode, resize
        return dataset.to_output(read_video(path, num_frames, stride, s, decoder=decoder))

    methods = {}
    for d in decoders:
        methods[(d, "decode")] = lambda s, d=d: read_video(path, num_frames, stride, s, decoder=d)
        methods[(d, "item")] = lambda s, d=d: item(d, s)
        methods[(d, "collated")] = lambda s, d=d: collate([{"video": item(d, s)}])
    rates = _clips_per_second(methods, starts)
    base = rates[(decoders[0], "decode")]
    return [{"source HxW -> item": f"{h}x{w} -> {size[0]}x{size[1]}", "decoder": d, "clips": clips,
             "decode clips/s": round(rates[(d, "decode")], 2), "item clips/s": round(rates[(d, "item")], 2),
             "item / decode": round(rates[(d, "item")] / rates[(d, "decode")], 3),
             "item + collate / decode": round(rates[(d, "collated")] / rates[(d, "decode")], 3),
             f"decode vs {decoders[0]}": round(rates[(d, "decode")] / base, 3)} for d in decoders]


def build_decode_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    decoders = _usable_decoders()
    if not decoders:
        raise RuntimeError("no video decoder loads here: pip install av")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return [row for h, w, size in DECODE_SETTINGS
                    for row in _decode_rows(Path(tmp), h, w, size, (4 if quick else 20) if h < 512 else
                                            (2 if quick else 8), decoders)]
    finally:
        torch.set_num_threads(threads)


def build_shards_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Shard streaming (``WebVideoShards``) against map-style reading of the same mp4 files, one process,
    one thread, interleaved epoch by epoch."""
    from videogen.data import JsonCaptionVideos, WebVideoShards, write_shards

    videos, rounds = (6, 2) if quick else (16, 3)
    clip = dict(num_frames=16, frame_stride=4, size=256, start="random", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            entries = []
            for i in range(videos):
                path = _write_test_video(folder / f"{i:03d}.mp4", 64, 288, 512)
                entries.append({"video": path.name, "caption": f"video {i}"})
            (folder / "list.json").write_text(json.dumps(entries))
            files = JsonCaptionVideos(folder, folder / "list.json", **clip)
            written = write_shards(files, str(folder / "shards" / "%05d.tar"),
                                   samples_per_shard=-(-videos // 4))  # 4 shards
            shards = WebVideoShards(written, **clip, shuffle=False)
            seconds = {"map-style files (JsonCaptionVideos)": 0.0, "webdataset shards (WebVideoShards)": 0.0}
            for epoch in range(rounds):
                begin = time.perf_counter()
                for i in range(len(files)):
                    files[i]
                seconds["map-style files (JsonCaptionVideos)"] += time.perf_counter() - begin
                shards.set_epoch(epoch)
                begin = time.perf_counter()
                n = sum(1 for _ in shards)
                seconds["webdataset shards (WebVideoShards)"] += time.perf_counter() - begin
                assert n == videos, (n, videos)
    finally:
        torch.set_num_threads(threads)
    base = videos * rounds / seconds["map-style files (JsonCaptionVideos)"]
    return [{"reader": name, "videos x epochs": f"{videos} x {rounds}",
             "clips/s (1 thread)": round(videos * rounds / t, 2),
             "vs map-style": round(videos * rounds / t / base, 3)} for name, t in seconds.items()]


register_table(
    "data_index", build_index_table, title="Data: WebVid-layout index construction",
    description="`CsvCaptionVideos` over a synthetic WebVid-layout CSV (no video files: nothing is checked "
                "per row), each built in a fresh process: the per-row construction it replaced vs the lean "
                "index. held = RSS after minus before; the 10.7M-row columns scale linearly (a measured "
                "10.7M-row run is in docs/data.md).")
register_table(
    "data_workers", build_workers_table, title="Data: DataLoader worker memory growth over an epoch",
    description="4 forked workers read every row of the index once (path and caption, no decoding); growth "
                "of the sum of their private memory from the first batch to the end of the epoch.")
register_table(
    "data_decode", build_decode_table, title="Data: clip decoding per decoder, one thread",
    description="Random 16-frame clips at stride 4 from a generated 64-frame libx264 MP4 (one keyframe), one "
                "thread, a new reader per clip, for each decoder that loads here (decord, PyAV, torchcodec; "
                "frames checked identical): the decode alone returns uint8 (T, H, W, C); the item is the "
                "dataset's work for a clip (__getitem__): a dtype='uint8' item resized and centre-cropped "
                "(512x1024 sources need no resize: the item is a view of the decode); 'item + collate' adds "
                "the clip's batching copy (videogen.data.collate: stacked in the decoded (T, H, W, C) "
                "layout), which any batch of decoded frames needs.")
register_table(
    "data_shards", build_shards_table, title="Data: shard streaming vs map-style files, one thread",
    description="The same generated 64-frame 288x512 libx264 mp4 files read as a map-style dataset and as "
                "webdataset shards written from it (4 shards); random 16-frame clips at stride 4 resized to "
                "256, float32 items, one process and one thread, epochs interleaved. Decoding dominates "
                "both; the shard reader adds the tar read and a temporary file per video.")


def main(argv: list[str] | None = None) -> None:
    """One-off index measurement at a given size: ``python -m videogen.bench.data --rows N --impl lean``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rows", type=int, default=10_700_000)
    parser.add_argument("--impl", choices=("lean", "old"), default="lean")
    parser.add_argument("--dir", default=None, help="where the CSV is written (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        csv_path = write_webvid_csv(Path(tmp) / "results_train.csv", args.rows)
        size = csv_path.stat().st_size
        print(f"wrote {args.rows} rows ({size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s",
              flush=True)
        r = _run_index_child(args.impl, Path(tmp), csv_path)
        print(json.dumps({"impl": args.impl, "csv_mib": round(size / 2**20), **r}))


if __name__ == "__main__":
    main()
