"""Training callbacks shared by every model: weight EMA and sample-video logging.

``EMA`` keeps an exponential moving average of the trainable weights with LDM's warm-up (all three
papers evaluate EMA weights).  Lightning's ``EMAWeightAveraging`` deep-copies the whole module (a frozen
first stage and text encoder included) and has no warm-up, so this is a small callback of its own with
the same checkpoint layout: the average in ``state_dict``, the raw weights in ``current_model_state``.

``VideoSampleLogger`` asks the module for a few sample videos at the end of a validation epoch and logs
them to TensorBoard (an animated GIF and a contact sheet) and W&B (``wandb.Video``), without moviepy.
A module takes part by implementing the small protocol ``SupportsSampleVideos``.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from videogen.core.video import to_uint8

__all__ = ["EMA", "SupportsSampleVideos", "VideoSampleLogger", "add_gif_summary", "ema_update_",
           "video_contact_sheet", "video_gif"]


def _local(t: torch.Tensor) -> torch.Tensor:
    """The tensor this rank holds: a DTensor's local shard (FSDP2, tensor parallel), else ``t`` itself
    (a plain parameter, or an FSDP1 ``use_orig_params`` view of this rank's shard)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


#: wrapper prefixes that FSDP1, activation checkpointing and ``torch.compile`` put into parameter names
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _clean_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _sharded_strategy(trainer: pl.Trainer) -> bool:
    """True under Lightning's FSDP and ModelParallel (FSDP2 / tensor parallel) strategies."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    return isinstance(getattr(trainer, "strategy", None), (FSDPStrategy, ModelParallelStrategy))


@torch.no_grad()
def ema_update_(shadow: list[torch.Tensor], params: list[torch.Tensor], weight: float,
                foreach: bool = True) -> None:
    """``shadow[i] += weight * (float(local(params[i])) - shadow[i])`` for every i, in place.

    ``foreach`` does it with one ``torch._foreach_lerp_`` over all tensors (one kernel launch per
    device and dtype group on a GPU), else with one ``lerp_`` per tensor; both give identical numbers.
    Parameters are read as the local tensors this rank holds (:func:`_local`), so sharded parameters
    update their own shards."""
    sources = [_local(p).detach() for p in params]
    sources = [s if s.dtype == torch.float32 else s.float() for s in sources]
    if foreach:
        torch._foreach_lerp_(shadow, sources, weight)
    else:
        for avg, src in zip(shadow, sources):
            avg.lerp_(src, weight)


class EMA(Callback):
    """Exponential moving average of the trainable weights, with LDM's warm-up.

    After every ``update_every_n_steps``-th optimiser step (from ``start_step`` on, 0-based) each
    trainable parameter's shadow becomes ``ema = d * ema + (1 - d) * w`` with
    ``d = min(decay, (1 + n) / (10 + n))``, ``n`` the number of updates so far (LDM's ``LitEma``;
    ``warmup=False`` uses ``decay`` from the first update, which copies).  Without the warm-up a decay
    of 0.9999 keeps ``0.9999**n`` of the random initial weights: 79% after 2.4k steps.

    Only parameters with ``requires_grad`` at the start of ``fit`` are averaged: a frozen first stage or
    text encoder is neither copied nor averaged.  Buffers are not averaged (the live ones are used),
    as in LDM.  The average is swapped in from ``on_validation_epoch_start`` to ``on_validation_end``,
    so validation, the sample logger (``on_validation_epoch_end``) and checkpoint monitoring all see it,
    and it is copied into the module when training ends.  Checkpoints hold the average in
    ``state_dict`` (what ``load_from_checkpoint`` and the models' ``from_checkpoint`` read) and the raw
    trainable weights in ``current_model_state`` (restored by ``fit --ckpt_path``).

    Sharded parameters (Lightning's ``FSDPStrategy`` with ``use_orig_params=True``, its default, and
    ``ModelParallelStrategy``'s DTensors): the shadow is rebuilt at ``on_fit_start``, after the strategy
    sharded the module, as a float copy of the local shard each rank holds, and every rank averages its
    own shards (no communication per step).  Checkpoints are full state dicts: the average and the raw
    weights are gathered through the strategy (the average swapped in for one extra gather), and a
    resume loads the raw weights back through ``torch.distributed.checkpoint``'s ``set_model_state_dict``.
    Distributed (sharded) checkpoint formats are refused at ``on_fit_start``.

    Args:
        decay: EMA decay in [0, 1) (LDM/LVDM 0.9999, CMD 0.999).
        warmup: LDM's ``(1 + n) / (10 + n)`` cap on the decay.
        update_every_n_steps: update after every n-th optimiser step.
        start_step: first optimiser step (0-based) that updates the average.
        foreach: one ``torch._foreach_lerp_`` over all parameters (default) or a Python loop of
            ``lerp_`` (LDM's ``LitEma`` loops); the numbers are identical.
    """

    def __init__(self, decay: float = 0.9999, warmup: bool = True, update_every_n_steps: int = 1,
                 start_step: int = 0, foreach: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if update_every_n_steps < 1 or start_step < 0:
            raise ValueError(f"update_every_n_steps must be >= 1 and start_step >= 0, got "
                             f"{update_every_n_steps}, {start_step}")
        self.decay, self.warmup, self.foreach = decay, warmup, foreach
        self.update_every_n_steps, self.start_step = update_every_n_steps, start_step
        self.num_updates = 0
        self._last_step = 0
        self._shadow: dict[str, torch.Tensor] | None = None  # name -> float average (this rank's shard)
        self._stash: dict[str, torch.Tensor] | None = None  # raw weights while the average is swapped in
        self._sharded = False
        self._bound: tuple[int, list[torch.nn.Parameter]] | None = None  # (id(module), params in order)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if self.num_updates == 0:
            return 0.0  # the first update copies
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    def _param_list(self, pl_module: pl.LightningModule) -> list[torch.nn.Parameter]:
        """The averaged parameters in the shadow's order (cached per module: the per-step update does not
        walk ``named_parameters``)."""
        assert self._shadow is not None
        if self._bound is None or self._bound[0] != id(pl_module):
            named = {_clean_name(n): p for n, p in pl_module.named_parameters()}
            missing = [n for n in self._shadow if n not in named]
            if missing:
                raise ValueError(
                    f"EMA: {len(missing)} averaged parameters are no longer in the module (e.g. "
                    f"{missing[0]!r}); under FSDP give FSDPStrategy(use_orig_params=True), Lightning's "
                    "default")
            self._bound = (id(pl_module), [named[n] for n in self._shadow])
        return self._bound[1]

    def _params(self, pl_module: pl.LightningModule) -> dict[str, torch.nn.Parameter]:
        assert self._shadow is not None
        return dict(zip(self._shadow, self._param_list(pl_module)))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self._shadow is not None:
            return
        self._shadow = {_clean_name(name): _local(p).detach().float().clone()
                        for name, p in pl_module.named_parameters() if p.requires_grad}
        self._bound = None
        if not self._shadow:
            raise ValueError(f"EMA: {type(pl_module).__name__} has no trainable parameters to average")

    @torch.no_grad()
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Under a sharding strategy the module was sharded after ``setup``: average the local shards."""
        self._bound = None
        params = self._param_list(pl_module)
        self._sharded = _sharded_strategy(trainer) or any(
            _local(p) is not p or _local(p).shape != avg.shape
            for p, avg in zip(params, self._shadow.values()))
        if not self._sharded:
            return
        strategy = trainer.strategy
        if getattr(strategy, "_state_dict_type", "full") != "full" or getattr(
                strategy, "_save_distributed_checkpoint", False):
            raise ValueError("EMA under a sharding strategy writes full checkpoints: give "
                             "FSDPStrategy(state_dict_type='full') or "
                             "ModelParallelStrategy(save_distributed_checkpoint=False)")
        self._shadow = {n: _local(p).detach().float().clone() for n, p in zip(self._shadow, params)}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step  # optimiser steps taken (counts both optimisers of a GAN)
        if step <= self._last_step:
            return
        self._last_step = step
        if step - 1 < self.start_step or (step - 1 - self.start_step) % self.update_every_n_steps:
            return
        ema_update_(list(self._shadow.values()), self._param_list(pl_module), 1.0 - self.current_decay(),
                    foreach=self.foreach)
        self.num_updates += 1

    @torch.no_grad()
    def _load(self, pl_module: pl.LightningModule, values: dict[str, torch.Tensor]) -> None:
        """Copy ``values`` (name -> this rank's tensors) into the averaged parameters' local tensors."""
        for name, p in self._params(pl_module).items():
            _local(p).copy_(values[name])

    @torch.no_grad()
    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        if self._shadow is None or self._stash is not None:
            return
        self._stash = {name: _local(p).detach().clone() for name, p in self._params(pl_module).items()}
        self._load(pl_module, self._shadow)

    @torch.no_grad()
    def _swap_out(self, pl_module: pl.LightningModule) -> None:
        if self._stash is None:
            return
        self._load(pl_module, self._stash)
        self._stash = None

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._swap_in(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)
        if self._shadow is not None:
            self._load(pl_module, self._shadow)

    # ---- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict["num_updates"])
        self._last_step = int(state_dict["last_step"])

    @torch.no_grad()
    def _gathered(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                  values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The strategy's full state dict with ``values`` (local shards) in the averaged parameters: a
        collective call on every rank; the previous local tensors are put back."""
        keep = {name: _local(p).detach().clone() for name, p in self._params(pl_module).items()}
        self._load(pl_module, values)
        try:
            state = trainer.strategy.lightning_module_state_dict()
            # copies: a state dict may alias the parameters (one rank, CPU), which are put back next
            return {n: state[n].detach().clone() for n in self._shadow if n in state}
        finally:
            self._load(pl_module, keep)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self._shadow is None:
            return
        state = checkpoint["state_dict"]
        if self._sharded:  # the state dict was gathered from the live shards: gather the other one too
            swapped = self._stash is not None  # the average is in the parameters (validation)
            live = {n: state[n].detach().clone() for n in self._shadow if n in state}
            other = self._gathered(trainer, pl_module, self._stash if swapped else self._shadow)
            raw, avg = (other, live) if swapped else (live, other)
            checkpoint["current_model_state"] = raw
            for name in self._shadow:
                if name in state and name in avg:  # rank 0 holds the full state dict, the others none
                    state[name] = avg[name].to(state[name].dtype)
            return
        raw = self._stash if self._stash is not None else {n: state[n] for n in self._shadow}
        checkpoint["current_model_state"] = {n: v.detach().clone() for n, v in raw.items()}
        for name, avg in self._shadow.items():
            state[name] = avg.to(state[name].dtype).clone()

    @torch.no_grad()
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self._shadow is None:
            return
        raw = checkpoint.get("current_model_state")
        if raw is None:
            warnings.warn("EMA: the checkpoint was saved without EMA; the average starts from its weights",
                          stacklevel=1)
        params = self._params(pl_module)
        if self._sharded:  # the strategy loaded the average into the shards: copy them, then load the raw
            self._shadow = {n: _local(p).detach().float().clone() for n, p in params.items()}
            if raw is not None:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                set_model_state_dict(trainer.model, dict(raw),
                                     options=StateDictOptions(full_state_dict=True, strict=False))
            return
        state = checkpoint["state_dict"]
        for name, p in params.items():
            if name in state:
                self._shadow[name].copy_(state[name])
            if raw is not None and name in raw:
                p.copy_(raw[name])  # the module was loaded with the average: put the raw weights back


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


def video_gif(videos: torch.Tensor, fps: int) -> bytes:
    """An animated GIF of videos side by side: (B, C, T, H, W) float in [-1, 1] -> GIF bytes of T frames
    of (H, B*W), ``1000 / fps`` ms each, looping.  Encoded with Pillow: no moviepy (TensorBoard's
    ``add_video`` needs moviepy < 2)."""
    from PIL import Image

    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"videos must be (B, 1 or 3, T, H, W), got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    # (B, T, H, W, C) uint8 -> (T, H, B, W, C) -> (T, H, B*W, C)
    frames = to_uint8(videos).cpu().permute(1, 2, 0, 3, 4).reshape(t, h, b * w, c).numpy()
    images = [Image.fromarray(f[..., 0] if c == 1 else f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


def add_gif_summary(writer: Any, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
    """Write ``gif`` as an image summary to a TensorBoard ``SummaryWriter``: TensorBoard's image
    dashboard plays an animated GIF (what ``add_video`` writes, without its moviepy encoder)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def _is_wandb(logger: Any) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


class VideoSampleLogger(Callback):
    """Log sample videos from ``pl_module.sample_videos`` to TensorBoard and W&B after validation epochs.

    The first validation batch of every ``every_n_epochs``-th epoch is kept and handed to
    ``sample_videos(batch, num_samples)`` when the epoch ends (rank zero only, in eval mode, without
    gradients, after EMA weights were swapped in if an ``EMA`` callback runs).  TensorBoard gets the
    samples side by side as an animated GIF (tag ``samples/video``, :func:`video_gif`, played by the
    image dashboard) and a contact sheet (rows = samples, columns = frames; ``samples/contact_sheet``);
    a ``WandbLogger`` gets one ``wandb.Video`` per sample (GIF files, key ``samples/video``).  Neither
    needs moviepy.  Without such a logger the callback does nothing.
    """
    def __init__(self, every_n_epochs: int = 1, num_samples: int = 4, fps: int = 8) -> None:
        if every_n_epochs < 1 or num_samples < 1 or fps < 1:
            raise ValueError(
                f"every_n_epochs, num_samples and fps must be >= 1, got {every_n_epochs}, {num_samples}, "
                f"{fps}"
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
                f"VideoSampleLogger: {type(pl_module).__name__} has no sample_videos(batch, num); nothing "
                "logged", stacklevel=1,
            )
            return
        self._log(trainer, pl_module, batch)

    @rank_zero_only
    def _log(self, trainer: pl.Trainer, pl_module: SupportsSampleVideos, batch: dict[str, Any]) -> None:
        writers = [lg.experiment for lg in trainer.loggers if not _is_wandb(lg)
                   and hasattr(lg.experiment, "add_image") and hasattr(lg.experiment, "_get_file_writer")]
        wandb_loggers = [lg for lg in trainer.loggers if _is_wandb(lg)]
        if not writers and not wandb_loggers:
            return
        with torch.no_grad():
            videos = pl_module.sample_videos(batch, self.num_samples)
        if videos.ndim != 5:
            raise ValueError(f"sample_videos must return (B, C, T, H, W), got shape {tuple(videos.shape)}")
        videos = videos[: self.num_samples].detach().float().cpu()
        step = trainer.global_step
        if writers:
            gif = video_gif(videos, self.fps)
            b, _, _, h, w = videos.shape
            for writer in writers:
                add_gif_summary(writer, "samples/video", gif, h, b * w, step)
                writer.add_image("samples/contact_sheet", video_contact_sheet(videos), step)
        if wandb_loggers:
            with tempfile.TemporaryDirectory() as tmp:  # W&B copies the files into its run at log time
                paths = []
                for i, video in enumerate(videos):
                    path = Path(tmp) / f"sample_{i}.gif"
                    path.write_bytes(video_gif(video[None], self.fps))
                    paths.append(str(path))
                for lg in wandb_loggers:
                    lg.log_video("samples/video", paths, step=step, fps=[self.fps] * len(paths),
                                 format=["gif"] * len(paths))
