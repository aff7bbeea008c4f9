"""The released LVDM text-to-video checkpoint (``lvdm_short/t2v.ckpt``) as an :class:`LVDMTextToVideo`.

The official file is a Lightning checkpoint of ``LatentDiffusion`` (``configs/lvdm_short/text2video.yaml``):

* ``model.diffusion_model.*``: the official 3D UNet, an SD-v1 UNet in the LDM key layout with 3D convolutions
  of temporal kernel 1 and, inside every transformer block, the temporal layers ``attn1_tmp``, ``attn2_tmp``,
  ``norm4``, ``norm5`` (958.9M parameters, 99.4M of them temporal);
* ``first_stage_model.*``: the SD VAE (LDM layout), applied frame by frame, latents scaled by 0.18215;
* ``cond_stage_model.transformer.*``: the CLIP ViT-L/14 text model (``text_model.*``; files written with the
  transformers of 2022 also hold ``embeddings.position_ids``, a constant buffer, dropped);
* twelve diffusion-schedule buffers (``betas``, ``alphas_cumprod``, ...), checked against ``linear_start`` /
  ``linear_end``.

The LDM-to-diffusers renaming of the UNet, VAE and CLIP keys is diffusers' own
(``diffusers.loaders.single_file_utils``); the temporal keys follow their transformer block onto
:class:`~videogen.lvdm.sd_unet.OfficialTemporalLayers` of a ``VideoUNetFromSD(temporal_layout="official")``.
Conversion is strict: every key of the file is used and every weight of the pipeline is given, else one
``ValueError`` names the first keys that do not fit.  No tokenizer is stored in the file: give the directory
of the CLIP ViT-L/14 tokenizer (``tokenizer=``; e.g. the ``tokenizer/`` folder of a Stable Diffusion 1.x
download).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from videogen.core.sd import FrameVAE, SDUNet
from videogen.core.text import HFTextEncoder, TextEncoder

from .sd_unet import VideoUNetFromSD
from .text2video_pipeline import LVDMTextToVideo

__all__ = ["TEXT2VIDEO_PRESET", "official_text2video_state", "text2video_components",
           "text2video_from_official"]

#: ``model.params`` of the official ``configs/lvdm_short/text2video.yaml`` (numbers only: no ``target``
#: classes, keys or monitors), the CLIP ViT-L/14 text model that its ``FrozenCLIPEmbedder`` downloads
#: (``openai/clip-vit-large-patch14``, 77 tokens), and the sampler of ``scripts/sample_text2video.py``
#: (DDIM 50 steps, eta 1, classifier-free guidance 15 against the empty prompt, 16 frames).
TEXT2VIDEO_PRESET: dict[str, Any] = {
    "linear_start": 0.00085,
    "linear_end": 0.012,
    "num_timesteps_cond": 1,
    "log_every_t": 200,
    "timesteps": 1000,
    "image_size": [32, 32],
    "video_length": 16,
    "channels": 4,
    "cond_stage_trainable": False,
    "scale_by_std": False,
    "scale_factor": 0.18215,
    "shift_factor": 0.0,
    "use_ema": False,
    "unet_config": {
        "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
        "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
        "num_heads": 8, "transformer_depth": 1, "context_dim": 768, "use_checkpoint": True, "legacy": False,
        "kernel_size_t": 1, "padding_t": 0, "use_temporal_transformer": True, "temporal_length": 16,
        "use_relative_position": True,
    },
    "first_stage_config": {
        "embed_dim": 4,
        "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
                     "dropout": 0.0},
    },
    "cond_stage_config": {
        "max_length": 77,
        "clip_text": {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                      "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
                      "projection_dim": 768},
    },
    "sampler": {"ddim_steps": 50, "eta": 1.0, "cfg_scale": 15.0, "num_frames": 16},
}

UNET, VAE, CLIP = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                    "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")
POSITION_IDS = CLIP + "text_model.embeddings.position_ids"  # a constant buffer of old transformers
_TEMPORAL = re.compile(r"^(.*\.transformer_blocks\.\d+)\.((?:attn1_tmp|attn2_tmp|norm4|norm5)\..*)$")
_WHAT = "an official LVDM text-to-video checkpoint (configs/lvdm_short/text2video.yaml, t2v.ckpt)"


def _fail(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise ValueError(f"not {_WHAT}: " + "; ".join(problems[:4]) + more)


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, or of a Lightning checkpoint's ``state_dict`` entry."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"not {_WHAT}: entries that are not tensors: {bad[:4]}")
    return dict(state_dict)


def _check_params(params: Mapping[str, Any]) -> None:
    """Refuse official settings the conversion does not reproduce (one line naming them)."""
    try:
        u = params["unet_config"]
        wrong = {name: u.get(name, default) for name, default, want in (
            ("kernel_size_t", 1, 1), ("use_temporal_transformer", False, True),
            ("use_relative_position", False, True), ("use_scale_shift_norm", False, False),
            ("resblock_updown", False, False), ("num_head_channels", -1, -1), ("dims", 3, 3),
            ("conv_resample", True, True)) if u.get(name, default) != want}
        if params.get("shift_factor", 0.0) != 0.0:
            wrong["shift_factor"] = params["shift_factor"]
        if params.get("scale_by_std", False):
            wrong["scale_by_std"] = True
        params["first_stage_config"]["ddconfig"], params["cond_stage_config"]["clip_text"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"params must be the official model.params (as TEXT2VIDEO_PRESET); missing {exc}"
                         ) from None
    if wrong:
        raise ValueError(f"unsupported official settings for text-to-video conversion: {wrong}")


def _unet_config(params: Mapping[str, Any]) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    original = {"model": {"params": {"unet_config": {"params": dict(params["unet_config"])},
                                     "first_stage_config": {"params": dict(params["first_stage_config"])}}}}
    config = create_unet_diffusers_config_from_ldm(original, {}, image_size=None)
    config["sample_size"] = int(params["unet_config"]["image_size"])
    return config


def _vae_config(params: Mapping[str, Any]) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    original = {"model": {"params": {"first_stage_config": {"params": dict(params["first_stage_config"])},
                                     "scale_factor": params["scale_factor"]}}}
    config = create_vae_diffusers_config_from_ldm(original, {}, image_size=None)
    config["sample_size"] = int(params["first_stage_config"]["ddconfig"]["resolution"])
    return config


def text2video_components(params: Mapping[str, Any] | None = None) -> dict[str, torch.nn.Module]:
    """The untrained networks of the official model: ``unet`` (a ``VideoUNetFromSD`` in the official layout),
    ``vae`` (diffusers ``AutoencoderKL``), ``text_model`` (transformers ``CLIPTextModel``), built from the
    config numbers alone (under ``torch.device("meta")`` they take no memory)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    params = TEXT2VIDEO_PRESET if params is None else params
    _check_params(params)
    u = params["unet_config"]
    unet = VideoUNetFromSD(SDUNet(config=_unet_config(params)), heads=int(u["num_heads"]),
                           max_relative_distance=int(u["temporal_length"]), temporal_layout="official")
    vae = AutoencoderKL.from_config(_vae_config(params))
    text_model = CLIPTextModel(CLIPTextConfig(**params["cond_stage_config"]["clip_text"]))
    return {"unet": unet, "vae": vae, "text_model": text_model}


def _used(converted: Mapping[str, torch.Tensor]) -> set[int]:
    """Identities of the source tensors that diffusers' converters used (their outputs are those tensors
    or views of them)."""
    ids = set()
    for value in converted.values():
        ids.add(id(value))
        if value._base is not None:
            ids.add(id(value._base))
    return ids


def official_text2video_state(state_dict: Mapping[str, Any], params: Mapping[str, Any] | None = None
                              ) -> dict[str, dict[str, torch.Tensor]]:
    """The official keys renamed for videogen's networks: ``{"unet": SD UNet (diffusers keys), "temporal":
    VideoUNetFromSD.temporal keys, "vae": AutoencoderKL keys, "text_model": CLIPTextModel keys}``.

    Raises ``ValueError`` (one line, the first few keys) for a key of the file that no network uses, for a
    3D convolution with a temporal kernel, or for a diffusion schedule other than ``params``'.
    """
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    params = TEXT2VIDEO_PRESET if params is None else params
    _check_params(params)
    state = _unwrap(state_dict)
    source: dict[str, torch.Tensor] = {}  # what the converters see: 3D convs of temporal kernel 1 as 2D
    problems = []
    for key, value in state.items():
        if key.startswith(UNET) and value.ndim == 5:
            if value.shape[2] != 1:
                problems.append(f"{key} is a 3D convolution over time {tuple(value.shape)}")
                continue
            value = value[:, :, 0]  # (out, in, 1, kh, kw) -> (out, in, kh, kw), a view
        source[key] = value
    _fail(problems)

    unet_config = _unet_config(params)
    unet_all = convert_ldm_unet_checkpoint({k: v for k, v in source.items() if k.startswith(UNET)},
                                           unet_config)
    unet, temporal = {}, {}
    for key, value in unet_all.items():
        match = _TEMPORAL.match(key)
        if match:
            temporal[match.group(1).replace(".", "_") + "." + match.group(2)] = value
        else:
            unet[key] = value
    vae = convert_ldm_vae_checkpoint({k: v for k, v in source.items() if k.startswith(VAE)},
                                     _vae_config(params))
    text_model = convert_ldm_clip_checkpoint({k: v for k, v in source.items()
                                              if k.startswith(CLIP) and k != POSITION_IDS})
    used = _used(unet_all) | _used(vae) | _used(text_model)
    unused = [k for k, v in source.items() if id(v) not in used and k != POSITION_IDS
              and k not in SCHEDULE_BUFFERS]
    _fail([f"unexpected key {k}" for k in unused])
    _check_schedule(state, params)
    return {"unet": unet, "temporal": temporal, "vae": vae, "text_model": text_model}


def _check_schedule(state: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> None:
    """The schedule buffers are all there; ``betas`` is LDM's linear-in-sqrt schedule of ``params``."""
    missing = [k for k in SCHEDULE_BUFFERS if k not in state]
    _fail([f"missing key {k}" for k in missing])
    betas = state["betas"]
    steps = int(params.get("timesteps", 1000))
    if tuple(betas.shape) != (steps,):
        _fail([f"betas has shape {tuple(betas.shape)}, expected ({steps},)"])
    if betas.is_meta:
        return
    expected = torch.linspace(params["linear_start"] ** 0.5, params["linear_end"] ** 0.5, steps,
                              dtype=torch.float64) ** 2
    if not torch.allclose(betas.double(), expected, rtol=1e-4, atol=1e-9):
        _fail([f"betas {float(betas[0]):.6g}..{float(betas[-1]):.6g} are not the schedule "
               f"{params['linear_start']}..{params['linear_end']} of params"])


def _load(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict, shape-checked, one-line ``ValueError``; meta modules take the tensors as they are."""
    expected = module.state_dict()
    problems = [f"missing {what} weight {k}" for k in expected if k not in weights]
    problems += [f"unexpected {what} key {k}" for k in weights if k not in expected]
    problems += [f"{what} {k} has shape {tuple(weights[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    _fail(problems)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()},
                           assign=next(iter(expected.values())).is_meta)


def _clip_keys(weights: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CLIP keys as the installed transformers names them (recent versions drop the ``text_model.`` level
    of ``CLIPTextModel``)."""
    if any(k.startswith("text_model.") for k in model.state_dict()):
        return dict(weights)
    return {k.removeprefix("text_model."): v for k, v in weights.items()}


def _clip_text_encoder(text_model: torch.nn.Module, tokenizer: Any, max_length: int) -> HFTextEncoder:
    """An ``HFTextEncoder`` around the converted CLIP text model and a CLIP tokenizer (no attention mask,
    as ``FrozenCLIPEmbedder``).  Built in memory: its ``save_pretrained`` writes both, and the saved
    directory is what reloads it."""
    encoder = HFTextEncoder.__new__(HFTextEncoder)
    TextEncoder.__init__(encoder)
    encoder.max_length, encoder.use_attention_mask = int(max_length), False
    encoder.config = {"kind": "transformers", "name_or_path": None, "max_length": int(max_length),
                      "local_files_only": True, "tokenizer": None, "use_attention_mask": False}
    encoder.tokenizer, encoder.model = tokenizer, text_model
    encoder.dim = int(text_model.config.hidden_size)
    encoder.freeze()
    return encoder


def _tokenizer(tokenizer: str | os.PathLike | Any | None) -> Any:
    if tokenizer is None:
        raise ValueError("the official checkpoint holds no tokenizer: give tokenizer=<directory of the CLIP "
                         "ViT-L/14 tokenizer>, e.g. the tokenizer/ folder of a Stable Diffusion 1.x download "
                         "or a download of openai/clip-vit-large-patch14")
    if not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer  # a tokenizer object
    from transformers import CLIPTokenizer

    path = Path(tokenizer).expanduser()
    try:
        if not path.is_dir():
            raise OSError
        return CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError):
        raise FileNotFoundError(f"no CLIP tokenizer in {path} (a directory with the tokenizer files of "
                                "openai/clip-vit-large-patch14 expected)") from None


def text2video_from_official(state_dict: Mapping[str, Any], params: Mapping[str, Any] | None = None, *,
                             official: bool = True, tokenizer: str | os.PathLike | Any | None = None
                             ) -> LVDMTextToVideo:
    """The released ``t2v.ckpt`` (its state dict, or the Lightning checkpoint read with
    ``videogen.core.persistence.read_foreign_checkpoint``) as an :class:`LVDMTextToVideo`.

    Args:
        state_dict: the official tensors (module docstring); every key must be used.
        params: the official ``model.params`` as numbers (default :data:`TEXT2VIDEO_PRESET`).
        official: sample as the official script: DDIM with LDM's timesteps (``"leading"``, offset 1, last
            step to alpha_bar_0); ``False``: videogen's trailing DDIM timesteps.  The network is the same
            either way: the official T2V network has no bug to correct (its relative positions are right,
            specs B1), and its layout is the only one the weights fit.
        tokenizer: directory of the CLIP ViT-L/14 tokenizer (or a tokenizer object); required.
    """
    params = TEXT2VIDEO_PRESET if params is None else params
    weights = official_text2video_state(state_dict, params)
    tok = _tokenizer(tokenizer)
    parts = text2video_components(params)
    _load(parts["unet"].sd.unet, weights["unet"], "UNet")
    _load(parts["unet"].temporal, weights["temporal"], "temporal")
    _load(parts["vae"], weights["vae"], "VAE")
    _load(parts["text_model"], _clip_keys(weights["text_model"], parts["text_model"]), "text model")
    vae = FrameVAE(vae=parts["vae"], scaling_factor=float(params["scale_factor"]))
    text_encoder = _clip_text_encoder(parts["text_model"], tok, params["cond_stage_config"]["max_length"])
    latent = params["unet_config"]["image_size"]
    size = (latent, latent) if isinstance(latent, int) else tuple(latent)
    diffusion = {"num_train_timesteps": int(params.get("timesteps", 1000)), "beta_schedule": "scaled_linear",
                 "beta_start": float(params["linear_start"]), "beta_end": float(params["linear_end"])}
    return LVDMTextToVideo(parts["unet"], vae, text_encoder, diffusion=diffusion,
                           video_size=(size[0] * vae.downsample, size[1] * vae.downsample),
                           clip_frames=int(params.get("video_length", 16)),
                           timesteps="official" if official else "videogen").eval()
