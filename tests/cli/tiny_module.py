"""Tiny models for the CLI tests: a 3D conv autoencoder LightningModule and a save_pretrained generator."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from videogen.core.pipeline import VideoPipeline


class TinyVideoAE(pl.LightningModule):
    """A one-level 3D conv autoencoder on ``batch["video"]`` (B, 3, T, H, W); reconstructs with MSE."""

    def __init__(self, channels: int = 4, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Conv3d(3, channels, 3, stride=(1, 2, 2), padding=1)
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2)), nn.Conv3d(channels, 3, 3, padding=1))

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


class TinyGenerator(VideoPipeline):
    """Image-to-video toy on the shared protocol: repeats the first frame ``num_frames`` times, shifted one
    pixel per frame (a user's own model class, found through ``config.json``'s ``"class"``)."""

    conditions = ("image",)
    required_conditions = ("image",)

    def __init__(self, num_frames: int = 4) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.gain = nn.Parameter(torch.ones(()))

    def _generate(self, *, image, label, text, batch, num_frames, num_steps, sampler, guidance_scale, generator,
                  progress):
        frames = [torch.roll(image, shifts=k, dims=-1) for k in range(self.num_frames)]
        return (self.gain * torch.stack(frames, dim=2)).clamp(-1, 1)  # (B, C, H, W) -> (B, C, T, H, W)

    def save_pretrained(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"class": f"{__name__}.TinyGenerator", "num_frames": self.num_frames}
        (directory / "config.json").write_text(json.dumps(config))
        torch.save(self.state_dict(), directory / "weights.pt")

    @classmethod
    def from_pretrained(cls, directory) -> TinyGenerator:
        config = json.loads((Path(directory) / "config.json").read_text())
        model = cls(num_frames=config["num_frames"])
        model.load_state_dict(torch.load(Path(directory) / "weights.pt", weights_only=True))
        return model
