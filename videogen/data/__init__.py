"""videogen.data: datasets and the LightningDataModule; imports only ``videogen.core``.

Names load on first access, so ``import videogen.data`` stays cheap.

- ``SyntheticVideoDataset``: deterministic moving shapes with direction labels, captions, trajectories
  (the scorers of generated videos against its rules live with the demos, in ``videogen.toy``).
- ``ClassFolderVideos``, ``CsvCaptionVideos``, ``FrameFolderVideos``, ``JsonCaptionVideos``: real layouts.
- ``VideoDataModule``: train/val/test/predict loaders for any of them.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {
    "SyntheticVideoDataset": "synthetic",
    "DIRECTION_NAMES": "synthetic",
    "DIRECTION_VECTORS": "synthetic",
    "SHAPES": "synthetic",
    "COLORS": "synthetic",
    "CAPTION_WORDS": "synthetic",
    "direction_vectors": "synthetic",
    "ClipDataset": "clips",
    "ClipSource": "clips",
    "ClassFolderVideos": "video",
    "CsvCaptionVideos": "video",
    "FrameFolderVideos": "video",
    "JsonCaptionVideos": "video",
    "VideoDataModule": "datamodule",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
