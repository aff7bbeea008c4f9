"""The CPU demo (`videogen demo`): it writes every promised file, its metrics are well formed, and the
same seed gives the same run. The full-size demo and its targets (recon_psnr >= 25 dB, motion accuracy
>= 0.8; motion transfer checked by tracking) take minutes: that check is marked slow (`make test-slow`); `make
demo` prints the numbers."""

from __future__ import annotations

import json

import pytest
import torch

from videogen.toy.lamd import LaMDDemoConfig, run_demo

FILES = ("samples.mp4", "samples.gif", "contact_sheet.png", "motion_transfer.png", "motion_transfer.gif",
         "metrics.json", "lamd/model_index.json")


def test_fast_demo_writes_files_and_is_reproducible(tmp_path):
    first = run_demo(tmp_path / "a", seed=3, fast=True)
    for name in FILES:
        assert (tmp_path / "a" / name).is_file(), name
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for key in ("recon_psnr", "motion_accuracy", "wall_seconds", "copy_first_frame_psnr"):
        assert key in saved
    assert saved["motion_accuracy"] == first["motion_accuracy"] and saved["recon_psnr"] == first["recon_psnr"]

    second = run_demo(tmp_path / "b", seed=3, fast=True)
    for key in ("recon_psnr", "motion_accuracy", "motion_transfer_accuracy", "copy_first_frame_psnr"):
        assert first[key] == second[key], key
    from safetensors.torch import load_file

    weights = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "lamd").rglob("*.safetensors"))
    assert weights
    for rel in weights:
        wa, wb = load_file(tmp_path / "a" / rel), load_file(tmp_path / "b" / rel)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), rel


@pytest.mark.slow
def test_full_demo_meets_targets(tmp_path):
    metrics = run_demo(tmp_path, seed=0, config=LaMDDemoConfig())
    assert metrics["recon_psnr"] >= 25.0
    assert metrics["motion_accuracy"] >= 0.8
    # motion transfer: A's shape moves the way B's moved (tracked; 32 pairs whose shapes start close and
    # move in different directions). Measured 1.0; with random partners 0.53 (z_m is spatial: docs/lamd.md).
    assert metrics["motion_transfer_accuracy"] >= 0.8
    assert metrics["motion_transfer_accuracy_random_pairs"] > 0.25  # above chance even then
