"""LVDM's prediction / interpolation training (Sec. 3.3; spec §3): :class:`LVDMLongModule`.

Prediction: the first ``num_given`` of 4 keyframe latents (``keyframe_stride`` apart; the official
``n_prevs``, 1) are given with p = 0.5; interpolation: the first and last of ``stride + 1`` consecutive
latents with p = 0.9; otherwise the sample is unconditional.  The loss covers the generated frames only
(the official code's mask option has no effect).  The network is :class:`~videogen.lvdm.ConditionalUNet3D`;
the pipeline, :class:`videogen.lvdm.LVDM`, samples with these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videogen.core.persistence import load_component
from videogen.core.pretrained import missing_stage_checkpoint
from videogen.core.stages import DiffusionStage, drop_mask
from videogen.data.cache import cached_batch

from .autoencoder import VideoAutoencoder3D
from .short_module import batch_latents, load_video_autoencoder
from .unet3d import DEFAULT_DIFFUSION, ConditionalUNet3D, UNet3D, mix_given

__all__ = ["LVDMLongModule"]


class LVDMLongModule(DiffusionStage):
    """Prediction or interpolation training on frozen-autoencoder latents (see the module docstring).

    Args:
        unet: a :class:`ConditionalUNet3D`, or ``short_checkpoint`` to start from a trained short model.
        autoencoder: the stage-1 checkpoint / directory / network (frozen; must be calibrated or be
            the short checkpoint's).
        mode: ``"prediction"`` (4 keyframes ``keyframe_stride`` latents apart, the first
            ``unet.num_given`` given) or
            ``"interpolation"`` (``keyframe_stride + 1`` consecutive latents, both ends given).
        cond_prob: probability that a sample gets its conditioning frames (0.5 / 0.9 officially).
        max_noise_level: s ~ U{0 .. max - 1} for the given frames (250).
        lr, weight_decay: AdamW (official 8e-5, 0.01).
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).
    """

    network_name = "unet"
    frozen = ("autoencoder",)
    default_diffusion = DEFAULT_DIFFUSION
    pipeline_name = "videogen.lvdm.LVDM"
    sample_steps = 25  # sample_videos (logging only)

    def __init__(self, unet: ConditionalUNet3D | None, autoencoder: VideoAutoencoder3D | str,
                 mode: str = "prediction", keyframe_stride: int = 4, cond_prob: float | None = None,
                 short_checkpoint: str | None = None, diffusion: dict[str, Any] | None = None,
                 lr: float = 8e-5, weight_decay: float = 0.01, scale_lr: bool = False,
                 nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        # cond_prob is drawn in diffusion_loss
        super().__init__(diffusion, nan_policy=nan_policy, compile=compile, optimizer=optimizer)
        if mode not in ("prediction", "interpolation"):
            raise ValueError(f"mode must be 'prediction' or 'interpolation', got {mode!r}")
        cond_prob = (0.5 if mode == "prediction" else 0.9) if cond_prob is None else cond_prob
        self.save_hyperparameters(ignore=["unet", "autoencoder"])
        self.hparams["cond_prob"] = cond_prob
        ae = None
        if short_checkpoint is not None:
            unet, ae = _from_short_checkpoint(short_checkpoint, unet)
        if unet is None:
            raise ValueError("give a ConditionalUNet3D (unet) or the short model to start from "
                             "(short_checkpoint)")
        self.unet = unet
        ae = load_video_autoencoder(autoencoder) if ae is None else ae  # the short model's, when given
        self.autoencoder = ae
        self.freeze_stages()

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        """The autoencoder and this model, as the pipeline's ``prediction`` or ``interpolation``."""
        return {"autoencoder": (self.autoencoder, "autoencoder."), self.hparams.mode: (self.unet, "unet.")}

    def pipeline_settings(self) -> dict[str, Any]:
        settings = {"diffusion": self.diffusion_config}
        if self.hparams.mode == "prediction":  # the pipeline's keyframe stride is the prediction model's
            settings["keyframe_stride"] = self.hparams.keyframe_stride
        return settings

    def clip_latents(self, video: torch.Tensor | dict[str, Any], sample: bool) -> torch.Tensor:
        """Videos (or a batch, whose latents may be cached) -> the model's latent clip: 4 keyframes
        (prediction) or stride + 1 latents (interpolation)."""
        batch = video if isinstance(video, dict) else {"video": video}
        z = batch_latents(self.autoencoder, batch, sample)  # (B, C, T_lat, h, w)
        r = self.hparams.keyframe_stride
        need = 3 * r + 1 if self.hparams.mode == "prediction" else r + 1
        if z.shape[2] < need:
            raise ValueError(f"{self.hparams.mode} with keyframe_stride {r} needs clips of >= {need} latents "
                             f"({need * self.autoencoder.temporal_factor} frames), got {z.shape[2]}")
        return z[:, :, : 3 * r + 1 : r] if self.hparams.mode == "prediction" else z[:, :, :need]

    def _mask(self, b: int, frames: int, given: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(b, frames, dtype=torch.bool, device=self.device)
        if self.hparams.mode == "interpolation":
            mask[:, 0] = mask[:, -1] = given
        else:
            mask[:, : self.unet.num_given] = given[:, None]
        return mask

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """The latent clip (:meth:`clip_latents`); the given frames are chosen in :meth:`diffusion_loss`."""
        cached_batch(self, batch, ("latent",))
        return self.clip_latents(batch, sample), {}

    @torch.no_grad()
    def cache_encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What ``videogen cache`` stores: the (calibrated) autoencoder's normalised posterior means
        ``latent`` ``(B, 4, t, h, w)`` of whole clips; :meth:`clip_latents` picks the frames each step."""
        return {"latent": self.autoencoder.encode(batch["video"], sample=False)} if "video" in batch else {}

    def diffusion_loss(self, z0: torch.Tensor, cond: dict[str, Any],
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The loss over the generated frames of ``z0 (B, C, F, h, w)``: which samples get their given
        frames (p = ``cond_prob``), then t, the given frames' level s and both noises, in that order."""
        return self._loss(z0, generator)

    def _loss(self, z0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, frames = z0.shape[0], z0.shape[2]
        dev = z0.device
        gen_dev = generator.device if generator is not None else dev
        given = drop_mask(b, self.hparams.cond_prob, generator, gen_dev).to(dev)  # (B,) True w.p. cond_prob
        mask = self._mask(b, frames, given)
        t = self.diffusion.sample_timesteps(b, dev, generator)
        s = torch.randint(0, self.unet.max_noise_level, (b,), generator=generator, device=gen_dev).to(dev)
        noise_t = torch.randn(z0.shape, generator=generator, device=gen_dev).to(dev)
        noise_s = torch.randn(z0.shape, generator=generator, device=gen_dev).to(dev)
        x = mix_given(self.diffusion.add_noise(z0, noise_t, t), self.diffusion.add_noise(z0, noise_s, s),
                      mask)
        level = torch.where(given, s, torch.full_like(s, self.unet.null_level))
        out = self.unet(x, t, mask=mask, noise_level=level)
        err = (out.float() - self.diffusion.target(z0, noise_t, t).float())
        err = err.abs() if self.diffusion.loss_type == "l1" else err.square()
        keep = (~mask)[:, None, :, None, None].to(err.dtype).expand_as(err)  # generated frames only
        return (err * keep).sum() / keep.sum().clamp(min=1.0)

    def configure_optimizers(self):
        return self.make_optimizer(self.unet.parameters(),
                                   self.scaled_lr(self.hparams.lr, self.hparams.scale_lr), "adamw",
                                   weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Videos ``(num, 3, T, H, W)`` through the ``LVDM`` pipeline of this model alone.

        Prediction: an unconditional clip of the batch's size (the model's ``p = 1 - cond_prob`` mode, the
        pipeline's short clip without a short model).  Interpolation: the pipeline has no prediction model
        to make keyframes, so the batch clips' first and ``keyframe_stride``-th latents are the given ends
        and the frames between them are generated (``LVDM.interpolate``)."""
        video = batch["video"][:num]  # (num, 3, T, H, W)
        _, _, t, h, w = video.shape
        gen = torch.Generator(device="cpu").manual_seed(0)
        if self.hparams.mode == "prediction":
            return self.pipeline(clip_frames=t).generate(num_samples=video.shape[0], num_frames=t, height=h,
                                                         width=w, num_steps=self.sample_steps, generator=gen,
                                                         progress=False)
        self.clip_latents(video, sample=False)  # ValueError when the clips are too short for the stride
        f_t, r = self.autoencoder.temporal_factor, self.hparams.keyframe_stride
        first, last = video[:, :, :f_t], video[:, :, r * f_t:(r + 1) * f_t]
        pipe = self.pipeline(prediction=None, keyframe_stride=r)  # the record holds the prediction model's
        # (r-1) f_t frames
        between = pipe.interpolate(first, last, num_steps=self.sample_steps, generator=gen)
        return torch.cat([first, between, last], dim=2)


def _from_short_checkpoint(path: str,
                           unet: ConditionalUNet3D | None) -> tuple[ConditionalUNet3D, VideoAutoencoder3D]:
    """The short model's UNet (as a conditional one) and autoencoder from its checkpoint."""
    if not Path(path).is_file():
        raise missing_stage_checkpoint(path, "LVDMShortModule", r"(lvdm_\w+?_short)",
                                       "give the .ckpt a recipes/lvdm_*_short.yaml run writes")
    short = load_component(path, "short", UNet3D)
    ae = load_component(path, "autoencoder", VideoAutoencoder3D)
    if unet is None:
        return ConditionalUNet3D.from_short(short), ae
    return ConditionalUNet3D.from_short(short, unet.max_noise_level, unet.num_given), ae
