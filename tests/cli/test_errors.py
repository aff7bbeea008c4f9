"""Errors a user can cause end as one ``videogen: error: ...`` line on stderr with exit code 2, for every
subcommand; ``--debug`` shows the traceback; unexpected errors keep theirs."""

from __future__ import annotations

from pathlib import Path

import diffusers  # noqa: F401  (imported at collection: see below)
import imageio.v2 as imageio
import lightning.pytorch  # noqa: F401
import numpy as np
import pytest
import torch

from tests.lamd._dmg_tiny import randomize, tiny_dmg, tiny_mcdvae
from videogen.cli import main
from videogen.lamd import LaMD

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# Lightning's and diffusers' loggers write to the stderr they see when first imported; imported inside a
# test, that is the test's capsys stream, closed when the test ends, and every later test's log line then
# prints a "--- Logging error ---" traceback.  Imported above, at collection, they keep pytest's own.


def _error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    assert err[-1].startswith("videogen: error: "), err[-1]
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(scope="module")
def class_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lamd") / "model"
    LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=4))).save_pretrained(path)
    return path


def test_fit_missing_weight_file_is_unwrapped_from_jsonargparse(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    line = _error_line(capsys, ["fit", "--config", str(RECIPES / "lamd_bair_mcdvae.yaml")])
    assert "alexnet-owt-7be5be79.pth" in line and "Union subtypes" not in line


PAPER_RECIPES = sorted(p.name for p in RECIPES.glob("*.yaml") if "tiny" not in p.name)
#: what the error line must say, where more than "not found" is checked (names that look like hub ids)
EXPECTED = {
    **{r: "Stable Diffusion checkpoint 'checkpoints/stable-diffusion-" for r in PAPER_RECIPES
       if r.startswith("cmd_webvid") or r == "lvdm_text2video.yaml"},
    "lamd_catergen_dmg.yaml": "text encoder 'checkpoints/clip-vit-base-patch32' not found",
    "lvdm_sky_prediction.yaml": "LVDMShortModule checkpoint outputs/lvdm_sky_short/checkpoints/last.ckpt not "
                                "found: train it first (videogen fit --config recipes/lvdm_sky_short.yaml "
                                "writes it)",
}


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_every_paper_recipe_without_its_files_ends_in_one_error_line(capsys, monkeypatch, tmp_path, recipe):
    # an empty directory and an empty Hugging Face cache: no data, weights or earlier-stage checkpoints
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    line = _error_line(capsys, ["fit", "--config", str(RECIPES / recipe)])
    assert "not found" in line and "Union subtypes" not in line, line
    assert EXPECTED.get(recipe, "not found") in line, line


def test_fit_missing_stage1_checkpoint_names_the_recipe(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    line = _error_line(capsys, ["fit", "--config", str(RECIPES / "lamd_tiny_dmg.yaml")])
    assert "recipes/lamd_tiny_mcdvae.yaml" in line


def test_fit_missing_data_root(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    line = _error_line(capsys, ["fit", "--config", str(RECIPES / "lamd_landscape_mcdvae.yaml"),
                                "--model.init_args.lpips_weight=0"])
    assert "data/sky" in line


def test_fit_bad_recipe_value_and_key(capsys):
    line = _error_line(capsys,
                       ["fit", "--config", str(RECIPES / "lamd_tiny_mcdvae.yaml"),
                        "--trainer.max_epochs=many"])
    assert line.startswith('videogen: error: Parser key "trainer.max_epochs": Expected a <class \'int\'>')
    line = _error_line(capsys,
                       ["fit", "--config", str(RECIPES / "lamd_tiny_mcdvae.yaml"),
                        "--model.init_args.betta=1"])
    assert "Option 'betta' is not accepted" in line


def test_validate_with_a_checkpoint_of_another_stage(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"dmg.weight": torch.zeros(1)}, "hyper_parameters": {}, "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": "2.6.0"}, other)
    line = _error_line(capsys, ["validate", "--config", str(RECIPES / "lamd_tiny_mcdvae.yaml"),
                                "--data.init_args.val_dataset.init_args.num_videos=2",
                                f"--ckpt_path={other}"])
    assert "not one of MCDVAEModule" in line


@pytest.mark.parametrize("case, message", [
    ("size", "image must be 16x16"), ("label", "label must lie in"),
                                           ("text",
                                            "takes image, label (condition flags it takes: --image --label)"),
])
def test_sample_bad_inputs(capsys, class_model, tmp_path, case, message):
    image = tmp_path / "first.png"
    imageio.imwrite(image, np.zeros((24 if case == "size" else 16, 16, 3), dtype=np.uint8))
    argv = ["sample", "--model", str(class_model), "--out", str(tmp_path / "out"), "--image", str(image),
            "--num-samples", "1", "--num-steps", "2", "--no-resize"]
    argv += {"size": ["--label", "1"], "label": ["--label", "9"], "text": ["--text", "a red cube"]}[case]
    assert message in _error_line(capsys, argv)


def test_sample_with_a_stage1_checkpoint(capsys, tmp_path):
    from videogen.core.persistence import CKPT_KEY, checkpoint_record

    ckpt = tmp_path / "stage1.ckpt"
    mcdvae = tiny_mcdvae()  # what an MCDVAEModule checkpoint holds: the MCD-VAE part of the LaMD pipeline
    torch.save({"state_dict": {f"autoencoder.{k}": v for k, v in mcdvae.state_dict().items()},
                CKPT_KEY: checkpoint_record("videogen.lamd.LaMD", {"mcdvae": (mcdvae, "autoencoder.")}, {})},
               ckpt)
    line = _error_line(capsys, ["sample", "--model", str(ckpt), "--out", str(tmp_path / "o")])
    assert "LaMD also needs dmg" in line and "recipes/lamd_*_dmg.yaml" in line
    torch.save({"state_dict": {}, "hyper_parameters": {"autoencoder": {}}}, ckpt)  # not written by videogen
    line = _error_line(capsys, ["sample", "--model", str(ckpt), "--out", str(tmp_path / "o")])
    assert "not a videogen stage checkpoint" in line


def test_evaluate_and_generate_missing_inputs(capsys, class_model, tmp_path):
    line = _error_line(capsys, ["evaluate", "--real", str(tmp_path / "nope"), "--fake", str(tmp_path),
                                "--metric", "psnr"])
    assert "does not exist" in line
    line = _error_line(capsys, ["generate", "--model", str(class_model), "--recipe", str(tmp_path / "r.yaml"),
                                "--out", str(tmp_path / "o")])
    assert "recipe" in line and "not found" in line


def test_debug_shows_the_traceback_and_unexpected_errors_keep_theirs(class_model, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--real", str(tmp_path / "nope"), "--fake", str(tmp_path), "--metric", "psnr",
              "--debug"])
    import videogen.evaluation

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(videogen.evaluation, "evaluate_folders", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["evaluate", "--real", str(tmp_path), "--fake", str(tmp_path), "--metric", "psnr"])


@pytest.mark.parametrize("block", [
    "{class_path: os.system, init_args: {command: 'touch MARKER'}}",  # a function, not a class
    "{class_path: videogen.data.SyntheticVideoDataset, init_args: {num_videos: 2,"
    " seed: {class_path: os.system, init_args: {command: 'touch MARKER'}}}}",  # nested
    "{class_path: pathlib.Path, init_args: {}}",  # a class, but not a Dataset
])
def test_generate_never_calls_what_a_recipe_names_unless_it_is_a_class_of_its_slot(capsys, class_model,
                                                                                   tmp_path,
                                                                                  block):
    marker = tmp_path / "MARKER"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  init_args:\n    val_dataset: " + block.replace("MARKER", str(marker)) + "\n")
    line = _error_line(capsys, ["generate", "--model", str(class_model), "--recipe", str(recipe),
                                "--out", str(tmp_path / "o")])
    assert "class_path" in line and "is not a" in line
    assert not marker.exists()


def _bad_cli_cases(model: Path, tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, a word the one error line must hold): user mistakes found by trying the CLI adversarially."""
    (tmp / "file").write_text("x")
    (tmp / "notes.ckpt").write_text("not a checkpoint")
    torch.save({"state_dict": {}}, tmp / "plain.ckpt")
    bad_json = tmp / "bad_json"
    bad_json.mkdir(exist_ok=True)
    (bad_json / "model_index.json").write_text("{not json")
    sample = ["sample", "--model", str(model), "--out", str(tmp / "o")]
    return [
        ([*sample, "--guidance-scale", "nan"], "--guidance-scale"),
        ([*sample, "--guidance-scale", "-1"], "--guidance-scale"),
        ([*sample, "--num-samples", "0"], "--num-samples"),
        ([*sample, "--num-steps", "0"], "--num-steps"),
        ([*sample, "--num-frames", "0"], "--num-frames"),
        ([*sample, "--label", "1.7"], "--label"),
        ([*sample, "--fps", "0"], "--fps"),
        (["sample", "--model", str(model), "--out", str(tmp / "file")], "is a file"),
        ([*sample, "--device", "cuda"], "no CUDA device"),
        (["sample", "--model", str(tmp / "notes.ckpt"), "--out", str(tmp / "o")],
         "not a readable videogen checkpoint"),
        (["sample", "--model", str(tmp / "plain.ckpt"), "--out", str(tmp / "o")],
         "not a videogen stage checkpoint"),
        (["sample", "--model", str(bad_json), "--out", str(tmp / "o")], "not a readable JSON"),
        (["sample", "--model", str(tmp / "missing"), "--out", str(tmp / "o")], "not found"),
        (["generate", "--model", str(model), "--recipe", "r.yaml", "--out", str(tmp / "o"), "--limit", "0"],
         "--limit"),
        (["generate", "--model", str(model), "--recipe", "r.yaml", "--out", str(tmp / "file")], "is a file"),
        (["generate", "--model", str(model), "--out", str(tmp / "o")], "--num-samples"),
        (["generate", "--model", str(model), "--recipe", "r.yaml", "--num-samples", "2", "--out",
          str(tmp / "o")], "--samples-per-item"),
        (["generate", "--model", str(model), "--recipe", "r.yaml", "--random-items", "--out", str(tmp / "o")],
         "--limit"),
        (["convert", "lvdm", "--ckpt", str(tmp / "none.ckpt"), "--out", str(tmp / "c")], "not found"),
        (["convert", "lvdm", "--ckpt", str(tmp / "notes.ckpt"), "--out", str(tmp / "c")], "--preset"),
        (["convert", "cmd", "--ckpt", str(tmp / "notes.ckpt"), "--out", str(tmp)], "already exists"),
        (["generate", "--model", str(model), "--recipe", str(tmp / "notes.ckpt"), "--out", str(tmp / "o")],
         "no data.init_args"),
        (["generate", "--model", str(model), "--recipe", str(bad_json / "model_index.json"), "--out",
          str(tmp / "o")], "is not YAML"),
        (["evaluate", "--real", str(tmp), "--fake", str(tmp), "--metric", "psnr", "--size", "0"], "--size"),
        (["evaluate", "--real", str(tmp), "--fake", str(tmp), "--metric", "psnr", "--out", str(tmp)],
         "is a folder"),
        (["demo", "--out", str(tmp / "d"), "--seed", "-1"], "--seed"),
        (["bench", "--out", str(tmp / "b"), "--docs", str(tmp / "nowhere" / "bench.md")], "does not exist"),
    ]


def test_every_bad_argument_ends_in_one_error_line(capsys, class_model, tmp_path):
    """A sweep of bad arguments: each ends in exit 2 and exactly one ``videogen: error:`` line naming it."""
    for argv, word in _bad_cli_cases(class_model, tmp_path):
        code = main(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert len(err) == 1 and err[0].startswith("videogen: error:") and word in err[0], (argv, err)
    assert not (tmp_path / "o").exists()  # nothing was written for any of them


class _Payload:
    """Unpickling this runs ``os.system``: what a malicious checkpoint or weight file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_no_reader_unpickles_code(capsys, class_model, tmp_path):
    """A pickle whose payload would write a file, given as a model checkpoint, as I3D weights and as
    LPIPS backbone weights: one error line naming the object, and the file never appears."""
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Payload(marker)}, evil)
    video = tmp_path / "v"
    video.mkdir()
    from videogen.core.video import write_video

    write_video(video / "a.mp4", torch.zeros(3, 4, 16, 16))
    for argv in (["sample", "--model", str(evil), "--out", str(tmp_path / "o")],
                 ["evaluate", "--real", str(video), "--fake", str(video), "--metric", "fvd", "--i3d",
                  str(evil), "--no-progress"],
                 ["evaluate", "--real", str(video), "--fake", str(video), "--metric", "lpips",
                  "--lpips-backbone", str(evil), "--no-progress"]):
        assert main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "holds the Python object posix.system" in err[0], (argv, err)
        assert "weights_only=False" not in err[0]
    assert not marker.exists()
