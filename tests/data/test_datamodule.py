"""videogen.data.datamodule: splits, batches, skip reporting, and instantiation from a LightningCLI-style
config."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch.utils.data import TensorDataset

from videogen.data import JsonCaptionVideos, SyntheticVideoDataset, VideoDataModule


def test_val_fraction_split_is_seeded_and_batches_collate():
    ds = SyntheticVideoDataset(20, num_frames=4, size=16)
    dm = VideoDataModule(ds, val_fraction=0.25, batch_size=4, split_seed=7)
    dm.setup("fit")
    assert len(dm.train_dataset) == 15 and len(dm.val_dataset) == 5
    again = VideoDataModule(ds, val_fraction=0.25, split_seed=7)
    again.setup("fit")
    assert list(dm.val_dataset.indices) == list(again.val_dataset.indices)
    assert not set(dm.val_dataset.indices) & set(dm.train_dataset.indices)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 4, 16, 16) and batch["label"].shape == (4,)
    assert batch["trajectory"].shape == (4, 4, 2)
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 4
    val_indices = torch.cat([b["index"] for b in dm.val_dataloader()])
    assert sorted(val_indices.tolist()) == sorted(dm.val_dataset.indices)  # not shuffled, all items
    assert dm.test_dataloader() == [] and dm.skipped_counts() == {"train": 0}


def test_empty_and_invalid_inputs_raise():
    with pytest.raises(ValueError, match="training dataset TensorDataset is empty"):
        VideoDataModule(TensorDataset(torch.zeros(0))).setup("fit")
    with pytest.raises(ValueError, match="val_fraction"):
        VideoDataModule(SyntheticVideoDataset(4), val_fraction=1.0)
    with pytest.raises(ValueError, match="not both"):
        VideoDataModule(SyntheticVideoDataset(4), val_dataset=SyntheticVideoDataset(2), val_fraction=0.5)


def test_skipped_counts_reported_at_teardown(tmp_path, make_video, caplog):
    make_video(tmp_path / "a.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "caps.json").write_text(json.dumps([{"video": "broken.mp4", "caption": "b"},
                                                    {"video": "a.mp4", "caption": "a"}]))
    ds = JsonCaptionVideos(tmp_path, tmp_path / "caps.json", num_frames=4)
    dm = VideoDataModule(ds, test_dataset=SyntheticVideoDataset(2), batch_size=2, shuffle=False)
    with pytest.warns(UserWarning, match="broken.mp4"):
        batch = next(iter(dm.train_dataloader()))
    assert batch["caption"] == ["a", "a"]
    assert dm.skipped_counts() == {"train": 1, "test": 0}
    with caplog.at_level(logging.INFO, logger="videogen.data.datamodule"):
        dm.teardown("fit")
    assert "skipped 1 unreadable items" in caplog.text


def test_lightning_cli_style_config_instantiates_datasets():
    from jsonargparse import ArgumentParser

    config = {
        "data": {
            "dataset": {
                "class_path": "videogen.data.SyntheticVideoDataset",
                "init_args": {"num_videos": 12, "num_frames": 4, "size": 16, "directions": 8, "seed": 3},
            },
            "val_dataset": {"class_path": "videogen.data.synthetic.SyntheticVideoDataset",
                            "init_args": {"num_videos": 4, "seed": 99}},
            "batch_size": 3,
        }
    }
    parser = ArgumentParser()
    parser.add_class_arguments(VideoDataModule, "data")
    cfg = parser.instantiate_classes(parser.parse_object(config))
    dm = cfg.data
    assert isinstance(dm, VideoDataModule) and isinstance(dm.dataset, SyntheticVideoDataset)
    assert dm.dataset.directions == 8 and len(dm.dataset) == 12 and dm.batch_size == 3
    assert torch.equal(dm.dataset[5]["video"], SyntheticVideoDataset(12, 4, 16, 3, 8)[5]["video"])
    dm.setup("fit")
    assert len(dm.val_dataset) == 4


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resume_is_exact_from_a_checkpoint_at_every_step(tmp_path):
    """A checkpoint after every step of 3 epochs of 4 batches; a run resumed from each (the last batch of
    an epoch included) trains the same steps, names the same next checkpoint and ends bit-identical."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from videogen.core.training import TrainingModule

    class Noisy(TrainingModule):  # draws from the per-step seeded stream: any lost or repeated batch shows
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            x = batch["video"].mean(dim=(2, 3, 4))  # (B, 3)
            return (self.net(x) + torch.randn(x.shape[0], 1)).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def run(root, ckpt=None):
        pl.seed_everything(0)
        module = Noisy()
        data = VideoDataModule(SyntheticVideoDataset(16, num_frames=2, size=16), batch_size=4)  # 4 batches
        save = ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1, filename="{epoch}-{step}")
        trainer = pl.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[save], default_root_dir=root)
        trainer.fit(module, data, ckpt_path=ckpt)
        return module, trainer.global_step, sorted(p.name for p in root.glob("*.ckpt"))

    straight, steps, names = run(tmp_path / "straight")
    assert steps == 12
    for k in range(1, 12):
        (ckpt,) = (tmp_path / "straight").glob(f"*-step={k}.ckpt")
        resumed, steps, written = run(tmp_path / f"from{k}", ckpt)
        assert steps == 12 and written == [n for n in names if int(n.split("step=")[1][:-5]) > k], k
        for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(p, q), f"{name} differs after resuming from step {k}"
