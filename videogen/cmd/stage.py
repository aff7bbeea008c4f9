"""What CMD's three training stages share: building / loading the stage-1 autoencoder, and the stage bases
``CMDStage`` (the autoencoder, the optional SD VAE, pixels -> autoencoder input, the pipeline record) and
``ConditionalStage`` (the content and motion diffusion stages on the frozen autoencoder's encodings).

Later stages take the earlier one's checkpoint (``autoencoder: <stage-1 last.ckpt>``) and keep it frozen
in eval mode; each stage's checkpoint carries its part of the pipeline record, so that
``CMD.from_checkpoints`` rebuilds the pipeline from the checkpoints alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videogen.core.pretrained import load_stage_network
from videogen.core.sd import FrameVAE
from videogen.core.stages import DiffusionStage
from videogen.core.text import TextEncoder
from videogen.core.training import TrainingModule
from videogen.data.cache import cached_batch, encode_text, pool_text

from .autoencoder import CMDAutoencoder

__all__ = ["CMDStage", "ConditionalStage", "batch_head", "build_autoencoder", "load_cmd_autoencoder"]


def build_autoencoder(autoencoder: CMDAutoencoder | dict[str, Any]) -> CMDAutoencoder:
    if isinstance(autoencoder, CMDAutoencoder):
        return autoencoder
    if isinstance(autoencoder, dict):
        kwargs = autoencoder.get("init_args", autoencoder) if "class_path" in autoencoder else autoencoder
        return CMDAutoencoder(**{k: v for k, v in kwargs.items() if k != "class"})
    raise ValueError(f"autoencoder must be a CMDAutoencoder or its config, got {type(autoencoder).__name__}")


def load_cmd_autoencoder(path: str | Path | CMDAutoencoder, map_location: str = "cpu") -> CMDAutoencoder:
    """The trained autoencoder from a CMD stage checkpoint or a ``save_pretrained`` directory."""
    if isinstance(path, CMDAutoencoder):
        return path
    return load_stage_network(path, CMDAutoencoder, "autoencoder", r"(cmd_\w+?_autoencoder)",
                              "give the .ckpt a CMD autoencoder recipe writes, or a save_pretrained "
                              "directory", map_location)


def batch_head(batch: dict[str, Any], num: int) -> dict[str, Any]:
    """The first ``num`` samples of a batch (tensors and lists; other values as they are)."""
    return {k: v[:num] if isinstance(v, (torch.Tensor, list, tuple)) else v for k, v in batch.items()}


class CMDStage(TrainingModule):
    """Shared: the (frozen or trained) autoencoder, the optional SD VAE, pixels -> AE input, checkpoint
    configs."""

    autoencoder: CMDAutoencoder
    vae: FrameVAE | None
    frozen = ("vae",)  # the SD VAE of latent mode; the diffusion stages add the autoencoder, text encoder

    def _ae_input(self, video: torch.Tensor, sample: bool) -> torch.Tensor:
        """Batch videos (pixels in [-1, 1]) -> what the autoencoder reads (pixels, or scaled SD latents)."""
        if self.vae is not None:
            return self.vae.encode(video, sample=sample)
        if self.autoencoder.mode == "latent":
            raise ValueError("a latent-mode autoencoder needs `vae` (a FrameVAE) or latent batches")
        return video

    pipeline_name = "videogen.cmd.CMD"  # every stage's checkpoint holds its part of the pipeline

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        parts = {"autoencoder": (self.autoencoder, "autoencoder."), "vae": (self.vae, "vae.")}
        if hasattr(self, "denoiser"):
            parts[self.pipeline_component] = (self.denoiser, "denoiser.")
        if getattr(self, "text_encoder", None) is not None:
            parts["text_encoder"] = (self.text_encoder, "text_encoder.")
        return parts


class ConditionalStage(CMDStage, DiffusionStage):
    """The content and motion stages: a diffusion model (``denoiser``) on encodings of the frozen autoencoder,
    with labels / captions dropped with ``cond_drop_prob`` for classifier-free guidance."""

    network_name = "denoiser"
    frozen = ("autoencoder", "vae", "text_encoder")
    text_encoder: TextEncoder | None
    #: sampling steps of ``sample_videos`` (logging only; B.4 samples with 100 motion / 50 content steps)
    sample_steps = 25

    def _labels(self, batch: dict[str, Any], num_classes: int | None) -> torch.Tensor | None:
        if num_classes is None:
            return None
        if "label" not in batch:
            raise ValueError("a class-conditional model needs batch['label']")
        return batch["label"].to(self.device).long()

    def _captions(self, batch: dict[str, Any]) -> list[str] | None:
        if self.text_encoder is None:
            return None
        if "caption" not in batch:
            raise ValueError("a text-conditional model needs batch['caption']")
        return list(batch["caption"])

    def _encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content_frame, motion_latent)`` of the batch: cached (:func:`cache_latents`, a
        ``videogen.data.LatentCache``), or encoded."""
        cached_batch(self, batch, ("content_frame", "motion_latent"))
        if "content_frame" in batch:
            return batch["content_frame"].to(self.device), batch["motion_latent"].to(self.device)
        return self.autoencoder.encode(self._ae_input(batch["video"], sample=sample))

    def _cached_text(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(token states (B, L, D), mask (B, L))`` of a latent-cache batch, or None (raw captions)."""
        if self.text_encoder is None or not cached_batch(self, batch, ("text_states", "text_mask")):
            return None
        return batch["text_states"].to(self.device), batch["text_mask"].to(self.device)

    def _pooled_text(self, batch: dict[str, Any]) -> torch.Tensor:
        """The pooled text feature ``(B, D)`` (``pool_masked``) of the captions or of cached states."""
        cached = self._cached_text(batch)
        if cached is not None:
            return pool_text(*cached, masked=self.hparams.pool_masked)
        return self.text_encoder.pooled(self._captions(batch), masked=self.hparams.pool_masked)

    def _null_text_states(self) -> torch.Tensor:
        """``(1, L, D)`` token states of the empty caption (dropped captions of cached batches), once."""
        if getattr(self, "_null_states", None) is None:
            self._null_states = self.text_encoder([""])[0]
        return self._null_states.to(self.device)

    @torch.no_grad()
    def cache_encode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What ``videogen cache`` stores (``videogen.data.cache``): the autoencoder's ``content_frame``
        ``(B, C, H, W)`` and ``motion_latent`` ``(B, D, L, W'+H')`` of ``batch["video"]`` (SD-VAE posterior
        means), or the text encoder's ``text_states`` / ``text_mask`` of ``batch["caption"]``."""
        if "video" in batch:
            content, motion = self.autoencoder.encode(self._ae_input(batch["video"], sample=False))
            return {"content_frame": content, "motion_latent": motion}
        return encode_text(self.text_encoder, batch["caption"]) if self.text_encoder is not None else {}

    def configure_optimizers(self):
        lr = self.scaled_lr(self.hparams.lr, self.hparams.scale_lr)
        return self.make_optimizer(self.denoiser.parameters(), lr, "adam", betas=tuple(self.hparams.betas))
