"""The sampler study: reference row, ratios and the 2% rule on a scripted task; the LaMD, CMD and LVDM tasks
rebuild their demos' held-out sets and sample with every solver (on the seconds-long smoke demos)."""

from __future__ import annotations

import pytest
import torch

from videogen.bench import samplers


def test_study_rows_against_the_reference():
    base = torch.linspace(-1, 1, 2 * 3 * 2 * 4 * 4).view(2, 3, 2, 4, 4)
    quality = {("ddim", 200): 0.80, ("dpm++", 20): 0.79, ("ddim", 10): 0.60}

    def generate(sampler, steps):
        return (base + (0.0 if steps == 200 else 0.01 * 200 / steps)).clamp(-1, 1)

    task = samplers.SamplerTask("toy", generate, score=None, evals_per_step=2, num_videos=2)
    calls = iter(quality.values())
    task.score = lambda videos: {"motion_accuracy": next(calls)}
    rows = samplers.sampler_study(task, tuple(quality))
    ref, fast, slow = rows
    assert ref["PSNR vs reference dB"] == "reference" and ref["worst metric / reference"] == 1.0
    assert fast["network evals / video"] == 40 and fast["within 2% of reference"] is True  # 0.79 / 0.80
    assert slow["within 2% of reference"] is False and slow["worst metric / reference"] == pytest.approx(0.75)
    assert fast["PSNR vs reference dB"] > slow["PSNR vs reference dB"]  # closer to the reference videos


@pytest.mark.parametrize("model", ["lamd", "cmd", "lvdm"])
def test_demo_tasks_sample_with_every_solver(model, tmp_path):
    demo = samplers._demo_dir(model, tmp_path / "nowhere", tmp_path, quick=True)  # trains the smoke demo
    task = {"lamd": samplers.lamd_task, "cmd": samplers.cmd_task, "lvdm": samplers.lvdm_task}[model](demo)
    rows = samplers.sampler_study(task, (("ddim", 4), ("dpm++", 2), ("unipc", 2)))
    assert [r["sampler"] for r in rows] == ["ddim", "dpm++", "unipc"]
    metric = "long_motion_accuracy" if model == "lvdm" else "motion_accuracy"
    for row in rows:
        assert isinstance(row[metric], float) and row["s / video"] > 0
    assert isinstance(rows[1]["PSNR vs reference dB"], float)
    if model == "cmd":
        assert "caption_accuracy" in rows[0] and rows[0]["network evals / video"] == 4 * task.evals_per_step
    # 64 frames: 8 prediction + 16 interpolation clips, a guided and an unguided call each
    if model == "lvdm":
        assert task.evals_per_step == 48 and rows[0]["network evals / video"] == 4 * 48
