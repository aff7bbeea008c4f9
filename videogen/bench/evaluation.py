"""Bench table ``eval_memory``: peak memory of ``videogen evaluate`` vs the number of videos.

Writes N synthetic moving-shapes clips (16 x 64 x 64) to a real and a generated folder and runs
``videogen evaluate`` in a fresh process (``--metric psnr --metric ssim --metric fvd``, batch 16, CPU)
for each N; the FVD feature extractor is a small TorchScript stand-in with the detector's calling
convention (so the run needs no I3D weights; every video is still resized to 224x224 as for I3D).
Peak RSS is that process's own (``os.wait4``).  A streaming evaluation is flat in N: only
the features (N x 16 float64 here, N x 400 with I3D) grow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.bench.harness import register_table

__all__ = ["build_eval_memory_table"]

SIZES_FULL, SIZES_QUICK = (256, 2048), (32, 256)


class _FeatureStandIn(nn.Module):
    """``(B, 3, T, 224, 224)`` -> 16 features, with StyleGAN-V's detector signature."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 16)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        return self.proj(torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1))


def _write_videos(folder: Path, n: int, seed: int) -> None:
    from videogen.core.video import write_video
    from videogen.data import SyntheticVideoDataset

    data = SyntheticVideoDataset(n, num_frames=16, size=64, seed=seed)
    for i in range(n):
        write_video(folder / f"{i:05d}.mp4", data[i]["video"])


def _child_peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Run ``python -m videogen <args>``; return (peak RSS of that process in MiB, seconds).

    ``os.wait4`` reports the resource usage of this one child (``RUSAGE_CHILDREN`` would be the maximum over
    every child so far, ffmpeg writers included).
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "videogen", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"videogen {' '.join(args[:1])} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start


def build_eval_memory_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        detector = tmp / "i3d_torchscript.pt"
        torch.manual_seed(0)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.script(_FeatureStandIn()).save(str(detector))
        for n in SIZES_QUICK if quick else SIZES_FULL:
            real, fake = tmp / f"real{n}", tmp / f"fake{n}"
            _write_videos(real, n, seed=0)
            _write_videos(fake, n, seed=1)
            args = ["evaluate", "--real", str(real), "--fake", str(fake), "--metric", "psnr", "--metric",
                    "ssim", "--metric", "fvd", "--i3d", str(detector), "--num-frames", "16", "--batch-size",
                    "16",
                    "--no-progress", "--out", str(tmp / f"res{n}.json")]
            rss, seconds = _child_peak_rss_mb(args)
            res = json.loads((tmp / f"res{n}.json").read_text())
            rows.append({"setting": "synthetic 16x64x64, CPU", "videos per folder": n, "batch": 16,
                         "peak RSS MiB": round(rss, 1), "wall s": round(seconds, 1),
                         "psnr": round(res["psnr"], 2), "skipped": res["num_skipped"]})
    return rows


register_table(
    "eval_memory", build_eval_memory_table, title="Streaming evaluation: peak memory vs number of videos",
    description="`videogen evaluate --metric psnr --metric ssim --metric fvd` on two folders of N synthetic "
    "16x64x64 mp4 clips, batch 16, CPU, in a fresh process; peak RSS of that process. FVD uses a small "
    "TorchScript stand-in for the I3D (same calling convention, 16 features; videos still resized to "
    "224x224), so the numbers show the reading/streaming cost, not I3D's. Loading everything (the old "
    "`evaluate`) would hold N x 2 x 16x64x64x3 floats (2048 videos: 3.0 GiB of float32) before resizing; the "
    "wall time depends on what else the machine runs.",
)
