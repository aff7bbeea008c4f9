"""CMD recipes: the paper recipes' networks on the meta device (parameter counts, stage shapes, paper
settings), and the tiny recipes through the CLI: the three stages chained, exact resume, and 2-process
DDP under the paper recipes' strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests._recipes import RECIPES, assert_same_checkpoints, fit, fit_ddp

PAPER = {"ucf": ("cmd_ucf_autoencoder.yaml", "cmd_ucf_content.yaml", "cmd_ucf_motion.yaml"),
         "webvid": ("cmd_webvid.yaml", "cmd_webvid_content.yaml", "cmd_webvid_motion.yaml"),
         "webvid512": ("cmd_webvid512_autoencoder.yaml", "cmd_webvid512_content.yaml",
                       "cmd_webvid512_motion.yaml")}
TINY = ("cmd_tiny_autoencoder.yaml", "cmd_tiny_content.yaml", "cmd_tiny_motion.yaml")


def _cfg(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def _net(block: dict):
    from videogen.cli import _recipe_class

    return _recipe_class(block["class_path"])(**block["init_args"])


@pytest.mark.parametrize("setting", sorted(PAPER))
def test_paper_recipes_match_the_paper(setting):
    ae_r, content_r, motion_r = (_cfg(n) for n in PAPER[setting])
    with torch.device("meta"):
        ae = _net(ae_r["model"]["init_args"]["autoencoder"])
        motion = _net(motion_r["model"]["init_args"]["denoiser"])
    assert sum(p.numel() for p in ae.parameters()) == (47_359_510 if setting == "ucf" else 47_365_656)
    # spec section 1: motion latents 8x16x64 (UCF pixels, SD 1.5 512x512) and 8x16x96 (SD 2.1 512x1024)
    assert ae.motion_shape == ((8, 16, 96) if setting == "webvid" else (8, 16, 64))
    assert motion.motion_shape == ae.motion_shape and motion.content_shape == ae.content_shape
    assert sum(motion.num_tokens) == 512  # Table 6: 256 + 256 (UCF, 512x512), 384 + 128 (512x1024)
    n_motion = sum(p.numel() for p in motion.parameters())
    # spec: XL/2 + text proj.
    expected = {"ucf": 457.4e6, "webvid": 675.2e6, "webvid512": 674.4e6 + 1.18e6}[setting]
    assert abs(n_motion / expected - 1) < 0.002
    if setting == "ucf":
        with torch.device("meta"):
            content = _net(content_r["model"]["init_args"]["denoiser"])
        assert abs(sum(p.numel() for p in content.parameters()) / 673.8e6 - 1) < 0.001  # DiT-XL/2
    else:
        assert content_r["model"]["init_args"]["denoiser"]["class_path"] == "videogen.core.sd.SDUNet"
    # B.3: Adam 1e-5 (0.5, 0.9), batch 24 for the autoencoder; 1e-4, batch 256, EMA 0.999 for both DiTs
    ae_args = ae_r["model"]["init_args"]
    assert (ae_args["lr"], ae_args["betas"]) == (1e-5, [0.5, 0.9])
    assert ae_r["data"]["init_args"]["batch_size"] * ae_r["trainer"]["devices"] == 24
    for recipe in (content_r, motion_r):
        args, trainer = recipe["model"]["init_args"], recipe["trainer"]
        assert (args["lr"], args["betas"], args["cond_drop_prob"]) == (1e-4, [0.9, 0.999], 0.1)
        batch = recipe["data"]["init_args"]["batch_size"] * trainer["devices"] * trainer.get("num_nodes", 1)
        assert batch == 256
        (ema,) = [c for c in trainer["callbacks"] if c["class_path"].endswith(".EMA")]
        assert ema["init_args"]["decay"] == 0.999
    for recipe in (ae_r, content_r, motion_r):
        assert recipe["trainer"]["strategy"] == "ddp"
    for recipe in (content_r, motion_r):  # later stages name the checkpoint stage 1 writes
        (ckpt_cb,) = [c for c in ae_r["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
        assert recipe["model"]["init_args"]["autoencoder"] == ckpt_cb["init_args"]["dirpath"] + "/last.ckpt"


DDP_ARGS = ["--data.init_args.dataset.init_args.num_videos=32", "--data.init_args.batch_size=8",
            "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1"]
COMMON = ["--data.init_args.dataset.init_args.num_videos=16", "--data.init_args.batch_size=8",
          "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1", "--trainer.logger=false",
          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _fit(workdir: Path, recipe: str, epochs: int, extra=(), ckpt: Path | None = None) -> Path:
    fit(workdir, recipe, [*COMMON, *extra], epochs, ckpt)
    stage = recipe.split("_")[-1].split(".")[0]
    return workdir / "outputs" / f"cmd_tiny_{stage}" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def tiny_stage1(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    return _fit(work, TINY[0], epochs=1)


def test_tiny_recipes_chain_into_a_pipeline(tiny_stage1):
    from videogen.cmd import CMD

    work = tiny_stage1.parents[3]
    content = _fit(work, TINY[1], epochs=1)
    motion = _fit(work, TINY[2], epochs=1)
    pipe = CMD.from_checkpoints(content, motion)
    video = pipe.generate(label=[0, 1], num_steps=2, content_steps=2, progress=False)
    assert video.shape == (2, 3, 8, 32, 32)


@pytest.mark.parametrize("recipe", TINY)
def test_every_tiny_stage_resumes_bit_identically(recipe, tiny_stage1, tmp_path):
    extra = [] if recipe == TINY[0] else [f"--model.init_args.autoencoder={tiny_stage1}"]
    straight = _fit(tmp_path / "straight", recipe, 4, extra)
    half = _fit(tmp_path / "resumed", recipe, 2, extra)
    assert_same_checkpoints(straight, _fit(tmp_path / "resumed", recipe, 4, extra, ckpt=half))


@pytest.mark.ddp
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_every_stage_trains_under_the_paper_strategy_with_two_processes(stage, tiny_stage1, tmp_path):
    strategies = {_cfg(PAPER[s][stage])["trainer"]["strategy"] for s in PAPER}
    assert len(strategies) == 1
    extra = [f"--model.init_args.autoencoder={tiny_stage1}"] if stage else []
    ckpt = fit_ddp(tmp_path, TINY[stage], strategies.pop(), [*DDP_ARGS, *extra])
    assert ckpt["global_step"] == 4  # 2 batches x 2 epochs per rank
