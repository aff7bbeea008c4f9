"""Writing webdataset tar shards in the video2dataset layout (the reader is :mod:`videogen.data.shards`).

- :func:`write_shards`: any videogen map-style dataset (``CsvCaptionVideos``, ``ClassFolderVideos``,
  ``JsonCaptionVideos``, ``FrameFolderVideos``, ``SyntheticVideoDataset`` ...) or a list of files into
  shards, each written under a temporary name and renamed when complete, with ``<stem>_stats.json``.
- ``python -m videogen.data.shard_writer --help``: the same from the command line.

Sample ``i`` gets the key ``f"{i:09d}"``, so :class:`~videogen.data.shards.WebVideoShards` gives it the
``index`` ``i`` - and, with ``start="random"``, the clip the map-style dataset draws for that index.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videogen.core.video import VIDEO_EXTENSIONS
from videogen.data.clips import ClipDataset, ClipSource
from videogen.data.shards import VIDEO_FIELDS

__all__ = ["main", "write_shards"]


class _AtomicShards:
    """``ShardWriter`` opener/post pair: a shard is written to ``<name>.partial`` and renamed when complete,
    with ``<stem>_stats.json`` (video2dataset's per-shard record) next to it."""

    def __init__(self) -> None:
        self.files: dict[str, io.BufferedWriter] = {}
        self.counts: dict[str, int] = {}
        self.done: list[str] = []

    def opener(self, name: str):
        self.files[name] = open(name + ".partial", "wb")  # noqa: SIM115 - closed in post/abort
        self.counts[name] = 0
        return self.files[name]

    def post(self, name: str) -> None:
        f = self.files.pop(name)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if self.counts[name] == 0:  # ShardWriter opens a shard before it knows a sample will come
            os.remove(name + ".partial")
            return
        os.replace(name + ".partial", name)
        stem = name[: -len(".tar")] if name.endswith(".tar") else name
        Path(stem + "_stats.json").write_text(json.dumps({"count": self.counts[name],
                                                          "successes": self.counts[name]}))
        self.done.append(name)

    def abort(self) -> None:
        for name, f in self.files.items():
            f.close()
            Path(name + ".partial").unlink(missing_ok=True)
        self.files.clear()


def _encode_frames(frames: torch.Tensor, fps: float) -> bytes:
    """uint8 ``(T, H, W, C)`` -> mp4 bytes (libx264, crf 18: lossy)."""
    from videogen.core.video import write_video

    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "v.mp4", frames, fps=fps).read_bytes()


def _source_fields(s: ClipSource, fps: float) -> dict:
    """The fields of one map-style source: its video file as it is, or its frame folder encoded as mp4."""
    if s.frames is not None:
        from videogen.data.clips import read_frames

        video = {"mp4": _encode_frames(read_frames(s.frames), fps)}
    else:
        field = s.path.suffix.lower().lstrip(".")
        if field not in VIDEO_FIELDS:
            raise ValueError(f"{s.path} is not a video file ({', '.join(VIDEO_EXTENSIONS)})")
        video = {field: s.path.read_bytes()}  # no re-encoding
    return {**video, "caption": s.caption, "label": s.label, "source": s.path.name}


def _samples_of(data, fps: float) -> Iterator[tuple[int, dict | Exception]]:
    """(index, sample fields, or the exception that entry raised) for every entry of a dataset or a file
    list."""
    if isinstance(data, ClipDataset) or not isinstance(data, Dataset):
        if isinstance(data, ClipDataset):
            sources = data.sources
        else:
            sources = [ClipSource(Path(e)) if isinstance(e, (str, os.PathLike)) else
                       ClipSource(Path(e[0]), caption=str(e[1])) for e in data]
        for i in range(len(sources)):
            try:
                yield i, _source_fields(sources[i], fps)
            except Exception as err:
                yield i, err
        return
    for i in range(len(data)):
        try:
            item = data[i]
            video = item["video"]
            # write_video takes float (C, T, H, W) in [-1, 1] or uint8 (T, H, W, C)
            frames = video.permute(1, 2, 3, 0) if video.dtype == torch.uint8 else video
            label = item.get("label")
            yield i, {"mp4": _encode_frames(frames, fps), "caption": item.get("caption"),
                      "label": int(label) if label is not None else None}
        except Exception as err:
            yield i, err


def write_shards(
    data: Dataset | Sequence[str | os.PathLike | tuple[str | os.PathLike, str]],
    out_pattern: str,
    samples_per_shard: int = 1000,
    max_shard_bytes: float = 3e9,
    fps: float = 8.0,
) -> list[str]:
    """Write a dataset as webdataset shards in the video2dataset layout; returns the shard paths.

    Args:
        data: a videogen map-style dataset, or a list of video files (paths, or ``(path, caption)``).
            Video files go in as they are (no re-encoding; their extension names the field: ``mp4``,
            ``avi`` ...); frame folders (``FrameFolderVideos``) and generated datasets (items with a
            ``video``) are encoded as mp4 at ``fps`` (libx264 crf 18: lossy).
        out_pattern: printf pattern of the shard paths, e.g. ``"shards/%05d.tar"`` (folders are made).
        samples_per_shard, max_shard_bytes: a new shard starts when either is reached.

    Sample ``i`` of ``data`` gets the key ``f"{i:09d}"`` and the fields ``<ext>`` (video bytes), ``txt``
    (caption, if any), ``cls`` (label, if any) and ``json`` (``key``, ``caption``, ``label``, ``status``).
    Entries that cannot be read are left out with one warning each. Every shard appears under its name
    only when complete (written as ``<name>.partial``, then renamed), with ``<stem>_stats.json``.
    """
    from webdataset import ShardWriter

    try:
        out_pattern % 0
    except TypeError:
        raise ValueError(f"out_pattern must hold one printf integer field, e.g. 'shards/%05d.tar', got "
                         f"{out_pattern!r}") from None
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    Path(out_pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    shards, failed = _AtomicShards(), 0
    writer = ShardWriter(out_pattern, maxcount=samples_per_shard, maxsize=max_shard_bytes, verbose=0,
                         opener=shards.opener, post=shards.post)
    try:
        for i, fields in _samples_of(data, fps):
            if isinstance(fields, Exception):
                failed += 1
                warnings.warn(f"write_shards: leaving out entry {i}: {type(fields).__name__}: {fields}",
                              stacklevel=2)
                continue
            key = f"{i:09d}"
            caption, label = fields.pop("caption"), fields.pop("label")
            source = fields.pop("source", None)
            meta = {"key": key, "status": "success", "caption": caption, "label": label, "source": source}
            sample = {"__key__": key, **fields,
                      "json": json.dumps({k: v for k, v in meta.items() if v is not None}).encode("utf-8")}
            if caption is not None:
                sample["txt"] = str(caption).encode("utf-8")
            if label is not None:
                sample["cls"] = str(int(label)).encode("ascii")
            writer.write(sample)
            shards.counts[writer.fname] += 1
    except BaseException:
        writer.post = None  # not a complete shard: never renamed
        writer.tarstream.close()
        shards.abort()
        raise
    writer.close()
    if not shards.done:
        raise ValueError(f"write_shards: none of the {failed} entries could be read; no shard written")
    return shards.done


# ---- command line --------------------------------------------------------------------------------------


def _dataset_from_args(args: argparse.Namespace):
    from videogen.data import ClassFolderVideos, CsvCaptionVideos, FrameFolderVideos, JsonCaptionVideos

    if args.layout == "csv":
        return CsvCaptionVideos(args.root, args.csv, path_template=args.path_template,
                                caption_column=args.caption_column)
    if args.layout == "classes":
        return ClassFolderVideos(args.root, split=args.split, fold=args.fold)
    if args.layout == "json":
        return JsonCaptionVideos(args.root, args.json)
    if args.layout == "frames":
        return FrameFolderVideos(args.root)
    return [Path(p) for p in args.files]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m videogen.data.shard_writer OUT_PATTERN LAYOUT ...``: write a dataset as shards."""
    parser = argparse.ArgumentParser(
        prog="python -m videogen.data.shard_writer",
        description="Write a video dataset as webdataset tar shards in the video2dataset layout.")
    parser.add_argument("out_pattern", help="printf pattern of the shard paths, e.g. shards/%%05d.tar")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--max-shard-bytes", type=float, default=3e9)
    parser.add_argument("--fps", type=float, default=8.0, help="fps of frame folders encoded as mp4")
    layouts = parser.add_subparsers(dest="layout", required=True)
    csv_ = layouts.add_parser("csv", help="CsvCaptionVideos (WebVid CSV)")
    csv_.add_argument("root")
    csv_.add_argument("csv")
    csv_.add_argument("--path-template", default="{videoid}.mp4")
    csv_.add_argument("--caption-column", default="name")
    classes = layouts.add_parser("classes", help="ClassFolderVideos (UCF-101 layout)")
    classes.add_argument("root")
    classes.add_argument("--split", choices=("train", "test"))
    classes.add_argument("--fold", type=int, default=1)
    json_ = layouts.add_parser("json", help="JsonCaptionVideos (CATER-GEN)")
    json_.add_argument("root")
    json_.add_argument("json")
    frames = layouts.add_parser("frames", help="FrameFolderVideos (encoded as mp4)")
    frames.add_argument("root")
    files = layouts.add_parser("files", help="video files, no captions")
    files.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    try:
        written = write_shards(_dataset_from_args(args), args.out_pattern, args.samples_per_shard,
                               args.max_shard_bytes, args.fps)
    except (ValueError, FileNotFoundError, KeyError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {len(written)} shards: {written[0]} .. {written[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
