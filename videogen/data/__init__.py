"""videogen.data: datasets and the LightningDataModule; imports only ``videogen.core``.

Names load on first access, so ``import videogen.data`` stays cheap.

- ``SyntheticVideoDataset``: deterministic moving shapes with direction labels, captions, trajectories.
- ``ClassFolderVideos``, ``CsvCaptionVideos``, ``FrameFolderVideos``, ``JsonCaptionVideos``: real layouts.
- ``VideoDataModule``: train/val/test/predict loaders for any of them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SyntheticVideoDataset": "synthetic",
    "DIRECTION_NAMES": "synthetic",
    "DIRECTION_VECTORS": "synthetic",
    "SHAPES": "synthetic",
    "COLORS": "synthetic",
    "direction_vectors": "synthetic",
    "ClipDataset": "clips",
    "ClipSource": "clips",
    "ClassFolderVideos": "video",
    "CsvCaptionVideos": "video",
    "FrameFolderVideos": "video",
    "JsonCaptionVideos": "video",
    "VideoDataModule": "datamodule",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"videogen.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'videogen.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = list(_EXPORTS)
