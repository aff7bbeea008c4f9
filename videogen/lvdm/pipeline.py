"""``LVDM``: inference with the 3D autoencoder, the short model and the prediction / interpolation models.

* ``generate(num_samples)``: short clips, from the short model (or, without one, the prediction model's
  unconditional mode, which it is trained for with p = 0.5).
* ``generate_long(num_frames)``: keyframes by autoregressive prediction, then every adjacent pair filled by
  interpolation (the official loop fills about a third of the pairs), or ``mode="autoregressive"`` (the
  paper's baseline: consecutive latents chained by a prediction model trained with keyframe stride 1,
  ``autoregressive``; spec §3.3); exactly ``num_frames`` frames come back; decoding is chunked with overlap,
  and ``on_chunk`` receives decoded frames as they are ready (memory bounded in the number of frames).
* ``predict(frames, num_frames)``: the ``num_frames`` frames that follow a given video (the same
  hierarchy, started from the video's last latent); ``interpolate(first, last)``: the frames between two
  videos' boundary latents.

Unconditional guidance ``eps_c + w (eps_c - eps_u)`` (w = 0.1) is the core CFG with scale ``1 + w``; the
given latents enter as ``q(z_s | z_0)`` at level ``cond_noise_level`` (100) and are written back exactly.
Persistence is the shared one (``videogen.core.persistence``); ``from_checkpoints`` joins the Lightning
checkpoints the recipes write.

``timesteps``: which timesteps a sampler named by a string visits.  ``"trailing"`` (default) is
videogen's convention (``GaussianDiffusion.make_scheduler``: the first step at t = T-1, the last to
alpha_bar = 1); ``"official"`` is the official LVDM DDIM sampler's (``range(0, T, T // n) + 1``, the last step
to alpha_bar_0: diffusers DDIM with ``timestep_spacing="leading", steps_offset=1,
set_alpha_to_one=False``), which a pipeline converted from official weights records
(``videogen.lvdm.convert``).  It changes only DDIM; the official DDPM sampler visits all T steps, which
both conventions do at ``num_steps = T``.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from typing import Any

import torch

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.pipeline import VideoPipeline

from .autoencoder import VideoAutoencoder3D
from .unet3d import DEFAULT_DIFFUSION, ConditionalUNet3D, UNet3D, mix_given

__all__ = ["LVDM", "OFFICIAL_TIMESTEPS", "autoregressive_clips", "hierarchical_plan"]

#: scheduler class -> the options that give the official LVDM sampler's timesteps (``timesteps="official"``)
OFFICIAL_TIMESTEPS = {"DDIMScheduler": {"timestep_spacing": "leading", "steps_offset": 1,
                                        "set_alpha_to_one": False}}
TIMESTEP_CONVENTIONS = ("trailing", "official")


class LVDM(VideoPipeline):
    """Short clips and long videos from a prediction and an interpolation model (see the module docstring).

    Args:
        autoencoder: the (calibrated) 3D autoencoder.
        prediction, interpolation: ``ConditionalUNet3D`` models (interpolation only for hierarchical
        sampling).
        diffusion: the ``GaussianDiffusion`` kwargs they were trained with.
        keyframe_stride: latents between keyframes (the interpolation clip is ``stride + 1`` latents).
        short: the unconditional short model (optional).
        autoregressive: a prediction model on consecutive latents (``LVDMLongModule(mode="prediction",
            keyframe_stride=1)``) for ``mode="autoregressive"``; when ``keyframe_stride`` is 1 the
            prediction model is that model.  The keyframe model cannot stand in for it: its clips are
            ``keyframe_stride`` latents apart, so chaining them as consecutive latents speeds motion up.
        video_size: ``(height, width)`` of the training videos, the default for sampling.
        clip_frames: frames of a short clip (``generate``'s default).
        timesteps: ``"trailing"`` (videogen's) or ``"official"`` (the official DDIM sampler's timesteps);
            see the module docstring.
        conditioning: how guided clips see their given latents.  ``"videogen"``: the conditional branch
            gets the noisy given latents written into its input, the unconditional branch the running
            state as it is, and the state is never changed.  ``"official"`` (the official sampler, bug
            B8): they overwrite the running state at every step, so the unconditional branch and the
            DDIM update see them too.

    ``prediction`` may be None for a pipeline of a short model only (e.g. converted from the released
    short checkpoints): it then samples short clips and takes no image.

    Follows the shared ``generate`` protocol (``videogen.core.pipeline``): ``generate(num_frames=1024)``
    samples hierarchically; ``generate(image=...)`` predicts the frames after the image.
    """

    components = {name: name for name
                  in ("autoencoder", "prediction", "interpolation", "short", "autoregressive")}
    component_hints = {"prediction": "give the checkpoint of recipes/lvdm_*_prediction.yaml",
                       "autoencoder": "the prediction checkpoint has it"}
    variable_length = True  # generate makes any num_frames (short clip, or generate_long)
    default_num_steps = 50

    @property
    def conditions(self) -> tuple[str, ...]:
        """``"image"`` (image-to-video by prediction); otherwise unconditional (also without a prediction
        model)."""
        return ("image",) if self.prediction is not None else ()

    def __init__(self, autoencoder: VideoAutoencoder3D, prediction: ConditionalUNet3D,
                 interpolation: ConditionalUNet3D | None = None, diffusion: dict[str, Any] | None = None,
                 keyframe_stride: int = 4, short: UNet3D | None = None,
                 video_size: tuple[int, int] | None = None, clip_frames: int = 16,
                 autoregressive: ConditionalUNet3D | None = None, timesteps: str = "trailing",
                 conditioning: str = "videogen"):
        super().__init__()
        if timesteps not in TIMESTEP_CONVENTIONS:
            raise ValueError(f"timesteps must be one of {TIMESTEP_CONVENTIONS}, got {timesteps!r}")
        if conditioning not in ("videogen", "official"):
            raise ValueError(f"conditioning must be 'videogen' or 'official', got {conditioning!r}")
        self.conditioning = conditioning
        if all(m is None for m in (prediction, interpolation, short, autoregressive)):
            raise ValueError("LVDM needs at least one diffusion model (prediction, interpolation or short)")
        self.timesteps = timesteps
        self.autoencoder, self.prediction, self.interpolation, self.short = \
            autoencoder, prediction, interpolation, short
        self.autoregressive = autoregressive
        self.diffusion_config = {**DEFAULT_DIFFUSION, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)
        self.keyframe_stride, self.clip_frames = keyframe_stride, clip_frames
        self.video_size = None if video_size is None else tuple(video_size)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of its training videos (``video_size``), which a given image must have; None: any."""
        return self.video_size

    def _device(self) -> torch.device:
        # an interpolation stage's pipeline (``interpolate`` only) has no prediction model
        models = (self.prediction, self.interpolation, self.short, self.autoregressive)
        model = next(m for m in models if m is not None)
        return next(model.parameters()).device

    def make_scheduler(self, sampler: Any = "ddim") -> Any:
        """The scheduler of one sampling run: a diffusers scheduler with this pipeline's betas and its
        ``timesteps`` convention (a scheduler instance passes through unchanged)."""
        if not isinstance(sampler, str):
            return sampler
        scheduler = self.diffusion.make_scheduler(sampler)
        if self.timesteps == "trailing":
            return scheduler
        options = OFFICIAL_TIMESTEPS.get(type(scheduler).__name__)
        if options is None:
            return scheduler
        accepted = inspect.signature(type(scheduler).__init__).parameters
        return self.diffusion.make_scheduler(sampler, **{k: v for k, v in options.items() if k in accepted})

    def _size(self, height: int | None, width: int | None) -> tuple[int, int]:
        if height is None or width is None:
            if self.video_size is None:
                raise ValueError("give height and width (this pipeline was saved without a video_size)")
            return self.video_size
        return height, width

    # ---- one clip -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_clip(self, model: ConditionalUNet3D, frames: int, latent_hw: tuple[int, int], batch: int,
                    given: torch.Tensor | None = None, given_at: tuple[int, ...] = (),
                    cond_noise_level: int = 100, guidance: float = 0.1, num_steps: int = 50, eta: float = 1.0,
                    sampler: Any = "ddim", generator: torch.Generator | None = None, *,
                    given_noisy: torch.Tensor | None = None, x_T: torch.Tensor | None = None) -> torch.Tensor:
        """A latent clip ``(B, C, frames, h, w)``; ``given (B, C, len(given_at), h, w)`` sit at
        ``given_at``.  ``given_noisy`` (same shape): the given latents already noised to
        ``cond_noise_level`` (default: noised here, once); ``x_T``: the starting noise (default: drawn)."""
        dev = self._device()
        c = model.latent_channels
        z0 = torch.zeros(batch, c, frames, *latent_hw, device=dev)
        mask = torch.zeros(batch, frames, dtype=torch.bool, device=dev)
        if given is not None:
            z0[:, :, list(given_at)] = given.to(dev)
            mask[:, list(given_at)] = True
        s = torch.full((batch,), cond_noise_level, dtype=torch.long, device=dev)
        noise = torch.randn(z0.shape, generator=generator,
                            device=generator.device if generator else dev).to(dev)
        z_s = self.diffusion.add_noise(z0, noise, s)  # noised once, written in at every step
        if given_noisy is not None:
            z_s[:, :, list(given_at)] = given_noisy.to(dev, z_s.dtype)

        def model_fn(x, t, mask, z_s, noise_level, written):
            return model(mix_given(x, z_s, written), t, mask=mask, noise_level=noise_level)

        conditional = given is not None
        official = conditional and self.conditioning == "official"
        cond = {"mask": mask, "z_s": z_s, "written": mask,
                "noise_level": s if conditional else torch.full_like(s, model.null_level)}
        uncond = {"mask": torch.zeros_like(mask), "z_s": z_s if official else torch.zeros_like(z_s),
                  "written": mask if official else torch.zeros_like(mask),
                  "noise_level": torch.full_like(s, model.null_level)} if conditional and guidance else None
        scale = 1.0 + guidance if uncond is not None else 1.0  # eps_c + w (eps_c - eps_u)
        scheduler = self.make_scheduler(sampler)
        if official:  # B8: the given latents overwrite the running state, which the update then uses
            scheduler = _write_given_into_state(scheduler, z_s, mask)
        out = self.diffusion.sample(model_fn, tuple(z0.shape), cond=cond, uncond=uncond, guidance_scale=scale,
                                    sampler=scheduler, num_steps=num_steps, eta=eta, x_T=x_T,
                                    generator=generator, device=dev, progress=False)
        return torch.where(mask[:, None, :, None, None], z0, out)  # the given latents, exactly

    # ---- short clips ----------------------------------------------------------------------------
    def _generate(self, *, image: torch.Tensor | None, label: None, text: None, batch: int,
                  num_frames: int | None, num_steps: int, sampler: Any, guidance_scale: float | None,
                  generator: torch.Generator | None, progress: bool, height: int | None = None,
                  width: int | None = None, mode: str = "hierarchical", eta: float = 1.0,
                  cond_noise_level: int = 100) -> torch.Tensor:
        """``generate``: unconditional videos ``(B, 3, num_frames, H, W)`` in [-1, 1].

        Up to ``clip_frames`` frames: one short clip (the short model, else the prediction model with
        nothing given); more: ``generate_long`` (``mode`` hierarchical or autoregressive).  With ``image``
        (image-to-video by prediction): the image held for ``f_t`` frames is the given first latent, and
        the video is that image followed by the predicted frames.  Defaults: 50 DDIM steps, eta 1;
        ``guidance_scale`` ``s`` is the unconditional guidance of the prediction / interpolation models
        as ``1 + w`` (default w = 0.1, i.e. s = 1.1).
        """
        w = 0.1 if guidance_scale is None else guidance_scale - 1.0
        long = dict(mode=mode, num_steps=num_steps, sampler=sampler, guidance=w,
                    cond_noise_level=cond_noise_level, generator=generator, progress=progress, eta=eta)
        num_frames = num_frames or self.clip_frames
        if image is not None:
            hold = self.context_latents(mode) * self.autoencoder.temporal_factor
            held = image[:, :, None].expand(-1, -1, hold, -1, -1)  # (B, 3, hold, H, W)
            if num_frames <= hold:
                return held[:, :, :num_frames]
            return torch.cat([held, self.predict(held, num_frames - hold, **long)], dim=2)
        if num_frames > self.clip_frames:
            return self.generate_long(num_frames, height, width, batch=batch, **long)
        height, width = self._size(height, width)
        f_t = self.autoencoder.temporal_factor
        latent_frames = -(-num_frames // f_t)
        shape = (batch, *self.autoencoder.latent_shape(latent_frames * f_t, height, width))
        if self.short is not None:
            z = self.diffusion.sample(self.short, shape, sampler=self.make_scheduler(sampler),
                                      num_steps=num_steps, eta=eta,
                                      generator=generator, device=self._device(), progress=progress)
        else:
            if self.prediction is None:
                raise ValueError("this LVDM pipeline has neither a short nor a prediction model: it samples "
                                 "no clip (interpolate only)")
            z = self.sample_clip(self.prediction, shape[2], shape[3:], batch, num_steps=num_steps, eta=eta,
                                 sampler=sampler, generator=generator)
        return self.autoencoder.decode(z).clamp(-1, 1)[:, :, :num_frames]

    # ---- long videos ----------------------------------------------------------------------------
    def _autoregressive_model(self) -> ConditionalUNet3D:
        if self.autoregressive is not None:
            return self.autoregressive
        if self.keyframe_stride == 1:
            return self.prediction
        raise ValueError("mode='autoregressive' chains consecutive latents: it needs a prediction model "
                         "trained with keyframe_stride 1 (LVDMLongModule(mode='prediction', "
                         "keyframe_stride=1)), given as LVDM(..., autoregressive=model); this pipeline's "
                         f"prediction model makes keyframes {self.keyframe_stride} latents apart")

    def context_latents(self, mode: str = "hierarchical") -> int:
        """Latents of given video that ``predict`` continues from in ``mode``: the prediction model's
        ``num_given`` latents, ``keyframe_stride`` apart (hierarchical) or consecutive (autoregressive),
        from the first to the last (1 for LVDM's models, which are given one latent)."""
        num_given, step = self._given_layout(mode)
        return (num_given - 1) * step + 1

    def _given_layout(self, mode: str) -> tuple[int, int]:
        """``(num_given, latents between given ones)`` of the prediction model that ``mode`` chains."""
        if mode not in ("hierarchical", "autoregressive"):
            raise ValueError(f"mode must be 'hierarchical' or 'autoregressive', got {mode!r}")
        if mode == "hierarchical":
            return self.prediction.num_given, self.keyframe_stride
        return self._autoregressive_model().num_given, 1

    def _predict_chain(self, model: ConditionalUNet3D, count: int, kw: dict[str, Any],
                       start: torch.Tensor | None, bar) -> torch.Tensor:
        """At least ``count`` latents by chained prediction: each 4-latent clip is given the last
        ``n = model.num_given`` latents so far (the first clip ``start``, or nothing), and adds ``4 - n``."""
        n = model.num_given
        if start is not None and start.shape[2] != n:
            raise ValueError(f"this prediction model is given {n} latents, got {start.shape[2]}")
        z = self.sample_clip(model, 4, given=start, given_at=tuple(range(n)) if start is not None else (),
                             **kw)
        bar.update()
        while z.shape[2] < count:
            nxt = self.sample_clip(model, 4, given=z[:, :, -n:], given_at=tuple(range(n)), **kw)
            z = torch.cat([z, nxt[:, :, n:]], dim=2)
            bar.update()
        return z

    def _long_latents(self, num_frames: int, latent_hw: tuple[int, int], batch: int, mode: str,
                      start: torch.Tensor | None, progress: bool, **kw: Any) -> torch.Tensor:
        """Hierarchical: keyframes by chained prediction, then every pair filled by interpolation.
        Autoregressive: chained prediction of consecutive latents."""
        from tqdm.auto import tqdm

        if mode not in ("hierarchical", "autoregressive"):
            raise ValueError(f"mode must be 'hierarchical' or 'autoregressive', got {mode!r}")
        if mode == "hierarchical" and self.prediction is None:
            raise ValueError(f"{mode} sampling of more than one clip needs a prediction model; this LVDM "
                             f"pipeline samples clips of up to {self.clip_frames} frames")
        if mode == "hierarchical" and self.interpolation is None:
            raise ValueError("hierarchical sampling needs the interpolation model (or use "
                             "mode='autoregressive')")
        kw = dict(latent_hw=latent_hw, batch=batch, **kw)
        f_t, r = self.autoencoder.temporal_factor, self.keyframe_stride
        if mode == "autoregressive":
            model = self._autoregressive_model()
            with tqdm(total=autoregressive_clips(num_frames, f_t, given=model.num_given), desc="LVDM clips",
                      disable=not progress) as bar:
                return self._predict_chain(model, math.ceil(num_frames / f_t), kw, start, bar)
        plan = hierarchical_plan(num_frames, f_t, r, given=self.prediction.num_given)
        with tqdm(total=plan["prediction_clips"] + plan["interpolation_clips"], desc="LVDM clips",
                  disable=not progress) as bar:
            keys = self._predict_chain(self.prediction, plan["keyframes"], kw, start,
                                       bar)[:, :, : plan["keyframes"]]
            latents = [keys[:, :, :1]]
            for i in range(keys.shape[2] - 1):
                clip = self.sample_clip(self.interpolation, r + 1, given=keys[:, :, i:i + 2], given_at=(0, r),
                                        **kw)
                latents.append(clip[:, :, 1:])
                bar.update()
        return torch.cat(latents, dim=2)

    @torch.no_grad()
    def generate_long(self, num_frames: int, height: int | None = None, width: int | None = None,
                      batch: int = 1, mode: str = "hierarchical", num_steps: int = 50, sampler: Any = "ddim",
                      guidance: float = 0.1,
                      cond_noise_level: int = 100, generator: torch.Generator | None = None,
                      chunk_latents: int = 16, overlap: int = 2,
                      on_chunk: Callable[[torch.Tensor], None] | None = None,
                      progress: bool = True, eta: float = 1.0) -> torch.Tensor | None:
        """``(B, 3, num_frames, H, W)`` in [-1, 1] (or None when ``on_chunk`` takes the frames as they
        decode);
        ``eta``: DDIM stochasticity of every clip (1 as LVDM; 0 deterministic)."""
        height, width = self._size(height, width)
        ae = self.autoencoder
        hw = (height // ae.spatial_factor, width // ae.spatial_factor)
        z = self._long_latents(num_frames, hw, batch, mode, None, progress, cond_noise_level=cond_noise_level,
                               guidance=guidance, num_steps=num_steps, sampler=sampler, generator=generator,
                               eta=eta)
        return self.decode_chunked(z, num_frames, chunk_latents, overlap, on_chunk)

    def _encode(self, frames: torch.Tensor, name: str) -> torch.Tensor:
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"{name} must be videos (B, 3, T, H, W) in [-1, 1], got {tuple(frames.shape)}")
        f_t = self.autoencoder.temporal_factor
        if frames.shape[2] < f_t or frames.shape[2] % f_t:
            raise ValueError(f"{name} needs a multiple of {f_t} frames (one latent per {f_t}), got "
                             f"{frames.shape[2]}")
        return self.autoencoder.encode(frames.to(self._device()), sample=False)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, num_frames: int, mode: str = "hierarchical", num_steps: int = 50,
                sampler: Any = "ddim", guidance: float = 0.1, cond_noise_level: int = 100,
                generator: torch.Generator | None = None, progress: bool = True,
                eta: float = 1.0) -> torch.Tensor:
        """The ``num_frames`` frames ``(B, 3, num_frames, H, W)`` that follow the videos
        ``frames (B, 3, T, H, W)``."""
        z = self._encode(frames, "frames")
        f_t, context = self.autoencoder.temporal_factor, self.context_latents(mode)
        if z.shape[2] < context:
            raise ValueError(f"predict in mode {mode!r} continues from {context} latents of the given video "
                             f"({context * f_t} frames), got {frames.shape[2]} frames")
        # the model's given latents, ending at the last one
        start = z[:, :, z.shape[2] - context :: self._given_layout(mode)[1]]
        # The plan starts at the first given latent: plan the context's frames too, and drop them.
        out = self._long_latents(num_frames + context * f_t, tuple(z.shape[3:]), z.shape[0], mode, start,
                                 progress, cond_noise_level=cond_noise_level, guidance=guidance,
                                 num_steps=num_steps,
                                 sampler=sampler, generator=generator, eta=eta)
        # decode the continuation next to the given video's own latents
        out[:, :, :context] = z[:, :, -context:]
        return self.decode_chunked(out, context * f_t + num_frames)[:, :, context * f_t:]

    @torch.no_grad()
    def interpolate(self, first: torch.Tensor, last: torch.Tensor, num_steps: int = 50, sampler: Any = "ddim",
                    guidance: float = 0.1, cond_noise_level: int = 100,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``(stride - 1) * f_t`` frames between the end of ``first`` and the start of ``last``
        (videos)."""
        if self.interpolation is None:
            raise ValueError("this LVDM pipeline has no interpolation model")
        a, b = self._encode(first, "first")[:, :, -1:], self._encode(last, "last")[:, :, :1]
        if a.shape != b.shape:
            raise ValueError("first and last must have the same batch and frame size, got "
                             f"{tuple(first.shape)} and {tuple(last.shape)}")
        r, f_t = self.keyframe_stride, self.autoencoder.temporal_factor
        clip = self.sample_clip(self.interpolation, r + 1, tuple(a.shape[3:]), a.shape[0],
                                given=torch.cat([a, b], 2), given_at=(0, r),
                                cond_noise_level=cond_noise_level, guidance=guidance,
                                num_steps=num_steps, sampler=sampler, generator=generator)
        return self.decode_chunked(clip)[:, :, f_t:r * f_t]

    @torch.no_grad()
    def decode_chunked(self, z: torch.Tensor, num_frames: int | None = None, chunk_latents: int = 16,
                       overlap: int = 2,
                       on_chunk: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor | None:
        """Decode ``(B, C, T, h, w)`` latents ``chunk_latents`` at a time, each with ``overlap`` latents of
        context on both sides (dropped after decoding); the first ``num_frames`` frames are kept.

        The decoder's GroupNorm normalises over every frame it sees, so chunks differ slightly from one
        full decode (tiny random autoencoder, 12 latents in chunks of 6: mean |difference| 0.080 without
        context, 0.010 with 3 latents of context, 0 once the context covers the sequence)."""
        if chunk_latents < 1 or overlap < 0:
            raise ValueError(f"chunk_latents must be >= 1 and overlap >= 0, got {chunk_latents}, {overlap}")
        f_t, total = self.autoencoder.temporal_factor, z.shape[2]
        num_frames = total * f_t if num_frames is None else num_frames
        out, emitted = [], 0
        for start in range(0, total, chunk_latents):
            lo, hi = max(0, start - overlap), min(total, start + chunk_latents + overlap)
            frames = self.autoencoder.decode(z[:, :, lo:hi]).clamp(-1, 1)
            frames = frames[:, :, (start - lo) * f_t : (start - lo + min(chunk_latents, total - start)) * f_t]
            frames = frames[:, :, : max(0, num_frames - emitted)]
            emitted += frames.shape[2]
            if frames.shape[2] == 0:
                break
            if on_chunk is not None:
                on_chunk(frames.cpu())
            else:
                out.append(frames)
        return None if on_chunk is not None else torch.cat(out, dim=2)

    # ---- checkpoints ------------------------------------------------------------------------
    @classmethod
    def from_checkpoints(cls, *paths: str | os.PathLike, autoregressive_ckpt: str | os.PathLike | None = None,
                         map_location: str | torch.device = "cpu", **settings: Any) -> LVDM:
        """The pipeline from ``LVDMLongModule`` (prediction, interpolation) and ``LVDMShortModule``
        checkpoints, in any order (EMA weights when the EMA callback ran); the autoencoder comes from the
        first that has one.  ``autoregressive_ckpt`` is a prediction checkpoint trained with keyframe
        stride 1 (the baseline's model); ``settings`` (e.g. ``video_size``, ``clip_frames``) override."""
        pipe = super().from_checkpoints(*paths, map_location=map_location, **settings)
        if autoregressive_ckpt is not None:
            baseline = super().from_checkpoints(autoregressive_ckpt, map_location=map_location)
            if baseline.keyframe_stride != 1:
                raise ValueError(f"{autoregressive_ckpt} was trained with keyframe_stride "
                                 f"{baseline.keyframe_stride}; the autoregressive model needs 1 (consecutive "
                                 "latents)")
            pipe.autoregressive = baseline.prediction
        return pipe


def _write_given_into_state(scheduler: Any, z_s: torch.Tensor, mask: torch.Tensor) -> Any:
    """``scheduler`` whose ``step`` first writes ``z_s`` at ``mask`` into the running sample (the official
    ``FrameInterpPredLatentDiffusion.apply_model`` does so in place before the model calls)."""
    import functools

    inner = scheduler.step

    @functools.wraps(inner)
    def step(model_output, timestep, sample, *args, **kwargs):
        return inner(model_output, timestep, mix_given(sample, z_s, mask), *args, **kwargs)

    scheduler.step = step
    return scheduler


def hierarchical_plan(num_frames: int, temporal_factor: int = 4, stride: int = 4, pred_length: int = 4,
                      given: int = 1) -> dict[str, int]:
    """The clip counts of hierarchical sampling for ``num_frames`` frames (spec §3, "recommended form").

    ``L = ceil(F / f_t)`` latents; ``K = ceil((L - 1) / r) + 1`` keyframes; ``n = ceil((K - P) / (P - k))``
    prediction steps after the first clip; ``K - 1`` interpolation clips give ``(K - 1) r + 1`` latents.
    """
    if min(num_frames, temporal_factor, stride, pred_length) < 1 or not 0 < given < pred_length:
        raise ValueError("num_frames, temporal_factor, stride, pred_length >= 1 and 0 < given < pred_length")
    latents = math.ceil(num_frames / temporal_factor)
    keyframes = max(math.ceil((latents - 1) / stride) + 1, 1)
    steps = max(math.ceil((keyframes - pred_length) / (pred_length - given)), 0)
    out = (keyframes - 1) * stride + 1
    return {"latents_needed": latents, "keyframes": keyframes, "prediction_clips": 1 + steps,
            "interpolation_clips": keyframes - 1, "latents": out, "frames": out * temporal_factor}


def autoregressive_clips(num_frames: int, temporal_factor: int = 4, pred_length: int = 4,
                         given: int = 1) -> int:
    """Prediction clips of autoregressive sampling: the first gives ``pred_length`` latents, each next one
    ``pred_length - given`` more, until ``ceil(F / f_t)`` latents (1024 frames: 1 + 84 = 85 clips)."""
    latents = math.ceil(num_frames / temporal_factor)
    return 1 + max(0, math.ceil((latents - pred_length) / (pred_length - given)))
