"""`videogen` command line: LightningCLI recipes (strict keys), tool commands, python -m videogen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from videogen import load_pretrained
from videogen.cli import main
from videogen.core.video import read_video, write_video

from .tiny_module import TinyGenerator


def _recipe(tmp_path: Path, **overrides) -> Path:
    """A tiny recipe: TinyVideoAE on 8 synthetic 4x16x16 videos through videogen.data.VideoDataModule."""
    recipe = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path / "run"),
            "max_steps": 2,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [{"class_path": "videogen.core.callbacks.EMA", "init_args": {"decay": 0.9}}],
        },
        "model": {"class_path": "tests.cli.tiny_module.TinyVideoAE",
                  "init_args": {"channels": 4, "lr": 0.01}},
        "data": {
            "class_path": "videogen.data.VideoDataModule",
            "init_args": {
                "dataset": {
                    "class_path": "videogen.data.SyntheticVideoDataset",
                    "init_args": {"num_videos": 8, "num_frames": 4, "size": 16},
                },
                "batch_size": 2,
                "val_fraction": 0.25,
            },
        },
    }
    for dotted, value in overrides.items():
        node = recipe
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_fit_then_validate_from_a_recipe(tmp_path):
    recipe = _recipe(tmp_path)
    assert main(["fit", "--config", str(recipe)]) == 0
    ckpts = sorted((tmp_path / "run").rglob("*.ckpt"))
    assert len(ckpts) == 1
    ckpt = torch.load(ckpts[0], weights_only=True)
    assert ckpt["global_step"] == 2 and "current_model_state" in ckpt  # the EMA callback ran from the recipe
    assert (tmp_path / "run" / "config.yaml").is_file()  # SaveConfigCallback wrote the resolved config
    # a second run in the same directory overwrites config.yaml instead of failing; validate a checkpoint
    assert main(["validate", "--config", str(recipe), f"--ckpt_path={ckpts[0]}"]) == 0


def test_videogen_cli_class_is_a_lazy_lightning_cli():
    from lightning.pytorch.cli import LightningCLI

    import videogen.cli

    assert issubclass(videogen.cli.VideogenCLI, LightningCLI)


def test_fast_dev_run_override_on_the_command_line(tmp_path):
    assert main(["fit", "--config", str(_recipe(tmp_path)), "--trainer.fast_dev_run=true"]) == 0


@pytest.mark.parametrize(
    ("override", "bad_key"),
    [
        ({"model.init_args.chanels": 4}, "chanels"),  # typo in a model hyperparameter
        ({"data.init_args.dataset.init_args.num_frame": 4}, "num_frame"),  # nested dataset argument
        ({"trainer.max_stepz": 3}, "max_stepz"),
    ],
)
def test_unknown_recipe_keys_are_rejected(tmp_path, capsys, override, bad_key):
    assert main(["fit", "--config", str(_recipe(tmp_path, **override))]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("videogen: error: ") and bad_key in last
    assert not (tmp_path / "run").exists()  # nothing ran


def test_python_m_videogen_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "videogen", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for command in ("fit", "validate", "test", "predict", "demo", "bench", "sample", "evaluate"):
        assert f"\n  {command} " in out


@pytest.mark.parametrize("command", ["demo", "bench", "sample", "evaluate"])
def test_tool_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: videogen {command}" in capsys.readouterr().out


def test_unknown_command_and_no_command(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main([]) == 2


def test_demo_dispatches_to_the_lamd_demo(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("videogen.toy.lamd.run_demo", lambda **kw: calls.append(kw))
    assert main(["demo", "--model", "lamd", "--out", str(tmp_path), "--fast", "--seed", "3"]) == 0
    assert calls == [{"out_dir": tmp_path, "seed": 3, "fast": True}]


def test_demo_defaults_to_the_three_model_tour(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("videogen.toy.tour.run_tour", lambda **kw: calls.append(kw))
    assert main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert calls == [{"out_dir": tmp_path, "seed": 3, "fast": False}]


@pytest.mark.slow
def test_demo_fast_end_to_end_writes_videos_and_metrics(tmp_path):
    assert main(["demo", "--model", "lamd", "--out", str(tmp_path), "--fast", "--seed", "3"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["wall_seconds"] > 0
    assert list(tmp_path.glob("*.mp4")) and list(tmp_path.glob("*.png"))


def test_bench_command_runs_one_table(tmp_path, monkeypatch):
    from videogen.bench import harness

    monkeypatch.setattr(harness, "_REGISTRY", {})
    monkeypatch.setattr(harness, "TABLE_MODULES", ())
    harness.register_table("toy", lambda out_dir, quick: [{"quick": quick, "setting": "toy"}])
    harness.register_table("other", lambda out_dir, quick: pytest.fail("not requested"))
    assert main(["bench", "--out", str(tmp_path), "--only", "toy", "--quick", "--no-docs"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["tables"]) == ["toy"] and results["tables"]["toy"]["rows"] == [{"quick": True,
                                                                                        "setting": "toy"}]
    assert "tiny configurations" in (tmp_path / "bench.md").read_text()


def test_sample_loads_a_saved_model_by_its_config_class(tmp_path):
    model_dir = tmp_path / "model"
    TinyGenerator(num_frames=3).save_pretrained(model_dir)
    assert isinstance(load_pretrained(model_dir), TinyGenerator)
    import imageio.v2 as imageio

    image = torch.zeros(32, 32, 3, dtype=torch.uint8)  # decord cannot read back 16x16 mp4s
    image[4:8, 2:6] = 255
    imageio.imwrite(tmp_path / "first.png", image.numpy())
    out = tmp_path / "samples"
    argv = ["sample", "--model", str(model_dir), "--out", str(out), "--image", str(tmp_path / "first.png")]
    assert main([*argv, "--num-samples", "2", "--num-steps", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sample_000.mp4", "sample_001.mp4", "samples.png"]
    frames = read_video(out / "sample_000.mp4")  # (T, H, W, C) uint8
    assert frames.shape == (3, 32, 32, 3)
    assert frames[2, 6, 4:8].float().mean() > 200 and frames[2, 6, 2:4].float().mean() < 60  # shifted by 2 px
    assert main([*argv, "--label", "1"]) == 2  # reported as "videogen: error: ... does not take ['label']"


def test_sample_with_a_saved_lamd_pipeline(tmp_path):
    """The real LaMD save_pretrained layout (model_index.json + mcdvae/ + dmg/) loads and samples,
    class-guided."""
    from videogen.lamd import MCDVAE, LaMD, MotionGenerator

    torch.manual_seed(0)
    mcdvae = MCDVAE(resolution=32, num_frames=4, image_channels=8, motion_channels=8, decoder_channels=8,
                    channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=4, norm_groups=4)
    dmg = MotionGenerator(z_channels=3, latent_size=8, content_dim=mcdvae.content_dim, model_channels=16,
                          channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                          num_head_channels=8, context_dim=16, num_classes=3, cond_transformer_dim=16,
                          cond_transformer_depth=1,
                          cond_transformer_heads=2)
    LaMD(mcdvae, dmg).save_pretrained(tmp_path / "lamd")
    assert isinstance(load_pretrained(tmp_path / "lamd"), LaMD)
    import imageio.v2 as imageio

    imageio.imwrite(tmp_path / "first.png", torch.full((32, 32, 3), 128, dtype=torch.uint8).numpy())
    argv = ["sample", "--model", str(tmp_path / "lamd"), "--out", str(tmp_path / "out"), "--num-steps", "2"]
    assert main(argv) == 2  # videogen: error: LaMD.generate needs --image
    assert main([*argv, "--image", str(tmp_path / "first.png"), "--label", "2", "--num-samples", "1"]) == 0
    assert tuple(read_video(tmp_path / "out" / "sample_000.mp4").shape) == (4, 32, 32, 3)


def test_load_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json not found"):
        load_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"class": "NoSuchModel"}))
    with pytest.raises(ValueError, match="'NoSuchModel' is not a registered videogen class"):
        load_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"class": "os.system", "components": {}}))
    with pytest.raises(ValueError, match="'os.system' is not a registered videogen class"):
        load_pretrained(tmp_path)


def test_evaluate_psnr_between_two_folders(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(2, 3, 4, 32, 32, generator=g) * 2 - 1
    for name, shift in (("real", 0.0), ("same", 0.0), ("darker", -0.5)):
        (tmp_path / name).mkdir()
        for i, v in enumerate(videos):
            write_video(tmp_path / name / f"{i}.mp4", (v + shift).clamp(-1, 1))
    psnr = {}
    for name in ("same", "darker"):
        out = tmp_path / f"{name}.json"
        argv = ["evaluate", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / name), "--metric",
                "psnr"]
        assert main([*argv, "--num-frames", "4", "--out", str(out)]) == 0
        psnr[name] = json.loads(out.read_text())["psnr"]
    assert psnr["same"] > 60 and psnr["darker"] < 15
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["evaluate", "--real", str(tmp_path / "empty"), "--fake", str(tmp_path / "empty"), "--metric",
                 "psnr"]) == 2
    assert "no videos" in capsys.readouterr().err


def test_evaluate_fvd_without_i3d_weights_names_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "empty_cache"))
    assert main(["evaluate", "--real", str(tmp_path), "--fake", str(tmp_path), "--metric", "fvd"]) == 2
    assert "i3d_pretrained_400.pt" in capsys.readouterr().err


def test_ckpt_path_is_checked_before_lightning_reads_it(tmp_path, capsys, monkeypatch):
    """A checkpoint naming another class (here a module beside it that would write a file) is refused
    without importing it; a missing path, a folder, a FIFO and a text file end in one error line."""
    import os

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "__init__.py").write_text("")
    (tmp_path / "dl" / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "dl.payload.M"}},
               tmp_path / "evil.ckpt")
    (tmp_path / "notes.ckpt").write_text("hello")
    os.mkfifo(tmp_path / "fifo.ckpt")
    recipe = _recipe(tmp_path)
    for ckpt, word in (("evil.ckpt", "checkpoint of dl.payload.M"), ("missing.ckpt", "not found"),
                       ("dl", "is a folder"), ("fifo.ckpt", "not a regular file"),
                       ("notes.ckpt", "not a readable checkpoint")):
        assert main(["validate", "--config", str(recipe), f"--ckpt_path={tmp_path / ckpt}"]) == 2, ckpt
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("videogen: error:")]
        assert len(err) == 1 and word in err[0], (ckpt, err)
    assert not marker.exists()


def test_training_values_a_machine_or_an_optimiser_cannot_take_end_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    cases = [(["fit", "--config", str(_recipe(tmp_path)), "--trainer.accelerator=cuda"], "no CUDA device"),
             (["fit", "--config", str(recipes / "lamd_tiny_mcdvae.yaml"), "--model.init_args.lr=-1",
               f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.max_steps=1"],
              "lr must be a finite number > 0")]
    for argv, word in cases:
        if word == "no CUDA device" and torch.cuda.is_available():
            continue
        assert main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("videogen: error:")]
        assert len(err) == 1 and word in err[0], (argv, err)
