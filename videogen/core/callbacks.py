"""Training callbacks shared by every model: weight EMA and sample-video logging.

``EMA`` keeps an exponential moving average of the module's weights (all three papers evaluate EMA
weights; LVDM uses decay 0.9999).  It is Lightning's ``EMAWeightAveraging`` (Lightning >= 2.6) with the
library's defaults: the average is swapped in for validation, written as the checkpoint's
``state_dict`` (the raw weights go to ``current_model_state`` so that ``fit --ckpt_path`` resumes both),
and copied into the module when training ends.

``VideoSampleLogger`` asks the module for a few sample videos at the end of a validation epoch and logs
them to TensorBoard.  A module takes part by implementing the small protocol ``SupportsSampleVideos``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.pytorch.utilities import rank_zero_only

from videogen.core.video import to_uint8

__all__ = ["EMA", "SupportsSampleVideos", "VideoSampleLogger", "video_contact_sheet"]


class EMA(EMAWeightAveraging):
    """Exponential moving average of the weights: ``ema = decay * ema + (1 - decay) * weights``.

    The first update copies the weights; later updates happen after every ``update_every_n_steps``
    optimizer steps once ``start_step`` (a 0-based optimizer step index) is reached.

    Args:
        decay: EMA decay in [0, 1).
        update_every_n_steps: update the average after every n-th optimizer step.
        start_step: first optimizer step (0-based) that updates the average.
        use_buffers: average buffers too (keep True unless the module has running statistics that
            should be recomputed instead).
    """

    def __init__(
        self,
        decay: float = 0.9999,
        update_every_n_steps: int = 1,
        start_step: int = 0,
        use_buffers: bool = True,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if update_every_n_steps < 1:
            raise ValueError(f"update_every_n_steps must be >= 1, got {update_every_n_steps}")
        super().__init__(
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=start_step,
            use_buffers=use_buffers,
        )
        self.decay = decay


@runtime_checkable
class SupportsSampleVideos(Protocol):
    """A LightningModule that can draw sample videos for logging.

    ``sample_videos(batch, num)`` gets a validation batch (a dict, see docs/architecture.md) and returns
    ``num`` (or fewer) videos as float ``(B, C, T, H, W)`` in [-1, 1]; it may use the batch for
    conditioning (first frame, label, caption) or ignore it.
    """

    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor: ...


def video_contact_sheet(videos: torch.Tensor) -> torch.Tensor:
    """Lay videos out as one image: one row per video, one column per frame.

    (B, C, T, H, W) float in [-1, 1] -> (C, B*H, T*W) uint8.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be (B, C, T, H, W), got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    frames = to_uint8(videos).cpu()  # (B, C, T, H, W) -> (B, T, H, W, C)
    # (B, T, H, W, C) -> (C, B, H, T, W) -> (C, B*H, T*W)
    return frames.permute(4, 0, 2, 1, 3).reshape(c, b * h, t * w)


def _tensorboard_can_encode_video() -> bool:
    """TensorBoard's ``add_video`` needs ``moviepy.editor`` (moviepy < 2) and prints, not raises, without it."""
    try:
        importlib.import_module("moviepy.editor")
    except ImportError:
        return False
    return True


class VideoSampleLogger(Callback):
    """Log sample videos from ``pl_module.sample_videos`` to TensorBoard after validation epochs.

    The first validation batch of every ``every_n_epochs``-th epoch is kept and handed to
    ``sample_videos(batch, num_samples)`` when the epoch ends (rank zero only, in eval mode, without
    gradients, after EMA weights were swapped in if an ``EMA`` callback runs).  The videos go to
    ``add_video`` (tag ``samples/video``) when TensorBoard can encode them (needs ``moviepy`` < 2),
    otherwise a contact sheet (rows = samples, columns = frames) goes to ``add_image``
    (tag ``samples/contact_sheet``).  Without a TensorBoard logger the callback does nothing.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 4, fps: int = 8) -> None:
        if every_n_epochs < 1 or num_samples < 1 or fps < 1:
            raise ValueError(
                f"every_n_epochs, num_samples and fps must be >= 1, got {every_n_epochs}, {num_samples}, {fps}"
            )
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.fps = fps
        self._batch: dict[str, Any] | None = None

    def _active(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self._active(trainer):
            self._batch = batch

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        if not isinstance(pl_module, SupportsSampleVideos):
            warnings.warn(
                f"VideoSampleLogger: {type(pl_module).__name__} has no sample_videos(batch, num); nothing logged",
                stacklevel=1,
            )
            return
        self._log(trainer, pl_module, batch)

    @rank_zero_only
    def _log(self, trainer: pl.Trainer, pl_module: SupportsSampleVideos, batch: dict[str, Any]) -> None:
        writers = [lg.experiment for lg in trainer.loggers if hasattr(lg.experiment, "add_video")]
        if not writers:
            return
        with torch.no_grad():
            videos = pl_module.sample_videos(batch, self.num_samples)
        if videos.ndim != 5:
            raise ValueError(f"sample_videos must return (B, C, T, H, W), got shape {tuple(videos.shape)}")
        videos = videos[: self.num_samples]
        step = trainer.global_step
        as_video = _tensorboard_can_encode_video()
        for writer in writers:
            if as_video:
                # (B, C, T, H, W) -> (B, T, H, W, C) -> (B, T, C, H, W) uint8, the layout add_video expects
                frames = to_uint8(videos).cpu().permute(0, 1, 4, 2, 3)
                writer.add_video("samples/video", frames, step, fps=self.fps)
            else:
                writer.add_image("samples/contact_sheet", video_contact_sheet(videos), step)
