"""Clip sampling shared by every real-data layout: a lean source index, frame stride, start policy,
resizing, broken-file skipping.

A layout (``videogen.data.video``) lists its sources once, at construction, into a :class:`SourceIndex`:
columns in NumPy arrays (paths and captions as one UTF-8 buffer + int64 offsets each, labels as int64),
no Python object per row.  At WebVid scale (10.7M rows) a list of per-row objects costs gigabytes per
rank and grows in every forked DataLoader worker as reference counts touch its pages; the index costs
the strings' bytes plus 16 bytes a row and is never written after construction.  Nothing asks the file
system about a row at construction either: a listed file that does not exist is found when read.

This base class turns a source into an item dict: ``video`` ``(C, T, H, W)`` plus ``label`` / ``caption``
when the layout has them, and ``index``.  ``video`` is float32 in [-1, 1] (``dtype="float32"``, the
default) or the decoded uint8 (``dtype="uint8"``: 4x fewer bytes through worker queues and pinned
buffers; ``videogen.core.training.TrainingModule`` turns it into float on the device).  Decoders are
opened inside ``__getitem__`` (decord readers shared with DataLoader workers can deadlock); ``decoder``
chooses decord, PyAV or torchcodec (``videogen.core.decoders``).

A source that cannot give a clip (a missing, empty or truncated file, undecodable data, too few frames,
an unreadable image) is skipped with a warning and recorded; the next readable source is returned in its
place. The record lives in shared memory, so counts made in DataLoader worker processes are seen by the
main process (``num_skipped``, ``skipped``, ``missing``).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videogen.core.decoders import resolve_decoder
from videogen.core.video import clip_indices, read_video, resize_center_crop, resize_frames

__all__ = ["ClipDataset", "ClipSource", "SourceIndex", "StringColumn", "natural_key", "read_frames"]

_STARTS = ("random", "first", "center")
_DTYPES = ("float32", "uint8")
_BROKEN, _MISSING = 1, 2  # skip record codes (0: not found unreadable)
_WARN_LIMIT = 20  # per-file skip warnings per process; later skips are only counted


def natural_key(text: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class ClipSource:
    """One video: a file (``path``) or an ordered list of frame images (``frames``), with optional
    annotations.  Built on demand from a :class:`SourceIndex` row."""

    path: Path
    label: int | None = None
    caption: str | None = None
    frames: tuple[Path, ...] | None = None


class StringColumn:
    """Strings stored as one UTF-8 buffer ``data`` (uint8) and ``offsets`` (int64, ``n + 1``): string
    ``i`` is ``data[offsets[i]:offsets[i + 1]]``.  No Python object per string."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> StringColumn:
        builder = StringColumnBuilder()
        builder.extend(list(strings))
        return builder.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8")

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes


class StringColumnBuilder:
    """Appends chunks of strings, then :meth:`build` packs them; the peak is the text plus one chunk."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._lengths: list[np.ndarray] = []

    def extend(self, strings: list[str]) -> None:
        text = "".join(strings)
        if text.isascii():  # one encode for the chunk: byte lengths are character lengths
            self._lengths.append(np.fromiter(map(len, strings), np.int64, len(strings)))
            self._chunks.append(text.encode("ascii"))
            return
        encoded = [s.encode("utf-8") for s in strings]
        self._lengths.append(np.fromiter(map(len, encoded), np.int64, len(encoded)))
        self._chunks.append(b"".join(encoded))

    def build(self) -> StringColumn:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.empty(int(offsets[-1]), np.uint8)
        pos = 0
        for k, chunk in enumerate(self._chunks):
            self._chunks[k] = b""  # freed as copied
            data[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
            pos += len(chunk)
        self._chunks, self._lengths = [], []
        return StringColumn(data, offsets)


class SourceIndex:
    """The sources of a layout as columns.

    Args:
        root: folder the ``paths`` are relative to (an absolute path in ``paths`` stands alone).
        paths: one path per source (a video file, or a frame folder).
        path_format: a ``str.format`` template of one positional field that makes a path of a ``paths``
            entry (``"{0}.mp4"``: the column then holds only the WebVid ``videoid``); ``None``: as stored.
        labels: int64 per source, or ``None``.
        captions: one caption per source, or ``None``.
        label_captions: caption of each label, used when ``captions`` is ``None`` (class names in words).
        frames: frame file names per source, relative to its folder, all sources concatenated, with
            ``frame_offsets`` (int64, ``n + 1``) marking each source's run; ``None`` for video files.
    """

    __slots__ = ("root", "paths", "path_format", "labels", "captions", "label_captions", "frames",
                 "frame_offsets")

    def __init__(self, root: str | os.PathLike, paths: StringColumn, *, path_format: str | None = None,
                 labels: np.ndarray | None = None, captions: StringColumn | None = None,
                 label_captions: Sequence[str] | None = None, frames: StringColumn | None = None,
                 frame_offsets: np.ndarray | None = None) -> None:
        n = len(paths)
        for name, column in (("labels", labels), ("captions", captions)):
            if column is not None and len(column) != n:
                raise ValueError(f"SourceIndex: {name} has {len(column)} rows, paths {n}")
        if (frames is None) != (frame_offsets is None) or (frame_offsets is not None
                                                           and len(frame_offsets) != n + 1):
            raise ValueError("SourceIndex: frames and frame_offsets (n + 1 entries) go together")
        self.root, self.path_format = str(root), path_format
        self.paths, self.labels, self.captions, self.frames, self.frame_offsets = (
            paths, labels, captions, frames, frame_offsets)
        self.label_captions = tuple(label_captions) if label_captions is not None else None

    @classmethod
    def from_sources(cls, sources: Sequence[ClipSource]) -> SourceIndex:
        """An index of explicit :class:`ClipSource` objects (absolute or working-directory paths)."""
        has_labels = [s.label is not None for s in sources]
        has_captions = [s.caption is not None for s in sources]
        has_frames = [s.frames is not None for s in sources]
        for name, flags in (("label", has_labels), ("caption", has_captions), ("frames", has_frames)):
            if any(flags) and not all(flags):
                raise ValueError(f"SourceIndex: {name} is set on some sources and not on others")
        frames = offsets = None
        if sources and all(has_frames):
            frames = StringColumn.from_strings(str(f) for s in sources for f in s.frames)
            offsets = np.zeros(len(sources) + 1, np.int64)
            np.cumsum([len(s.frames) for s in sources], out=offsets[1:])
        return cls("", StringColumn.from_strings(str(s.path) for s in sources),
                   labels=np.array([s.label for s in sources], np.int64) if sources and all(has_labels)
                   else None,
                   captions=StringColumn.from_strings(s.caption for s in sources)
                   if sources and all(has_captions) else None,
                   frames=frames, frame_offsets=offsets)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> Path:
        rel = self.paths[i]
        return Path(self.root, self.path_format.format(rel) if self.path_format is not None else rel)

    def source(self, i: int) -> ClipSource:
        """Row ``i`` as a :class:`ClipSource`."""
        path = self.path(i)
        label = int(self.labels[i]) if self.labels is not None else None
        if self.captions is not None:
            caption = self.captions[i]
        elif self.label_captions is not None and label is not None:
            caption = self.label_captions[label]
        else:
            caption = None
        frames = None
        if self.frames is not None:
            first, end = self.frame_offsets[i], self.frame_offsets[i + 1]
            frames = tuple(path / self.frames[k] for k in range(first, end))
        return ClipSource(path, label=label, caption=caption, frames=frames)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns."""
        return sum(c.nbytes for c in (self.paths, self.labels, self.captions, self.frames, self.frame_offsets)
                   if c is not None)


def _release_freed_heap() -> None:
    """Give the heap freed by a parse back to the OS (glibc ``malloc_trim``; elsewhere nothing): the parsed
    rows' memory otherwise stays in this process's RSS, fragmented, and in every forked worker's."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _SourceView(Sequence):
    """``dataset.sources``: the rows of a :class:`SourceIndex` as :class:`ClipSource` objects, built when
    indexed (nothing is stored per row)."""

    def __init__(self, index: SourceIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._index.source(k) for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"source {i} out of range for {n}")
        return self._index.source(i % n)


def read_frames(paths: Sequence[Path]) -> torch.Tensor:
    """Read image files into uint8 ``(T, H, W, 3)``; grey images become RGB, alpha is dropped."""
    import imageio.v3 as iio

    frames = []
    for p in paths:
        img = np.asarray(iio.imread(p))
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.ndim != 3 or img.dtype != np.uint8:
            raise ValueError(f"image {p} is not an 8-bit (H, W[, C]) image: {img.dtype} {img.shape}")
        img = img[..., :3] if img.shape[-1] >= 3 else np.repeat(img[..., :1], 3, axis=-1)
        if frames and img.shape != frames[0].shape:
            raise ValueError(f"frame {p} has shape {img.shape}, the first frame {frames[0].shape}")
        frames.append(img)
    return torch.from_numpy(np.stack(frames))


class ClipDataset(Dataset):
    """Base of the real-data layouts: subclasses build a :class:`SourceIndex` and call ``_set_index``.

    Args:
        num_frames: frames per clip ``T``.
        frame_stride: take every ``frame_stride``-th frame (the clip spans ``(T-1)*stride+1`` frames).
        size: output ``H = W`` (int) or ``(H, W)``: short side resized, then centre-cropped (aspect
            ratio kept); ``None`` keeps the stored size.
        start: where the clip starts: ``"random"`` (drawn from a generator seeded by ``(seed, index,
            draw count of that index)``, so each epoch differs but runs repeat), ``"first"`` or ``"center"``.
        seed: seed of the random starts.
        dtype: ``"float32"``: ``video`` in [-1, 1]; ``"uint8"``: the decoded levels 0..255 (resized in
            uint8, within one level of the float resize), made float on the device by
            ``TrainingModule.on_after_batch_transfer`` (training loops only: code that reads items
            directly wants ``"float32"``).
        decoder: the video decoder of :func:`~videogen.core.video.read_video`: ``"auto"`` (decord if it
            imports, else PyAV, else torchcodec), ``"decord"``, ``"pyav"`` or ``"torchcodec"``; checked
            at construction (an explicit one that is not installed is a one-line error here, not a skip of
            every item).
    """

    def __init__(
        self,
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        if num_frames < 1 or frame_stride < 1:
            raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames}, {frame_stride}")
        if start not in _STARTS:
            raise ValueError(f"start must be one of {_STARTS}, got {start!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be a positive int or (height, width), got {size}")
        self.num_frames, self.frame_stride, self.size, self.start, self.seed, self.dtype = (
            num_frames, frame_stride, size, start, seed, dtype
        )
        resolve_decoder(decoder)  # ValueError for an unknown name, ImportError/RuntimeError if unusable
        self.decoder = decoder
        self.index = SourceIndex("", StringColumn.from_strings([]))
        self._warned = 0

    def _set_index(self, index: SourceIndex, where: str) -> None:
        """Store the index and allocate the shared skip record; an empty index is an error."""
        if len(index) == 0:
            raise ValueError(f"{type(self).__name__} found no videos in {where}")
        self.index = index
        _release_freed_heap()
        self._status = torch.zeros(len(index), dtype=torch.uint8).share_memory_()  # 0 / _BROKEN / _MISSING
        self._draws = torch.zeros(len(index), dtype=torch.int32).share_memory_()

    def _set_sources(self, sources: Sequence[ClipSource], where: str) -> None:
        """Store explicit :class:`ClipSource` objects (small datasets; the layouts use ``_set_index``)."""
        self._set_index(SourceIndex.from_sources(sources), where)

    @property
    def sources(self) -> Sequence[ClipSource]:
        """The sources, as :class:`ClipSource` objects built when indexed."""
        return _SourceView(self.index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_skipped(self) -> int:
        """How many sources were found unreadable or missing so far (in this process and its DataLoader
        workers)."""
        return int((self._status > 0).sum())

    @property
    def skipped(self) -> list[Path]:
        """The unreadable or missing sources found so far."""
        return [self.index.path(i) for i in (self._status > 0).nonzero().flatten().tolist()]

    @property
    def missing(self) -> list[Path]:
        """The listed files found missing so far (they are found when read, not at construction)."""
        return [self.index.path(i) for i in (self._status == _MISSING).nonzero().flatten().tolist()]

    def load_frames(self, source: ClipSource, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``(T, H, W, C)`` clip of ``source``; raises on anything unreadable."""
        if source.frames is not None:
            indices = clip_indices(len(source.frames), self.num_frames, self.frame_stride, self.start, rng)
            return read_frames([source.frames[i] for i in indices])
        return read_video(source.path, self.num_frames, self.frame_stride, self.start, rng,
                          decoder=self.decoder)

    def to_output(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(T, H, W, C)`` -> the item's ``video`` ``(C, T, H, W)`` in this dataset's ``dtype``.

        float32 is ``x / 127.5 - 1`` (the values of ``from_uint8``, then ``resize_center_crop``), computed
        in place after a uint8 transpose rather than out of place on a permuted float layout; uint8 is
        resized in uint8 in the decoded ``(T, H, W, C)`` layout (:func:`resize_frames`) and returned as a
        ``(C, T, H, W)`` view of it: :func:`videogen.data.collate` stacks such views in that layout, and
        the batch becomes contiguous on the device (``TrainingModule.on_after_batch_transfer``).
        """
        if frames.shape[-1] != 3:
            raise ValueError(f"expected 3 colour channels, got {frames.shape[-1]}")
        if self.dtype == "uint8":
            if self.size is not None:
                frames = resize_frames(frames, self.size)  # (T, h, w, C)
            return frames.permute(3, 0, 1, 2)  # (C, T, H, W) view, channels-last storage
        if self.size is None:
            return frames.permute(3, 0, 1, 2).contiguous().float().div_(127.5).sub_(1.0)
        video = frames.float().div_(127.5).sub_(1.0).permute(3, 0, 1, 2)  # (C, T, H, W) view
        return resize_center_crop(video, self.size)

    def _item(self, index: int) -> dict:
        source = self.index.source(index)
        rng = np.random.default_rng([self.seed, index, int(self._draws[index])])
        self._draws[index] += 1
        item = {"video": self.to_output(self.load_frames(source, rng)),
                "index": torch.tensor(index, dtype=torch.int64)}
        if source.label is not None:
            item["label"] = torch.tensor(source.label, dtype=torch.int64)
        if source.caption is not None:
            item["caption"] = source.caption
        return item

    def _record_skip(self, i: int, err: Exception) -> None:
        missing = isinstance(err, FileNotFoundError)
        self._status[i] = _MISSING if missing else _BROKEN
        self._warned += 1
        if self._warned <= _WARN_LIMIT:
            what = "missing" if missing else "unreadable"
            more = (f" (further skips in this process are counted without a warning: see "
                    f"{type(self).__name__}.num_skipped)" if self._warned == _WARN_LIMIT else "")
            warnings.warn(f"{type(self).__name__}: skipping {what} video {self.index.path(i)}: "
                          f"{type(err).__name__}: {err}{more}", stacklevel=3)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        for offset in range(n):
            i = (index + offset) % n
            if self._status[i]:
                continue
            try:
                return self._item(i)
            except Exception as err:  # any decoder error: a corrupt file must not end a long run
                self._record_skip(i, err)
        raise ValueError(f"{type(self).__name__}: all {n} videos are unreadable, missing or too short for "
                         f"the clip (num_frames={self.num_frames}, frame_stride={self.frame_stride})")
