"""``DMGModule``: stage-2 training of the DMG on latents of a frozen MCD-VAE (Sec. 3.2, Eq. 6, Table 2).

Each step encodes the batch's videos with the frozen MCD-VAE (``z_m`` drawn from the posterior, Eq. 1,
as LDM does for its first-stage latents; switch with ``sample_posterior``), takes the content latents
``f_x0`` of frame 0, and minimises the L2 noise-prediction loss of Eq. 6 on a linear 1000-step schedule.
For classifier-free guidance the label / text of each sample is dropped with probability
``cond_drop_prob`` (null label, text fully masked); the content is kept unless ``content_drop_prob`` > 0
(then ``f_x0`` is zeroed). The MCD-VAE (and text encoder) stay in eval mode and receive no gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videogen.core.stages import DiffusionStage, drop_conditions, drop_mask, zero_dropped
from videogen.core.text import TextEncoder
from videogen.core.training import encode_items
from videogen.data.cache import cached_batch, encode_text

from .dmg import MotionGenerator, check_stages
from .mcdvae import MCDVAE

__all__ = ["DMGModule", "cache_latents"]


def _load_mcdvae(mcdvae: MCDVAE | str) -> MCDVAE:
    if isinstance(mcdvae, MCDVAE):
        return mcdvae
    from . import load_mcdvae  # stage-1 helper: Lightning .ckpt or save_pretrained directory

    return load_mcdvae(mcdvae)


class DMGModule(DiffusionStage):
    """Train a ``MotionGenerator`` on the motion latents of a frozen ``MCDVAE``.

    Args:
        dmg: the motion generator to train.
        mcdvae: a trained ``MCDVAE`` or the path of the stage-1 checkpoint (``.ckpt`` or pretrained dir).
        text_encoder: frozen text encoder for captioned batches (text-guided DMG) or None.
        lr, betas, weight_decay: Adam (Table 2's "basic learning rate": 2e-5, 2e-6 for NATOPS/MUG).
        scale_lr: multiply ``lr`` by devices x nodes x batch x accumulation, the LDM codebase's rule for its
            ``base_learning_rate`` (the paper recipes set it: Table 2's values are base rates).
        cond_drop_prob: probability of dropping the label / text of a sample (classifier-free guidance).
        content_drop_prob: probability of zeroing ``f_x0`` (0: the content is always a condition).
        sample_posterior: train on ``z_m`` sampled from the posterior (True) or on its mean.
        diffusion: kwargs of ``GaussianDiffusion`` (default linear schedule, 1000 steps, eps, L2).
        sample_steps, sample_sampler, sample_guidance_scale: ``sample_videos`` settings (logging only).
        nan_policy: ``"raise"`` stops at a non-finite loss naming the step; ``"skip"`` skips the step.
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).

    Validation uses the posterior mean and a fixed generator per batch index (``DiffusionStage``): the
    same noise, timesteps and latents every epoch, so validation losses are comparable across epochs.
    """

    network_name = "dmg"
    frozen = ("mcdvae", "text_encoder")  # the MCD-VAE's LatentNorm statistics must stay fixed
    pipeline_name = "videogen.lamd.LaMD"  # a checkpoint alone rebuilds the pipeline (load_pretrained)

    def __init__(self, dmg: MotionGenerator, mcdvae: MCDVAE | str, text_encoder: TextEncoder | None = None,
                 lr: float = 2e-5, betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0,
                 cond_drop_prob: float = 0.1, content_drop_prob: float = 0.0, sample_posterior: bool = True,
                 diffusion: dict[str, Any] | None = None, sample_steps: int = 50,
                 sample_sampler: str = "ddim", sample_guidance_scale: float = 1.0, scale_lr: bool = False,
                 nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None) -> None:
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy, compile=compile,
                         optimizer=optimizer)
        if not 0.0 <= content_drop_prob < 1.0:
            raise ValueError(f"content_drop_prob must lie in [0, 1), got {content_drop_prob}")
        self.save_hyperparameters(ignore=["dmg", "mcdvae", "text_encoder"])
        self.dmg = dmg
        self.mcdvae = _load_mcdvae(mcdvae)
        self.text_encoder = text_encoder
        self.freeze_stages()
        check_stages(self.mcdvae, dmg, text_encoder)  # ValueError when the two stages do not fit together

    @property
    def sample_posterior(self) -> bool:
        return self.hparams.sample_posterior

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {name: (getattr(self, name), f"{name}.") for name in ("mcdvae", "dmg", "text_encoder")}

    def pipeline_settings(self) -> dict[str, Any]:
        return {"diffusion_config": self.diffusion_config}

    # ---- data -> latents + conditions ---------------------------------------------------------
    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """``batch["video"] (B, C, T, H, W)`` -> ``z_m (B, d, h, w)`` and the DMG's condition kwargs
        (``content`` ``f_x0 (B, d', h, w)``, ``label``, ``text`` / ``text_mask``)."""
        cached = cached_batch(self, batch, ("z_m", "content"))  # a LatentCache's batch
        if "z_m" in batch:  # latents cached once per video by `cache_latents`
            z_m, content = batch["z_m"], batch["content"]
        else:
            video = batch["video"]
            z_m, _, _ = self.mcdvae.encode_motion(video, sample=sample)
            content = self.mcdvae.encode_content(video[:, :, 0])[0]  # f_x0 (B, d', h, w)
        cond: dict[str, Any] = {"content": content, "label": None, "text": None, "text_mask": None}
        if self.dmg.num_classes is not None:
            if "label" not in batch:
                raise ValueError("a class-conditional DMG needs batch['label']")
            cond["label"] = batch["label"].to(self.device).long()
        if self.text_encoder is not None:
            if "caption" not in batch:
                raise ValueError("a text-conditional DMG needs batch['caption']")
            if cached and "text_states" in batch:
                cond["text"], cond["text_mask"] = (batch[k].to(self.device)
                                                   for k in ("text_states", "text_mask"))
            else:
                cond["text"], cond["text_mask"] = (x.to(self.device)
                                                   for x in self.text_encoder(batch["caption"]))
        return z_m, cond

    @torch.no_grad()
    def cache_encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What ``videogen cache`` stores: ``z_m`` (normalised posterior mean), ``content`` (``f_x0``) and
        ``first_frame`` of ``batch["video"]`` as :func:`cache_latents`, or the text encoder's
        ``text_states`` / ``text_mask`` of ``batch["caption"]``."""
        if "video" in batch:
            video = batch["video"]
            return {"z_m": self.mcdvae.encode_motion(video, sample=False)[0],
                    "content": self.mcdvae.encode_content(video[:, :, 0])[0], "first_frame": video[:, :, 0]}
        return encode_text(self.text_encoder, batch["caption"]) if self.text_encoder is not None else {}

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """Classifier-free guidance training: null label / masked text / (optionally) zero content."""
        if drop is None:
            return raw
        null = self.dmg.null_label if raw["label"] is not None else None
        cond = drop_conditions(raw, drop, null, zero=("text_mask",))
        if self.hparams.content_drop_prob > 0:  # a second draw, after the label / text one
            p = self.hparams.content_drop_prob
            drop_content = drop_mask(drop.shape[0], p, device=self.device)  # (B,)
            cond["content"] = zero_dropped(cond["content"], drop_content)
        return cond

    # ---- Lightning hooks ----------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.scaled_lr(self.hparams.lr, self.hparams.scale_lr)
        return self.make_optimizer(self.dmg.parameters(), lr, "adam", betas=tuple(self.hparams.betas),
                                   weight_decay=self.hparams.weight_decay)

    def sample_inputs(self, batch: dict[str, Any], num: int) -> dict[str, Any]:
        """Animate the first frames of up to ``num`` batch videos (with their labels / captions)."""
        first = batch["first_frame"] if "first_frame" in batch else batch["video"][:, :, 0]  # (B, C, H, W)
        label = batch["label"][:num] if self.dmg.num_classes is not None else None
        text = list(batch["caption"][:num]) if self.text_encoder is not None else None
        scale = self.hparams.sample_guidance_scale if (label is not None or text is not None) else 1.0
        return dict(image=first[:num], label=label, text=text, num_steps=self.hparams.sample_steps,
                    sampler=self.hparams.sample_sampler, guidance_scale=scale)


@torch.no_grad()
def cache_latents(mcdvae: MCDVAE, items: Sequence[dict[str, Any]],
                  batch_size: int = 64) -> list[dict[str, Any]]:
    """Add ``z_m`` (normalised posterior mean, ``(d, h, w)``), ``content`` (``f_x0``, ``(d', h, w)``) and
    ``first_frame`` (``(C, H, W)``, for ``sample_videos``) to each item, dropping ``video``: stage 2 then
    skips the frozen MCD-VAE at every step.

    The trade-off: ``z_m`` is the posterior mean rather than a fresh posterior sample each epoch
    (``sample_posterior`` no longer applies). Worth it when the MCD-VAE pass costs as much as a DMG step,
    as on a CPU; at paper scale (data larger than memory) encode on the fly instead.
    """
    mcdvae = mcdvae.eval()
    return encode_items(items, lambda video: {"z_m": mcdvae.encode_motion(video, sample=False)[0],
                                              "content": mcdvae.encode_content(video[:, :, 0])[0],
                                              "first_frame": video[:, :, 0]}, batch_size)
