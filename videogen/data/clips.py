"""Clip sampling shared by every real-data layout: frame stride, start policy, resizing, broken-file skipping.

A layout (``videogen.data.video``) lists its sources once, at construction; this base class turns a
source into an item dict: ``video`` float ``(C, T, H, W)`` in [-1, 1] plus ``label`` / ``caption`` when
the layout has them, and ``index``. Decoders are opened inside ``__getitem__`` (decord readers shared
with DataLoader workers can deadlock).

A source that cannot give a clip (empty or truncated file, undecodable data, too few frames, an
unreadable image) is skipped with one warning and recorded; the next readable source is returned in
its place. The record lives in shared memory, so counts made in DataLoader worker processes are seen by
the main process (``num_skipped``, ``skipped``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videogen.core.video import clip_indices, from_uint8, read_video, resize_center_crop

__all__ = ["ClipDataset", "ClipSource", "natural_key", "read_frames"]

_STARTS = ("random", "first", "center")


def natural_key(text: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class ClipSource:
    """One video: a file (``path``) or an ordered list of frame images (``frames``), with optional
    annotations."""

    path: Path
    label: int | None = None
    caption: str | None = None
    frames: tuple[Path, ...] | None = None


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
    """Base of the real-data layouts: subclasses build ``ClipSource`` lists and call ``_set_sources``.

    Args:
        num_frames: frames per clip ``T``.
        frame_stride: take every ``frame_stride``-th frame (the clip spans ``(T-1)*stride+1`` frames).
        size: output ``H = W`` (int) or ``(H, W)``: short side resized, then centre-cropped (aspect
            ratio kept); ``None`` keeps the stored size.
        start: where the clip starts: ``"random"`` (drawn from a generator seeded by ``(seed, index,
            draw count of that index)``, so each epoch differs but runs repeat), ``"first"`` or ``"center"``.
        seed: seed of the random starts.
    """

    def __init__(
        self,
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
    ) -> None:
        if num_frames < 1 or frame_stride < 1:
            raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames}, {frame_stride}")
        if start not in _STARTS:
            raise ValueError(f"start must be one of {_STARTS}, got {start!r}")
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be a positive int or (height, width), got {size}")
        self.num_frames, self.frame_stride, self.size, self.start, self.seed = (
            num_frames, frame_stride, size, start, seed
        )
        self.sources: list[ClipSource] = []

    def _set_sources(self, sources: list[ClipSource], where: str) -> None:
        """Store the sources and allocate the shared skip record; an empty list is an error."""
        if not sources:
            raise ValueError(f"{type(self).__name__} found no videos in {where}")
        self.sources = sources
        self._broken = torch.zeros(len(sources), dtype=torch.bool).share_memory_()
        self._draws = torch.zeros(len(sources), dtype=torch.int32).share_memory_()

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def num_skipped(self) -> int:
        """How many sources were found unreadable so far (in this process and its DataLoader workers)."""
        return int(self._broken.sum())

    @property
    def skipped(self) -> list[Path]:
        """The unreadable sources found so far."""
        return [self.sources[i].path for i in self._broken.nonzero().flatten().tolist()]

    def load_frames(self, source: ClipSource, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``(T, H, W, C)`` clip of ``source``; raises on anything unreadable."""
        if source.frames is not None:
            indices = clip_indices(len(source.frames), self.num_frames, self.frame_stride, self.start, rng)
            return read_frames([source.frames[i] for i in indices])
        return read_video(source.path, self.num_frames, self.frame_stride, self.start, rng)

    def _item(self, index: int) -> dict:
        source = self.sources[index]
        rng = np.random.default_rng([self.seed, index, int(self._draws[index])])
        self._draws[index] += 1
        video = from_uint8(self.load_frames(source, rng))  # (T, H, W, C) uint8 -> (C, T, H, W) float
        if video.shape[0] != 3:
            raise ValueError(f"expected 3 colour channels, got {video.shape[0]}")
        if self.size is not None:
            video = resize_center_crop(video, self.size)
        item = {"video": video, "index": torch.tensor(index, dtype=torch.int64)}
        if source.label is not None:
            item["label"] = torch.tensor(source.label, dtype=torch.int64)
        if source.caption is not None:
            item["caption"] = source.caption
        return item

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        for offset in range(n):
            i = (index + offset) % n
            if self._broken[i]:
                continue
            try:
                return self._item(i)
            except Exception as err:  # any decoder error: a corrupt file must not end a long run
                self._broken[i] = True
                warnings.warn(
                    f"{type(self).__name__}: skipping unreadable video {self.sources[i].path}: "
                    f"{type(err).__name__}: {err}",
                    stacklevel=2,
                )
        raise ValueError(f"{type(self).__name__}: all {n} videos are unreadable or too short for the clip "
                           f"(num_frames={self.num_frames}, frame_stride={self.frame_stride})")
