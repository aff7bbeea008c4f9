"""The official LVDM configs as videogen reads them (github.com/YingqingHe/LVDM ``configs/``): the presets
of the released files and the reader of an official yaml; used by :mod:`videogen.lvdm.convert`.

Nothing named by a config's ``target:`` is imported: targets are matched by their class-name strings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["KNOWN_TARGETS", "PRESETS", "read_official_config"]

_AE_TARGET = "lvdm.models.autoencoder3d.AutoencoderKL"
_SHORT_TARGET = "lvdm.models.ddpm3d.LatentDiffusion"
_LONG_TARGET = "lvdm.models.ddpm3d.FrameInterpPredLatentDiffusion"
#: the top-level targets this module knows (by their class-name string; nothing is imported)
KNOWN_TARGETS = {_AE_TARGET: "autoencoder", _SHORT_TARGET: "diffusion", _LONG_TARGET: "diffusion"}
_NESTED_TARGETS = {
    "lvdm.models.modules.aemodules3d.Encoder", "lvdm.models.modules.aemodules3d.Decoder",
    "lvdm.models.losses.LPIPSWithDiscriminator", "lvdm.models.modules.openaimodel3d.UNetModel",
    "lvdm.models.modules.openaimodel3d.FrameInterpPredUNet", _AE_TARGET,
}

_DDCONFIG = {
    "double_z": True, "z_channels": 4,
    "encoder": {"target": "lvdm.models.modules.aemodules3d.Encoder",
                "params": {"n_hiddens": 32, "downsample": [4, 8, 8], "image_channel": 3, "norm_type": "group",
                           "padding_type": "replicate", "double_z": True, "z_channels": 4}},
    "decoder": {"target": "lvdm.models.modules.aemodules3d.Decoder",
                "params": {"n_hiddens": 32, "upsample": [4, 8, 8], "z_channels": 4, "image_channel": 3,
                           "norm_type": "group"}},
}


def _ae_preset(image_key: str | None, scale: float, shift: float) -> dict[str, Any]:
    params: dict[str, Any] = {"monitor": "val/rec_loss", "embed_dim": 4,
                              "lossconfig": {"target": "lvdm.models.losses.LPIPSWithDiscriminator",
                                             "params": {"disc_start": 50001, "kl_weight": 0.0,
                                                        "disc_weight": 0.5}},
                              "ddconfig": _DDCONFIG}
    if image_key is not None:
        params["image_key"] = image_key
    return {"target": _AE_TARGET, "params": params, "latent_scale": scale, "latent_shift": shift}


def _short_preset(first_stage_key: str, scale: float, shift: float) -> dict[str, Any]:
    unet = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 256,
            "attention_resolutions": [8, 4, 2], "num_res_blocks": 3, "channel_mult": [1, 2, 3, 4],
            "num_heads": 4, "use_temporal_transformer": False, "use_checkpoint": True, "legacy": False,
            "kernel_size_t": 1, "padding_t": 0, "temporal_length": 4, "use_relative_position": True,
            "use_scale_shift_norm": True}
    params = {"linear_start": 0.0015, "linear_end": 0.0155, "log_every_t": 200, "timesteps": 1000,
              "loss_type": "l1", "first_stage_key": first_stage_key, "cond_stage_key": "image",
              "image_size": 32, "video_length": 4, "channels": 4, "monitor": "val/loss_simple_ema",
              "cond_stage_trainable": False, "concat_mode": False, "scale_by_std": False,
              "scale_factor": scale, "shift_factor": shift, "cond_stage_config": "__is_unconditional__",
              "encoder_type": "3d",
              "unet_config": {"target": "lvdm.models.modules.openaimodel3d.UNetModel", "params": unet},
              "first_stage_config": {"target": _AE_TARGET,
                                     "params": {"monitor": "val/rec_loss", "embed_dim": 4,
                                                "lossconfig": "__is_first_stage__", "ddconfig": _DDCONFIG}}}
    return {"target": _SHORT_TARGET, "params": params}


_SKY, _TAICHI = (0.33422927, 1.4606637), (0.175733933, 0.03291025)


class _Presets(Mapping):
    """The released files by name -> their official config (``target`` + ``params``, the ``model`` part of
    the yaml, as plain dicts) and, for autoencoders, the latent scale / shift of their diffusion config.
    ``"t2v"`` comes from ``videogen.lvdm.convert_text2video.TEXT2VIDEO_PRESET``."""

    def __init__(self, presets: dict[str, dict[str, Any]]):
        self._presets = presets

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name == "t2v":
            try:
                from videogen.lvdm.convert_text2video import TEXT2VIDEO_PRESET
            except ImportError:
                raise KeyError("the t2v preset needs videogen.lvdm.convert_text2video, which this version "
                               "lacks") from None
            return {"target": _SHORT_TARGET, "params": TEXT2VIDEO_PRESET}  # the preset is model.params
        if name not in self._presets:
            raise KeyError(f"unknown LVDM preset {name!r}; choose one of {', '.join(self)}")
        return self._presets[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._presets
        yield "t2v"

    def __len__(self) -> int:
        return len(self._presets) + 1


PRESETS = _Presets({
    "ae_sky": _ae_preset(None, *_SKY),                # configs/videoae/sky.yaml
    "short_sky": _short_preset("image", *_SKY),       # configs/lvdm_short/sky.yaml
    "ae_taichi": _ae_preset("video", *_TAICHI),       # configs/videoae/taichi.yaml
    "short_taichi": _short_preset("video", *_TAICHI),  # configs/lvdm_short/taichi.yaml
})


def read_official_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model`` part of an official LVDM yaml config as ``{"target": ..., "params": {...}}``.

    Read with ``yaml.safe_load``; nothing named by a ``target:`` is imported (targets are matched by their
    class-name string, and a config of another class is refused in one line)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LVDM config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not a readable yaml file: {str(exc).splitlines()[0]}") from None
    model = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(model, dict) or "target" not in model:
        raise ValueError(f"{path} is not an official LVDM config (no model.target)")
    if model["target"] not in KNOWN_TARGETS:
        raise ValueError(f"{path}: model.target {model['target']!r} is not an LVDM model this converter "
                         "knows "
                         f"({', '.join(KNOWN_TARGETS)})")
    return {"target": model["target"], "params": dict(model.get("params") or {})}
