"""LVDM text-to-video's network (Sec. 5): a Stable Diffusion UNet (diffusers) + temporal attention layers.

:class:`VideoUNetFromSD` runs diffusers' ``UNet2DConditionModel`` on every frame (``(B, C, T, h, w)`` ->
``(B*T, C, h, w)``) and, after every spatial transformer of the UNet, a temporal attention layer over
the frames at each position (GN -> qkv -> Shaw relative attention -> **zero-initialised** projection ->
residual).  At initialisation the video model therefore equals the image model applied frame by frame;
``from_sd(path)`` is the conversion from Stable Diffusion weights that the official code never shipped
(LVDM#5, #23): the SD UNet is loaded through diffusers unchanged and only the temporal layers are new.
LVDM's text-to-video schedule is SD's (``SD_DIFFUSION``: 0.00085..0.012, L2).

``temporal_layout="official"`` is the block layout of the released ``t2v.ckpt`` (official
``BasicTransformerBlockST``): *inside* every transformer block, spatial self-attention, temporal
self-attention (``attn1_tmp``), cross-attention, temporal self-attention (``attn2_tmp``, no context), FF,
each pre-LayerNorm and residual; the temporal attentions are the official ``TemporalCrossAttention``
(Shaw relative positions on keys and values, clipped at ``max_relative_distance`` = temporal_length 16,
heads and head width of the spatial block).  The official 3D UNet also normalises its GroupNorms over the
whole clip (``(B, C, T, h, w)``: statistics over frames, height and width), where SD / the default layout
normalises each frame; the official layout does the same, so it runs its own walk over diffusers' modules
(every SD weight and key stays diffusers'), passing the frame count to each norm explicitly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from videogen.core.persistence import register, registered_name
from videogen.core.sd import SDUNet

from .unet3d import _AttentionHalf

__all__ = ["SD_DIFFUSION", "TEMPORAL_LAYOUTS", "VideoUNetFromSD"]

TEMPORAL_WEIGHTS = "temporal.safetensors"
SD_DIFFUSION = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
TEMPORAL_LAYOUTS = ("after", "official")


class VideoUNetFromSD(nn.Module):
    """An SD UNet made a video model by temporal attention layers.

    Args:
        unet: ``videogen.core.sd.SDUNet`` (or give ``pretrained``: an SD directory / hub id in the cache).
        heads: heads of the temporal layers (``"after"`` layout; the official layout uses the heads of each
            spatial block, as the official code); ``max_relative_distance``: their relative-position range
            (16, the official ``temporal_length``).
        temporal_layout: ``"after"`` (default): a temporal layer after each spatial transformer, per-frame
            GroupNorm as SD; ``"official"``: the released ``t2v.ckpt`` layout (module docstring).
    """

    def __init__(self, unet: SDUNet | None = None, pretrained: str | None = None, heads: int = 8,
                 max_relative_distance: int = 16, temporal_layout: str = "after"):
        super().__init__()
        if (unet is None) == (pretrained is None):
            raise ValueError("give an SDUNet (unet) or a Stable Diffusion directory (pretrained)")
        if temporal_layout not in TEMPORAL_LAYOUTS:
            raise ValueError(f"temporal_layout must be one of {TEMPORAL_LAYOUTS}, got {temporal_layout!r}")
        self.sd = unet if unet is not None else SDUNet(pretrained)
        self.temporal_layout = temporal_layout
        if temporal_layout == "official":
            layers = self._official_layers(max_relative_distance)
        else:
            layers = self._after_layers(heads, max_relative_distance)
        self.temporal = nn.ModuleDict(layers)
        self.in_channels, self.context_dim = self.sd.in_channels, self.sd.context_dim
        self.config = {"heads": heads, "max_relative_distance": max_relative_distance, "unet": self.sd.config}
        if temporal_layout != "after":  # configs of the default layout stay as they were
            self.config["temporal_layout"] = temporal_layout

    def _after_layers(self, heads: int, max_relative_distance: int) -> dict[str, nn.Module]:
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
        return layers

    def _official_layers(self, max_relative_distance: int) -> dict[str, nn.Module]:
        """One :class:`OfficialTemporalLayers` per diffusers ``BasicTransformerBlock``, keyed by the block's
        path with ``_`` for ``.`` (``down_blocks_0_attentions_0_transformer_blocks_0``)."""
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        unet = self.sd.unet
        if unet.config.time_cond_proj_dim is not None or unet.config.class_embed_type is not None or \
                unet.config.addition_embed_type is not None or unet.config.num_class_embeds is not None:
            raise ValueError("the official temporal layout needs a plain text-conditioned SD UNet (no class, "
                             "addition or condition embeddings)")
        layers = {}
        self.spatial_names = []
        for name, module in unet.named_modules():
            if isinstance(module, Transformer2DModel):
                self.spatial_names.append(name)
                if not module.is_input_continuous:
                    raise ValueError(f"{name}: the official layout needs continuous-input transformers")
            if isinstance(module, BasicTransformerBlock):
                if module.norm_type != "layer_norm" or module.only_cross_attention or module.attn2 is None \
                        or module.pos_embed is not None:
                    raise ValueError(f"{name}: the official layout needs SD's pre-LayerNorm blocks with "
                                     "self- and cross-attention")
                dim, heads = module.norm1.normalized_shape[0], module.attn1.heads
                layers[name.replace(".", "_")] = OfficialTemporalLayers(dim, heads, dim // heads,
                                                                        max_relative_distance)
        if not layers:
            raise ValueError("the UNet has no transformer blocks to put temporal layers in")
        return layers

    # the component protocol of videogen.core.persistence: the SD UNet as a diffusers directory ``unet/``,
    # the temporal layers as ``temporal.safetensors`` and their settings in ``config.json``
    def component_config(self) -> dict[str, Any]:
        return self.config

    @classmethod
    def from_component_config(cls, config: dict[str, Any]) -> VideoUNetFromSD:
        return cls(SDUNet(config=config["unet"]["config"]), heads=config["heads"],
                   max_relative_distance=config["max_relative_distance"],
                   temporal_layout=config.get("temporal_layout", "after"))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.sd.save_pretrained(directory / "unet")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.temporal.state_dict().items()},
                  str(directory / TEMPORAL_WEIGHTS))
        settings = {"class": registered_name(type(self)), "heads": self.config["heads"],
                    "max_relative_distance": self.config["max_relative_distance"]}
        if self.temporal_layout != "after":
            settings["temporal_layout"] = self.temporal_layout
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
                   max_relative_distance=settings["max_relative_distance"],
                   temporal_layout=settings.get("temporal_layout", "after"))
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
        if self.temporal_layout == "official":
            return self._forward_official(x, t, text_states)
        b, c, frames, h, w = x.shape
        flat = x.transpose(1, 2).reshape(b * frames, c, h, w)
        # the frame count reaches every temporal layer explicitly, through diffusers' cross_attention_kwargs
        out = self.sd(flat, t.repeat_interleave(frames), text_states.repeat_interleave(frames, dim=0),
                      cross_attention_kwargs={"num_frames": frames})
        return out.view(b, frames, -1, h, w).transpose(1, 2)

    def _forward_official(self, x: torch.Tensor, t: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
        """The official 3D UNet's computation on diffusers' modules: frames folded into the batch
        ``(B*T, C, h, w)`` for convolutions and spatial attention, GroupNorm over the whole clip, temporal
        attention inside each transformer block (module docstring)."""
        unet = self.sd.unet
        if text_states.ndim != 3 or text_states.shape[-1] != self.context_dim:
            raise ValueError(f"text_states must be (B, L, {self.context_dim}), got "
                             f"{tuple(text_states.shape)}")
        b, c, frames, h, w = x.shape
        t = t.expand(b) if t.ndim == 0 else t.reshape(b)
        sample = x.transpose(1, 2).reshape(b * frames, c, h, w)  # (B*T, C, h, w)
        emb = unet.time_embedding(unet.time_proj(t).to(sample.dtype))  # (B, D): one per clip
        emb = emb.repeat_interleave(frames, dim=0)  # (B*T, D)
        context = text_states.to(sample.dtype).repeat_interleave(frames, dim=0)  # (B*T, L, d)

        def transformer(module: nn.Module, hidden: torch.Tensor, path: str) -> torch.Tensor:
            return _official_transformer(module, hidden, context, frames, self.temporal, path)

        hidden = unet.conv_in(sample)
        skips = [hidden]
        for i, block in enumerate(unet.down_blocks):
            attentions = getattr(block, "attentions", None)
            for j, resnet in enumerate(block.resnets):
                hidden = _clip_resnet(resnet, hidden, emb, frames)
                if attentions is not None:
                    hidden = transformer(attentions[j], hidden, f"down_blocks.{i}.attentions.{j}")
                skips.append(hidden)
            for down in block.downsamplers or []:
                hidden = down(hidden)
                skips.append(hidden)
        mid = unet.mid_block
        hidden = _clip_resnet(mid.resnets[0], hidden, emb, frames)
        for j, (attention, resnet) in enumerate(zip(mid.attentions, mid.resnets[1:])):
            hidden = transformer(attention, hidden, f"mid_block.attentions.{j}")
            hidden = _clip_resnet(resnet, hidden, emb, frames)
        for i, block in enumerate(unet.up_blocks):
            attentions = getattr(block, "attentions", None)
            for j, resnet in enumerate(block.resnets):
                hidden = _clip_resnet(resnet, torch.cat([hidden, skips.pop()], dim=1), emb, frames)
                if attentions is not None:
                    hidden = transformer(attentions[j], hidden, f"up_blocks.{i}.attentions.{j}")
            for up in block.upsamplers or []:
                hidden = up(hidden, output_size=skips[-1].shape[-2:])
        hidden = unet.conv_act(_clip_group_norm(unet.conv_norm_out, hidden, frames))
        out = unet.conv_out(hidden)  # (B*T, C_out, h, w)
        return out.view(b, frames, -1, h, w).transpose(1, 2)


register(VideoUNetFromSD)


def _clip_group_norm(norm: nn.GroupNorm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """``norm`` over whole clips: ``x (B*T, C, h, w)`` normalised with statistics over each clip's T frames
    (the official GroupNorm of a ``(B, C, T, h, w)`` tensor, computed in float32 as its GroupNorm32)."""
    bt, c, h, w = x.shape
    clip = x.view(bt // frames, frames, c, h, w).transpose(1, 2).float()  # (B, C, T, h, w)
    out = F.group_norm(clip, norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps)
    return out.to(x.dtype).transpose(1, 2).reshape(bt, c, h, w)


def _clip_resnet(resnet: nn.Module, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
    """diffusers' ``ResnetBlock2D`` (SD's: no up/down sampling, time embedding added) with clip-wide
    GroupNorms: the official ``ResBlock``."""
    if resnet.upsample is not None or resnet.downsample is not None or \
            resnet.time_embedding_norm != "default" or resnet.time_emb_proj is None:
        raise ValueError("the official layout supports SD's ResnetBlock2D only (no up/down sampling inside, "
                         "time embedding added)")
    hidden = resnet.conv1(resnet.nonlinearity(_clip_group_norm(resnet.norm1, x, frames)))
    hidden = hidden + resnet.time_emb_proj(resnet.nonlinearity(emb))[:, :, None, None]
    hidden = resnet.nonlinearity(_clip_group_norm(resnet.norm2, hidden, frames))
    hidden = resnet.conv2(resnet.dropout(hidden))
    skip = x if resnet.conv_shortcut is None else resnet.conv_shortcut(x)
    return (skip + hidden) / resnet.output_scale_factor


def _official_transformer(module: nn.Module, x: torch.Tensor, context: torch.Tensor, frames: int,
                          temporal: nn.ModuleDict, path: str) -> torch.Tensor:
    """diffusers' ``Transformer2DModel`` (clip-wide GroupNorm, ``proj_in``, blocks, ``proj_out``, residual)
    whose blocks run the official order with their temporal layers: the official
    ``SpatialTemporalTransformer``.  ``x (B*T, C, h, w)``, ``context (B*T, L, d)``."""
    bt, _, h, w = x.shape
    hidden = _clip_group_norm(module.norm, x, frames)
    if not module.use_linear_projection:
        hidden = module.proj_in(hidden)
    hidden = hidden.permute(0, 2, 3, 1).reshape(bt, h * w, -1)  # (B*T, h*w, C)
    if module.use_linear_projection:
        hidden = module.proj_in(hidden)
    for k, block in enumerate(module.transformer_blocks):
        hidden = _official_block(block, temporal[f"{path}.transformer_blocks.{k}".replace(".", "_")],
                                 hidden, context, frames)
    if module.use_linear_projection:
        hidden = module.proj_out(hidden)
    hidden = hidden.reshape(bt, h, w, -1).permute(0, 3, 1, 2)  # (B*T, C, h, w)
    if not module.use_linear_projection:
        hidden = module.proj_out(hidden)
    return hidden + x


def _official_block(block: nn.Module, temporal: OfficialTemporalLayers, x: torch.Tensor,
                    context: torch.Tensor, frames: int) -> torch.Tensor:
    """The official ``BasicTransformerBlockST`` on a diffusers ``BasicTransformerBlock``: spatial
    self-attention, temporal self-attention, cross-attention, temporal self-attention, FF; each
    pre-LayerNorm and residual.  ``x (B*T, N, C)`` with ``N = h*w``."""
    x = x + block.attn1(block.norm1(x))
    x = x + _over_frames(temporal.attn1_tmp, temporal.norm4, x, frames)
    x = x + block.attn2(block.norm2(x), encoder_hidden_states=context)
    x = x + _over_frames(temporal.attn2_tmp, temporal.norm5, x, frames)
    return x + block.ff(block.norm3(x))


def _over_frames(attention: nn.Module, norm: nn.LayerNorm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """``attention(norm(x))`` over the T frames at each position: ``(B*T, N, C)`` -> ``(B*N, T, C)`` and
    back."""
    bt, n, c = x.shape
    seq = x.view(bt // frames, frames, n, c).transpose(1, 2).reshape(-1, frames, c)  # (B*N, T, C)
    out = attention(norm(seq))
    return out.view(bt // frames, n, frames, c).transpose(1, 2).reshape(bt, n, c)


class RelativePositions(nn.Module):
    """Learned embeddings of the clipped distance ``j - i`` between key frame j and query frame i (Shaw et
    al. 2018): ``embeddings_table (2 * max_relative_distance + 1, dim)``, Xavier-uniform as the official."""

    def __init__(self, dim: int, max_relative_distance: int):
        super().__init__()
        self.max_relative_distance = max_relative_distance
        self.embeddings_table = nn.Parameter(torch.empty(2 * max_relative_distance + 1, dim))
        nn.init.xavier_uniform_(self.embeddings_table)

    def forward(self, length_q: int, length_k: int) -> torch.Tensor:
        """``(length_q, length_k, dim)``."""
        device = self.embeddings_table.device
        distance = (torch.arange(length_k, device=device)[None, :]
                    - torch.arange(length_q, device=device)[:, None])  # (Tq, Tk): key minus query
        m = self.max_relative_distance
        return self.embeddings_table[distance.clamp(-m, m) + m]


class TemporalSelfAttention(nn.Module):
    """The official ``TemporalCrossAttention`` as the T2V model uses it (self-attention over frames, no
    mask): ``softmax((q k^T + q a_K^T) / sqrt(d)) (v + a_V)`` with relative-position tables a_K, a_V (the
    Shaw form, correct in the official T2V path, specs B1).  q, k, v without bias, ``to_out`` with bias.
    Initialisation: only ``to_out`` is zero (the layer starts as the identity); the official code also
    zero-inits q, k, v, under which their gradients stay zero apart from the relative-position path (B13).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, max_relative_distance: int = 16):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))  # keys to_out.0.* as official
        self.relative_position_k = RelativePositions(dim_head, max_relative_distance)
        self.relative_position_v = RelativePositions(dim_head, max_relative_distance)
        nn.init.zeros_(self.to_out[0].weight)
        nn.init.zeros_(self.to_out[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (N, T, dim)`` -> ``(N, T, dim)``."""
        n, frames, _ = x.shape
        q, k, v = (f(x).view(n, frames, self.heads, self.dim_head).transpose(1, 2)
                   for f in (self.to_q, self.to_k, self.to_v))  # (N, heads, T, d)
        scale = self.dim_head ** -0.5
        rel_k = self.relative_position_k(frames, frames)  # (T, T, d)
        logits = (q @ k.transpose(-1, -2) + torch.einsum("nhtd,tsd->nhts", q, rel_k)) * scale
        attn = logits.softmax(dim=-1)  # (N, heads, T, T)
        out = attn @ v + torch.einsum("nhts,tsd->nhtd", attn, self.relative_position_v(frames, frames))
        return self.to_out(out.transpose(1, 2).reshape(n, frames, -1))


class OfficialTemporalLayers(nn.Module):
    """The temporal part of one official ``BasicTransformerBlockST``: ``attn1_tmp`` (after spatial
    self-attention), ``attn2_tmp`` (after cross-attention, also self-attention), pre-LayerNorms ``norm4``
    and ``norm5``; names as the official keys."""

    def __init__(self, dim: int, heads: int, dim_head: int, max_relative_distance: int = 16):
        super().__init__()
        self.attn1_tmp = TemporalSelfAttention(dim, heads, dim_head, max_relative_distance)
        self.attn2_tmp = TemporalSelfAttention(dim, heads, dim_head, max_relative_distance)
        self.norm4 = nn.LayerNorm(dim)
        self.norm5 = nn.LayerNorm(dim)

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
