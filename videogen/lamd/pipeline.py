"""``LaMD``: the inference object holding both stages (MCD-VAE + DMG [+ text encoder]).

Image-to-video (Fig. 2, sampling): ``f = E_I(x0)``; the DMG samples ``z_m`` from noise conditioned on
``f_x0`` (+ label / text) with a K-step subsequence of the 1000 training steps (K = 200 in the paper);
``D_V(z_m, f)`` decodes the video. Motion transfer (Fig. 6): the content of one clip with the latent
motion (posterior mean) of another. ``save_pretrained`` / ``from_pretrained`` / ``from_checkpoints`` (a
``DMGModule`` checkpoint alone: both stages' weights are in it) are the shared ones of
``videogen.core.persistence``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.pipeline import VideoPipeline
from videogen.core.text import TextEncoder

from .dmg import MotionGenerator, check_stages
from .mcdvae import MCDVAE

__all__ = ["LaMD", "check_stages"]

class LaMD(VideoPipeline):
    """Latent motion diffusion for image(-text)-to-video generation.

    Args:
        mcdvae: trained stage-1 MCD-VAE.
        dmg: trained stage-2 ``MotionGenerator`` whose latent/content sizes match ``mcdvae``.
        diffusion_config: kwargs of ``GaussianDiffusion`` used in training (default: linear, 1000, eps).
        text_encoder: frozen text encoder for text-guided models (its width must be ``dmg.text_dim``).

    Follows the shared ``generate`` protocol (``videogen.core.pipeline``): the image is required; longer
    ``num_frames`` chain clips from the last generated frame.

    The constructor does not change the modules' train/eval modes (they may be shared with a training
    module); ``from_pretrained`` and ``from_modules`` return the pipeline in eval mode.
    """

    components = {"mcdvae": "mcdvae", "dmg": "dmg", "text_encoder": "text_encoder"}
    component_hints = {"mcdvae": "train it with recipes/lamd_*_mcdvae.yaml",
                       "dmg": "give the checkpoint of recipes/lamd_*_dmg.yaml"}
    required_conditions = ("image",)
    default_num_steps = 200
    chain_overlap = 1  # a clip starts with (the reconstruction of) the frame it was given

    def __init__(self, mcdvae: MCDVAE, dmg: MotionGenerator, diffusion_config: dict[str, Any] | None = None,
                 text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        check_stages(mcdvae, dmg, text_encoder)
        self.mcdvae, self.dmg, self.text_encoder = mcdvae, dmg, text_encoder
        self.diffusion_config = dict(diffusion_config or {})
        self.diffusion = GaussianDiffusion(**self.diffusion_config)

    @classmethod
    def from_modules(cls, mcdvae: Any, dmg_module: Any) -> LaMD:
        """Build from an ``MCDVAEModule`` (or ``MCDVAE``) and a trained ``DMGModule``."""
        model = getattr(mcdvae, "autoencoder", mcdvae)
        return cls(model, dmg_module.dmg, dmg_module.diffusion_config, dmg_module.text_encoder).eval()

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions ``generate`` takes: always ``"image"``; ``"label"`` / ``"text"`` when the DMG has
        them."""
        return ("image",) + (("label",) if self.dmg.num_classes is not None else ()) + \
            (("text",) if self.text_encoder is not None else ())

    @property
    def clip_frames(self) -> int:
        """Frames of one generated clip."""
        return self.mcdvae.num_frames

    @property
    def image_size(self) -> int:
        """Side of the square first frame ``generate`` expects."""
        return self.mcdvae.resolution

    # ---- input handling -----------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.dmg.parameters()).device

    def _label(self, label: Any, batch: int) -> torch.Tensor | None:
        if label is None:
            return None
        if self.dmg.num_classes is None:
            raise ValueError("label given, but this LaMD model is not class-conditional (num_classes=None)")
        label = torch.as_tensor(label, dtype=torch.long, device=self._device()).reshape(-1)
        if label.numel() == 1 and batch > 1:
            label = label.expand(batch)
        if label.shape != (batch,):
            raise ValueError(f"label must be one int or {batch} ints (one per image), got shape "
                             f"{tuple(label.shape)}")
        if int(label.min()) < 0 or int(label.max()) >= self.dmg.num_classes:
            raise ValueError(f"label must lie in [0, {self.dmg.num_classes - 1}], got {label.tolist()}")
        return label

    def _text(self, text: str | Sequence[str] | None,
              batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if text is None:
            return None, None
        if self.text_encoder is None:
            raise ValueError("text given, but this LaMD model has no text encoder (not text-conditional)")
        texts = [text] * batch if isinstance(text, str) else list(text)
        if len(texts) != batch:
            raise ValueError(f"text must be one string or {batch} strings (one per image), got {len(texts)}")
        tokens, mask = self.text_encoder(texts)  # (B, L, D), (B, L)
        return tokens.to(self._device()), mask.to(self._device())

    # ---- generation ---------------------------------------------------------------------------
    def _generate(self, *, image: torch.Tensor, label: Any, text: str | Sequence[str] | None, batch: int,
                  num_frames: None, num_steps: int, sampler: Any, guidance_scale: float | None,
                  generator: torch.Generator | None, progress: bool, eta: float = 0.0) -> torch.Tensor:
        """``generate``: animate ``image (B, C, H, W)`` in [-1, 1] -> video ``(B, C, T, H, W)`` in [-1, 1].

        Defaults: 200 DDIM steps (eta 0), ``guidance_scale`` 1 (no guidance).

        ``label`` (class models; None = the null class, i.e. an unconditional sample) / ``text`` (text
        models; None = no text) steer the motion; with ``guidance_scale != 1``
        classifier-free guidance mixes in the null-label / no-text prediction (content always kept).
        ``sampler``: "ddim" | "ddpm" | "dpm++" (or a diffusers scheduler name); ``eta`` for DDIM.
        ``generator`` draws all noise, so the same seed gives the same video.
        """
        guidance_scale = 1.0 if guidance_scale is None else guidance_scale
        self.mcdvae.validate_image(image)
        b = image.shape[0]
        label_t = self._label(label, b)
        text_t, text_mask = self._text(text, b)
        if guidance_scale != 1.0 and label_t is None and text_t is None:
            raise ValueError("guidance_scale != 1 needs a label or a text to guide with")
        device = self._device()
        content = self.mcdvae.encode_content(image.to(device))  # [f_x0 (B, d', h, w), f^1, ..., f^k]
        # The condition does not depend on the timestep: build the cross-attention context once, not per step.
        cond = self._context(content[0], label_t, text_t, text_mask)
        uncond = None
        if guidance_scale != 1.0:
            null_label = None if label_t is None else torch.full_like(label_t, self.dmg.null_label)
            no_text = None if text_t is None else torch.zeros_like(text_mask)  # every text token masked out
            uncond = self._context(content[0], null_label, text_t, no_text)
            cond, uncond = _same_mask_kind(cond, uncond)
        z_m = self.diffusion.sample(
            self.dmg, (b, *self.mcdvae.latent_shape), cond=cond, uncond=uncond, guidance_scale=guidance_scale,
            sampler=sampler, num_steps=num_steps, eta=eta, generator=generator, device=device,
                                    progress=progress)
        return self.mcdvae.decode(z_m, content).clamp(-1, 1)  # (B, C, T, H, W)

    def _context(self, content, label, text, text_mask) -> dict[str, torch.Tensor | None]:
        context, mask = self.dmg.encode_condition(content, label, text, text_mask)
        return {"context": context, "context_mask": mask}

    @torch.no_grad()
    def transfer_motion(self, content: torch.Tensor, motion_video: torch.Tensor) -> torch.Tensor:
        """Content of ``content`` (image ``(B, C, H, W)`` or video, frame 0 used) with the motion of
        ``motion_video (B, C, T, H, W)`` (posterior mean) -> video ``(B, C, T, H, W)`` in [-1, 1]."""
        if not torch.is_tensor(content) or content.ndim not in (4, 5):
            raise ValueError("content must be an image (B, C, H, W) or a video (B, C, T, H, W), got shape "
                             f"{tuple(getattr(content, 'shape', ()))}")
        x0 = content[:, :, 0] if content.ndim == 5 else content
        self.mcdvae.validate_image(x0)
        self.mcdvae.validate_video(motion_video)
        if x0.shape[0] != motion_video.shape[0]:
            raise ValueError(f"content and motion_video batch sizes differ: {x0.shape[0]} vs "
                             f"{motion_video.shape[0]}")
        device = self._device()
        z_m, _, _ = self.mcdvae.encode_motion(motion_video.to(device), sample=False)
        return self.mcdvae.decode(z_m, self.mcdvae.encode_content(x0.to(device))).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """Stage-1 reconstruction of ``video (B, C, T, H, W)`` (posterior mean motion, content of frame 0)."""
        return self.transfer_motion(video, video)


def _same_mask_kind(cond: dict, uncond: dict) -> tuple[dict, dict]:
    """Guided sampling batches both branches: give both a key mask when one has one (None = all keys)."""
    masks = [cond["context_mask"], uncond["context_mask"]]
    if (masks[0] is None) == (masks[1] is None):
        return cond, uncond
    shape, device = cond["context"].shape[:2], cond["context"].device
    full = [m if m is not None else torch.ones(shape, dtype=torch.bool, device=device) for m in masks]
    return {**cond, "context_mask": full[0]}, {**uncond, "context_mask": full[1]}
