"""Pieces the CPU demos share (``videogen demo --model lamd | cmd | lvdm``): an in-memory dataset, a quiet
single-process trainer with a progress bar, and helpers that lay videos out for viewing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["InMemoryDataset", "demo_trainer", "fit_stage", "materialise", "mean_psnr", "stack_items",
           "start_demo", "tile", "upscale"]


class InMemoryDataset(Dataset):
    """A dataset materialised once (synthetic items are cheap but not free; training revisits them)."""

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def materialise(dataset: Dataset) -> InMemoryDataset:
    return InMemoryDataset([dataset[i] for i in range(len(dataset))])


def stack_items(dataset: InMemoryDataset, key: str) -> torch.Tensor:
    """``torch.stack`` of one tensor field over all items."""
    return torch.stack([torch.as_tensor(item[key]) for item in dataset.items])


def demo_trainer(max_steps: int, stage: str, **kwargs: Any):
    """A 1-CPU Lightning trainer for ``max_steps`` steps: progress bar on; no logger, checkpoints or
    validation."""
    import lightning.pytorch as pl

    print(f"[demo] {stage}: {max_steps} steps")
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0,
                      enable_progress_bar=True, deterministic=True, **kwargs)


def start_demo(out_dir: str | Path, seed: int) -> Path:
    """Create ``out_dir`` and make the run reproducible: Lightning's ``seed_everything`` and deterministic
    ops."""
    import lightning.pytorch as pl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return out


def fit_stage(module: Any, data: Any, steps: int, batch_size: int, name: str, generator: torch.Generator,
              stage_seconds: dict[str, float], ema_decay: float | None = None) -> None:
    """Train ``module`` for ``steps`` shuffled batches of ``data`` (items or a dataset); record the seconds.

    ``ema_decay``: keep an exponential moving average of the weights (core's ``EMA`` callback, with
    warm-up) and leave it in ``module`` when training ends; ``None`` keeps the last weights."""
    from videogen.core.callbacks import EMA

    t0 = time.perf_counter()
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
    callbacks = [] if ema_decay is None else [EMA(decay=ema_decay)]
    demo_trainer(steps, name, callbacks=callbacks).fit(module, loader)
    stage_seconds[name] = round(time.perf_counter() - t0, 1)


def mean_psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB on [0, 1]-scaled frames, averaged per frame per video (docs/metrics.md)."""
    from videogen.core.metrics.psnr_ssim import psnr_per_video

    return float(psnr_per_video(recon, target).mean())


def upscale(videos: torch.Tensor, scale: int) -> torch.Tensor:
    """Nearest-neighbour upscaling of ``(..., H, W)`` videos or images for viewing."""
    return videos.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def tile(videos: torch.Tensor, cols: int = 4) -> torch.Tensor:
    """``(N, C, T, H, W)`` -> one video ``(1, C, T, rows*H, cols*W)`` laying the N videos out in a grid."""
    n, c, t, hh, ww = videos.shape
    rows = -(-n // cols)
    pad = videos.new_full((rows * cols - n, c, t, hh, ww), -1.0)
    grid = torch.cat([videos, pad]).reshape(rows, cols, c, t, hh, ww)
    return grid.permute(2, 3, 0, 4, 1, 5).reshape(1, c, t, rows * hh, cols * ww)
