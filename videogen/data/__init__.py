"""videogen.data: datasets and the LightningDataModule; imports only ``videogen.core``.

Names load on first access, so ``import videogen.data`` stays cheap.

- ``SyntheticVideoDataset``: deterministic moving shapes with direction labels, captions, trajectories
  (the scorers of generated videos against its rules live with the demos, in ``videogen.toy``).
- ``ClassFolderVideos``, ``CsvCaptionVideos``, ``FrameFolderVideos``, ``JsonCaptionVideos``: real layouts.
- ``WebVideoShards``: the same clips streamed from webdataset tar shards (video2dataset layout: WebVid
  at scale); ``write_shards`` makes such shards from any of the datasets above; ``ShardSamples`` reads
  local shards by position (what ``videogen cache`` encodes when a recipe streams shards).
- ``VideoDataModule``: train/val/test/predict loaders for any of them.
- ``LatentCache``: a ``videogen cache`` directory (frozen-stage encodings) as a dataset; ``write_cache``.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {  # module -> the names it exports (space-separated)
    "synthetic": "SyntheticVideoDataset DIRECTION_NAMES DIRECTION_VECTORS SHAPES COLORS CAPTION_WORDS "
                 "direction_vectors",
    "clips": "ClipDataset ClipSource",
    "video": "ClassFolderVideos CsvCaptionVideos FrameFolderVideos JsonCaptionVideos",
    "shards": "WebVideoShards ShardSamples",
    "shard_writer": "write_shards",
    "datamodule": "VideoDataModule",
    "cache": "LatentCache write_cache",
    "collation": "collate",
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
