"""Checkpoints of the official CMD training scripts (NVlabs/CMD) -> videogen networks or a ``CMD`` pipeline.

CMD released no weights (NVlabs/CMD#1); its scripts save ``{"autoenc", "opt", "args"}`` (``train_ae.py``),
``{"cdiff_model", "ema", "opt", "args"}`` (``train_content_diffusion.py``) and ``{"mdiff_model", "ema",
"opt", "args"}`` (``train_motion_diffusion.py``), ``args`` being the script's ``argparse.Namespace``.
:func:`convert_cmd` reads such files (never running code from them: ``read_foreign_checkpoint``), recognises
each one's kind from its keys and builds the network from the stored ``args`` and the official scripts'
constants:

* autoencoder: ``ProjectedAutoencoder(dim=384, patch_size=2, depth=8, 8 heads)`` in the scripts; the width
  and depth are read from the tensors (so smaller networks convert too), ``args.mode`` gives the channels
  (3 pixels / 4 SD latents) and the frame size (``args.image_size``; latent mode ``image_size[0] // 8`` for
  both sides, as ``get_models``), ``args.n_frames`` and ``args.embed_dim`` the motion latent.  304 of the
  308 official tensors map one to one; the 4 rotary buffers are never used by the official code.
* content DiT: the content script always builds ``ContentDiT-L/2`` (16 heads, patch 2), class-conditional
  on ``args.num_classes`` classes + the null row; width and depth from the tensors.
* motion DiT: ``args.motion_model_config`` (``MotionDiT-{XL,L,B,S}/{2,4,8}``) gives the heads and the patch,
  ``args.keyframe_patch_size`` the content frame's patch; no class or text input (the official motion DiT
  ignores ``y``).  The official ``get_models`` builds it for a ``(16, H + W)`` input, while the autoencoder's
  motion latent is ``(n_frames, H' + W')`` with ``H' = H / 2`` (at UCF's 64 x 64 it cannot even build the
  model: 512 tokens have no square position table).  A file that exists was therefore made with the
  latent's real shape, and that is what the converter builds; the stored position table's row count must
  fit it, and a file sized for ``(16, H + W)`` is refused by name.

DiT tensors: timm's fused ``attn.qkv`` is split into ``to_q / to_k / to_v``; the learned-variance half of
``final_layer.linear`` (DiT's ``learn_sigma``; the channels ``C..2C`` of every patch pixel) is dropped, since
videogen predicts eps only (DDIM with eta 0 never uses the variance); the frozen ``pos_embed`` /
``keyframe_pos_embed`` parameters are not loaded but checked against the tables videogen computes.

``official=True`` (default) builds the networks with the official code's behaviour, so that they compute
what the official modules compute: the autoencoder without positions (``rotary=False``: the official code
builds rotary embeddings and never applies them) and the motion DiT with the official square position
tables (``position_grid="square"``).  ``official=False`` loads the same weights into videogen's corrected
networks (rotary positions, true-grid tables): other functions than the weights were trained for, a
starting point for fine-tuning.  Content DiT: both modes are the same network.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from videogen.core.persistence import read_foreign_checkpoint

from .autoencoder import CMDAutoencoder
from .dit import ContentDiT, MotionDiT, _positions

__all__ = ["convert_cmd", "OFFICIAL_KEYS"]

#: the weights' key in each official script's checkpoint -> the network it holds
OFFICIAL_KEYS = {"autoenc": "autoencoder", "cdiff_model": "content", "mdiff_model": "motion"}
_AE_HEADS = 8  # TimeSformerEncoder/Decoder's default; get_models does not change it
_AE_PATCH = 2  # get_models: ProjectedAutoencoder(patch_size=2)
_CONTENT_HEADS, _CONTENT_PATCH = 16, 2  # the content script always builds "ContentDiT-L/2"
_DIT_HEADS = {"XL": 16, "L": 16, "B": 12, "S": 6}  # the official registries' sizes
_MOTION_CONFIG = re.compile(r"^MotionDiT-(XL|L|B|S)/(2|4|8)$")
_AE_IGNORED = re.compile(r"^(encoder|decoder)\.(frame_rot_emb\.inv_freqs|image_rot_emb\.scales)$")


def convert_cmd(*ckpts: str | os.PathLike, ema: bool = True, official: bool = True) -> Any:
    """Official CMD checkpoint file(s) -> videogen.

    One file -> that network (``CMDAutoencoder``, ``ContentDiT`` or ``MotionDiT``: ``save_pretrained``
    writes it).  The three files (autoencoder, content and motion, any order) -> a ``CMD`` pipeline that
    ``save_pretrained`` writes for ``videogen.load_pretrained`` / ``videogen sample`` / ``videogen
    generate``, with the official diffusion (1000-step linear 1e-4..0.02, eps).  Two files, or two of one
    kind, are refused: a pipeline needs all three networks (convert the files one at a time for networks).

    Args:
        ckpts: the ``.pt`` files the official training scripts wrote.
        ema: the DiTs' EMA weights (default; what the official scripts sample with) or, ``False``, the raw
            ones.  The autoencoder has no EMA.
        official: the official code's behaviour (module docstring); ``False``: videogen's corrected networks.
    """
    if not ckpts:
        raise ValueError("give one official CMD checkpoint (a network) or the three (a CMD pipeline)")
    parts: dict[str, tuple[Path, Any, argparse.Namespace]] = {}
    for path in map(Path, ckpts):
        kind, net, args = _convert_file(path, ema, official)
        if kind in parts:
            raise ValueError(f"{path} and {parts[kind][0]} are both {kind} checkpoints: give each network "
                             "once")
        parts[kind] = (path, net, args)
    if len(parts) == 1:
        return next(iter(parts.values()))[1]
    missing = [k for k in OFFICIAL_KEYS.values() if k not in parts]
    if missing:
        given = ", ".join(str(p) for p, _, _ in parts.values())
        raise ValueError(f"a CMD pipeline needs the autoencoder, content and motion checkpoints; {given} "
                         f"lack the {' and '.join(missing)} one (convert the files one at a time for single "
                         "networks)")
    return _pipeline(parts)


# ---------------------------------------------------------------------------------------------- reading
def _convert_file(path: Path, ema: bool, official: bool) -> tuple[str, Any, argparse.Namespace]:
    ckpt = read_foreign_checkpoint(path, "official CMD checkpoint")
    found = [k for k in OFFICIAL_KEYS if isinstance(ckpt, dict) and k in ckpt]
    if len(found) != 1:
        held = (", ".join(repr(k) for k in list(ckpt)[:6]) or "nothing") if isinstance(ckpt, dict) \
            else f"a {type(ckpt).__name__}"
        raise ValueError(f"{path} is not a checkpoint of the official CMD training scripts: it holds {held}, "
                         "not one of 'autoenc', 'cdiff_model', 'mdiff_model' with 'args'")
    key = found[0]
    args = ckpt.get("args")
    if not isinstance(args, argparse.Namespace):
        raise ValueError(f"{path} has {key!r} but no argparse 'args' (the official scripts store their "
                         "command line there; it gives the sizes)")
    weights = key
    if key != "autoenc" and ema:
        if "ema" not in ckpt:
            raise ValueError(f"{path} has no 'ema' weights; pass ema=False to convert the raw {key!r} ones")
        weights = "ema"
    state = ckpt[weights]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: {weights!r} is not a state dict of tensors")
    kind = OFFICIAL_KEYS[key]
    build = {"autoencoder": _autoencoder, "content": _content_dit, "motion": _motion_dit}[kind]
    net = build(path, state, args, official)
    return kind, net.eval(), args


def _arg(args: argparse.Namespace, name: str, path: Path, kind: type | tuple[type, ...] = int) -> Any:
    if not hasattr(args, name):
        raise ValueError(f"{path}: its args lack {name!r} (the official scripts always store it)")
    value = getattr(args, name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{path}: args.{name} = {value!r} is not a {getattr(kind, '__name__', kind)}")
    return value


def _frame(path: Path, args: argparse.Namespace) -> tuple[int, int, int, str]:
    """``(C, H, W, mode)`` of what the autoencoder sees, as the official ``get_models`` derives it."""
    mode = _arg(args, "mode", path, str)
    size = _arg(args, "image_size", path, (list, tuple))
    if mode not in ("pixel", "latent"):
        raise ValueError(f"{path}: args.mode = {mode!r} is not 'pixel' or 'latent'")
    if not size or not all(isinstance(s, int) and s > 0 for s in size) \
            or (mode == "pixel" and len(size) != 2):
        raise ValueError(f"{path}: args.image_size = {size!r} is not [H, W]")
    if mode == "latent":  # get_models: (image_size[0] // 8, image_size[0] // 8) SD latents of 4 channels
        return 4, size[0] // 8, size[0] // 8, mode
    return 3, size[0], size[1], mode


def _tensor(state: dict[str, torch.Tensor], key: str, path: Path, what: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"{path}: the {what} weights lack {key!r} (not the official layout)")
    return state[key]


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _build(path: Path, what: str, cls: type, **kw: Any) -> Any:
    try:
        return cls(**kw)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot build the {what} these args and weights describe: {exc}") from None


def _load(path: Path, what: str, net: torch.nn.Module, pairs: Iterator[tuple[str, str | None, torch.Tensor]]
          ) -> None:
    """Load ``(official key, videogen key or None = not loaded, tensor)`` pairs strictly."""
    target = net.state_dict()
    state, unexpected = {}, []
    for src, dst, value in pairs:
        if dst is None:
            continue
        if dst not in target or dst in state:
            unexpected.append(src)
        else:
            state[dst] = value
    missing = [k for k in target if k not in state]
    if missing or unexpected:
        raise ValueError(f"{path}: the {what} weights do not match the official layout "
                         f"(missing: {', '.join(missing[:4]) or 'none'}; "
                         f"unexpected: {', '.join(unexpected[:4]) or 'none'})")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in state.items()
             if v.shape != target[k].shape]
    if wrong:
        raise ValueError(f"{path}: the {what} weights do not fit the network its args describe: "
                         f"{'; '.join(wrong[:3])}")
    net.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)


# ------------------------------------------------------------------------------------------- autoencoder
_AE_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.([012])\.norm\.(weight|bias)$"),
     lambda m: f"{m[1]}.{m[2]}.norm_{('t', 's', 'ff')[int(m[3])]}.{m[4]}"),
    (re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.([01])\.fn\.(qkv|proj)\.(weight|bias)$"),
     lambda m: f"{m[1]}.{m[2]}.attn_{('t', 's')[int(m[3])]}.{m[4]}.{m[5]}"),
    (re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.2\.fn\.net\.([03])\.(weight|bias)$"),
     lambda m: f"{m[1]}.{m[2]}.ff.net.{'0.proj' if m[3] == '0' else '2'}.{m[4]}"),
    (re.compile(r"^encoder\.to_patch_embedding\.(weight|bias)$"), lambda m: f"patch_embed.{m[1]}"),
    (re.compile(r"^to_patch_embedding_xy\.(weight|bias)$"), lambda m: f"content_embed.{m[1]}"),
    (re.compile(r"^to_output\.1\.(weight|bias)$"), lambda m: f"to_out.{m[1]}"),
    (re.compile(r"^to_logit\.1\.(weight|bias)$"), lambda m: f"to_logit.{m[1]}"),
    (re.compile(r"^((pre|post)_[xy]t\.(weight|bias))$"), lambda m: m[1]),
]


def _rename(key: str, rules: list[tuple[re.Pattern, Callable[[re.Match], str]]]) -> str:
    for pattern, new in rules:
        if m := pattern.match(key):
            return new(m)
    return "<unmapped>"  # reported as unexpected


def _autoencoder(path: Path, state: dict[str, torch.Tensor], args: argparse.Namespace,
                 official: bool) -> CMDAutoencoder:
    c, h, w, mode = _frame(path, args)
    embed = _tensor(state, "encoder.to_patch_embedding.weight", path, "autoencoder")  # (C', C p^2)
    if embed.shape[1] != c * _AE_PATCH ** 2:
        raise ValueError(f"{path}: the patch embedding takes {embed.shape[1]} values, not the "
                         f"{c * _AE_PATCH ** 2} of {c}-channel ({mode} mode) 2x2 patches")
    net = _build(path, "autoencoder", CMDAutoencoder, in_channels=c, num_frames=_arg(args, "n_frames", path),
                 height=h, width=w, patch_size=_AE_PATCH, hidden_size=int(embed.shape[0]),
                 depth=_count(state, r"^encoder\.layers\.(\d+)\."), heads=_AE_HEADS,
                 motion_channels=_arg(args, "embed_dim", path), mode=mode, rotary=not official)
    _load(path, "autoencoder", net, ((k, None if _AE_IGNORED.match(k) else _rename(k, _AE_RULES), v)
                                     for k, v in state.items()))
    return net


# ------------------------------------------------------------------------------------------------- DiTs
_DIT_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$"),
     lambda m: f"blocks.{m[1]}.attn.to_out.0.{m[2]}"),
    (re.compile(r"^blocks\.(\d+)\.mlp\.fc([12])\.(weight|bias)$"),
     lambda m: f"blocks.{m[1]}.mlp.{0 if m[2] == '1' else 2}.{m[3]}"),
    (re.compile(r"^(blocks\.\d+\.adaLN_modulation\.1\.(weight|bias))$"), lambda m: m[1]),
    (re.compile(r"^(final_layer\.(adaLN_modulation\.1|linear)\.(weight|bias))$"), lambda m: m[1]),
    (re.compile(r"^((x_embedder\.proj|t_embedder\.mlp\.[02])\.(weight|bias))$"), lambda m: m[1]),
    (re.compile(r"^(y_embedder\.embedding_table\.weight)$"), lambda m: m[1]),
    (re.compile(r"^keyframe_embedder\.proj\.(weight|bias)$"), lambda m: f"content_embedder.proj.{m[1]}"),
]
_QKV = re.compile(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")


def _dit_pairs(state: dict[str, torch.Tensor], out_channels: int, patch: int
               ) -> Iterator[tuple[str, str | None, torch.Tensor]]:
    """The official DiT tensors renamed: fused qkv split, learned variance dropped, positions skipped."""
    for key, value in state.items():
        if key in ("pos_embed", "keyframe_pos_embed"):
            yield key, None, value  # frozen tables: checked by the caller, computed by videogen
        elif m := _QKV.match(key):
            for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0)):
                yield key, f"blocks.{m[1]}.attn.{name}.{m[2]}", part
        elif key.startswith("final_layer.linear.") and value.shape[0] == 2 * patch * patch * out_channels:
            # rows ordered (p, q, c) with c over [eps (C) ; variance (C)]: keep the eps channels
            keep = (torch.arange(value.shape[0]) % (2 * out_channels)) < out_channels
            yield key, key, value[keep]
        else:
            yield key, _rename(key, _DIT_RULES), value


def _hidden_depth(path: Path, state: dict[str, torch.Tensor], what: str,
                  patch: int) -> tuple[int, int, float]:
    """``(hidden, depth, mlp_ratio)`` from the tensors, the patch checked against the configuration's."""
    embed = _tensor(state, "x_embedder.proj.weight", path, what)  # (hidden, C, p, p)
    if tuple(embed.shape[2:]) != (patch, patch):
        raise ValueError(f"{path}: the {what} patch embedding has kernel {tuple(embed.shape[2:])}, not the "
                         f"{patch}x{patch} its configuration names")
    hidden = int(embed.shape[0])
    fc1 = _tensor(state, "blocks.0.mlp.fc1.weight", path, what)
    return hidden, _count(state, r"^blocks\.(\d+)\."), fc1.shape[0] / hidden


def _same_table(stored: torch.Tensor, expected: torch.Tensor) -> bool:
    return tuple(stored.shape) == tuple(expected.shape) and torch.allclose(stored.float(), expected,
                                                                           atol=1e-5)


def _content_dit(path: Path, state: dict[str, torch.Tensor], args: argparse.Namespace,
                 official: bool) -> ContentDiT:
    c, h, w, _ = _frame(path, args)
    num_classes = _arg(args, "num_classes", path)
    hidden, depth, mlp_ratio = _hidden_depth(path, state, "content DiT", _CONTENT_PATCH)
    rows = _tensor(state, "y_embedder.embedding_table.weight", path, "content DiT").shape[0]
    if rows != num_classes + 1:
        raise ValueError(f"{path}: the class table has {rows} rows, not args.num_classes + 1 = "
                         f"{num_classes + 1} (classes + the null row)")
    net = _build(path, "content DiT", ContentDiT, in_channels=c, height=h, width=w, patch_size=_CONTENT_PATCH,
                 hidden_size=hidden, depth=depth, num_heads=_CONTENT_HEADS, mlp_ratio=mlp_ratio,
                 num_classes=num_classes)
    stored = _tensor(state, "pos_embed", path, "content DiT")
    if not _same_table(stored, net.pos_embed):
        raise ValueError(f"{path}: pos_embed {tuple(stored.shape)} is not the sin-cos table of the "
                         f"{net.grid[0]}x{net.grid[1]} patch grid of a {h}x{w} content frame")
    _load(path, "content DiT", net, _dit_pairs(state, c, _CONTENT_PATCH))
    return net


def _motion_dit(path: Path, state: dict[str, torch.Tensor], args: argparse.Namespace,
                official: bool) -> MotionDiT:
    c, h, w, _ = _frame(path, args)
    config = _arg(args, "motion_model_config", path, str)
    m = _MOTION_CONFIG.match(config)
    if m is None:
        raise ValueError(f"{path}: args.motion_model_config = {config!r} is not an official MotionDiT-* "
                         "configuration (the official script cannot build it either)")
    heads, patch = _DIT_HEADS[m[1]], int(m[2])
    frames, latent_dim, kp = _arg(args, "n_frames", path), _arg(args, "embed_dim", path), \
        _arg(args, "keyframe_patch_size", path)
    width = h // _AE_PATCH + w // _AE_PATCH  # H' + W': the autoencoder's motion latent
    hidden, depth, mlp_ratio = _hidden_depth(path, state, "motion DiT", patch)
    stored = _tensor(state, "pos_embed", path, "motion DiT")
    n = stored.shape[1] if stored.ndim == 3 else -1
    if n != (frames // patch) * (width // patch):
        literal = (16 // patch) * ((h + w) // patch)
        hint = (f" (it was built for get_models's literal (16, H + W) = (16, {h + w}) input, which does not "
                "fit the autoencoder's latent)" if n == literal else "")
        raise ValueError(f"{path}: pos_embed has {n} rows, but the motion latent (n_frames {frames}, H'+W' "
                         f"{width}) at patch {patch} has {(frames // patch) * (width // patch)} tokens{hint}")
    kw = dict(motion_channels=latent_dim, num_frames=frames, motion_width=width, content_channels=c,
              content_height=h, content_width=w, patch_size=patch, content_patch_size=kp, hidden_size=hidden,
              depth=depth, num_heads=heads, mlp_ratio=mlp_ratio)
    kstored = _tensor(state, "keyframe_pos_embed", path, "motion DiT")
    layouts = []
    for layout in ("square", "true"):  # which tables the file was trained with
        try:
            tables = (_positions(hidden, (frames // patch, width // patch), layout),
                      _positions(hidden, (h // kp, w // kp), layout))
        except ValueError:
            continue
        if _same_table(stored, tables[0]) and _same_table(kstored, tables[1]):
            layouts.append(layout)
    if not layouts:
        raise ValueError(f"{path}: pos_embed / keyframe_pos_embed are not sin-cos tables of the motion "
                         f"({frames // patch}x{width // patch}) and content ({h // kp}x{w // kp}) token "
                         "grids, neither on the official square layout nor on the true grids")
    grid = layouts[0] if official else "true"  # "square" first: the official code's tables
    net = _build(path, "motion DiT", MotionDiT, position_grid=grid, **kw)
    _load(path, "motion DiT", net, _dit_pairs(state, latent_dim, patch))
    return net


# --------------------------------------------------------------------------------------------- pipeline
def _pipeline(parts: dict[str, tuple[Path, Any, argparse.Namespace]]) -> Any:
    from .pipeline import CMD

    (ae_path, ae, _), (c_path, content, _), (m_path, motion, _) = (parts[k] for k in
                                                                  ("autoencoder", "content", "motion"))
    if ae.mode == "latent":
        raise ValueError(f"{ae_path} is a latent-mode autoencoder: a CMD pipeline then needs the Stable "
                         "Diffusion VAE (vae=FrameVAE(...)); convert the files one at a time and build "
                         "CMD(autoencoder, content_model, motion_model, vae=...) yourself")
    checks = [(c_path, "content frame", tuple(content.sample_shape), ae.content_shape),
              (m_path, "content frame", tuple(motion.content_shape), ae.content_shape),
              (m_path, "motion latent", tuple(motion.motion_shape), ae.motion_shape)]
    for path, what, got, want in checks:
        if got != tuple(want):
            raise ValueError(f"{path} was trained on a {what} of shape {got}, the autoencoder {ae_path} "
                             f"makes {tuple(want)}: give checkpoints of one model")
    diffusion = {"num_train_timesteps": 1000, "beta_schedule": "linear", "prediction_type": "epsilon"}
    return CMD(autoencoder=ae, content_model=content, motion_model=motion, content_diffusion=dict(diffusion),
               motion_diffusion=dict(diffusion)).eval()
