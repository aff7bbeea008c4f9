"""LVDM text-to-video's network (Sec. 5): a Stable Diffusion UNet (diffusers) + temporal attention layers.

:class:`VideoUNetFromSD` runs diffusers' ``UNet2DConditionModel`` on every frame (``(B, C, T, h, w)`` ->
``(B*T, C, h, w)``) and, after every spatial transformer of the UNet, a temporal attention layer over
the frames at each position (GN -> qkv -> Shaw relative attention -> **zero-initialised** projection ->
residual).  At initialisation the video model therefore equals the image model applied frame by frame;
``from_sd(path)`` is the conversion from Stable Diffusion weights that the official code never shipped
(LVDM#5, #23): the SD UNet is loaded through diffusers unchanged and only the temporal layers are new.
LVDM's text-to-video schedule is SD's (``SD_DIFFUSION``: 0.00085..0.012, L2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.core.persistence import register, registered_name
from videogen.core.sd import SDUNet

from .unet3d import _AttentionHalf

__all__ = ["SD_DIFFUSION", "VideoUNetFromSD"]

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

        layers = {}
        self.spatial_names: list[str] = []  # the SD UNet's transformers that a temporal layer follows
        for name, module in self.sd.unet.named_modules():
            if isinstance(module, Transformer2DModel):
                self.spatial_names.append(name)
                channels = module.config.in_channels
                key = name.replace(".", "_")
                layers[key] = _AttentionHalf(channels, heads if channels % heads == 0 else 1,
                                             max_relative_distance)
                # the spatial transformer becomes "spatial, then temporal": same object, same weights and
                # keys (SD's folder layout is unchanged); its temporal layer lives in self.temporal
                module.__class__ = _spatio_temporal_class(type(module))
                object.__setattr__(module, "temporal_layer", layers[key])  # not a child: SD's keys stay
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
                raise FileNotFoundError(f"{directory / name} not found: not a "
                                        "VideoUNetFromSD.save_pretrained directory")
        settings = json.loads((directory / "config.json").read_text())
        unet = cls(SDUNet.from_pretrained(directory / "unet"), heads=settings["heads"],
                   max_relative_distance=settings["max_relative_distance"])
        unet.temporal.load_state_dict(load_file(str(directory / TEMPORAL_WEIGHTS)))
        return unet.to(map_location)

    @classmethod
    def from_sd(cls, path: str, **kwargs: Any) -> VideoUNetFromSD:
        """Convert Stable Diffusion weights: the SD UNet unchanged, new temporal layers that start as the
        identity."""
        return cls(pretrained=path, **kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T, h, w)``, ``t (B,)``, ``text_states (B, L, d)`` -> ``(B, C, T, h, w)``."""
        if x.ndim != 5:
            raise ValueError(f"x must be (B, C, T, h, w), got {tuple(x.shape)}")
        b, c, frames, h, w = x.shape
        flat = x.transpose(1, 2).reshape(b * frames, c, h, w)
        # the frame count reaches every temporal layer explicitly, through diffusers' cross_attention_kwargs
        out = self.sd(flat, t.repeat_interleave(frames), text_states.repeat_interleave(frames, dim=0),
                      cross_attention_kwargs={"num_frames": frames})
        return out.view(b, frames, -1, h, w).transpose(1, 2)


register(VideoUNetFromSD)

_SPATIO_TEMPORAL: dict[type, type] = {}


def _spatio_temporal_class(spatial: type) -> type:
    """``spatial`` (diffusers' ``Transformer2DModel``) followed by its temporal layer: ``forward`` takes the
    frame count from ``cross_attention_kwargs["num_frames"]`` (removed before the spatial part sees it),
    runs the spatial transformer on the ``(B*T, C, h, w)`` frames, then ``temporal_layer`` over the T
    frames at each position (as diffusers' ``UNet3DConditionModel`` passes ``num_frames`` to its temporal
    transformers)."""
    if spatial not in _SPATIO_TEMPORAL:
        def forward(self, hidden_states, *args, cross_attention_kwargs=None, **kwargs):
            kw = dict(cross_attention_kwargs or {})
            t = int(kw.pop("num_frames", 1))
            output = spatial.forward(self, hidden_states, *args, cross_attention_kwargs=kw or None, **kwargs)
            hidden = output[0] if isinstance(output, tuple) else output.sample
            bt, c, h, w = hidden.shape
            x = hidden.view(bt // t, t, c, h * w).permute(0, 3, 2, 1).reshape(-1, c, t)  # (B*h*w, C, T)
            x = self.temporal_layer(x)
            hidden = x.view(bt // t, h * w, c, t).permute(0, 3, 2, 1).reshape(bt, c, h, w)
            return (hidden, *output[1:]) if isinstance(output, tuple) else type(output)(sample=hidden)

        name = f"SpatioTemporal{spatial.__name__}"
        _SPATIO_TEMPORAL[spatial] = type(name, (spatial,), {"forward": forward, "__module__": __name__})
        globals()[name] = _SPATIO_TEMPORAL[spatial]  # importable by name: pickle (spawned workers) finds it
    return _SPATIO_TEMPORAL[spatial]
