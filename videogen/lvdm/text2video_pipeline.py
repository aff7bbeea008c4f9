"""LVDM text-to-video inference: :class:`LVDMTextToVideo`, the shared ``generate(text=...)`` protocol of
``videogen.core.pipeline`` on :class:`~videogen.lvdm.VideoUNetFromSD`; persistence as every pipeline
(``videogen.core.persistence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.pipeline import VideoPipeline
from videogen.core.sd import FrameVAE
from videogen.core.text import TextEncoder

from .sd_unet import SD_DIFFUSION, VideoUNetFromSD

__all__ = ["LVDMTextToVideo"]


class LVDMTextToVideo(VideoPipeline):
    """LVDM text-to-video inference: ``generate(text=...)`` (the shared protocol) -> ``(B, 3, T, H, W)``.

    Sampling as the official script: DDIM 50 steps, eta 1, classifier-free guidance 15 against the empty
    caption; every frame decoded by the SD VAE.  DDIM timesteps: videogen's (``timesteps="videogen"``:
    trailing, the last step to alpha_bar = 1) or the official sampler's (``"official"``: LDM's leading
    spacing, offset 1, the last step to alpha_bar_0; what a converted ``t2v.ckpt`` uses by default).
    ``num_frames`` frames come from one clip (default
    ``clip_frames``, 16): the temporal layers take any length, their relative positions clipped at
    ``max_relative_distance``, so lengths beyond training are extrapolation.

    Args:
        unet: the :class:`VideoUNetFromSD`; vae: its ``FrameVAE``; text_encoder: the SD text encoder.
        diffusion: ``GaussianDiffusion`` kwargs it was trained with (default SD's schedule, eps).
        video_size: ``(height, width)`` default for sampling (None: give height and width).
        clip_frames: frames per clip by default.
        timesteps: ``"videogen"`` or ``"official"``: the DDIM timestep convention of ``sampler="ddim"``.
    """

    components = {"unet": "unet", "vae": "vae", "text_encoder": "text_encoder"}
    variable_length = True
    required_conditions = ("text",)
    default_num_steps = 50

    @property
    def conditions(self) -> tuple[str, ...]:
        """``"text"`` (required)."""
        return ("text",)

    def __init__(self, unet: VideoUNetFromSD, vae: FrameVAE, text_encoder: TextEncoder,
                 diffusion: dict[str, Any] | None = None, video_size: tuple[int, int] | None = None,
                 clip_frames: int = 16, timesteps: str = "videogen"):
        super().__init__()
        if timesteps not in ("videogen", "official"):
            raise ValueError(f"timesteps must be 'videogen' or 'official', got {timesteps!r}")
        self.timesteps = timesteps
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.diffusion_config = {**SD_DIFFUSION, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)
        self.video_size = None if video_size is None else tuple(video_size)
        self.clip_frames = clip_frames

    def _device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def _generate(self, *, image: None, label: None, text: Sequence[str] | str, batch: int,
                  num_frames: int | None, num_steps: int, sampler: Any, guidance_scale: float | None,
                  generator: torch.Generator | None,
                  progress: bool, height: int | None = None, width: int | None = None, eta: float = 1.0
                  ) -> torch.Tensor:
        """``generate``: videos for ``text``; ``guidance_scale`` default 15 (against ""), ``eta`` 1."""
        if height is None or width is None:
            if self.video_size is None:
                raise ValueError("give height and width (this pipeline was built without a video_size)")
            height, width = self.video_size
        f = self.vae.downsample
        if height % f or width % f:
            raise ValueError(f"height and width must be divisible by the VAE's downsampling {f}, got "
                             f"{height}x{width}")
        texts = [text] * batch if isinstance(text, str) else list(text)
        dev = self._device()
        shape = (batch, self.vae.latent_channels, num_frames or self.clip_frames, height // f, width // f)
        scale = 15.0 if guidance_scale is None else guidance_scale
        if self.timesteps == "official" and sampler == "ddim":  # the official DDIMSampler's timesteps
            sampler = self.diffusion.make_scheduler("ddim", timestep_spacing="leading", steps_offset=1,
                                                    set_alpha_to_one=False)
        cond = {"text_states": self.text_encoder(texts)[0].to(dev)}
        uncond = {"text_states": self.text_encoder([""] * batch)[0].to(dev)} if scale != 1.0 else None
        z = self.diffusion.sample(self.unet, shape, cond=cond, uncond=uncond, guidance_scale=scale,
                                  sampler=sampler, num_steps=num_steps, eta=eta, generator=generator,
                                  device=dev, progress=progress)
        return self.vae.decode(z)
