"""EMA and sample-video logging callbacks, on tiny modules trained for a few CPU steps."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from videogen.core.callbacks import EMA, VideoSampleLogger, video_contact_sheet


class _Linear(pl.LightningModule):
    """y = W x regression with plain SGD, so every step visibly changes the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class _Recorder(pl.Callback):
    """Records the raw weights after every optimizer step."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append(pl_module.net.weight.detach().clone())


def _loader(n: int = 12, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return DataLoader(TensorDataset(x, x[:, :2] * 3.0 - 1.0), batch_size=batch_size)


def _trainer(tmp_path, callbacks, **kw) -> pl.Trainer:
    defaults = dict(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    return pl.Trainer(callbacks=callbacks, **(defaults | kw))


def test_ema_without_warmup_matches_hand_computed_average(tmp_path):
    torch.manual_seed(0)
    module, recorder, decay = _Linear(), _Recorder(), 0.8
    trainer = _trainer(tmp_path, [recorder, EMA(decay=decay, warmup=False)], max_steps=3)
    trainer.fit(module, _loader())
    w1, w2, w3 = recorder.weights
    assert not torch.allclose(w1, w3)  # training moved the weights
    # the first update copies, later ones blend: e1 = w1, e_k = d * e_{k-1} + (1 - d) * w_k
    expected = decay * (decay * w1 + (1 - decay) * w2) + (1 - decay) * w3
    torch.testing.assert_close(module.net.weight, expected)  # the average is copied in at train end


def test_ema_warmup_follows_ldm_and_forgets_the_initial_weights(tmp_path):
    """d_n = min(decay, (1 + n) / (10 + n)): with decay 0.9999, 200 steps leave ~5% of the first weights
    (without warm-up: 98%)."""
    ema = EMA(decay=0.9999)
    decays = []
    for n in range(4):
        ema.num_updates = n
        decays.append(ema.current_decay())
    assert decays == [0.0, 2 / 11, 3 / 12, 4 / 13]
    keep = 1.0
    for n in range(1, 200):
        ema.num_updates = n
        keep *= ema.current_decay()
    assert keep < 0.06
    torch.manual_seed(0)
    module, recorder = _Linear(), _Recorder()
    trainer = _trainer(tmp_path, [recorder, EMA(decay=0.9)], max_steps=3)
    trainer.fit(module, _loader())
    w1, w2, w3 = recorder.weights
    e = w1
    for n, w in ((1, w2), (2, w3)):
        d = min(0.9, (1 + n) / (10 + n))
        e = d * e + (1 - d) * w
    torch.testing.assert_close(module.net.weight, e)


class _HalfFrozen(_Linear):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = torch.nn.Linear(3, 3).requires_grad_(False)


def test_ema_averages_trainable_parameters_only_and_checkpoints_both(tmp_path):
    torch.manual_seed(0)
    module, recorder, decay = _HalfFrozen(), _Recorder(), 0.5
    ema = EMA(decay=decay, update_every_n_steps=2, warmup=False)
    trainer = _trainer(tmp_path, [recorder, ema], max_steps=4)
    trainer.fit(module, _loader(n=16))
    assert sorted(ema._shadow) == ["net.bias", "net.weight"]  # the frozen layer is not copied
    w = recorder.weights
    expected = decay * w[0] + (1 - decay) * w[2]  # updates after 0-based steps 0 and 2 only
    torch.testing.assert_close(module.net.weight, expected)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    torch.testing.assert_close(ckpt["state_dict"]["net.weight"], expected)
    assert "frozen.weight" in ckpt["state_dict"] and "frozen.weight" not in ckpt["current_model_state"]


class _EMAProbe(_Linear):
    """Records the weights seen by validation and by the sample logger."""

    seen: list

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.seen.append(("val", self.net.weight.detach().clone()))

    def sample_videos(self, batch, num):
        self.seen.append(("sample", self.net.weight.detach().clone()))
        return torch.zeros(num, 3, 2, 4, 4)


def test_validation_and_sample_logger_see_the_ema_weights(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    torch.manual_seed(0)
    module, recorder = _EMAProbe(), _Recorder()
    module.seen = []
    ema = EMA(decay=0.9)
    # the logger comes first in the list: it still samples with the average (swapped back at
    # on_validation_end)
    trainer = _trainer(tmp_path, [VideoSampleLogger(num_samples=1), recorder, ema],
                       logger=TensorBoardLogger(tmp_path, name="tb"), max_epochs=1, limit_train_batches=3,
                       limit_val_batches=1, num_sanity_val_steps=0)
    loader = _loader()
    trainer.fit(module, loader, loader)
    kinds = [k for k, _ in module.seen]
    assert kinds == ["val", "sample"]
    average = ema._shadow["net.weight"]
    for _, weight in module.seen:
        torch.testing.assert_close(weight, average)
    assert not torch.allclose(average, recorder.weights[-1])  # the raw weights differ


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.0)


def test_contact_sheet_places_sample_rows_and_frame_columns():
    b, c, t, h, w = 2, 3, 4, 5, 6
    videos = torch.full((b, c, t, h, w), -1.0)
    videos[1, :, 2] = 1.0  # second sample, third frame is white
    sheet = video_contact_sheet(videos)
    assert sheet.shape == (c, b * h, t * w) and sheet.dtype == torch.uint8
    assert sheet[:, h:, 2 * w : 3 * w].min() == 255
    assert int(sheet.sum()) == 255 * c * h * w
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        video_contact_sheet(videos[0])


class _Sampler(_Linear):
    def sample_videos(self, batch, num):
        assert not self.training and not torch.is_grad_enabled()
        return torch.rand(num + 1, 3, 4, 8, 10) * 2 - 1  # one too many: the logger trims


def test_video_sample_logger_writes_an_event_file(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = _trainer(
        tmp_path, [VideoSampleLogger(num_samples=2)], logger=logger, max_epochs=1,
        limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
    )
    loader = _loader()
    trainer.fit(_Sampler(), loader, loader)
    logger.experiment.flush()
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert "samples/video" in acc.Tags()["images"]  # an animated GIF, no moviepy needed
    (image,) = acc.Images("samples/contact_sheet")
    assert (image.height, image.width) == (2 * 8, 4 * 10)
