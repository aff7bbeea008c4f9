"""``CMD``: the inference pipeline (Sec. 3.2): condition -> content frame -> motion -> video.

``generate(label=... | text=...)`` samples the content frame with classifier-free guidance (B.4: DDIM
50 steps, scale 4.0 for UCF-101, 7.5 for text), then the motion latent given that frame (DDIM 100 steps,
no guidance by default), decodes both with the autoencoder and, in latent mode, each frame with the SD
VAE.  ``animate(content_frame, ...)`` skips the first stage (image-to-video: the image is the content
frame).  ``reconstruct(video)`` runs the autoencoder.  Every noise draw comes from ``generator``.
``CMD.from_checkpoints(content.ckpt, motion.ckpt)`` joins the two stages' checkpoints (persistence is the
shared one of ``videogen.core.persistence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.pipeline import VideoPipeline
from videogen.core.sd import FrameVAE, SDUNet
from videogen.core.text import TextEncoder

from .autoencoder import CMDAutoencoder
from .dit import MotionDiT

__all__ = ["CMD"]


class CMD(VideoPipeline):
    """Autoencoder + content model + motion model (+ text encoder, + SD VAE in latent mode).

    Args:
        autoencoder, content_model (``ContentDiT`` or ``SDUNet``), motion_model (``MotionDiT``).
        content_diffusion, motion_diffusion: the ``GaussianDiffusion`` kwargs each was trained with.
        text_encoder: frozen; SD token states for an ``SDUNet`` content model, pooled features for the
            motion DiT (``pool_masked`` as in training).
        vae: ``FrameVAE`` for latent-mode autoencoders.
        motion_scale: the motion DiT samples ``motion_scale * z`` (its training's ``motion_scale``).

    Follows the shared ``generate`` protocol (``videogen.core.pipeline``); longer ``num_frames`` chain
    clips, each animated from the last frame so far as its content frame.
    """

    components = {name: name for name
                  in ("autoencoder", "content_model", "motion_model", "text_encoder", "vae")}
    component_hints = {"autoencoder": "the motion-stage checkpoint (recipes/cmd_*_motion.yaml) has it",
                       "content_model": "give the content-stage checkpoint too (recipes/cmd_*_content.yaml)",
                       "motion_model": "give the motion-stage checkpoint too (recipes/cmd_*_motion.yaml)"}
    default_num_steps = 100  # motion steps (B.4); the content model takes ``content_steps`` (50)

    def __init__(self, autoencoder: CMDAutoencoder, content_model: nn.Module, motion_model: MotionDiT,
                 content_diffusion: dict[str, Any] | None = None,
                 motion_diffusion: dict[str, Any] | None = None, text_encoder: TextEncoder | None = None,
                 vae: FrameVAE | None = None, pool_masked: bool = False,
                 motion_scale: float = 1.0):
        super().__init__()
        if not motion_scale > 0:
            raise ValueError(f"motion_scale must be > 0, got {motion_scale}")
        self.motion_scale = float(motion_scale)
        self.autoencoder, self.content_model, self.motion_model = autoencoder, content_model, motion_model
        self.text_encoder, self.vae, self.pool_masked = text_encoder, vae, pool_masked
        self.content_diffusion_config = dict(content_diffusion or {})
        self.motion_diffusion_config = dict(motion_diffusion or {})
        self.content_diffusion = GaussianDiffusion(**self.content_diffusion_config)
        self.motion_diffusion = GaussianDiffusion(**self.motion_diffusion_config)
        if autoencoder.mode == "latent" and vae is None:
            raise ValueError("a latent-mode CMD needs the SD VAE (vae) to turn latents into pixels")

    # ---- what it takes ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return getattr(self.content_model, "num_classes", None)

    @property
    def conditions(self) -> tuple[str, ...]:
        """``"image"`` (animated as the content frame), and ``"label"`` or ``"text"``."""
        if isinstance(self.content_model, SDUNet) or self.text_encoder is not None:
            return ("image", "text")
        return ("image", "label") if self.num_classes is not None else ("image",)

    @property
    def clip_frames(self) -> int:
        """Frames of one generated clip (``L``)."""
        return self.autoencoder.num_frames

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the pixel frames it makes (and of an image ``generate`` animates)."""
        f = self.vae.downsample if self.vae is not None else 1
        return self.autoencoder.height * f, self.autoencoder.width * f

    def _device(self) -> torch.device:
        # a content-stage pipeline (sample_content only) has no motion model
        model = self.motion_model if self.motion_model is not None else self.content_model
        return next(model.parameters()).device

    def _label(self, label: Any, b: int, model: nn.Module) -> torch.Tensor | None:
        if label is None:
            return None
        n = getattr(model, "num_classes", None)
        if n is None:
            raise ValueError("label given, but this CMD model is not class-conditional (it takes "
                             f"{self.conditions})")
        label = torch.as_tensor(label, dtype=torch.long, device=self._device()).reshape(-1)
        if label.numel() == 1 and b > 1:
            label = label.expand(b)
        if label.shape != (b,) or int(label.min()) < 0 or int(label.max()) >= n:
            raise ValueError(f"label must be one int or {b} ints in [0, {n - 1}], got {label.tolist()}")
        return label

    def _texts(self, text: str | Sequence[str] | None, b: int) -> list[str] | None:
        if text is None:
            return None
        if self.text_encoder is None:
            raise ValueError("text given, but this CMD model has no text encoder (it takes "
                             f"{self.conditions})")
        texts = [text] * b if isinstance(text, str) else list(text)
        if len(texts) != b:
            raise ValueError(f"give one caption or {b} captions, got {len(texts)}")
        return texts

    # ---- stages -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_content(self, num: int, label: Any = None, text: str | Sequence[str] | None = None,
                       num_steps: int = 50, sampler: Any = "ddim", guidance_scale: float = 1.0,
                       generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
        """Content frames ``(B, C, H, W)`` (pixels in [-1, 1], or scaled SD latents) for a condition."""
        device = self._device()
        shape = (num, *self.autoencoder.content_shape)
        if isinstance(self.content_model, SDUNet):
            texts = self._texts(text, num) or [""] * num
            cond = {"text_states": self.text_encoder(texts)[0].to(device)}
            uncond = {"text_states": self.text_encoder([""] * num)[0].to(device)}
        else:
            lab = self._label(label, num, self.content_model)
            texts = self._texts(text, num) if getattr(self.content_model, "text_dim", None) else None
            tfeat = None if texts is None else self.text_encoder.pooled(texts,
                                                                        masked=self.pool_masked).to(device)
            cond = {"label": lab, "text": tfeat}
            uncond = {"label": None if lab is None else torch.full_like(lab, self.content_model.null_label),
                      "text": None if tfeat is None else torch.zeros_like(tfeat)}
            if lab is None and tfeat is None:
                uncond, guidance_scale = None, 1.0
        out = self.content_diffusion.sample(self.content_model, shape, cond=cond, uncond=uncond,
                                            guidance_scale=guidance_scale, sampler=sampler,
                                            num_steps=num_steps, generator=generator, device=device,
                                            progress=progress)
        return out.clamp(-1, 1) if self.autoencoder.mode == "pixel" else out

    @torch.no_grad()
    def sample_motion(self, content_frame: torch.Tensor, label: Any = None,
                      text: str | Sequence[str] | None = None, num_steps: int = 100, sampler: Any = "ddim",
                      guidance_scale: float = 1.0,
                      generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
        """Motion latents ``(B, D, L, W'+H')`` given content frames (and the class / caption)."""
        device = self._device()
        b = content_frame.shape[0]
        lab = self._label(label, b, self.motion_model) if self.motion_model.num_classes is not None else None
        tfeat = None
        if self.motion_model.text_dim is not None:
            texts = self._texts(text, b)
            if texts is not None:
                tfeat = self.text_encoder.pooled(texts, masked=self.pool_masked).to(device)
        cond = {"content": content_frame.to(device), "label": lab, "text": tfeat}
        uncond = None
        if guidance_scale != 1.0 and (lab is not None or tfeat is not None):
            uncond = {"content": cond["content"],
                      "label": None if lab is None else torch.full_like(lab, self.motion_model.null_label),
                      "text": None if tfeat is None else torch.zeros_like(tfeat)}
        else:
            guidance_scale = 1.0
        z = self.motion_diffusion.sample(self.motion_model, (b, *self.autoencoder.motion_shape), cond=cond,
                                         uncond=uncond, guidance_scale=guidance_scale, sampler=sampler,
                                         num_steps=num_steps, generator=generator, device=device,
                                         progress=progress)
        return (z / self.motion_scale).clamp(-1, 1)  # the motion latent is a tanh output

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Autoencoder-space videos ``(B, C, T, H, W)`` -> pixels in [-1, 1] (latent mode: the SD VAE)."""
        return self.vae.decode(x) if self.vae is not None else x.clamp(-1, 1)

    # ---- public API ---------------------------------------------------------------------------
    def _generate(self, *, image: torch.Tensor | None, label: Any, text: str | Sequence[str] | None,
                  batch: int, num_frames: None, num_steps: int, sampler: Any, guidance_scale: float | None,
                  generator: torch.Generator | None, progress: bool, content_steps: int = 50,
                  motion_guidance_scale: float = 1.0) -> torch.Tensor:
        """``generate``: class- or text-to-video ``(B, C, L, H, W)`` pixels in [-1, 1]; with ``image``,
        image-to-video (``animate``: the image is the content frame).

        ``num_steps`` / ``content_steps``: motion / content sampling steps (B.4: 100 / 50, DDIM eta 0);
        ``guidance_scale``: content CFG (default 4.0; the paper uses 4.0 on UCF, 7.5 for text), or with an
        image the motion CFG (default 1); ``motion_guidance_scale``: motion CFG without an image (1 = off).
        """
        if image is not None:
            return self.animate(image, label, text, num_steps, sampler,
                                1.0 if guidance_scale is None else guidance_scale, generator, progress)
        guidance_scale = 4.0 if guidance_scale is None else guidance_scale
        content = self.sample_content(batch, label, text, content_steps, sampler, guidance_scale, generator,
                                      progress)
        z = self.sample_motion(content, label, text, num_steps, sampler, motion_guidance_scale, generator,
                               progress)
        return self.to_pixels(self.autoencoder.decode(content, z))

    @torch.no_grad()
    def animate(self, content_frame: torch.Tensor, label: Any = None, text: str | Sequence[str] | None = None,
                num_steps: int = 100, sampler: Any = "ddim", guidance_scale: float = 1.0,
                generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
        """Image-to-video: the image is the content frame.  ``content_frame (B, 3, H, W)`` pixels in [-1, 1]
        (encoded by the SD VAE in latent mode) -> ``(B, C, L, H, W)`` pixels in [-1, 1]."""
        if content_frame.ndim != 4:
            raise ValueError(f"content_frame must be (B, C, H, W), got {tuple(content_frame.shape)}")
        self.check_conditions(label=label, text=text)
        x_bar = content_frame.to(self._device())
        if self.vae is not None:
            x_bar = self.vae.encode_frames(x_bar)
        if tuple(x_bar.shape[1:]) != self.autoencoder.content_shape:
            raise ValueError("content frame must be (B, "
                             f"{', '.join(map(str, self.autoencoder.content_shape))})"
                             f"{' after the SD VAE' if self.vae is not None else ''}, "
                             f"got {tuple(x_bar.shape)}")
        z = self.sample_motion(x_bar, label, text, num_steps, sampler, guidance_scale, generator, progress)
        return self.to_pixels(self.autoencoder.decode(x_bar, z))

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """Autoencoder round trip of pixel videos ``(B, 3, L, H, W)`` in [-1, 1]."""
        x = self.vae.encode(video.to(self._device()), sample=False) if self.vae is not None else video
        return self.to_pixels(self.autoencoder(x.to(self._device()))[0])
