"""The LVDM CPU demo (`videogen demo --model lvdm`): every promised file, exact frame counts in both modes,
a saved pipeline that loads, and the same run from the same seed.  The full demo (256 frames, hierarchical
long_motion_accuracy >= 0.7 and not below autoregressive) takes minutes: marked slow (`make test-slow`)."""

from __future__ import annotations

import json

import pytest

from videogen import load_pretrained
from videogen.lvdm import LVDM
from videogen.toy.lvdm import LVDMDemoConfig, run_demo

FILES = ("hierarchical.mp4", "autoregressive.mp4", "contact_sheet.png", "metrics.json",
         "lvdm/model_index.json")


def test_fast_demo_writes_files_counts_frames_and_is_reproducible(tmp_path):
    first = run_demo(tmp_path / "a", seed=1, fast=True)
    for name in FILES:
        assert (tmp_path / "a" / name).is_file(), name
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    cfg = LVDMDemoConfig.fast()
    assert saved["num_frames"] == cfg.long_frames
    assert all(saved["modes"][m]["num_frames"] == cfg.long_frames for m in ("hierarchical", "autoregressive"))
    assert saved["long_motion_accuracy_of_real_videos"] == 1.0 \
        and saved["long_motion_accuracy_of_a_static_video"] == 0
    second = run_demo(tmp_path / "b", seed=1, fast=True)
    assert first["long_motion_accuracy"] == second["long_motion_accuracy"] == saved["long_motion_accuracy"]
    assert first["recon_psnr"] == second["recon_psnr"]
    pipe = load_pretrained(tmp_path / "a" / "lvdm")
    assert isinstance(pipe, LVDM) and pipe.short is not None and pipe.video_size == (cfg.size, cfg.size)
    assert pipe.autoregressive is not None and pipe.keyframe_stride == cfg.keyframe_stride


@pytest.mark.slow
def test_full_demo_meets_targets(tmp_path):
    """About 10 minutes on 2 cores (seed 0 measured 600 s: 0.93 hierarchical, 0.91 autoregressive; seed 1,
    650 s: 0.97 / 0.95; docs/lvdm.md)."""
    metrics = run_demo(tmp_path, seed=0, config=LVDMDemoConfig())
    assert metrics["num_frames"] >= 256
    acc = metrics["long_motion_accuracy"]
    assert acc["hierarchical"] >= 0.7 and acc["hierarchical"] >= acc["autoregressive"]
    assert metrics["wall_seconds"] <= 15 * 60
