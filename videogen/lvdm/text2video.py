"""LVDM text-to-video (Sec. 5): a Stable Diffusion UNet (diffusers) + temporal attention layers.

:class:`VideoUNetFromSD` runs diffusers' ``UNet2DConditionModel`` on every frame (``(B, C, T, h, w)`` ->
``(B*T, C, h, w)``) and, after every spatial transformer of the UNet, a temporal attention layer over
the frames at each position (GN -> qkv -> Shaw relative attention -> **zero-initialised** projection ->
residual).  At initialisation the video model therefore equals the image model applied frame by frame;
``from_sd(path)`` is the conversion from Stable Diffusion weights that the official code never shipped
(LVDM#5, #23): the SD UNet is loaded through diffusers unchanged and only the temporal layers are new.

:class:`LVDMTextToVideoModule` trains it on per-frame SD-VAE latents with the checkpoint's CLIP text
encoder (token states, 10% empty-caption dropout); by default only the temporal layers train
(``train_spatial=True`` fine-tunes the SD weights too).  LVDM's schedule is SD's (0.00085..0.012), L2.

:class:`LVDMTextToVideo` is the inference object (the shared ``generate(text=...)`` protocol of
``videogen.core.pipeline``; persistence as every pipeline, ``videogen.core.persistence``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.persistence import CKPT_KEY, register, registered_name
from videogen.core.pipeline import VideoPipeline
from videogen.core.sd import FrameVAE, SDUNet
from videogen.core.text import TextEncoder
from videogen.core.training import TrainingModule

from .unet3d import _AttentionHalf

__all__ = ["LVDMTextToVideo", "LVDMTextToVideoModule", "VideoUNetFromSD"]

TEMPORAL_WEIGHTS = "temporal.safetensors"
SD_DIFFUSION = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


class VideoUNetFromSD(nn.Module):
    """An SD UNet made a video model by temporal attention after each of its spatial transformers.

    Args:
        unet: ``videogen.core.sd.SDUNet`` (or give ``pretrained``: an SD directory / hub id in the cache).
        heads: heads of the temporal layers; ``max_relative_distance``: their relative-position range (16).
    """

    def __init__(self, unet: SDUNet | None = None, pretrained: str | None = None, heads: int = 8,
                 max_relative_distance: int = 16):
        super().__init__()
        if (unet is None) == (pretrained is None):
            raise ValueError("give an SDUNet (unet) or a Stable Diffusion directory (pretrained)")
        self.sd = unet if unet is not None else SDUNet(pretrained)
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        self._frames = 1
        self.spatial_names: list[str] = []
        layers = {}
        for name, module in self.sd.unet.named_modules():
            if isinstance(module, Transformer2DModel):
                channels = module.config.in_channels
                layers[name.replace(".", "_")] = _AttentionHalf(channels, heads if channels % heads == 0 else 1,
                                                                max_relative_distance)
                module.register_forward_hook(self._temporal_hook(name.replace(".", "_")))
                self.spatial_names.append(name)
        if not layers:
            raise ValueError("the UNet has no spatial transformers to follow with temporal layers")
        self.temporal = nn.ModuleDict(layers)
        self.in_channels, self.context_dim = self.sd.in_channels, self.sd.context_dim
        self.config = {"heads": heads, "max_relative_distance": max_relative_distance, "unet": self.sd.config}

    # the component protocol of videogen.core.persistence: the SD UNet as a diffusers directory ``unet/``,
    # the temporal layers as ``temporal.safetensors`` and their settings in ``config.json``
    def component_config(self) -> dict[str, Any]:
        return self.config

    @classmethod
    def from_component_config(cls, config: dict[str, Any]) -> VideoUNetFromSD:
        return cls(SDUNet(config=config["unet"]["config"]), heads=config["heads"],
                   max_relative_distance=config["max_relative_distance"])

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.sd.save_pretrained(directory / "unet")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.temporal.state_dict().items()},
                  str(directory / TEMPORAL_WEIGHTS))
        settings = {"class": registered_name(type(self)), "heads": self.config["heads"],
                    "max_relative_distance": self.config["max_relative_distance"]}
        (directory / "config.json").write_text(json.dumps(settings, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
                        ) -> VideoUNetFromSD:
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in ("config.json", TEMPORAL_WEIGHTS, "unet"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{directory / name} not found: not a VideoUNetFromSD.save_pretrained directory")
        settings = json.loads((directory / "config.json").read_text())
        unet = cls(SDUNet.from_pretrained(directory / "unet"), heads=settings["heads"],
                   max_relative_distance=settings["max_relative_distance"])
        unet.temporal.load_state_dict(load_file(str(directory / TEMPORAL_WEIGHTS)))
        return unet.to(map_location)

    @classmethod
    def from_sd(cls, path: str, **kwargs: Any) -> VideoUNetFromSD:
        """Convert Stable Diffusion weights: the SD UNet unchanged, new temporal layers that start as the identity."""
        return cls(pretrained=path, **kwargs)

    def _temporal_hook(self, key: str):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output.sample
            bt, c, h, w = hidden.shape
            t = self._frames
            x = hidden.view(bt // t, t, c, h * w).permute(0, 3, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
            x = self.temporal[key](x)
            hidden = x.view(bt // t, h * w, c, t).permute(0, 3, 2, 1).reshape(bt, c, h, w)
            return (hidden, *output[1:]) if isinstance(output, tuple) else type(output)(sample=hidden)
        return hook

    def temporal_parameters(self):
        return self.temporal.parameters()

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T, h, w)``, ``t (B,)``, ``text_states (B, L, d)`` -> ``(B, C, T, h, w)``."""
        if x.ndim != 5:
            raise ValueError(f"x must be (B, C, T, h, w), got {tuple(x.shape)}")
        b, c, frames, h, w = x.shape
        self._frames = frames
        flat = x.transpose(1, 2).reshape(b * frames, c, h, w)
        out = self.sd(flat, t.repeat_interleave(frames), text_states.repeat_interleave(frames, dim=0))
        return out.view(b, frames, -1, h, w).transpose(1, 2)


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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The pipeline record (``videogen.core.persistence``): ``videogen.load_pretrained(ckpt)`` and
        ``LVDMTextToVideo.from_checkpoints(ckpt)`` rebuild the pipeline from this file alone."""
        parts = {name: (getattr(self, name), f"{name}.") for name in ("unet", "vae", "text_encoder")}
        checkpoint[CKPT_KEY] = LVDMTextToVideo.checkpoint_record(parts, {"diffusion": self.diffusion_config})

    def pipeline(self, video_size: tuple[int, int] | None = None, clip_frames: int = 16) -> LVDMTextToVideo:
        """The inference object sharing this module's networks (``video_size``: its default frame size)."""
        return LVDMTextToVideo(self.unet, self.vae, self.text_encoder, self.diffusion_config, video_size, clip_frames)

    @torch.no_grad()
    def generate(self, text: list[str], num_frames: int, height: int, width: int, num_steps: int = 50,
                 guidance_scale: float = 15.0, eta: float = 1.0, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Videos ``(B, 3, num_frames, H, W)`` in [-1, 1] for ``text`` (DDIM, CFG with the "" prompt as LVDM)."""
        return self.pipeline().generate(text=list(text), num_frames=num_frames, height=height, width=width,
                                        num_steps=num_steps, guidance_scale=guidance_scale, eta=eta,
                                        generator=generator, progress=False)


class LVDMTextToVideo(VideoPipeline):
    """LVDM text-to-video inference: ``generate(text=...)`` (the shared protocol) -> ``(B, 3, T, H, W)``.

    Sampling as the official script: DDIM 50 steps, eta 1, classifier-free guidance 15 against the empty
    caption; every frame decoded by the SD VAE.  ``num_frames`` frames come from one clip (default
    ``clip_frames``, 16): the temporal layers take any length, their relative positions clipped at
    ``max_relative_distance``, so lengths beyond training are extrapolation.

    Args:
        unet: the :class:`VideoUNetFromSD`; vae: its ``FrameVAE``; text_encoder: the SD text encoder.
        diffusion: ``GaussianDiffusion`` kwargs it was trained with (default SD's schedule, eps).
        video_size: ``(height, width)`` default for sampling (None: give height and width).
        clip_frames: frames per clip by default.
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
                 clip_frames: int = 16):
        super().__init__()
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.diffusion_config = {**SD_DIFFUSION, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)
        self.video_size = None if video_size is None else tuple(video_size)
        self.clip_frames = clip_frames

    def _device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def _generate(self, *, image: None, label: None, text: Sequence[str] | str, batch: int, num_frames: int | None,
                  num_steps: int, sampler: Any, guidance_scale: float | None, generator: torch.Generator | None,
                  progress: bool, height: int | None = None, width: int | None = None, eta: float = 1.0
                  ) -> torch.Tensor:
        """``generate``: videos for ``text``; ``guidance_scale`` default 15 (against ""), ``eta`` 1."""
        if height is None or width is None:
            if self.video_size is None:
                raise ValueError("give height and width (this pipeline was built without a video_size)")
            height, width = self.video_size
        f = self.vae.downsample
        if height % f or width % f:
            raise ValueError(f"height and width must be divisible by the VAE's downsampling {f}, got {height}x{width}")
        texts = [text] * batch if isinstance(text, str) else list(text)
        dev = self._device()
        shape = (batch, self.vae.latent_channels, num_frames or self.clip_frames, height // f, width // f)
        scale = 15.0 if guidance_scale is None else guidance_scale
        cond = {"text_states": self.text_encoder(texts)[0].to(dev)}
        uncond = {"text_states": self.text_encoder([""] * batch)[0].to(dev)} if scale != 1.0 else None
        z = self.diffusion.sample(self.unet, shape, cond=cond, uncond=uncond, guidance_scale=scale, sampler=sampler,
                                  num_steps=num_steps, eta=eta, generator=generator, device=dev, progress=progress)
        return self.vae.decode(z)


register(VideoUNetFromSD)
