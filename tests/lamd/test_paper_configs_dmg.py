"""The DMG recipes build the paper's networks: Table 2 parameter counts (meta device, within 10%), Table 2
hyperparameters, and latents/content widths that fit the matching stage-1 MCD-VAE recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from videogen.core.training import effective_lr
from videogen.lamd.dmg import MotionGenerator
from videogen.lamd.mcdvae import MCDVAE
from videogen.lamd.pipeline import check_stages

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# name: (Table 2 N_params, lr, epochs, num_classes, text-guided)
TABLE2 = {
    "bair": (241e6, 2e-5, 400, None, False),
    "landscape": (241e6, 2e-5, 400, None, False),
    "natops": (282e6, 2e-6, 400, 24, False),
    "mug128": (282e6, 2e-6, 600, 7, False),
    "mug256": (282e6, 2e-6, 600, 7, False),
    "catergen": (282e6, 2e-5, 400, None, True),
}


def _init_args(name: str, stage: str) -> tuple[dict, dict]:
    cfg = yaml.safe_load((RECIPES / f"lamd_{name}_{stage}.yaml").read_text())
    return cfg, cfg["model"]["init_args"]


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_dmg_recipe_matches_table2(name):
    params, lr, epochs, classes, text = TABLE2[name]
    cfg, args = _init_args(name, "dmg")
    dmg_args = args["dmg"]["init_args"]
    with torch.device("meta"):
        dmg = MotionGenerator(**dmg_args)
        stage1 = MCDVAE(**_init_args(name, "mcdvae")[1]["autoencoder"]["init_args"])
    n = sum(p.numel() for p in dmg.parameters())
    assert abs(n - params) / params < 0.10, f"{name}: {n / 1e6:.1f}M vs Table 2 {params / 1e6:.0f}M"
    assert (dmg_args["model_channels"], dmg_args["channel_mult"], dmg_args["num_res_blocks"]) == (192,
                                                                                                  [1, 2, 4],
                                                                                                  2)
    assert dmg_args["attention_resolutions"] == [1, 2, 4] and dmg_args["context_dim"] == 512
    assert dmg_args["dropout"] == 0.2 and dmg.num_classes == classes and (dmg.text_dim is not None) == text
    assert dmg_args.get("cond_transformer_dim") == (512 if classes or text else None)
    assert args["lr"] == lr and cfg["trainer"]["max_epochs"] == epochs
    # Table 2's rate is the base rate where it is 2e-6 (x96 = 1.92e-4) and the effective one where 2e-5
    effective = effective_lr(lr, cfg["data"]["init_args"]["batch_size"], cfg["trainer"]["devices"]) \
        if args["scale_lr"] else lr
    assert effective == pytest.approx(1.92e-4 if lr == 2e-6 else 2e-5)
    # the paper's "linear" is the LDM codebase's: sqrt-spaced 0.0015..0.0195
    assert args["diffusion"] == {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
                                 "beta_start": 0.0015, "beta_end": 0.0195, "prediction_type": "epsilon",
                                 "loss_type": "l2"}
    (ema,) = [c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith(".EMA")]
    assert ema["init_args"]["decay"] == 0.9999 and ema["init_args"].get("warmup", True)
    assert cfg["trainer"]["strategy"] == "ddp"  # trained with these 2 processes in tests/lamd/test_ddp.py
    assert args["sample_steps"] == 200
    assert cfg["data"]["init_args"]["batch_size"] * cfg["trainer"]["devices"] == 96
    assert args["mcdvae"] == f"outputs/lamd_{name}_mcdvae/checkpoints/last.ckpt"
    # The DMG fits the stage-1 recipe's latents and content features (d'), as DMGModule will check.
    assert stage1.latent_shape == (dmg.z_channels, dmg.latent_size, dmg.latent_size)
    assert stage1.content_dim == dmg.content_dim


def test_tiny_recipe_fits_the_tiny_stage1_recipe():
    _, args = _init_args("tiny", "dmg")
    dmg = MotionGenerator(**args["dmg"]["init_args"])
    check_stages(MCDVAE(**_init_args("tiny", "mcdvae")[1]["autoencoder"]["init_args"]), dmg, None)
    assert dmg.num_classes == 4
