"""CMD's three training stages as LightningModules (Sec. 3.2, App. B.3).

* :class:`CMDAutoencoderModule`: the autoencoder.  Pixel mode: ``4 * L1`` over the whole video +
  ``4 * LPIPS`` on one random frame per video (or all frames), as the official code; latent mode: MSE
  between reconstructed and input SD latents (videos are encoded frame by frame by a frozen
  ``FrameVAE``, posterior samples in training, means in validation).
* :class:`CMDContentModule`: the content-frame model (eq. 7) on the frozen autoencoder's content frames:
  a :class:`ContentDiT` from scratch (class labels) or a Stable Diffusion UNet (:class:`SDUNet`, text
  token states of SD's own text encoder) fine-tuned whole.  Labels / captions are dropped with
  ``cond_drop_prob`` (null class / empty caption) for classifier-free guidance.
* :class:`CMDMotionModule`: the motion DiT (eq. 8) on the frozen autoencoder's motion latents, given the
  content frame and the class / pooled text feature (dropped with ``cond_drop_prob``).

Later stages take the earlier one's checkpoint (``autoencoder: <stage-1 last.ckpt>``) and keep it frozen
in eval mode; each stage's checkpoint carries its part of the pipeline record so that ``CMD.from_checkpoints``
rebuilds the pipeline from the checkpoints alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.core.losses import LPIPSLoss
from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.core.pretrained import load_stage_network
from videogen.core.sd import FrameVAE, SDUNet
from videogen.core.stages import DiffusionStage, drop_captions, drop_conditions, drop_labels, zero_dropped
from videogen.core.text import TextEncoder
from videogen.core.training import TrainingModule, encode_items

from .autoencoder import CMDAutoencoder
from .dit import ContentDiT, MotionDiT

__all__ = ["CMDAutoencoderModule", "CMDContentModule", "CMDMotionModule", "cache_latents",
           "load_cmd_autoencoder", "motion_latent_std"]


def _build_autoencoder(autoencoder: CMDAutoencoder | dict[str, Any]) -> CMDAutoencoder:
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


def _head(batch: dict[str, Any], num: int) -> dict[str, Any]:
    """The first ``num`` samples of a batch (tensors and lists; other values as they are)."""
    return {k: v[:num] if isinstance(v, (torch.Tensor, list, tuple)) else v for k, v in batch.items()}


class _CMDStage(TrainingModule):
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


class CMDAutoencoderModule(_CMDStage):
    """Trains a :class:`CMDAutoencoder` (see the module docstring for the losses).

    Args:
        autoencoder: the network (or its config).
        vae: frozen SD VAE for latent mode (videos in the batch stay pixels; they are encoded here).
        l1_weight, lpips_weight: pixel-mode weights (official: 4, 4); ``lpips_weight=0`` builds no LPIPS.
        pixel_loss: ``"l1"`` (official) or ``"l2"`` for the pixel term that ``l1_weight`` weighs (the CPU
            demo uses L2: with L1 alone a small object fades into the background early in training).
        lpips_frames: ``"one"`` random frame per video (official) or ``"all"``.
        lpips_net / lpips_pretrained / lpips_random: the LPIPS backbone (``core.losses.LPIPSLoss``).
        lr, betas: Adam (B.3: 1e-5, (0.5, 0.9)); ``scale_lr``: LDM scaling (off: the paper's rate is
        effective).
    """

    def __init__(self, autoencoder: CMDAutoencoder | dict[str, Any], vae: FrameVAE | None = None,
                 l1_weight: float = 4.0, lpips_weight: float = 4.0, lpips_frames: str = "one",
                 pixel_loss: str = "l1", lpips_net: str = "vgg", lpips_pretrained: bool | str = True,
                 lpips_random: bool = False,
                 lr: float = 1e-5, betas: tuple[float, float] = (0.5, 0.9), scale_lr: bool = False,
                 nan_policy: str = "raise"):
        super().__init__(nan_policy=nan_policy)
        if lpips_frames not in ("one", "all"):
            raise ValueError(f"lpips_frames must be 'one' or 'all', got {lpips_frames!r}")
        if pixel_loss not in ("l1", "l2"):
            raise ValueError(f"pixel_loss must be 'l1' or 'l2', got {pixel_loss!r}")
        self.save_hyperparameters(ignore=["autoencoder", "vae"])
        self.autoencoder = _build_autoencoder(autoencoder)
        self.vae = vae
        self.freeze_stages()
        pixel = self.autoencoder.mode == "pixel"
        self.lpips = (LPIPSLoss(lpips_net, pretrained=lpips_pretrained, pnet_rand=lpips_random)
                      if pixel and lpips_weight > 0 else None)

    def reconstruction_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon, _, _ = self.autoencoder(x)
        if self.autoencoder.mode == "latent":
            mse = (recon.float() - x.float()).square().mean()
            return mse, {"mse": mse.detach()}
        diff = recon.float() - x.float()
        pixel = diff.abs().mean() if self.hparams.pixel_loss == "l1" else diff.square().mean()
        loss, logs = self.hparams.l1_weight * pixel, {self.hparams.pixel_loss: pixel.detach()}
        if self.lpips is not None:
            if self.hparams.lpips_frames == "one":  # one random frame per video (official)
                idx = torch.randint(0, x.shape[2], (x.shape[0],), device=x.device)
                pick = torch.arange(x.shape[0], device=x.device)
                r, t = recon[pick, :, idx].unsqueeze(2), x[pick, :, idx].unsqueeze(2)  # (B, C, 1, H, W)
            else:
                r, t = recon, x
            lp = self.lpips(r, t)
            loss = loss + self.hparams.lpips_weight * lp
            logs["lpips"] = lp.detach()
        return loss, logs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        x = self._ae_input(batch["video"], sample=True)
        loss, logs = self.reconstruction_loss(x)
        if not self.finite_or_skip(loss=loss):
            return None
        self.log_dict({f"train/{k}": v for k, v in {**logs, "loss": loss.detach()}.items()},
                      prog_bar=False, batch_size=x.shape[0], sync_dist=True)
        self.log("train/loss_bar", loss.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self._ae_input(batch["video"], sample=False)
        recon, _, _ = self.autoencoder(x)
        logs = {"val/mse": (recon.float() - x.float()).square().mean()}
        if self.autoencoder.mode == "pixel":
            logs["val/psnr"] = psnr_per_video(recon.clamp(-1, 1), x).mean().float()
        self.log_dict(logs, prog_bar=True, sync_dist=True, batch_size=x.shape[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.autoencoder.parameters(),
                                lr=self.scaled_lr(self.hparams.lr, self.hparams.scale_lr),
                                betas=tuple(self.hparams.betas))

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Reconstructions of the first ``num`` batch videos (pixels)."""
        x = self._ae_input(batch["video"][:num], sample=False)
        recon = self.autoencoder(x)[0]
        return self.vae.decode(recon) if self.vae is not None else recon.clamp(-1, 1)


class _ConditionalStage(_CMDStage, DiffusionStage):
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
        """``(content_frame, motion_latent)`` of the batch: cached by :func:`cache_latents`, or encoded."""
        if "content_frame" in batch:
            return batch["content_frame"].to(self.device), batch["motion_latent"].to(self.device)
        return self.autoencoder.encode(self._ae_input(batch["video"], sample=sample))

    def configure_optimizers(self):
        lr = self.scaled_lr(self.hparams.lr, self.hparams.scale_lr)
        return torch.optim.Adam(self.denoiser.parameters(), lr=lr, betas=tuple(self.hparams.betas))


class CMDContentModule(_ConditionalStage):
    """The content-frame diffusion model (eq. 7) on content frames of a frozen autoencoder.

    Args:
        denoiser: a :class:`ContentDiT` (class or pooled-text conditions) or an :class:`SDUNet` (text token
            states of ``text_encoder``: Stable Diffusion fine-tuning, no new parameters).
        autoencoder: the stage-1 checkpoint (``.ckpt`` or ``save_pretrained`` directory) or network.
        vae: frozen SD VAE (latent-mode autoencoders).
        text_encoder: frozen; for an ``SDUNet`` the checkpoint's own (``videogen.core.sd.sd_text_encoder``).
        pool_masked: a text-conditional ``ContentDiT`` reads the pooled feature as :class:`CMDMotionModule`.
        cond_drop_prob: label -> null class / caption -> "" with this probability (CFG; 0.1).
        diffusion: ``GaussianDiffusion`` kwargs (DiT: linear 1e-4..0.02, eps; SD: its own schedule).
        lr, betas, scale_lr: Adam (B.3: 1e-4, (0.9, 0.999)).
    """

    pipeline_component = "content_model"

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        """The content model, its SD VAE and text encoder (the autoencoder comes from the motion stage)."""
        return {k: v for k, v in super().pipeline_parts().items() if k != "autoencoder"}

    def pipeline_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"content_diffusion": self.diffusion_config}
        if self.text_encoder is not None:
            settings["pool_masked"] = self.hparams.pool_masked
        return settings

    def __init__(self, denoiser: nn.Module, autoencoder: CMDAutoencoder | str, vae: FrameVAE | None = None,
                 text_encoder: TextEncoder | None = None, pool_masked: bool = False,
                 cond_drop_prob: float = 0.1, diffusion: dict[str, Any] | None = None, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), scale_lr: bool = False,
                 nan_policy: str = "raise"):
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy)
        if not isinstance(denoiser, (ContentDiT, SDUNet)):
            raise ValueError(f"denoiser must be a ContentDiT or an SDUNet, got {type(denoiser).__name__}")
        if isinstance(denoiser, SDUNet) and text_encoder is None:
            raise ValueError("an SDUNet content model needs the text_encoder of its Stable Diffusion "
                             "checkpoint")
        self.save_hyperparameters(ignore=["denoiser", "autoencoder", "vae", "text_encoder"])
        self.denoiser = denoiser
        self.autoencoder = load_cmd_autoencoder(autoencoder)
        self.vae, self.text_encoder = vae, text_encoder
        self.freeze_stages()
        if tuple(self.autoencoder.content_shape[:1]) != (self.denoiser.in_channels,):
            raise ValueError(f"the autoencoder's content frames have {self.autoencoder.content_shape[0]} "
                             f"channels, the denoiser takes {self.denoiser.in_channels}")

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Content frames ``(B, C, H, W)`` of the batch videos and the labels / captions (eq. 7)."""
        content, _ = self._encode(batch, sample=sample)
        if isinstance(self.denoiser, SDUNet):
            return content, {"captions": self._captions(batch)}
        return content, {"label": self._labels(batch, self.denoiser.num_classes),
                         "captions": self._captions(batch) if self.denoiser.text_dim is not None else None}

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """SD UNet: text token states of the captions (dropped ones -> ""); DiT: label (dropped -> null
        class) and pooled text feature (dropped -> zeros)."""
        if isinstance(self.denoiser, SDUNet):
            captions = raw["captions"] if drop is None else drop_captions(raw["captions"], drop)
            return {"text_states": self.text_encoder(captions)[0]}
        label, text = raw["label"], None
        if label is not None and drop is not None:
            label = drop_labels(label, drop, self.denoiser.null_label)
        if raw["captions"] is not None:
            text = self.text_encoder.pooled(raw["captions"], masked=self.hparams.pool_masked)
            text = text if drop is None else zero_dropped(text, drop)
        return {"label": label, "text": text}

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Content frames sampled for the first ``num`` labels / captions, as one-frame videos
        ``(num, C, 1, H, W)`` (pixels; SD-VAE decoded in latent mode).

        The content stage has no motion model, so the CMD pipeline's ``generate`` does not apply: its
        ``sample_content`` (content CFG 4.0, as ``generate``'s default) is what this stage trains."""
        head = _head(batch, num)
        pipe = self.pipeline(autoencoder=self.autoencoder, motion_model=None)
        label = self._labels(head, getattr(self.denoiser, "num_classes", None))
        text = self._captions(head)
        b = len(label) if label is not None else len(text) if text is not None else len(head["video"])
        scale = 4.0 if (label is not None or text is not None) else 1.0
        content = pipe.sample_content(b, label, text, num_steps=self.sample_steps, guidance_scale=scale,
                                      generator=torch.Generator(device="cpu").manual_seed(0), progress=False)
        return pipe.to_pixels(content[:, :, None])  # (num, C, 1, H, W)


class CMDMotionModule(_ConditionalStage):
    """The motion DiT (eq. 8) on motion latents of a frozen autoencoder, given its content frames.

    Args:
        denoiser: a :class:`MotionDiT` whose shapes match the autoencoder's.
        autoencoder, vae: as :class:`CMDContentModule`.
        text_encoder: frozen; its pooled feature (mean over all tokens, ``pool_masked=False``, as the
            official code, or over the tokenizer mask) is the text condition.
        cond_drop_prob: label -> null / text -> zero feature with this probability (10%, as DiT).
        diffusion: ``GaussianDiffusion`` kwargs (DiT's linear 1e-4..0.02, eps).
        lr, betas, scale_lr: Adam (B.3: 1e-4, (0.9, 0.999)).
        motion_scale: the diffusion model works on ``motion_scale * z`` (stored with the model, undone before
            decoding).  1.0 is the official code's (tanh outputs, unscaled); the batch std of ``z`` is logged
            as ``train/motion_latent_std``, and :func:`motion_latent_std` measures it over a data set, so
            that ``1 / std`` can be chosen as in latent diffusion.
    """

    pipeline_component = "motion_model"

    def pipeline_settings(self) -> dict[str, Any]:
        return {"motion_diffusion": self.diffusion_config, "pool_masked": self.hparams.pool_masked,
                "motion_scale": float(self.hparams.motion_scale)}

    def __init__(self, denoiser: MotionDiT, autoencoder: CMDAutoencoder | str, vae: FrameVAE | None = None,
                 text_encoder: TextEncoder | None = None, pool_masked: bool = False,
                 cond_drop_prob: float = 0.1, diffusion: dict[str, Any] | None = None, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), scale_lr: bool = False, nan_policy: str = "raise",
                 motion_scale: float = 1.0):
        super().__init__(diffusion, cond_drop_prob=cond_drop_prob, nan_policy=nan_policy)
        if not motion_scale > 0:
            raise ValueError(f"motion_scale must be > 0, got {motion_scale}")
        self.save_hyperparameters(ignore=["denoiser", "autoencoder", "vae", "text_encoder"])
        self.denoiser = denoiser
        self.autoencoder = load_cmd_autoencoder(autoencoder)
        self.vae, self.text_encoder = vae, text_encoder
        self.freeze_stages()
        ae = self.autoencoder
        if denoiser.motion_shape != ae.motion_shape or denoiser.content_shape != ae.content_shape:
            raise ValueError(f"MotionDiT shapes (motion {denoiser.motion_shape}, content "
                             f"{denoiser.content_shape}) do not fit the autoencoder's (motion "
                             f"{ae.motion_shape}, content {ae.content_shape})")
        if (denoiser.text_dim is None) != (text_encoder is None):
            raise ValueError("a text-conditional MotionDiT (text_dim) needs a text_encoder, and only then")
        if text_encoder is not None and text_encoder.dim != denoiser.text_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != MotionDiT text_dim "
                             f"{denoiser.text_dim}")

    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """Scaled motion latents ``motion_scale * z`` ``(B, D, L, W'+H')`` and the content frame, label and
        pooled text feature (eq. 8)."""
        content, motion = self._encode(batch, sample=sample)
        if sample:  # training batches: the std that motion_scale should normalise
            self.log("train/motion_latent_std", motion.float().std(), batch_size=motion.shape[0],
                     sync_dist=True)
        text = None
        if self.text_encoder is not None:
            text = self.text_encoder.pooled(self._captions(batch), masked=self.hparams.pool_masked)
        cond = {"content": content, "label": self._labels(batch, self.denoiser.num_classes), "text": text}
        return motion * self.hparams.motion_scale, cond

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """Label -> null class and pooled text -> zeros for the dropped samples; the content frame stays."""
        null = self.denoiser.null_label if raw["label"] is not None else None
        return drop_conditions(raw, drop, null, zero=("text",))

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """The first ``num`` batch videos re-animated: motion sampled for their own content frames (and
        labels / captions), decoded with the frozen autoencoder, ``(num, C, L, H, W)`` pixels.

        The motion stage has no content model, so the CMD pipeline's ``generate`` (content frame first)
        does not apply; animating the batch's own content frames shows the motion model alone."""
        head = _head(batch, num)
        content, _ = self._encode(head, sample=False)
        pipe = self.pipeline(content_model=None)
        z = pipe.sample_motion(content, self._labels(head, self.denoiser.num_classes), self._captions(head),
                               num_steps=self.sample_steps,
                               generator=torch.Generator(device="cpu").manual_seed(0), progress=False)
        return pipe.to_pixels(self.autoencoder.decode(content, z))


@torch.no_grad()
def cache_latents(autoencoder: CMDAutoencoder, items: list[dict[str, Any]], vae: FrameVAE | None = None,
                      batch_size: int = 64) -> list[dict[str, Any]]:
    """Add ``content_frame`` ``(C, H, W)`` and ``motion_latent`` ``(D, L, W'+H')`` to each item and drop
    ``video``: the content and motion stages then skip the frozen autoencoder at every step.

    The encodings are deterministic (SD VAE posterior means in latent mode), so the stages lose the VAE's
    posterior sampling.  Worth it on a CPU, where the autoencoder pass costs more than a DiT step.
    """
    autoencoder = autoencoder.eval()

    def encode(video: torch.Tensor) -> dict[str, torch.Tensor]:
        content, motion = autoencoder.encode(vae.encode(video, sample=False) if vae is not None else video)
        return {"content_frame": content, "motion_latent": motion}

    return encode_items(items, encode, batch_size)


def motion_latent_std(items: list[dict[str, Any]]) -> float:
    """Std of the ``motion_latent`` entries of :func:`cache_latents` items (all elements pooled);
    ``1 / std`` is the ``motion_scale`` that gives the motion DiT unit-variance data."""
    if not items or "motion_latent" not in items[0]:
        raise ValueError("give items with 'motion_latent' (from cache_latents)")
    return float(torch.stack([item["motion_latent"] for item in items]).double().std())
