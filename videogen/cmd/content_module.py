"""CMD's stage 2a (eq. 7): :class:`CMDContentModule`, the content-frame diffusion model on the frozen
autoencoder's content frames: a :class:`ContentDiT` from scratch (class labels) or a Stable Diffusion UNet
(:class:`SDUNet`, text token states of SD's own text encoder) fine-tuned whole.  Labels / captions are
dropped with ``cond_drop_prob`` (null class / empty caption) for classifier-free guidance.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videogen.core.sd import FrameVAE, SDUNet
from videogen.core.stages import drop_captions, drop_labels, zero_dropped
from videogen.core.text import TextEncoder
from videogen.data.cache import pool_text

from .autoencoder import CMDAutoencoder
from .dit import ContentDiT
from .stage import ConditionalStage, batch_head, load_cmd_autoencoder

__all__ = ["CMDContentModule"]


class CMDContentModule(ConditionalStage):
    """The content-frame diffusion model (eq. 7) on content frames of a frozen autoencoder.

    Args:
        denoiser: a :class:`ContentDiT` (class or pooled-text conditions) or an :class:`SDUNet` (text token
            states of ``text_encoder``: Stable Diffusion fine-tuning, no new parameters).
        autoencoder: the stage-1 checkpoint (``.ckpt`` or ``save_pretrained`` directory) or network.
        vae: frozen SD VAE (latent-mode autoencoders).
        text_encoder: frozen; for an ``SDUNet`` the checkpoint's own (``videogen.core.sd.sd_text_encoder``).
        pool_masked: a text-conditional ``ContentDiT`` reads the pooled feature as :class:`CMDMotionModule`.
        cond_drop_prob: label -> null class / caption -> "" with this probability (CFG; 0.1).
        diffusion: ``GaussianDiffusion`` kwargs (DiT: linear 1e-4..0.02, eps; SD: its own schedule).
        lr, betas, scale_lr: Adam (B.3: 1e-4, (0.9, 0.999)).
    """

    pipeline_component = "content_model"

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        """The content model, its SD VAE and text encoder (the autoencoder comes from the motion stage)."""
        return {k: v for k, v in super().pipeline_parts().items() if k != "autoencoder"}

    def pipeline_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"content_diffusion": self.diffusion_config}
        if self.text_encoder is not None:
            settings["pool_masked"] = self.hparams.pool_masked
        return settings

    def __init__(self, denoiser: nn.Module, autoencoder: CMDAutoencoder | str, vae: FrameVAE | None = None,
                 text_encoder: TextEncoder | None = None, pool_masked: bool = False,
                 cond_drop_prob: float = 0.1, diffusion: dict[str, Any] | None = None, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), scale_lr: bool = False,
                 nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy, compile=compile,
                         optimizer=optimizer)
        if not isinstance(denoiser, (ContentDiT, SDUNet)):
            raise ValueError(f"denoiser must be a ContentDiT or an SDUNet, got {type(denoiser).__name__}")
        if isinstance(denoiser, SDUNet) and text_encoder is None:
            raise ValueError("an SDUNet content model needs the text_encoder of its Stable Diffusion "
                             "checkpoint")
        self.save_hyperparameters(ignore=["denoiser", "autoencoder", "vae", "text_encoder"])
        self.denoiser = denoiser
        self.autoencoder = load_cmd_autoencoder(autoencoder)
        self.vae, self.text_encoder = vae, text_encoder
        self.freeze_stages()
        if tuple(self.autoencoder.content_shape[:1]) != (self.denoiser.in_channels,):
            raise ValueError(f"the autoencoder's content frames have {self.autoencoder.content_shape[0]} "
                             f"channels, the denoiser takes {self.denoiser.in_channels}")

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Content frames ``(B, C, H, W)`` of the batch videos and the labels / captions (eq. 7)."""
        content, _ = self._encode(batch, sample=sample)
        cached = self._cached_text(batch)  # token states of a latent cache in place of the captions
        if isinstance(self.denoiser, SDUNet):
            if cached is not None:
                return content, {"captions": None, "text_states": cached[0]}
            return content, {"captions": self._captions(batch)}
        raw = {"label": self._labels(batch, self.denoiser.num_classes),
               "captions": self._captions(batch) if self.denoiser.text_dim is not None else None}
        if cached is not None and self.denoiser.text_dim is not None:
            raw["captions"], raw["text"] = None, pool_text(*cached, masked=self.hparams.pool_masked)
        return content, raw

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """SD UNet: text token states of the captions (dropped ones -> ""); DiT: label (dropped -> null
        class) and pooled text feature (dropped -> zeros)."""
        if isinstance(self.denoiser, SDUNet):
            if raw.get("text_states") is not None:  # cached: dropped samples get the empty caption's states
                states = raw["text_states"]
                if drop is not None:
                    null = self._null_text_states().to(states.dtype)
                    states = torch.where(drop.to(states.device)[:, None, None], null, states)
                return {"text_states": states}
            captions = raw["captions"] if drop is None else drop_captions(raw["captions"], drop)
            return {"text_states": self.text_encoder(captions)[0]}
        label, text = raw["label"], raw.get("text")
        if label is not None and drop is not None:
            label = drop_labels(label, drop, self.denoiser.null_label)
        if raw["captions"] is not None:
            text = self.text_encoder.pooled(raw["captions"], masked=self.hparams.pool_masked)
        if text is not None and drop is not None:
            text = zero_dropped(text, drop)
        return {"label": label, "text": text}

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Content frames sampled for the first ``num`` labels / captions, as one-frame videos
        ``(num, C, 1, H, W)`` (pixels; SD-VAE decoded in latent mode).

        The content stage has no motion model, so the CMD pipeline's ``generate`` does not apply: its
        ``sample_content`` (content CFG 4.0, as ``generate``'s default) is what this stage trains."""
        head = batch_head(batch, num)
        pipe = self.pipeline(autoencoder=self.autoencoder, motion_model=None)
        label = self._labels(head, getattr(self.denoiser, "num_classes", None))
        text = self._captions(head)
        b = len(label) if label is not None else len(text) if text is not None else len(head["video"])
        scale = 4.0 if (label is not None or text is not None) else 1.0
        content = pipe.sample_content(b, label, text, num_steps=self.sample_steps, guidance_scale=scale,
                                      generator=torch.Generator(device="cpu").manual_seed(0), progress=False)
        return pipe.to_pixels(content[:, :, None])  # (num, C, 1, H, W)
