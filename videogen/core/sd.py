"""Stable Diffusion parts, loaded through diffusers / transformers, never re-implemented.

A Stable Diffusion checkpoint in the diffusers layout (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``; a local directory, or a hub id already in the Hugging Face cache) gives:

* :class:`FrameVAE`: the SD ``AutoencoderKL`` applied frame by frame to videos,
  ``(B, 3, L, H, W)`` in [-1, 1] <-> ``(B, 4, L, H/8, W/8)`` latents times the VAE's scaling factor
  (0.18215 for SD 1.x / 2.x).
* :class:`SDUNet`: ``UNet2DConditionModel`` as a denoiser ``(x_t, t, text_states) -> model output``.
* :func:`sd_text_encoder`: the checkpoint's CLIP text encoder as a ``videogen.core.text.HFTextEncoder``
  (77 tokens, no attention mask: how SD was trained).
* :func:`sd_diffusion_config`: ``GaussianDiffusion`` kwargs from ``scheduler/scheduler_config.json``
  (SD: scaled-linear 0.00085..0.012, eps for 1.5 / 2.1-base, v for 2.1-768).

Nothing downloads: a missing directory or file raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .persistence import register
from .text import HFTextEncoder

__all__ = ["FrameVAE", "SDUNet", "sd_diffusion_config", "sd_text_encoder", "SD_SCALING_FACTOR"]

SD_SCALING_FACTOR = 0.18215
FRAME_VAE_CONFIG = "frame_vae.json"  # FrameVAE.save_pretrained: its settings beside the diffusers files
_HOW = ("give a local Stable Diffusion directory in the diffusers layout (unet/, vae/, text_encoder/, "
        "tokenizer/, scheduler/), e.g. a download of stabilityai/stable-diffusion-2-1-base or "
        "runwayml/stable-diffusion-v1-5, or a hub id already in the Hugging Face cache")


def _part(path: str | os.PathLike, subfolder: str) -> tuple[str, dict[str, Any]]:
    """``(path or hub id, from_pretrained kwargs)`` for one component; local paths are checked."""
    path = str(path)
    local = Path(path).expanduser()
    if local.exists() or path.startswith((".", "/", "~")):
        if not (local / subfolder).is_dir():
            raise FileNotFoundError(f"Stable Diffusion component {local / subfolder} not found: {_HOW}")
        return str(local.resolve()), {"subfolder": subfolder}
    return path, {"subfolder": subfolder, "local_files_only": True}


def _load_part(cls: Any, path: str | os.PathLike, subfolder: str) -> Any:
    """``cls.from_pretrained`` of one component; a name that is neither a local directory nor a hub id in
    the Hugging Face cache raises ``FileNotFoundError`` saying so (not diffusers' error from the hub)."""
    name, kw = _part(path, subfolder)
    try:
        return cls.from_pretrained(name, **kw)
    except OSError as exc:
        if "local_files_only" not in kw:
            raise
        raise FileNotFoundError(f"Stable Diffusion checkpoint {str(path)!r} not found: no directory "
                                f"{Path(path).expanduser().resolve()}, and no hub id {str(path)!r} in the "
                                f"Hugging Face cache; {_HOW}") from exc


class FrameVAE(nn.Module):
    """SD's ``AutoencoderKL`` per frame; frozen.  ``chunk`` frames go through the VAE at a time.

    Args:
        pretrained: SD directory (diffusers layout) or hub id in the HF cache; or give ``vae``.
        vae: an ``AutoencoderKL`` (tests build tiny ones).
        scaling_factor: default the VAE config's (0.18215 for SD 1.x / 2.x).
    """

    def __init__(self, pretrained: str | None = None, vae: nn.Module | None = None, subfolder: str = "vae",
                 scaling_factor: float | None = None, chunk: int = 16):
        super().__init__()
        if (pretrained is None) == (vae is None):
            raise ValueError("give the Stable Diffusion directory (pretrained) or an AutoencoderKL (vae)")
        if vae is None:
            from diffusers import AutoencoderKL

            vae = _load_part(AutoencoderKL, pretrained, subfolder)
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(scaling_factor if scaling_factor is not None
                                    else getattr(vae.config, "scaling_factor", SD_SCALING_FACTOR))
        self.chunk = chunk
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = int(vae.config.latent_channels)

    def train(self, mode: bool = True) -> FrameVAE:
        return super().train(False)  # always frozen

    # the component protocol of videogen.core.persistence: a diffusers directory + frame_vae.json
    def component_config(self) -> dict:
        return {"config": dict(self.vae.config), "scaling_factor": self.scaling_factor, "chunk": self.chunk}

    @classmethod
    def from_component_config(cls, config: dict) -> FrameVAE:
        from diffusers import AutoencoderKL

        return cls(vae=AutoencoderKL.from_config(config["config"]), scaling_factor=config["scaling_factor"],
                   chunk=config.get("chunk", 16))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """The VAE as a diffusers directory, and ``frame_vae.json`` (its latent scaling factor here)."""
        self.vae.save_pretrained(str(directory))
        settings = {"scaling_factor": self.scaling_factor, "chunk": self.chunk}
        (Path(directory) / FRAME_VAE_CONFIG).write_text(json.dumps(settings, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> FrameVAE:
        from diffusers import AutoencoderKL

        settings_file = Path(directory) / FRAME_VAE_CONFIG
        if not settings_file.is_file():
            raise FileNotFoundError(f"{settings_file} not found: not a FrameVAE.save_pretrained directory")
        settings = json.loads(settings_file.read_text())
        vae = AutoencoderKL.from_pretrained(str(directory))
        return cls(vae=vae, scaling_factor=settings["scaling_factor"],
                   chunk=settings.get("chunk", 16)).to(map_location)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """``(B, 3, L, H, W)`` in [-1, 1] -> scaled latents ``(B, 4, L, H/f, W/f)`` (posterior sample or
        mean)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, L, H, W), got {tuple(video.shape)}")
        b, _, L, h, w = video.shape
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"frames {h}x{w} must be divisible by the VAE's downsampling {self.downsample}")
        frames = video.transpose(1, 2).reshape(b * L, 3, h, w)
        dtype = next(self.vae.parameters()).dtype
        out = []
        for part in frames.split(self.chunk):
            dist = self.vae.encode(part.to(dtype)).latent_dist
            out.append(dist.sample(generator) if sample else dist.mode())
        z = torch.cat(out).float() * self.scaling_factor  # (B*L, 4, h, w)
        return z.view(b, L, *z.shape[1:]).transpose(1, 2)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, 4, L, h, w)`` -> video ``(B, 3, L, h*f, w*f)`` in [-1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (B, {self.latent_channels}, L, h, w), got "
                             f"{tuple(latents.shape)}")
        b, c, L, h, w = latents.shape
        z = latents.transpose(1, 2).reshape(b * L, c, h, w) / self.scaling_factor
        dtype = next(self.vae.parameters()).dtype
        frames = torch.cat([self.vae.decode(part.to(dtype)).sample for part in z.split(self.chunk)]).float()
        return frames.clamp(-1, 1).view(b, L, 3, h * self.downsample, w * self.downsample).transpose(1, 2)

    @torch.no_grad()
    def calibrate(self, videos: Iterable[torch.Tensor]) -> float:
        """Set ``scaling_factor = 1 / std`` of the posterior-mean latents of ``videos`` (batches
        ``(B, 3, L, H, W)``), for a VAE trained here (SD's 0.18215 belongs to SD's VAE); returns the std."""
        self.scaling_factor = 1.0
        z = [self.encode(batch, sample=False) for batch in videos]
        if not z:
            raise ValueError("calibrate needs at least one batch of videos")
        std = float(torch.cat(z).std().clamp(min=1e-6))
        self.scaling_factor = 1.0 / std
        return std

    def encode_frames(self, images: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """``(B, 3, H, W)`` images -> ``(B, 4, H/f, W/f)`` scaled latents."""
        return self.encode(images.unsqueeze(2), sample=sample)[:, :, 0]

    def decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, 4, h, w)`` -> ``(B, 3, h*f, w*f)`` in [-1, 1]."""
        return self.decode(latents.unsqueeze(2))[:, :, 0]


class SDUNet(nn.Module):
    """``UNet2DConditionModel`` as a denoiser: ``forward(x_t, t, text_states (B, 77, d))``.

    Args:
        pretrained: SD directory (diffusers layout) or hub id in the HF cache; or give ``unet``.
        unet: a ``UNet2DConditionModel``; ``config``: its diffusers config (an untrained one is built:
            checkpoints rebuild the network this way before loading their weights).
        gradient_checkpointing: diffusers' own checkpointing.
    """

    def __init__(self, pretrained: str | None = None, unet: nn.Module | None = None,
                 config: dict | None = None, subfolder: str = "unet", gradient_checkpointing: bool = False):
        super().__init__()
        from diffusers import UNet2DConditionModel

        if sum(x is not None for x in (pretrained, unet, config)) != 1:
            raise ValueError("give exactly one of pretrained (an SD directory), unet or config")
        if pretrained is not None:
            unet = _load_part(UNet2DConditionModel, pretrained, subfolder)
        elif config is not None:
            unet = UNet2DConditionModel.from_config(config)
        self.unet = unet
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.in_channels = int(unet.config.in_channels)
        self.context_dim = int(unet.config.cross_attention_dim)

    @property
    def config(self) -> dict:
        return {"config": dict(self.unet.config)}

    # the component protocol of videogen.core.persistence: a diffusers directory
    def component_config(self) -> dict:
        return self.config

    @classmethod
    def from_component_config(cls, config: dict) -> SDUNet:
        return cls(config=config["config"])

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.unet.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> SDUNet:
        from diffusers import UNet2DConditionModel

        if not (Path(directory) / "config.json").is_file():
            raise FileNotFoundError(f"{Path(directory) / 'config.json'} not found: not a diffusers UNet "
                                    "directory")
        return cls(unet=UNet2DConditionModel.from_pretrained(str(directory))).to(map_location)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor,
                cross_attention_kwargs: dict | None = None) -> torch.Tensor:
        """``cross_attention_kwargs``: passed to the UNet's transformers (LVDM's temporal layers read
        ``num_frames`` there)."""
        if text_states.ndim != 3 or text_states.shape[-1] != self.context_dim:
            raise ValueError(f"text_states must be (B, L, {self.context_dim}), got "
                             f"{tuple(text_states.shape)}")
        return self.unet(x, t, encoder_hidden_states=text_states.to(x.dtype),
                         cross_attention_kwargs=cross_attention_kwargs).sample


def sd_text_encoder(path: str | os.PathLike, max_length: int = 77) -> HFTextEncoder:
    """The checkpoint's CLIP text encoder + tokenizer (token states, no attention mask, as SD was trained)."""
    name, kw = _part(path, "text_encoder")
    tok, _ = _part(path, "tokenizer")
    if "local_files_only" in kw:  # a hub id: transformers takes subfolder ids as "<id>/<sub>" only via kwargs
        raise ValueError(f"give a local directory for the text encoder of {path!r} ({_HOW})")
    return HFTextEncoder(str(Path(name) / "text_encoder"), max_length=max_length, local_files_only=True,
                         tokenizer=str(Path(tok) / "tokenizer"), use_attention_mask=False)


def sd_diffusion_config(path: str | os.PathLike) -> dict[str, Any]:
    """``GaussianDiffusion`` kwargs of a checkpoint's training schedule
    (``scheduler/scheduler_config.json``)."""
    file = Path(path).expanduser() / "scheduler" / "scheduler_config.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {_HOW}")
    cfg = json.loads(file.read_text())
    return {"num_train_timesteps": int(cfg.get("num_train_timesteps", 1000)),
            "beta_schedule": cfg.get("beta_schedule", "scaled_linear"),
            "beta_start": float(cfg.get("beta_start", 0.00085)),
            "beta_end": float(cfg.get("beta_end", 0.012)),
            "prediction_type": cfg.get("prediction_type", "epsilon")}


register(FrameVAE)
register(SDUNet)
