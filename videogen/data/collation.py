"""``collate``: PyTorch's default collation, except that uint8 videos stay channels-last.

A ``ClipDataset(dtype="uint8")`` item's ``video`` is a ``(C, T, H, W)`` view of the decoded ``(T, H, W,
C)`` frames.  The default collation stacks such views into a contiguous ``(B, C, T, H, W)`` batch, a copy
that de-interleaves every pixel (about 22 ms per 16 x 512 x 1024 clip on one CPU thread, a third of its
decode), in the DataLoader worker.  Here they are stacked in their own layout (a plain copy, about 2 ms)
and the batch is the ``(B, C, T, H, W)`` view of a ``(B, T, H, W, C)`` block; pinning and the transfer
keep those strides, and ``TrainingModule.on_after_batch_transfer`` makes the batch contiguous on the
device while it turns it to float.  Everything else collates exactly as ``default_collate``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import collate as _collate
from torch.utils.data._utils.collate import collate_tensor_fn, default_collate_fn_map

__all__ = ["collate"]


def _is_channels_last_video(x: torch.Tensor) -> bool:
    """A uint8 ``(C, T, H, W)`` view whose storage is a contiguous ``(T, H, W, C)`` block."""
    return (x.dtype == torch.uint8 and x.ndim == 4 and not x.is_contiguous()
            and x.movedim(0, -1).is_contiguous())


def _collate_tensors(batch: list[torch.Tensor], *, collate_fn_map: Any = None) -> torch.Tensor:
    if not all(_is_channels_last_video(x) for x in batch) or len({x.shape for x in batch}) != 1:
        return collate_tensor_fn(batch, collate_fn_map=collate_fn_map)
    frames = [x.movedim(0, -1) for x in batch]  # each (T, H, W, C), contiguous
    out = None
    if get_worker_info() is not None:  # as default_collate: write into shared memory, sent without a copy
        storage = frames[0]._typed_storage()._new_shared(sum(f.numel() for f in frames), device="cpu")
        out = frames[0].new(storage).resize_(len(frames), *frames[0].shape)
    return torch.stack(frames, 0, out=out).movedim(-1, 1)  # (B, T, H, W, C) block -> (B, C, T, H, W) view


_MAP = {**default_collate_fn_map, torch.Tensor: _collate_tensors}


def collate(items: list[Any]) -> Any:
    """``default_collate`` of ``items``, uint8 channels-last videos stacked in their own layout."""
    return _collate(items, collate_fn_map=_MAP)
