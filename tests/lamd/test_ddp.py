"""Both LaMD stages train under the DDP strategy their paper recipes name, with 2 CPU processes (gloo),
through the real CLI (Lightning relaunches ``python -m videogen`` per rank): 2 optimiser steps per rank
at least (unused-parameter errors appear only at the second step), the GAN switched on in stage 1, EMA
in stage 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests._recipes import RECIPES, fit_ddp
from videogen.lamd import MCDVAE

pytestmark = pytest.mark.ddp


def _paper_strategy(stage: str) -> str:
    """The one strategy every paper recipe of ``stage`` names (the tiny recipes run on one device)."""
    strategies = {yaml.safe_load(p.read_text())["trainer"]["strategy"]
                  for p in RECIPES.glob(f"lamd_*_{stage}.yaml") if "tiny" not in p.name}
    assert len(strategies) == 1, strategies
    return strategies.pop()


def _fit_ddp(workdir: Path, recipe: str, extra: list[str]) -> dict:
    stage = "mcdvae" if "mcdvae" in recipe else "dmg"
    return fit_ddp(workdir, recipe, _paper_strategy(stage),
                   ["--data.init_args.dataset.init_args.num_videos=32", "--data.init_args.batch_size=8",
                    "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1",
                    "--trainer.limit_val_batches=1", *extra])


def test_mcdvae_trains_under_its_paper_strategy_with_two_processes(tmp_path):
    # 32 videos / (8 x 2 ranks) = 2 batches per rank per epoch, 2 epochs; the GAN starts at generator step 1
    ckpt = _fit_ddp(tmp_path, "lamd_tiny_mcdvae.yaml", ["--model.init_args.disc_start=1"])
    assert int(ckpt["state_dict"]["gen_steps"]) == 4
    assert ckpt["global_step"] == 4 + 3  # generator steps + discriminator steps (from the second batch on)


def test_dmg_trains_under_its_paper_strategy_with_two_processes(tmp_path):
    torch.manual_seed(0)
    stage1 = tmp_path / "mcdvae"
    MCDVAE(resolution=32, num_frames=8, spatial_downsample=4, z_channels=3, image_channels=16,
           motion_channels=8, decoder_channels=16, channel_mult=[1, 2, 4], num_res_blocks=1, folded_frames=4,
           norm_groups=8).save_pretrained(stage1)
    ckpt = _fit_ddp(tmp_path / "run", "lamd_tiny_dmg.yaml", [f"--model.init_args.mcdvae={stage1}"])
    assert ckpt["global_step"] == 4 and "current_model_state" in ckpt  # EMA on
