"""The model-free demo: synthetic videos written to disk and scored with known answers."""

from __future__ import annotations

import json

from videogen.bench.render_demo import run_demo
from videogen.core.video import read_video


def test_render_demo_writes_files_and_known_metric_values(tmp_path):
    metrics = run_demo(tmp_path, seed=5, fast=True)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    names = {p.name for p in tmp_path.iterdir()}
    assert {"video_0.mp4", "video_3.mp4", "video_0.gif", "contact_sheet.png", "captions.txt"} <= names
    assert tuple(read_video(tmp_path / "video_1.mp4").shape) == (8, 32, 32, 3)  # (T, H, W, C)
    # clamping at +-1 removes a little noise, so PSNR is at or slightly above 20 log10(2 / sigma)
    assert metrics["psnr_expected_db"] - 0.5 < metrics["psnr_noisy_copy_db"] < metrics["psnr_expected_db"] + 3
    assert metrics["motion_accuracy_ground_truth"] == 1.0
    assert metrics["motion_accuracy_time_reversed"] == 0.0
    assert metrics["wall_seconds"] > 0
