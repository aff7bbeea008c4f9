"""Tiny models for the CLI tests: a 3D conv autoencoder LightningModule and a save_pretrained generator."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from videogen.core.persistence import SavableModule
from videogen.core.pipeline import VideoPipeline


class TinyVideoAE(pl.LightningModule):
    """A one-level 3D conv autoencoder on ``batch["video"]`` (B, 3, T, H, W); reconstructs with MSE."""

    def __init__(self, channels: int = 4, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Conv3d(3, channels, 3, stride=(1, 2, 2), padding=1)
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2)),
                                     nn.Conv3d(channels, 3, 3, padding=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(torch.relu(self.encoder(video))))

    def _loss(self, batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self(batch["video"]), batch["video"])

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch, batch_idx):
        return self(batch["video"])

    def sample_videos(self, batch, num: int) -> torch.Tensor:
        return self(batch["video"][:num])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class TinyGain(nn.Module, SavableModule):
    """A one-parameter network: the component a user's own pipeline saves (``config.json`` + safetensors)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((), float(init)))


class TinyGenerator(VideoPipeline):
    """Image-to-video toy on the shared protocol: repeats the first frame ``num_frames`` times, shifted one
    pixel per frame (a user's own pipeline class: defining it registers it, so ``model_index.json`` may
    name it)."""

    conditions = ("image",)
    required_conditions = ("image",)
    components = {"scale": "scale"}

    def __init__(self, num_frames: int = 4, scale: TinyGain | None = None) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.scale = scale if scale is not None else TinyGain()

    def _generate(self, *, image, label, text, batch, num_frames, num_steps, sampler, guidance_scale,
                  generator, progress):
        frames = [torch.roll(image, shifts=k, dims=-1) for k in range(self.num_frames)]
        return (self.scale.gain * torch.stack(frames, dim=2)).clamp(-1, 1)  # (B, C, H, W) -> (B, C, T, H, W)
