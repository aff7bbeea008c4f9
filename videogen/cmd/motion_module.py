"""CMD's stage 2b (eq. 8): :class:`CMDMotionModule`, the motion DiT on the frozen autoencoder's motion
latents, given the content frame and the class / pooled text feature (dropped with ``cond_drop_prob``).
"""

from __future__ import annotations

from typing import Any

import torch

from videogen.core.sd import FrameVAE
from videogen.core.stages import drop_conditions
from videogen.core.text import TextEncoder

from .autoencoder import CMDAutoencoder
from .dit import MotionDiT
from .stage import ConditionalStage, batch_head, load_cmd_autoencoder

__all__ = ["CMDMotionModule"]


class CMDMotionModule(ConditionalStage):
    """The motion DiT (eq. 8) on motion latents of a frozen autoencoder, given its content frames.

    Args:
        denoiser: a :class:`MotionDiT` whose shapes match the autoencoder's.
        autoencoder, vae: as :class:`CMDContentModule`.
        text_encoder: frozen; its pooled feature (mean over all tokens, ``pool_masked=False``, as the
            official code, or over the tokenizer mask) is the text condition.
        cond_drop_prob: label -> null / text -> zero feature with this probability (10%, as DiT).
        diffusion: ``GaussianDiffusion`` kwargs (DiT's linear 1e-4..0.02, eps).
        lr, betas, scale_lr: Adam (B.3: 1e-4, (0.9, 0.999)).
        motion_scale: the diffusion model works on ``motion_scale * z`` (stored with the model, undone before
            decoding).  1.0 is the official code's (tanh outputs, unscaled); the batch std of ``z`` is logged
            as ``train/motion_latent_std``, and :func:`motion_latent_std` measures it over a data set, so
            that ``1 / std`` can be chosen as in latent diffusion.
    """

    pipeline_component = "motion_model"

    def pipeline_settings(self) -> dict[str, Any]:
        return {"motion_diffusion": self.diffusion_config, "pool_masked": self.hparams.pool_masked,
                "motion_scale": float(self.hparams.motion_scale)}

    def __init__(self, denoiser: MotionDiT, autoencoder: CMDAutoencoder | str, vae: FrameVAE | None = None,
                 text_encoder: TextEncoder | None = None, pool_masked: bool = False,
                 cond_drop_prob: float = 0.1, diffusion: dict[str, Any] | None = None, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), scale_lr: bool = False, nan_policy: str = "raise",
                 motion_scale: float = 1.0,
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy, compile=compile,
                         optimizer=optimizer)
        if not motion_scale > 0:
            raise ValueError(f"motion_scale must be > 0, got {motion_scale}")
        self.save_hyperparameters(ignore=["denoiser", "autoencoder", "vae", "text_encoder"])
        self.denoiser = denoiser
        self.autoencoder = load_cmd_autoencoder(autoencoder)
        self.vae, self.text_encoder = vae, text_encoder
        self.freeze_stages()
        ae = self.autoencoder
        if denoiser.motion_shape != ae.motion_shape or denoiser.content_shape != ae.content_shape:
            raise ValueError(f"MotionDiT shapes (motion {denoiser.motion_shape}, content "
                             f"{denoiser.content_shape}) do not fit the autoencoder's (motion "
                             f"{ae.motion_shape}, content {ae.content_shape})")
        if (denoiser.text_dim is None) != (text_encoder is None):
            raise ValueError("a text-conditional MotionDiT (text_dim) needs a text_encoder, and only then")
        if text_encoder is not None and text_encoder.dim != denoiser.text_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != MotionDiT text_dim "
                             f"{denoiser.text_dim}")

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Scaled motion latents ``motion_scale * z`` ``(B, D, L, W'+H')`` and the content frame, label and
        pooled text feature (eq. 8)."""
        content, motion = self._encode(batch, sample=sample)
        if sample:  # training batches: the std that motion_scale should normalise
            self.log("train/motion_latent_std", motion.float().std(), batch_size=motion.shape[0],
                     sync_dist=True)
        text = self._pooled_text(batch) if self.text_encoder is not None else None
        cond = {"content": content, "label": self._labels(batch, self.denoiser.num_classes), "text": text}
        return motion * self.hparams.motion_scale, cond

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """Label -> null class and pooled text -> zeros for the dropped samples; the content frame stays."""
        null = self.denoiser.null_label if raw["label"] is not None else None
        return drop_conditions(raw, drop, null, zero=("text",))

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """The first ``num`` batch videos re-animated: motion sampled for their own content frames (and
        labels / captions), decoded with the frozen autoencoder, ``(num, C, L, H, W)`` pixels.

        The motion stage has no content model, so the CMD pipeline's ``generate`` (content frame first)
        does not apply; animating the batch's own content frames shows the motion model alone."""
        head = batch_head(batch, num)
        content, _ = self._encode(head, sample=False)
        pipe = self.pipeline(content_model=None)
        z = pipe.sample_motion(content, self._labels(head, self.denoiser.num_classes), self._captions(head),
                               num_steps=self.sample_steps,
                               generator=torch.Generator(device="cpu").manual_seed(0), progress=False)
        return pipe.to_pixels(self.autoencoder.decode(content, z))
