"""Frozen text encoders shared by the models (LaMD's text-guided DMG, CMD's motion DiT, text-to-video).

LaMD (Sec. 4.3.3) concatenates "the text embeddings extracted by a text encoder" with the content
features of the given image; CMD projects a pooled text feature (``TextEncoder.pooled``). Any frozen
encoder that returns per-token features works. Every encoder here maps a list of
strings to ``(tokens (B, L, D), mask (B, L) bool)`` with a fixed ``L`` (padded to ``max_length``) so
batches stack, and saves/loads itself to a directory.

Nothing downloads on its own: weights come from a local path (or, for transformers, a hub id that the
library resolves from its cache; pass ``local_files_only=True`` to forbid network access).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .persistence import register

__all__ = ["TextEncoder", "HFTextEncoder", "OpenCLIPTextEncoder", "build_text_encoder", "load_text_encoder"]

CONFIG_NAME = "text_encoder.json"


class TextEncoder(nn.Module):
    """Interface: ``forward(texts) -> (tokens (B, L, dim), mask (B, L) bool)``; frozen, no gradients."""

    dim: int
    max_length: int
    config: dict  # {"kind": ..., **constructor kwargs}: rebuilds the encoder with build_text_encoder

    def __init__(self) -> None:
        super().__init__()

    def freeze(self) -> None:
        """Text encoders are never trained here: no gradients, eval mode."""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        # Always stay in eval mode (dropout off) even when the owning LightningModule calls .train().
        return super().train(False)

    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def pooled(self, texts: Sequence[str], masked: bool = True) -> torch.Tensor:
        """``(B, dim)``: the mean of the token features over the tokenizer mask, or over all ``max_length``
        tokens (``masked=False``: what CMD's code computes from its 77 OpenCLIP states)."""
        tokens, mask = self(texts)
        weights = (mask if masked else torch.ones_like(mask)).to(tokens.dtype).unsqueeze(-1)  # (B, L, 1)
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        raise NotImplementedError

    # the component protocol of videogen.core.persistence: the encoder's own directory + text_encoder.json
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> TextEncoder:
        return load_text_encoder(directory).to(map_location)

    def component_config(self) -> dict:
        return dict(self.config)

    @classmethod
    def from_component_config(cls, config: dict) -> TextEncoder:
        return build_text_encoder(config)

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings (one caption per video)")
        return list(texts)


def _existing_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what}: directory {str(p)!r} does not exist")
    return p


def _looks_like_path(name: str) -> bool:
    """Hub ids look like ``org/name``; anything else with a separator or a leading ``.``/``~`` is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def _absolute_if_path(name_or_path: str | os.PathLike) -> str:
    """Local directories become absolute (a checkpoint's recorded config then loads from any working
    directory); hub ids stay as they are."""
    name_or_path = str(name_or_path)
    if _looks_like_path(name_or_path) or Path(name_or_path).expanduser().is_dir():
        if not Path(name_or_path).expanduser().is_dir():
            raise FileNotFoundError(f"text encoder directory {name_or_path!r} does not exist")
        return str(Path(name_or_path).expanduser().resolve())
    return name_or_path


class HFTextEncoder(TextEncoder):
    """Any transformers text model (``CLIPTextModel``, T5 encoder, BERT, ...) with its tokenizer.

    Args:
        name_or_path: local directory written by ``save_pretrained`` or a hub id in the HF cache.
        max_length: tokens per caption (padded / truncated), 77 as in CLIP.
        local_files_only: forbid transformers from reaching the network.
        tokenizer: where the tokenizer is, if not beside the model (Stable Diffusion's ``tokenizer/``).
        use_attention_mask: pass the padding mask to the model; Stable Diffusion's UNets were trained on
            CLIP states computed without it (``False`` for them).
    """

    def __init__(self, name_or_path: str, max_length: int = 77, local_files_only: bool = False,
                 tokenizer: str | None = None, use_attention_mask: bool = True) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        name_or_path = _absolute_if_path(name_or_path)
        tokenizer = None if tokenizer is None else _absolute_if_path(tokenizer)
        self.max_length, self.use_attention_mask = int(max_length), use_attention_mask
        self.config = {"kind": "transformers", "name_or_path": name_or_path, "max_length": self.max_length,
                       "local_files_only": local_files_only, "tokenizer": tokenizer,
                       "use_attention_mask": use_attention_mask}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or name_or_path,
                                                           local_files_only=local_files_only)
            model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        except OSError as exc:  # a name that is neither a directory nor a hub id transformers can reach
            if Path(name_or_path).is_dir():
                raise
            raise FileNotFoundError(
                f"text encoder {name_or_path!r} not found: neither a directory "
                f"({Path(name_or_path).resolve()}) nor a hub id that could be loaded (offline, the Hugging "
                "Face cache only); download the model into a directory (`hf download <hub id> --local-dir "
                "<dir>`) and give that directory") from exc
        # A full CLIP / encoder-decoder checkpoint: keep only its text encoder.
        if hasattr(model, "text_model"):
            model = model.text_model
        elif getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.model = model
        self.dim = int(model.config.hidden_size if hasattr(model.config, "hidden_size")
                       else model.config.d_model)
        self.freeze()

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = self._check_texts(texts)
        enc = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        tokens = self.model(input_ids=ids, attention_mask=mask if self.use_attention_mask else None
                            ).last_hidden_state  # (B, L, D)
        return tokens.float(), mask.bool()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        self.model.save_pretrained(directory)
        (directory
         / CONFIG_NAME).write_text(json.dumps({"kind": "transformers", "max_length": self.max_length,
                                                         "use_attention_mask": self.use_attention_mask}))


class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an OpenCLIP model; per-token features after ``ln_final`` (width D).

    Args:
        model_name: OpenCLIP architecture name, e.g. ``"ViT-H-14"`` (ignored if ``model_config`` is given).
        checkpoint: local weight file (``.bin``/``.pt``/``.safetensors``) of the full CLIP or of the text
            tower alone (as written by :meth:`save_pretrained`). Required: nothing is downloaded.
        model_config: explicit ``open_clip.model.CLIP`` kwargs (embed_dim, vision_cfg, text_cfg) for
            architectures outside the OpenCLIP registry (used by the tests with a tiny model).
    The vision tower is dropped after loading (it is never used).
    """

    def __init__(self, model_name: str = "ViT-H-14", checkpoint: str | os.PathLike | None = None,
                 model_config: dict | None = None) -> None:
        super().__init__()
        import open_clip
        from open_clip.factory import load_state_dict

        if checkpoint is None or not Path(checkpoint).expanduser().is_file():
            raise FileNotFoundError(
                f"OpenCLIP checkpoint {checkpoint!r} not found: pass the local weight file of {model_name!r} "
                "(e.g. open_clip_pytorch_model.bin from the model's hub page)")
        self.model_name, self.model_config = model_name, model_config
        self.config = {"kind": "open_clip", "model_name": model_name, "checkpoint": str(checkpoint),
                       "model_config": model_config}
        if model_config is not None:
            model = open_clip.model.CLIP(**model_config)
            self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
                context_length=model_config.get("text_cfg", {}).get("context_length", 77))
        else:
            model = open_clip.create_model(model_name, pretrained=None)
            self.tokenizer = open_clip.get_tokenizer(model_name)
        state = load_state_dict(str(Path(checkpoint).expanduser()))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("visual.")]
        if missing:
            raise ValueError(f"checkpoint {checkpoint} does not fit {model_name!r}: missing {missing[:5]}")
        model.visual = None  # only the text tower is used
        self.model = model
        self.tower = model.text if hasattr(model, "text") else model  # CustomTextCLIP keeps it in .text
        if not hasattr(self.tower, "token_embedding"):
            raise ValueError(f"{model_name!r} has a HF text tower; use HFTextEncoder for it")
        self.max_length = int(self.tower.positional_embedding.shape[0])
        self.dim = int(self.tower.transformer.width)
        self.freeze()

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = self._check_texts(texts)
        tower = self.tower
        device = tower.positional_embedding.device
        ids = self.tokenizer(texts).to(device)  # (B, L) int64, padded with 0
        x = tower.token_embedding(ids) + tower.positional_embedding  # (B, L, D)
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        tokens = tower.ln_final(x)  # (B, L, D) per-token features, before pooling/projection
        return tokens.float(), ids != 0

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / "open_clip_text.safetensors"))
        config = {"kind": "open_clip", "model_name": self.model_name, "model_config": self.model_config}
        (directory / CONFIG_NAME).write_text(json.dumps(config))


for _cls in (TextEncoder, HFTextEncoder, OpenCLIPTextEncoder):
    register(_cls)


def build_text_encoder(config: dict) -> TextEncoder:
    """Rebuild an encoder from its ``config`` (the same files must still be where they were)."""
    kwargs = dict(config)
    kind = kwargs.pop("kind", None)
    classes = {"transformers": HFTextEncoder, "open_clip": OpenCLIPTextEncoder}
    if kind not in classes:
        raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind](**kwargs)


def load_text_encoder(directory: str | os.PathLike) -> TextEncoder:
    """Load a text encoder written by ``save_pretrained`` (dispatches on ``text_encoder.json``)."""
    directory = _existing_dir(directory, "text encoder")
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: not a directory written by "
                                "TextEncoder.save_pretrained")
    cfg = json.loads(cfg_path.read_text())
    if cfg["kind"] == "transformers":
        return HFTextEncoder(str(directory), max_length=cfg["max_length"], local_files_only=True,
                             use_attention_mask=cfg.get("use_attention_mask", True))
    if cfg["kind"] == "open_clip":
        return OpenCLIPTextEncoder(cfg["model_name"], directory / "open_clip_text.safetensors",
                                   model_config=cfg["model_config"])
    raise ValueError(f"unknown text encoder kind {cfg['kind']!r} in {cfg_path}")
