"""LVDM text-to-video training (Sec. 5): :class:`LVDMTextToVideoModule`.

Trains :class:`~videogen.lvdm.VideoUNetFromSD` on per-frame SD-VAE latents with the checkpoint's CLIP text
encoder (token states, 10% empty-caption dropout); by default only the temporal layers train
(``train_spatial=True`` fine-tunes the SD weights too).  LVDM's schedule is SD's (0.00085..0.012), L2.
"""

from __future__ import annotations

from typing import Any

import torch

from videogen.core.sd import FrameVAE
from videogen.core.stages import DiffusionStage, drop_captions
from videogen.core.text import TextEncoder
from videogen.data.cache import cached_batch, encode_text

from .sd_unet import SD_DIFFUSION, VideoUNetFromSD

__all__ = ["LVDMTextToVideoModule"]


class LVDMTextToVideoModule(DiffusionStage):
    """Text-to-video training on per-frame SD-VAE latents (see the module docstring).

    Args:
        unet: the :class:`VideoUNetFromSD`.
        vae: frozen ``FrameVAE`` of the same SD checkpoint; text_encoder: its frozen CLIP text encoder.
        train_spatial: also fine-tune the SD weights (default: the temporal layers only).
        cond_drop_prob: empty-caption probability (classifier-free guidance at sampling).
        diffusion: ``GaussianDiffusion`` kwargs (default SD's scaled-linear 0.00085..0.012, eps, L2).
        lr: AdamW learning rate.
        compile, optimizer: cluster switches (``core.training.TrainingModule``; docs/recipes.md).
    """

    network_name = "unet"
    frozen = ("vae", "text_encoder")
    default_diffusion = SD_DIFFUSION
    drop_on_device = False  # the empty-caption draw has always been on the CPU: seeded runs stay as they were
    # the checkpoint alone rebuilds the pipeline (videogen.load_pretrained, LVDMTextToVideo.from_checkpoints)
    pipeline_name = "videogen.lvdm.LVDMTextToVideo"
    sample_steps = 25  # sample_videos (logging only)

    def __init__(self, unet: VideoUNetFromSD, vae: FrameVAE, text_encoder: TextEncoder,
                 train_spatial: bool = False, cond_drop_prob: float = 0.1,
                 diffusion: dict[str, Any] | None = None, lr: float = 6e-5,
                 nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None):
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy, compile=compile,
                         optimizer=optimizer)
        self.save_hyperparameters(ignore=["unet", "vae", "text_encoder"])
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.freeze_stages()
        if not train_spatial:
            unet.sd.requires_grad_(False)

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-frame SD-VAE latents ``(B, 4, T, h, w)`` and the captions (or, from a latent cache, the
        posterior-mean latents and the captions' token states)."""
        if cached_batch(self, batch, ("latent", "text_states")):
            return batch["latent"].to(self.device), {"text_states": batch["text_states"].to(self.device)}
        return self.vae.encode(batch["video"], sample=sample), {"captions": list(batch["caption"])}

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """CLIP token states of the captions, the dropped ones replaced by the empty prompt."""
        if "text_states" in raw:  # cached states: the dropped samples get the empty prompt's
            states = raw["text_states"]
            if drop is not None:
                if getattr(self, "_null_states", None) is None:
                    self._null_states = self.text_encoder([""])[0]  # (1, L, D), once
                null = self._null_states.to(states.device, states.dtype)
                states = torch.where(drop.to(states.device)[:, None, None], null, states)
            return {"text_states": states}
        captions = raw["captions"] if drop is None else drop_captions(raw["captions"], drop)
        return {"text_states": self.text_encoder(captions)[0]}

    @torch.no_grad()
    def cache_encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What ``videogen cache`` stores: per-frame SD-VAE posterior means ``latent`` ``(B, 4, T, h, w)``
        of ``batch["video"]``, or ``text_states`` / ``text_mask`` of ``batch["caption"]``."""
        if "video" in batch:
            return {"latent": self.vae.encode(batch["video"], sample=False)}
        return encode_text(self.text_encoder, batch["caption"])

    def configure_optimizers(self):
        params = [p for p in self.unet.parameters() if p.requires_grad]
        return self.make_optimizer(params, self.hparams.lr, "adamw")  # torch's AdamW defaults

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {name: (getattr(self, name), f"{name}.") for name in ("unet", "vae", "text_encoder")}

    def pipeline_settings(self) -> dict[str, Any]:
        return {"diffusion": self.diffusion_config}

    def sample_inputs(self, batch: dict[str, Any], num: int) -> dict[str, Any]:
        """The first ``num`` captions at the batch's clip size (CFG 15 against "", the pipeline default)."""
        _, _, t, h, w = batch["video"].shape
        return dict(text=list(batch["caption"][:num]), num_frames=t, height=h, width=w,
                    num_steps=self.sample_steps)

    @torch.no_grad()
    def generate(self, text: list[str], num_frames: int, height: int, width: int, num_steps: int = 50,
                 guidance_scale: float = 15.0, eta: float = 1.0, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Videos ``(B, 3, num_frames, H, W)`` in [-1, 1] for ``text`` (DDIM, CFG with the "" prompt as LVDM);
        ``self.pipeline(video_size=..., clip_frames=...)`` is the inference object sharing the networks."""
        return self.pipeline().generate(text=list(text), num_frames=num_frames, height=height, width=width,
                                        num_steps=num_steps, guidance_scale=guidance_scale, eta=eta,
                                        generator=generator, progress=False)
