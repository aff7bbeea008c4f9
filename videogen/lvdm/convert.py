"""Convert the official LVDM checkpoints (github.com/YingqingHe/LVDM) into videogen networks and pipelines.

The released files (Hugging Face ``Yingqing/LVDM``): ``ae/ae_{sky,taichi}.ckpt`` (3D autoencoder),
``lvdm_short/short_{sky,taichi}.ckpt`` (unconditional short-video model with its autoencoder) and
``lvdm_short/t2v.ckpt`` (text-to-video, converted by ``videogen.lvdm.convert_text2video``).  The official
code also trains prediction / interpolation models (``configs/lvdm_long``; no weights released): their
checkpoints convert the same way.

What maps onto what (one to one, strict: a missing, unexpected or misshapen tensor is one ``ValueError``):

* autoencoder (``AutoencoderKL``, 96 tensors) -> :class:`~videogen.lvdm.VideoAutoencoder3D`; the official
  ``SamePadConv3d`` registers its weight twice (``X.weight`` beside ``X.conv.weight``: 26 aliases, checked
  equal and dropped); the training loss (``loss.*``: LPIPS, PatchGAN, log-variance) is dropped.  The latent
  scale / shift live only in the diffusion configs (Sky 0.33422927 / 1.4606637, Taichi 0.175733933 /
  0.03291025) and are set on the autoencoder.
* short UNet (``UNetModel``, 668 tensors) -> :class:`~videogen.lvdm.UNet3D`; prediction / interpolation UNet
  (``FrameInterpPredUNet``, 669: ``label_emb`` has 251 rows) -> :class:`~videogen.lvdm.ConditionalUNet3D`.
  The attention halves are renamed (``norm_s/qkv_s/proj_out_s`` -> ``spatial.norm/qkv/proj_out``, the
  ``_t`` ones -> ``temporal.*``, ``relative_position_{k,v}.embeddings_table`` -> ``temporal.rel_{k,v}``,
  ``label_emb`` -> ``noise_level_embed``).  Row 250 of ``label_emb`` was never trained (the official
  sampler adds no level embedding for the unconditional branch): it becomes videogen's null level, zero.
* weights: ``ema=None`` takes what the official scripts sample with: the raw weights for short models
  (``sample_uncond.py``), the EMA ones (``model_ema.*``, the parameter names with the dots removed) for
  prediction / interpolation (``sample_uncond_long_videos.py``).

``official=True`` (default) sets the compatibility switches so that the converted networks compute the
official function: ``relative_position="official"`` in the UNet (the transposed, ``d^-1/4``-scaled key
term, spec bug B1), and in the pipeline ``timesteps="official"`` (the official DDIM timesteps) and
``conditioning="official"`` (guided clips: the noisy given latents overwrite the running state, B8).
``official=False`` loads the same weights into videogen's corrected model (which then computes another
function: the UNet output differs by 20-34% at the released size, docs/lvdm.md).

A short / prediction / interpolation file converts to an :class:`~videogen.lvdm.LVDM` pipeline holding that
one model (``short``, ``prediction`` or ``interpolation``; a prediction model also samples short clips,
an interpolation model only ``interpolate``s); join converted pipelines' components with ``LVDM(...)`` for
hierarchical long videos.  An autoencoder file converts to the autoencoder alone.  Both have
``save_pretrained(dir)``, and the pipeline directory opens with ``videogen.load_pretrained``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from videogen.lvdm.official_configs import (  # PRESETS, read_official_config: re-exported
    _AE_TARGET,
    _NESTED_TARGETS,
    _SHORT_TARGET,
    KNOWN_TARGETS,
    PRESETS,
    read_official_config,
)

__all__ = ["PRESETS", "convert_lvdm", "map_official_state_dict", "official_key_map", "read_official_config"]

# ---- key maps ----------------------------------------------------------------------------------------------
_UNET_RENAMES = [(".norm_s.", ".spatial.norm."), (".qkv_s.", ".spatial.qkv."),
                 (".proj_out_s.", ".spatial.proj_out."), (".norm_t.", ".temporal.norm."),
                 (".qkv_t.", ".temporal.qkv."), (".proj_out_t.", ".temporal.proj_out."),
                 (".relative_position_k.embeddings_table", ".temporal.rel_k"),
                 (".relative_position_v.embeddings_table", ".temporal.rel_v")]


def _unet_official_name(name: str) -> str:
    """videogen UNet3D / ConditionalUNet3D parameter name -> the official UNetModel one."""
    if name == "noise_level_embed.weight":
        return "label_emb.weight"
    for official, ours in _UNET_RENAMES:
        name = name.replace(ours, official)
    return name


def _ae_key_map(stages: int) -> dict[str, str]:
    """official AutoencoderKL tensor name -> VideoAutoencoder3D name (1 / 2 ResBlocks per stage)."""
    out: dict[str, str] = {}

    def conv(official: str, ours: str, inner: str = "conv") -> None:
        for p in ("weight", "bias"):
            out[f"{official}.{inner}.{p}"] = f"{ours}.{inner}.{p}" if inner else f"{ours}.{p}"

    def res(official: str, ours: str) -> None:
        for i, part in ((0, "norm1"), (3, "norm2")):
            for p in ("weight", "bias"):
                out[f"{official}.{part}.{p}"] = f"{ours}.block.{i}.{p}"
        conv(f"{official}.conv1", f"{ours}.block.2")
        conv(f"{official}.conv2", f"{ours}.block.5")

    conv("encoder.conv_first", "encoder.0")
    for i in range(stages):
        conv(f"encoder.conv_blocks.{i}.down", f"encoder.{1 + 2 * i}")
        res(f"encoder.conv_blocks.{i}.res", f"encoder.{2 + 2 * i}")
        for p in ("weight", "bias"):
            out[f"decoder.conv_blocks.{i}.up.convt.{p}"] = f"decoder.{3 * i}.convt.{p}"
        res(f"decoder.conv_blocks.{i}.res1", f"decoder.{3 * i + 1}")
        res(f"decoder.conv_blocks.{i}.res2", f"decoder.{3 * i + 2}")
    for p in ("weight", "bias"):
        out[f"encoder.final_block.0.{p}"] = f"encoder.{1 + 2 * stages}.{p}"
        out[f"quant_conv.conv.{p}"] = f"quant_conv.{p}"
        out[f"post_quant_conv.conv.{p}"] = f"post_quant_conv.{p}"
    conv("encoder.final_block.2", f"encoder.{3 + 2 * stages}")
    conv("decoder.conv_out", f"decoder.{3 * stages}")
    return out


def official_key_map(config: Mapping[str, Any] | str | os.PathLike | None = None, *,
                     preset: str | None = None) -> dict[str, dict[str, str]]:
    """``{component: {official tensor name: videogen tensor name}}`` for an official config: the
    ``autoencoder`` (names inside ``AutoencoderKL``) and, for diffusion configs, the ``unet`` (names inside
    the official ``UNetModel``; ``model.diffusion_model.`` / ``model_ema.diffusion_model`` in a file)."""
    cfg = _resolve_config(config, preset)
    ae_params, unet_params = _split(cfg)
    maps = {"autoencoder": _ae_key_map(len(_ae_kwargs(ae_params)["strides"]))}
    if unet_params is not None:
        with torch.device("meta"):
            unet = _build_unet(unet_params, "corrected")
        maps["unet"] = {_unet_official_name(k): k for k in unet.state_dict()}
    return maps


# ---- configs -> videogen networks -------------------------------------------------------------------------
def _resolve_config(config: Any, preset: str | None) -> dict[str, Any]:
    if preset is not None and config is not None:
        raise ValueError("give config or preset, not both")
    if preset is not None:
        try:
            return dict(PRESETS[preset])
        except KeyError as exc:
            raise KeyError(exc.args[0]) from None
    if config is None:
        raise ValueError(f"give config= (an official LVDM yaml) or preset= (one of {', '.join(PRESETS)})")
    if isinstance(config, Mapping):
        cfg = dict(config)
        if cfg.get("target") not in KNOWN_TARGETS or not isinstance(cfg.get("params"), Mapping):
            raise ValueError(f"config must be {{'target': one of {', '.join(KNOWN_TARGETS)}, "
                             "'params': {...}}")
        return cfg
    return read_official_config(config)


def _target(section: Any, what: str) -> dict[str, Any]:
    if not isinstance(section, Mapping) or "target" not in section:
        raise ValueError(f"the config's {what} has no target")
    if section["target"] not in _NESTED_TARGETS:
        raise ValueError(f"the config's {what} is a {section['target']!r}, which this converter does not "
                         "know")
    return dict(section.get("params") or {})


def _is_text2video(cfg: Mapping[str, Any]) -> bool:
    params = cfg.get("params") or {}
    unet = ((params.get("unet_config") or {}).get("params") or {}) if isinstance(params, Mapping) else {}
    cond = params.get("cond_stage_config") if isinstance(params, Mapping) else None
    return bool(unet.get("use_temporal_transformer")) or isinstance(cond, Mapping)


def _split(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(AutoencoderKL params, UNet params or None) of a known config."""
    params = dict(cfg["params"])
    if cfg["target"] == _AE_TARGET:
        return params, None
    if _is_text2video(cfg):
        raise ValueError("a text-to-video config: its conversion is videogen.lvdm.convert_text2video")
    ae = _target(params.get("first_stage_config"), "first_stage_config")
    unet = _target(params.get("unet_config"), "unet_config")
    unet["_target"] = params["unet_config"]["target"]
    return ae, unet


def _stage_strides(factors: Any, what: str) -> list[tuple[int, int, int]]:
    logs = []
    for f in factors:
        n = int(round(math.log2(int(f))))
        if 2**n != int(f):
            raise ValueError(f"{what} factors must be powers of 2, got {list(factors)}")
        logs.append(n)
    return [tuple(2 if n > i else 1 for n in logs) for i in range(max(logs))]  # type: ignore[misc]


def _ae_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    dd = params.get("ddconfig") or {}
    enc = _target(dd.get("encoder"), "ddconfig.encoder")
    dec = _target(dd.get("decoder"), "ddconfig.decoder")
    z, embed = int(dd.get("z_channels", 4)), int(params.get("embed_dim", 4))
    problems = []
    if not dd.get("double_z", False):
        problems.append("double_z must be true")
    if z != embed:
        problems.append(f"z_channels {z} != embed_dim {embed}")
    if list(enc.get("downsample", [])) != list(dec.get("upsample", [])):
        problems.append(f"downsample {enc.get('downsample')} != upsample {dec.get('upsample')}")
    if enc.get("n_hiddens") != dec.get("n_hiddens"):
        problems.append("encoder and decoder n_hiddens differ")
    for part in (enc, dec):
        if part.get("norm_type", "group") != "group" or part.get("padding_type", "replicate") != "replicate":
            problems.append("only norm_type group and padding_type replicate are supported")
    if problems:
        raise ValueError(f"cannot convert this LVDM autoencoder config: {'; '.join(problems)}")
    return {"in_channels": int(enc.get("image_channel", 3)), "hidden": int(enc["n_hiddens"]),
            "strides": _stage_strides(enc["downsample"], "downsample"), "z_channels": z,
            "encoder_res_blocks": 1, "decoder_res_blocks": 2, "norm_groups": 32}


def _unet_kwargs(params: Mapping[str, Any], relative_position: str) -> dict[str, Any]:
    kt, pt = int(params.get("kernel_size_t", 1)), int(params.get("padding_t", 1))
    unsupported = {
        "use_temporal_transformer": params.get("use_temporal_transformer", False) is not False,
        "use_scale_shift_norm": params.get("use_scale_shift_norm", False) is not True,
        "resblock_updown": bool(params.get("resblock_updown", False)),
        "conv_resample": params.get("conv_resample", True) is not True,
        "dims": int(params.get("dims", 3)) != 3,
        "num_head_channels": int(params.get("num_head_channels", -1)) != -1,
        "nonlinearity_type": params.get("nonlinearity_type", "silu") != "silu",
        "kernel_size_t / padding_t": kt % 2 == 0 or pt != kt // 2,
        "cond_aug_mode": params.get("cond_aug_mode") is not None,
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"cannot convert this LVDM UNet config: unsupported {', '.join(bad)}")
    return {"model_channels": int(params["model_channels"]), "channel_mult": list(params["channel_mult"]),
            "num_res_blocks": int(params["num_res_blocks"]),
            "attention_resolutions": list(params["attention_resolutions"]),
            "num_heads": int(params["num_heads"]),
            "max_relative_distance": int(params["temporal_length"]) if params.get("use_relative_position")
            else None, "dropout": float(params.get("dropout", 0.0)), "temporal_kernel": kt,
            "relative_position": relative_position}


def _build_unet(params: Mapping[str, Any], relative_position: str, num_given: int = 1):
    from .unet3d import ConditionalUNet3D, UNet3D

    kwargs = _unet_kwargs(params, relative_position)
    if params.get("_target", "").endswith("FrameInterpPredUNet"):
        classes = params.get("num_classes")
        if classes is None or int(params["in_channels"]) != int(params["out_channels"]) + 1:
            raise ValueError("a FrameInterpPredUNet config needs num_classes and in_channels = "
                             "out_channels + 1")
        return ConditionalUNet3D(latent_channels=int(params["out_channels"]),
                                 max_noise_level=int(classes) - 1, num_given=num_given, **kwargs)
    if params.get("num_classes") is not None:
        raise ValueError("a class-conditional UNetModel (num_classes) is not an LVDM short model")
    return UNet3D(in_channels=int(params["in_channels"]), out_channels=int(params["out_channels"]), **kwargs)


# ---- state dicts ----------------------------------------------------------------------------------------
_SCHEDULE = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
             "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
             "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
             "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "scale_factor"}


def _first(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


class _Mismatch(ValueError):
    pass


def _ae_state(state: Mapping[str, torch.Tensor], prefix: str, stages: int) -> tuple[dict[str, torch.Tensor],
                                                                                      set[str], set[str]]:
    """(videogen AE state, official keys used, official keys missing) from ``prefix``-ed official names."""
    key_map = _ae_key_map(stages)
    out, used, missing = {}, set(), set()
    for official, ours in key_map.items():
        key = prefix + official
        if key in state:
            out[ours] = state[key]
            used.add(key)
        else:
            missing.add(key)
    for official in key_map:  # SamePadConv3d's alias X.weight of X.conv.weight
        if official.endswith(".conv.weight"):
            alias = prefix + official[: -len(".conv.weight")] + ".weight"
            if alias in state and prefix + official in state:
                a, b = state[alias], state[prefix + official]
                if a.shape != b.shape or (a.device.type != "meta" and not torch.equal(a, b)):
                    raise _Mismatch(f"{alias} differs from {prefix + official} (they are one tensor in the "
                                    "official model)")
                used.add(alias)
    return out, used, missing


def map_official_state_dict(state_dict: Mapping[str, torch.Tensor], *, config: Any = None,
                            preset: str | None = None, ema: bool | None = None,
                            source: str = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """An official LVDM state dict (the ``state_dict`` of a Lightning checkpoint) -> ``{"autoencoder":
    videogen state, "unet": videogen state}`` (the autoencoder only for an autoencoder file or a
    diffusion file; a diffusion file without ``first_stage_model.*`` gives no autoencoder), checked
    strictly (every key used, every network tensor present, shapes equal) against the videogen networks
    the config builds; ``ValueError`` naming ``source`` otherwise.  Tensors pass through as they are
    (meta tensors too: this is how the released files' key lists are checked without the weights)."""
    cfg = _resolve_config(config, preset)
    ae_params, unet_params = _split(cfg)
    stages = len(_ae_kwargs(ae_params)["strides"])
    what = "autoencoder" if unet_params is None else (
        "short" if unet_params["_target"].endswith("UNetModel") else "prediction / interpolation")
    result: dict[str, dict[str, torch.Tensor]] = {}
    used: set[str] = set()
    missing: set[str] = set()
    try:
        if unet_params is None:
            ae, used, missing = _ae_state(state_dict, "", stages)
            used |= {k for k in state_dict if k.startswith("loss.")}
            result["autoencoder"] = ae
        else:
            if any(k.startswith("first_stage_model.") for k in state_dict):
                ae, used, ae_missing = _ae_state(state_dict, "first_stage_model.", stages)
                missing |= ae_missing
                result["autoencoder"] = ae
            long = not unet_params["_target"].endswith("UNetModel")
            use_ema = long if ema is None else ema
            with torch.device("meta"):
                unet = _build_unet(unet_params, "corrected")
            names = {_unet_official_name(k): k for k in unet.state_dict()}
            has_ema = any(k.startswith("model_ema.") for k in state_dict)
            if use_ema and not has_ema:
                raise _Mismatch(f"{source} has no EMA weights (model_ema.*): convert with ema=False")
            mapped = {}
            for official, ours in names.items():
                raw = "model.diffusion_model." + official
                averaged = "model_ema.diffusion_model" + official.replace(".", "")
                if raw not in state_dict:
                    missing.add(raw)
                if use_ema and averaged not in state_dict:
                    missing.add(averaged)
                used |= {raw, averaged}
                if (averaged if use_ema else raw) in state_dict:
                    mapped[ours] = state_dict[averaged if use_ema else raw]
            used |= {"model_ema.decay", "model_ema.num_updates"} | {k for k in state_dict if k in _SCHEDULE}
            result["unet"] = mapped
        unexpected = set(state_dict) - used
        if missing or unexpected:
            parts = ([f"missing keys {_first(missing)}"] if missing else []) + \
                    ([f"unexpected keys {_first(unexpected)}"] if unexpected else [])
            raise _Mismatch(f"{source} is not an official LVDM {what} checkpoint for this config: "
                            + "; ".join(parts))
        _check_shapes(result, ae_params, unet_params, source, what)
    except _Mismatch as exc:
        raise ValueError(str(exc)) from None
    return result


def _check_shapes(result, ae_params, unet_params, source: str, what: str) -> None:
    from .autoencoder import VideoAutoencoder3D

    with torch.device("meta"):
        nets = {"autoencoder": VideoAutoencoder3D(**_ae_kwargs(ae_params))}
        if unet_params is not None:
            nets["unet"] = _build_unet(unet_params, "corrected")
    for name, state in result.items():
        expected = {k: v.shape for k, v in nets[name].state_dict().items() if k not in ("scale", "shift")}
        wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(s)})" for k, s in expected.items()
                 if k in state and tuple(state[k].shape) != tuple(s)]
        if wrong or set(state) != set(expected):
            detail = "; ".join(wrong[:3]) or f"tensors {_first(set(expected) ^ set(state))}"
            raise _Mismatch(f"{source} does not fit this official LVDM {what} config: {detail}")


# ---- the converter ---------------------------------------------------------------------------------------
def _read_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    from videogen.core.persistence import read_foreign_checkpoint

    ckpt = read_foreign_checkpoint(path, what)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not an official LVDM checkpoint (no state_dict of tensors)")
    return state


def _check_schedule(state: Mapping[str, torch.Tensor], params: Mapping[str, Any], source: str) -> None:
    from videogen.core.diffusion import make_betas

    betas = state.get("betas")
    if betas is None or betas.device.type == "meta":
        return
    want = make_betas("scaled_linear", int(params.get("timesteps", 1000)),
                      float(params.get("linear_start", 1e-4)), float(params.get("linear_end", 2e-2)))
    if betas.shape != want.shape or not torch.allclose(betas.double(), want, rtol=1e-4, atol=1e-7):
        raise ValueError(f"{source}: its noise schedule (betas) is not the config's (linear_start "
                         f"{params.get('linear_start')}, linear_end {params.get('linear_end')}): wrong "
                         "config?")


def convert_lvdm(ckpt: str | os.PathLike, *, config: Any = None, preset: str | None = None,
                 ae_ckpt: str | os.PathLike | None = None, ema: bool | None = None, official: bool = True,
                 latent_scale: float | None = None, latent_shift: float | None = None,
                 tokenizer: Any = None) -> Any:
    """An official LVDM checkpoint -> a videogen network or pipeline with ``save_pretrained(dir)``.

    Args:
        ckpt: the official ``.ckpt`` (read with ``read_foreign_checkpoint``: no code in it runs).
        config / preset: its official config (a yaml path, or ``{"target", "params"}``) or a released
            file's name (:data:`PRESETS`: ae_sky, short_sky, ae_taichi, short_taichi, t2v).
        ae_ckpt: the autoencoder for a diffusion file without ``first_stage_model.*`` (an autoencoder file
            or a diffusion file that has one).
        ema: EMA (``model_ema.*``) or raw weights; None: the official scripts' choice (raw for short
            models, EMA for prediction / interpolation).
        official: True: the networks compute the official function (``relative_position="official"``,
            ``timesteps="official"``); False: the same weights in videogen's corrected model.
        latent_scale / latent_shift: override the latent normalisation (default: the config's
            ``scale_factor`` / ``shift_factor``; an autoencoder preset's constants; else 1 / 0).  An
            autoencoder file given with a diffusion config (e.g. ``configs/lvdm_short/sky.yaml``) converts
            with that config's first stage and scale / shift.
        tokenizer: text-to-video only: the CLIP tokenizer (directory or object) the file does not hold
            (``convert_text2video.text2video_from_official``).

    Returns: a :class:`~videogen.lvdm.VideoAutoencoder3D` for an autoencoder file, an
    :class:`~videogen.lvdm.LVDM` pipeline for a short / prediction / interpolation file (module docstring),
    and for a text-to-video config what ``convert_text2video.text2video_from_official`` returns.
    """
    cfg = _resolve_config(config, preset)
    source = str(ckpt)
    if _is_text2video(cfg):
        try:
            from videogen.lvdm.convert_text2video import text2video_from_official
        except ImportError:
            raise ValueError("text-to-video conversion needs videogen.lvdm.convert_text2video, which this "
                             "version lacks") from None
        if ema or ae_ckpt is not None or latent_scale is not None or latent_shift is not None:
            raise ValueError("the text-to-video file takes none of ema, ae_ckpt, latent_scale, latent_shift "
                             "(it has no EMA weights and holds its own autoencoder)")
        extra = {} if tokenizer is None else {"tokenizer": tokenizer}
        return text2video_from_official(_read_state(ckpt, "LVDM text-to-video checkpoint"), cfg["params"],
                                        official=official, **extra)
    if tokenizer is not None:
        raise ValueError("tokenizer is for the text-to-video file only")
    from .autoencoder import VideoAutoencoder3D
    from .pipeline import LVDM

    ae_params, unet_params = _split(cfg)
    state = _read_state(ckpt, "LVDM checkpoint")
    if unet_params is not None and not any(k.startswith("model.") for k in state) \
            and any(k.startswith("encoder.") for k in state):
        # an autoencoder file with its diffusion config: the first stage and the config's scale / shift
        params = cfg["params"]
        cfg = {"target": _AE_TARGET, "params": ae_params, "latent_scale": params.get("scale_factor", 1.0),
               "latent_shift": params.get("shift_factor", 0.0)}
        unet_params = None
    mapped = map_official_state_dict(state, config=cfg, ema=ema, source=source)
    if unet_params is not None:
        _check_schedule(state, cfg["params"], source)
    if "autoencoder" not in mapped:
        if ae_ckpt is None:
            raise ValueError(f"{source} has no autoencoder (first_stage_model.*): give ae_ckpt")
        ae_state = _read_state(ae_ckpt, "LVDM autoencoder checkpoint")
        ae_cfg = {"target": _AE_TARGET, "params": ae_params}
        if any(k.startswith("first_stage_model.") for k in ae_state):  # a diffusion file's autoencoder
            ae_state = {k[len("first_stage_model."):]: v for k, v in ae_state.items()
                        if k.startswith("first_stage_model.")}
        mapped["autoencoder"] = map_official_state_dict(ae_state, config=ae_cfg, source=str(ae_ckpt))[
            "autoencoder"]
    elif ae_ckpt is not None:
        raise ValueError(f"{source} has its own autoencoder (first_stage_model.*); leave out ae_ckpt")
    params = cfg["params"]
    if latent_scale is None:
        latent_scale = params.get("scale_factor", cfg.get("latent_scale", 1.0))
    if latent_shift is None:
        latent_shift = params.get("shift_factor", cfg.get("latent_shift", 0.0))
    ae = VideoAutoencoder3D(**_ae_kwargs(ae_params))
    ae.load_state_dict({**mapped["autoencoder"], "scale": ae.scale, "shift": ae.shift})
    ae.set_latent_normalization(float(latent_scale), float(latent_shift))
    ae.eval()
    if unet_params is None:
        return ae
    form = "official" if official else "corrected"
    n_prevs = params.get("n_prevs")
    num_given = int(n_prevs[0]) if isinstance(n_prevs, (list, tuple)) and n_prevs else 1
    unet = _build_unet(unet_params, form, num_given=num_given)
    weights = dict(mapped["unet"])
    if "noise_level_embed.weight" in weights:  # the untrained last row -> videogen's null level (zero)
        table = weights["noise_level_embed.weight"].clone()
        table[-1] = 0
        weights["noise_level_embed.weight"] = table
    unet.load_state_dict(weights)
    unet.eval()
    f_t, f_s = ae.temporal_factor, ae.spatial_factor
    temporal_length = int(unet_params.get("temporal_length") or params.get("video_length") or 4)
    diffusion = {"num_train_timesteps": int(params.get("timesteps", 1000)), "beta_schedule": "scaled_linear",
                 "beta_start": float(params.get("linear_start", 1e-4)),
                 "beta_end": float(params.get("linear_end", 2e-2)),
                 "prediction_type": {"eps": "epsilon", "x0": "sample"}[params.get("parameterization", "eps")],
                 "loss_type": params.get("loss_type", "l2")}
    image_size = params.get("image_size", unet_params.get("image_size"))
    settings = dict(diffusion=diffusion, timesteps="official" if official else "trailing",
                    conditioning="official" if official else "videogen",
                    video_size=None if image_size is None else (int(image_size) * f_s,) * 2)
    if cfg["target"] == _SHORT_TARGET:
        frames = int(params.get("video_length") or temporal_length)
        return LVDM(autoencoder=ae, prediction=None, short=unet, clip_frames=frames * f_t, **settings).eval()
    p_pred, p_interp = float(params.get("p_pred") or 0.0), float(params.get("p_interp") or 0.0)
    if (p_pred > 0) == (p_interp > 0):
        raise ValueError(f"{source}: a FrameInterpPredLatentDiffusion config must train prediction "
                         f"(p_pred > 0) or interpolation (p_interp > 0), got p_pred {p_pred}, p_interp "
                         f"{p_interp}")
    if p_pred > 0:
        stride = 4 if params.get("latent_frame_strde") else 1  # the official code hard-codes ::4 (B4)
        return LVDM(autoencoder=ae, prediction=unet, keyframe_stride=stride,
                    clip_frames=temporal_length * f_t, **settings).eval()
    return LVDM(autoencoder=ae, prediction=None, interpolation=unet, keyframe_stride=temporal_length - 1,
                clip_frames=temporal_length * f_t, **settings).eval()

