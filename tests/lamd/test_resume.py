"""Exact resume of both LaMD stages through the CLI: a fit stopped at an epoch boundary and resumed with
``--ckpt_path`` ends bit-identical to an uninterrupted one (weights, EMA, optimiser state), with the
tiny recipes on 16 videos (2 steps per epoch), validation every epoch and, in stage 1, the GAN on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._recipes import assert_same_checkpoints, fit
from videogen.lamd import MCDVAE

COMMON = ["--data.init_args.dataset.init_args.num_videos=16", "--data.init_args.batch_size=8",
          "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1", "--trainer.logger=false",
          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _fit(workdir: Path, recipe: str, extra: list[str], epochs: int, ckpt: Path | None = None) -> Path:
    fit(workdir, recipe, [*COMMON, *extra], epochs, ckpt)
    (last,) = workdir.rglob("last.ckpt")
    return last


def _resume_matches(tmp_path: Path, recipe: str, extra: list[str]) -> None:
    straight = _fit(tmp_path / "straight", recipe, extra, epochs=4)
    half = _fit(tmp_path / "resumed", recipe, extra, epochs=2)
    resumed = _fit(tmp_path / "resumed", recipe, extra, epochs=4, ckpt=half)
    assert_same_checkpoints(straight, resumed, optimizer=True)


def test_mcdvae_resume_is_bit_identical(tmp_path):
    # the GAN starts at generator step 3 of 8: both optimisers and the discriminator are in play
    _resume_matches(tmp_path, "lamd_tiny_mcdvae.yaml", ["--model.init_args.disc_start=3"])


def test_dmg_resume_is_bit_identical_with_ema(tmp_path):
    torch.manual_seed(0)
    stage1 = tmp_path / "mcdvae"
    MCDVAE(resolution=32, num_frames=8, spatial_downsample=4, z_channels=3, image_channels=16,
           motion_channels=8, decoder_channels=16, channel_mult=[1, 2, 4], num_res_blocks=1, folded_frames=4,
           norm_groups=8).save_pretrained(stage1)
    _resume_matches(tmp_path, "lamd_tiny_dmg.yaml", [f"--model.init_args.mcdvae={stage1}"])


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")
def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    """``every_n_train_steps`` checkpoints: the resumed run continues the interrupted epoch in the same order
    (VideoDataModule's loader is stateful to Lightning) and ends bit-identical; GAN on from step 2."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from videogen.data import SyntheticVideoDataset, VideoDataModule
    from videogen.lamd import MCDVAEModule

    def run(root: Path, ckpt: Path | None = None) -> MCDVAEModule:
        pl.seed_everything(0)
        ae = MCDVAE(resolution=32, num_frames=8, image_channels=16, motion_channels=8, decoder_channels=16,
                    num_res_blocks=1, folded_frames=4, norm_groups=8)
        module = MCDVAEModule(ae, lpips_weight=0, disc_start=2, disc_channels=8, disc_layers=1, lr=1e-3)
        # 4 batches/epoch
        data = VideoDataModule(SyntheticVideoDataset(16, num_frames=8, size=32), batch_size=4)
        save = ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1, filename="{step}")
        trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[save], default_root_dir=root)
        trainer.fit(module, data, ckpt_path=ckpt)
        return module

    straight = run(tmp_path / "a")
    # global step 4 = generator steps after batches 0, 1, 2 + the discriminator step of batch 2: mid-epoch 0
    resumed = run(tmp_path / "b", ckpt=tmp_path / "a" / "step=4.ckpt")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after a mid-epoch resume"
