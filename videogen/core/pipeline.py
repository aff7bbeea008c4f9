"""The inference protocol shared by LaMD, CMD and LVDM: one ``generate`` for every model.

Every inference object (``videogen.lamd.LaMD``, ``videogen.cmd.CMD``, ``videogen.lvdm.LVDM``) subclasses
:class:`VideoPipeline` and so answers the same call::

    video = model.generate(image=None, label=None, text=None, num_samples=None, num_frames=None,
                           num_steps=None, sampler=None, guidance_scale=None, generator=None,
                           device=None, dtype=None, progress=True, **model_options)
    # -> (B, C, T, H, W) float32 in [-1, 1]

- ``image (B, C, H, W)`` in [-1, 1], ``label`` (one int or B ints), ``text`` (one string or B strings):
  the conditions.  ``model.conditions`` names those the model takes; any other raises
  :class:`UnsupportedConditionError` before any compute, naming what the model does take.  A model may
  require some (``required_conditions``: LaMD needs the image).
- ``num_samples``: the batch when no condition fixes it (otherwise it must agree with them).
- ``num_frames``: default one clip of the model (``clip_frames``).  Models with a fixed clip length
  (LaMD, CMD) return the first ``num_frames`` frames of one clip when asked for fewer, and chain clips
  when asked for more: each next clip is animated from the last frame so far, with the same label/text
  (a baseline for long video; LVDM samples long videos with its own prediction/interpolation models).
- ``num_steps`` / ``sampler`` / ``guidance_scale``: None = the model's documented default.
- ``generator``: draws every noise tensor, so a seed gives the same video.
- ``device``: the model moves there (and stays); ``dtype``: ``torch.bfloat16`` / ``torch.float16`` run
  the networks under autocast (the sampler's arithmetic stays float32); the output is float32.
- ``max_frames``: consent to sample more than ``frame_budget`` (1,024) frames.  Values are checked
  before any compute (``check_values``): finite images in [-1, 1] of the model's size, integer labels,
  finite non-negative guidance and eta.
- ``model_options``: model-specific keywords (e.g. CMD's ``content_steps``, LVDM's ``mode``); an
  unknown one raises ``ValueError`` listing those the model has.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .persistence import PipelineMixin

__all__ = ["CONDITIONS", "UnsupportedConditionError", "VideoPipeline"]

CONDITIONS = ("image", "label", "text")
# The keywords every ``_generate`` receives; its other keyword-only parameters are the model's options.
_RANGE_TOL = 1e-3  # float images in [-1, 1] may overshoot by rounding
_PROTOCOL = {"image", "label", "text", "batch", "num_frames", "num_steps", "sampler", "guidance_scale",
             "generator", "progress"}


class UnsupportedConditionError(ValueError):
    """A condition was given to a model that does not take it (or a required one is missing)."""


def _batch_of(name: str, value: Any) -> int | None:
    """The batch size a condition fixes (None for a single label or string, which broadcast)."""
    if value is None or isinstance(value, str):
        return None
    if name == "image":
        if not torch.is_tensor(value) or value.ndim != 4:
            raise ValueError(f"image must be a 4-D tensor (B, C, H, W) in [-1, 1], got "
                             f"{tuple(value.shape) if torch.is_tensor(value) else type(value).__name__}")
        return value.shape[0]
    if name == "label":
        n = torch.as_tensor(value).numel()
        return None if n == 1 else n
    return len(value) if isinstance(value, Sequence) else None


class VideoPipeline(nn.Module, PipelineMixin):
    """Base of the three models' inference objects: the shared ``generate`` protocol (module docstring).

    Subclasses define ``conditions``, ``clip_frames`` (frames of one clip), ``_device()`` and
    ``_generate(image, label, text, batch, num_frames, num_steps, sampler, guidance_scale, generator,
    progress, **options)``, which gets validated conditions and returns ``(B, C, T, H, W)`` in [-1, 1].
    ``default_num_steps`` / ``default_sampler`` fill ``num_steps=None`` / ``sampler=None`` before
    ``_generate`` is called.  ``variable_length = True`` when ``_generate`` makes any ``num_frames`` itself;
    otherwise the base cuts or chains clips, dropping the first ``chain_overlap`` frames of each chained clip
    (LaMD's clip starts with the given frame).

    Persistence (``save_pretrained`` / ``from_pretrained`` / ``from_checkpoints``) comes from
    :class:`videogen.core.persistence.PipelineMixin`: a subclass lists its ``components``.
    """

    required_conditions: tuple[str, ...] = ()
    variable_length: bool = False
    chain_overlap: int = 0
    default_num_steps: int = 50  # what ``num_steps=None`` / ``sampler=None`` mean for this model
    default_sampler: str = "ddim"
    #: ``num_frames`` above this needs an explicit ``max_frames`` (LVDM's long videos: 1,024 frames)
    frame_budget: int = 1024

    @property
    def conditions(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _generate(self, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    # ---- the protocol -----------------------------------------------------------------------------
    def check_conditions(self, image: Any = None, label: Any = None, text: Any = None) -> None:
        """Raise :class:`UnsupportedConditionError` for a condition this model does not take or needs."""
        name = type(self).__name__
        takes = ", ".join(self.conditions) or "no condition (unconditional)"
        given = {"image": image, "label": label, "text": text}
        for cond, value in given.items():
            if value is not None and cond not in self.conditions:
                raise UnsupportedConditionError(f"{cond} given, but this {name} model takes {takes}")
        missing = [c for c in self.required_conditions if given[c] is None]
        if missing:
            raise UnsupportedConditionError(f"this {name} model needs {', '.join(missing)} (it takes "
                                            f"{takes})")

    def check_values(self, image: Any = None, label: Any = None, num_frames: int | None = None,
                     num_steps: int | None = None, guidance_scale: float | None = None,
                     max_frames: int | None = None, **options: Any) -> None:
        """Raise ``ValueError`` before any compute for values that would give NaN, saturated or silently
        wrong videos, or start hours of work unasked: a non-finite image or one outside [-1, 1] (or of
        another size than ``image_size``), a label that is not an integer, a non-finite or negative
        guidance scale / ``eta``, ``num_steps < 1``, and ``num_frames`` above ``max_frames`` (default
        :attr:`frame_budget`: pass ``max_frames`` to ask for more)."""
        if torch.is_tensor(image):
            if not torch.isfinite(image).all():
                raise ValueError("image has NaN or infinite values")
            lo, hi = float(image.min()), float(image.max())
            if lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
                raise ValueError(f"image values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}] (uint8 frames: "
                                 "videogen.core.video.from_uint8 converts them)")
            size = getattr(self, "image_size", None)
            if size is not None:
                want = (size, size) if isinstance(size, int) else tuple(size)
                if tuple(image.shape[-2:]) != want:
                    raise ValueError(f"image must be {want[0]}x{want[1]} for this {type(self).__name__} "
                                     f"model, got {image.shape[-2]}x{image.shape[-1]}")
        if label is not None and not isinstance(label, str):
            values = torch.as_tensor(label)
            if values.is_floating_point() and not torch.equal(values, values.round()):
                raise ValueError("label must be integers (class indices), got "
                                 f"{values.flatten()[:4].tolist()}")
        for name, value in (("guidance_scale", guidance_scale), ("eta", options.get("eta")),
                            ("motion_guidance_scale", options.get("motion_guidance_scale"))):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if num_steps is not None and int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        budget = self.frame_budget if max_frames is None else max_frames
        if num_frames is not None and num_frames > budget:
            raise ValueError(f"num_frames {num_frames} is above max_frames {budget} (that many frames can "
                             "take hours); pass max_frames to go ahead")

    def _options(self) -> set[str]:
        params = inspect.signature(self._generate).parameters
        return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - _PROTOCOL

    @torch.no_grad()
    def generate(self, image: torch.Tensor | None = None, *, label: Any = None,
                 text: str | Sequence[str] | None = None, num_samples: int | None = None,
                 num_frames: int | None = None, num_steps: int | None = None,
                 sampler: Any = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, progress: bool = True,
                 max_frames: int | None = None, **options: Any) -> torch.Tensor:
        """Videos ``(B, C, T, H, W)`` float32 in [-1, 1]; see the module docstring for every argument."""
        self.check_conditions(image, label, text)
        unknown = sorted(set(options) - self._options())
        if unknown:
            raise ValueError(f"{type(self).__name__}.generate has no option {unknown}; its model options are "
                             f"{sorted(self._options()) or 'none'}")
        sizes = {n: b for n, b in (("image", _batch_of("image", image)), ("label", _batch_of("label", label)),
                                   ("text", _batch_of("text", text)), ("num_samples", num_samples)) if b
                 is not None}
        if len(set(sizes.values())) > 1:
            given = ", ".join(f"{n} {b}" for n, b in sizes.items())
            raise ValueError(f"batch sizes disagree ({given}): give one label / text for all samples, or one "
                             "per sample")
        batch = next(iter(sizes.values()), 1)
        if batch < 1:
            raise ValueError(f"num_samples must be >= 1, got {batch}")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.check_values(image=image, label=label, num_frames=num_frames, num_steps=num_steps,
                          guidance_scale=guidance_scale, max_frames=max_frames, **options)
        if device is not None:
            self.to(device)
        num_steps = self.default_num_steps if num_steps is None else num_steps
        sampler = self.default_sampler if sampler is None else sampler
        kw = dict(label=label, text=text, batch=batch, num_steps=num_steps, sampler=sampler,
                  guidance_scale=guidance_scale, generator=generator, progress=progress, **options)
        with self._autocast(dtype):
            if self.variable_length:
                video = self._generate(image=image, num_frames=num_frames, **kw)
            else:
                video = self._fixed_length(image, num_frames, kw)
        return video.float().clamp(-1, 1)

    def _fixed_length(self, image: torch.Tensor | None, num_frames: int | None,
                      kw: dict[str, Any]) -> torch.Tensor:
        """One clip, cut to ``num_frames``, or clips chained from the last frame so far."""
        video = self._generate(image=image, num_frames=None, **kw)
        want = num_frames or video.shape[2]
        if want > video.shape[2] and "image" not in self.conditions:
            raise UnsupportedConditionError(f"{type(self).__name__} makes {video.shape[2]} frames per clip "
                                            f"and cannot chain clips without an image condition")
        clips = [video]
        total = video.shape[2]
        while total < want:
            nxt = self._generate(image=clips[-1][:, :, -1].float().clamp(-1, 1), num_frames=None, **kw)
            clips.append(nxt[:, :, self.chain_overlap:])
            total += clips[-1].shape[2]
        return torch.cat(clips, dim=2)[:, :, :want]

    @contextlib.contextmanager
    def _autocast(self, dtype: torch.dtype | None):
        if dtype is None or dtype == torch.float32:
            yield
            return
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        with torch.autocast(device_type=self._device().type, dtype=dtype):
            yield
