"""LVDM long videos (Sec. 3.3; spec §3): prediction / interpolation models and hierarchical sampling.

* :class:`ConditionalUNet3D`: the short ``UNet3D`` with one extra input channel (the mask ``m``: 1 = a given
  latent frame) and an embedding of the conditioning frames' noise level ``s`` added to the time
  embedding (**conditional latent perturbation**: given latents enter as ``q(z_s | z_0)``, s ~ U{0..249}
  in training, s = 100 at sampling; the last row is a null level for unconditional samples, in training and
  sampling alike: the official code embeds s for them too).  ``from_short`` copies every weight of a
  trained short model and zero-initialises what is new, so it starts as the short model.
* :class:`LVDMLongModule`: trains it.  Prediction: the first ``num_given`` of 4 keyframe latents
  (``keyframe_stride`` apart; the official ``n_prevs``, 1) are given with p = 0.5; interpolation: the first
  and last of ``stride + 1`` consecutive latents with p = 0.9; otherwise the sample is unconditional.  The loss covers the generated frames only (the
  official code's mask option has no effect).
* :func:`hierarchical_plan`: the clip counts of hierarchical sampling (the pipeline,
  :class:`videogen.lvdm.LVDM`, samples with these models).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.persistence import load_component
from videogen.core.pretrained import missing_stage_checkpoint
from videogen.core.training import TrainingModule

from .autoencoder import VideoAutoencoder3D
from .short_module import DEFAULT_DIFFUSION, batch_latents, load_video_autoencoder
from .unet3d import UNet3D

__all__ = ["ConditionalUNet3D", "LVDMLongModule", "autoregressive_clips", "hierarchical_plan", "mix_given"]


class ConditionalUNet3D(UNet3D):
    """``UNet3D`` + mask channel + conditioning-noise-level embedding.  See the module docstring."""

    def __init__(self, latent_channels: int = 4, max_noise_level: int = 250, num_given: int = 1, **unet_kwargs: Any):
        """``num_given``: how many leading latents a prediction model is given (official ``n_prevs [1]``);
        the sampler gives it that many of the last latents of each clip.  Interpolation ignores it."""
        if not 1 <= num_given <= 3:
            raise ValueError(f"num_given must be 1, 2 or 3 of the 4 latents of a prediction clip, got {num_given}")
        super().__init__(in_channels=latent_channels + 1, out_channels=latent_channels, **unet_kwargs)
        self.latent_channels, self.max_noise_level, self.num_given = latent_channels, max_noise_level, num_given
        self.noise_level_embed = nn.Embedding(max_noise_level + 1, 4 * self.model_channels)  # last row: null
        nn.init.zeros_(self.noise_level_embed.weight)

    @property
    def null_level(self) -> int:
        return self.max_noise_level

    @classmethod
    def from_short(cls, short: UNet3D, max_noise_level: int = 250, num_given: int = 1) -> ConditionalUNet3D:
        """Every weight of ``short``; the mask channel's input weights and the level embedding start at zero."""
        cfg = {k: v for k, v in short.config.items() if k not in ("in_channels", "out_channels")}
        model = cls(latent_channels=short.in_channels, max_noise_level=max_noise_level, num_given=num_given, **cfg)
        state = short.state_dict()
        conv = "input_blocks.0.0.weight"
        weight = torch.zeros_like(model.state_dict()[conv])
        weight[:, : short.in_channels] = state[conv]
        state[conv] = weight
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"noise_level_embed.weight"}:
            raise ValueError(f"cannot initialise from this short model: missing {missing}, unexpected {unexpected}")
        return model

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None,
                noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C, T, h, w)`` (given latents already in place), ``mask (B, T)`` bool, ``noise_level (B,)``."""
        b, _, frames, h, w = x.shape
        mask = torch.zeros(b, frames, dtype=torch.bool, device=x.device) if mask is None else mask
        if mask.shape != (b, frames):
            raise ValueError(f"mask must be (B, T) = {(b, frames)}, got {tuple(mask.shape)}")
        if noise_level is None:
            noise_level = torch.full((b,), self.null_level, dtype=torch.long, device=x.device)
        m = mask[:, None, :, None, None].to(x.dtype).expand(b, 1, frames, h, w)
        return super().forward(torch.cat([x, m], dim=1), t, emb=self.noise_level_embed(noise_level.long()))


def mix_given(z_t: torch.Tensor, z_s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[:, None, :, None, None].to(z_t.dtype)
    return z_t * (1 - m) + z_s * m


class LVDMLongModule(TrainingModule):
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
    """

    def __init__(self, unet: ConditionalUNet3D | None, autoencoder: VideoAutoencoder3D | str,
                 mode: str = "prediction", keyframe_stride: int = 4, cond_prob: float | None = None,
                 short_checkpoint: str | None = None, diffusion: dict[str, Any] | None = None,
                 lr: float = 8e-5, weight_decay: float = 0.01, scale_lr: bool = False, nan_policy: str = "raise"):
        super().__init__(nan_policy=nan_policy)
        if mode not in ("prediction", "interpolation"):
            raise ValueError(f"mode must be 'prediction' or 'interpolation', got {mode!r}")
        cond_prob = (0.5 if mode == "prediction" else 0.9) if cond_prob is None else cond_prob
        self.save_hyperparameters(ignore=["unet", "autoencoder"])
        self.hparams["cond_prob"] = cond_prob
        ae = None
        if short_checkpoint is not None:
            unet, ae = _from_short_checkpoint(short_checkpoint, unet)
        if unet is None:
            raise ValueError("give a ConditionalUNet3D (unet) or the short model to start from (short_checkpoint)")
        self.unet = unet
        ae = load_video_autoencoder(autoencoder) if ae is None else ae  # the short model's, when given
        self.autoencoder = ae.requires_grad_(False).eval()
        self.diffusion_config = {**DEFAULT_DIFFUSION, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)

    def train(self, mode: bool = True) -> LVDMLongModule:
        super().train(mode)
        self.autoencoder.eval()
        return self

    pipeline_name = "videogen.lvdm.LVDM"

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

    def _loss(self, z0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, frames = z0.shape[0], z0.shape[2]
        dev = z0.device
        gen_dev = generator.device if generator is not None else dev
        given = torch.rand(b, generator=generator, device=gen_dev).to(dev) < self.hparams.cond_prob
        mask = self._mask(b, frames, given)
        t = self.diffusion.sample_timesteps(b, dev, generator)
        s = torch.randint(0, self.unet.max_noise_level, (b,), generator=generator, device=gen_dev).to(dev)
        noise_t = torch.randn(z0.shape, generator=generator, device=gen_dev).to(dev)
        noise_s = torch.randn(z0.shape, generator=generator, device=gen_dev).to(dev)
        x = mix_given(self.diffusion.add_noise(z0, noise_t, t), self.diffusion.add_noise(z0, noise_s, s), mask)
        level = torch.where(given, s, torch.full_like(s, self.unet.null_level))
        out = self.unet(x, t, mask=mask, noise_level=level)
        err = (out.float() - self.diffusion.target(z0, noise_t, t).float())
        err = err.abs() if self.diffusion.loss_type == "l1" else err.square()
        keep = (~mask)[:, None, :, None, None].to(err.dtype).expand_as(err)  # generated frames only
        return (err * keep).sum() / keep.sum().clamp(min=1.0)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        with torch.no_grad():
            z0 = self.clip_latents(batch, sample=True)
        loss = self._loss(z0)
        if not self.finite_or_skip(loss=loss):
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=z0.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        z0 = self.clip_latents(batch, sample=False)
        loss = self._loss(z0, generator=torch.Generator(device=z0.device).manual_seed(batch_idx))
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=z0.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.unet.parameters(), lr=self.scaled_lr(self.hparams.lr, self.hparams.scale_lr),
                                 weight_decay=self.hparams.weight_decay)


def _from_short_checkpoint(path: str, unet: ConditionalUNet3D | None) -> tuple[ConditionalUNet3D, VideoAutoencoder3D]:
    """The short model's UNet (as a conditional one) and autoencoder from its checkpoint."""
    if not Path(path).is_file():
        raise missing_stage_checkpoint(path, "LVDMShortModule", r"(lvdm_\w+?_short)",
                                       "give the .ckpt a recipes/lvdm_*_short.yaml run writes")
    short = load_component(path, "short", UNet3D)
    ae = load_component(path, "autoencoder", VideoAutoencoder3D)
    if unet is None:
        return ConditionalUNet3D.from_short(short), ae
    return ConditionalUNet3D.from_short(short, unet.max_noise_level, unet.num_given), ae


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


def autoregressive_clips(num_frames: int, temporal_factor: int = 4, pred_length: int = 4, given: int = 1) -> int:
    """Prediction clips of autoregressive sampling: the first gives ``pred_length`` latents, each next one
    ``pred_length - given`` more, until ``ceil(F / f_t)`` latents (1024 frames: 1 + 84 = 85 clips)."""
    latents = math.ceil(num_frames / temporal_factor)
    return 1 + max(0, math.ceil((latents - pred_length) / (pred_length - given)))
