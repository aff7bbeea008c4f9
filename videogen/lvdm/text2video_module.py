"""LVDM text-to-video training (Sec. 5): :class:`LVDMTextToVideoModule`.

Trains :class:`~videogen.lvdm.VideoUNetFromSD` on per-frame SD-VAE latents with the checkpoint's CLIP text
encoder (token states, 10% empty-caption dropout); by default only the temporal layers train
(``train_spatial=True`` fine-tunes the SD weights too).  LVDM's schedule is SD's (0.00085..0.012), L2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.sd import FrameVAE
from videogen.core.text import TextEncoder
from videogen.core.training import TrainingModule

from .sd_unet import SD_DIFFUSION, VideoUNetFromSD

if TYPE_CHECKING:
    from .text2video_pipeline import LVDMTextToVideo

__all__ = ["LVDMTextToVideoModule"]


class LVDMTextToVideoModule(TrainingModule):
    """Text-to-video training on per-frame SD-VAE latents (see the module docstring).

    Args:
        unet: the :class:`VideoUNetFromSD`.
        vae: frozen ``FrameVAE`` of the same SD checkpoint; text_encoder: its frozen CLIP text encoder.
        train_spatial: also fine-tune the SD weights (default: the temporal layers only).
        cond_drop_prob: empty-caption probability (classifier-free guidance at sampling).
        diffusion: ``GaussianDiffusion`` kwargs (default SD's scaled-linear 0.00085..0.012, eps, L2).
        lr: AdamW learning rate.
    """

    def __init__(self, unet: VideoUNetFromSD, vae: FrameVAE, text_encoder: TextEncoder, train_spatial: bool = False,
                 cond_drop_prob: float = 0.1, diffusion: dict[str, Any] | None = None, lr: float = 6e-5,
                 nan_policy: str = "raise"):
        super().__init__(nan_policy=nan_policy)
        self.save_hyperparameters(ignore=["unet", "vae", "text_encoder"])
        self.unet, self.vae, self.text_encoder = unet, vae.requires_grad_(False), text_encoder.requires_grad_(False)
        if not train_spatial:
            unet.sd.requires_grad_(False)
        self.diffusion_config = {**SD_DIFFUSION, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)

    def train(self, mode: bool = True) -> LVDMTextToVideoModule:
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        with torch.no_grad():
            z = self.vae.encode(batch["video"], sample=True)  # (B, 4, T, h, w)
            drop = torch.rand(z.shape[0]) < self.hparams.cond_drop_prob
            captions = ["" if d else c for c, d in zip(batch["caption"], drop.tolist())]
            states = self.text_encoder(captions)[0]
        loss = self.diffusion.training_loss(self.unet, z, text_states=states)
        if not self.finite_or_skip(loss=loss):
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=z.shape[0], sync_dist=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.unet.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr)

    # the checkpoint alone rebuilds the pipeline (videogen.load_pretrained, LVDMTextToVideo.from_checkpoints)
    pipeline_name = "videogen.lvdm.LVDMTextToVideo"

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        return {name: (getattr(self, name), f"{name}.") for name in ("unet", "vae", "text_encoder")}

    def pipeline_settings(self) -> dict[str, Any]:
        return {"diffusion": self.diffusion_config}

    def pipeline(self, video_size: tuple[int, int] | None = None, clip_frames: int = 16) -> LVDMTextToVideo:
        """The inference object sharing this module's networks (``video_size``: its default frame size)."""
        from .text2video_pipeline import LVDMTextToVideo

        return LVDMTextToVideo(self.unet, self.vae, self.text_encoder, self.diffusion_config, video_size, clip_frames)

    @torch.no_grad()
    def generate(self, text: list[str], num_frames: int, height: int, width: int, num_steps: int = 50,
                 guidance_scale: float = 15.0, eta: float = 1.0, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Videos ``(B, 3, num_frames, H, W)`` in [-1, 1] for ``text`` (DDIM, CFG with the "" prompt as LVDM)."""
        return self.pipeline().generate(text=list(text), num_frames=num_frames, height=height, width=width,
                                        num_steps=num_steps, guidance_scale=guidance_scale, eta=eta,
                                        generator=generator, progress=False)
