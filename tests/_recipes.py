"""Helpers for the tests that run recipes through the CLI: fit in a working directory (recipes write to
relative ``outputs/``), compare two checkpoints bit for bit, and fit with 2 DDP processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from videogen.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]


def fit(workdir: Path, recipe: str, args: Sequence[str], epochs: int, ckpt: Path | None = None) -> None:
    """``videogen fit --config recipes/<recipe> <args> --trainer.max_epochs=<epochs> [--ckpt_path]`` in
    ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["fit", "--config", str(RECIPES / recipe), *args, f"--trainer.max_epochs={epochs}"]
    if ckpt is not None:
        argv.append(f"--ckpt_path={ckpt}")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        assert main(argv) == 0


def assert_same_checkpoints(a: Path, b: Path, optimizer: bool = False) -> None:
    """Equal step counters and bit-identical weights (EMA averages and raw weights; optimiser state too)."""
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert ca["global_step"] == cb["global_step"] and ca["epoch"] == cb["epoch"]
    for key in ("state_dict", "current_model_state"):
        assert (key in ca) == (key in cb)
        for name, value in ca.get(key, {}).items():
            assert torch.equal(value, cb[key][name]), f"{key}.{name} differs after resume"
    if optimizer:
        for oa, ob in zip(ca["optimizer_states"], cb["optimizer_states"]):
            for sa, sb in zip(oa["state"].values(), ob["state"].values()):
                for k in sa:
                    assert torch.equal(torch.as_tensor(sa[k]),
                                       torch.as_tensor(sb[k])), f"optimizer {k} differs"


def fit_ddp(workdir: Path, recipe: str, strategy: str, args: Sequence[str]) -> dict:
    """``python -m videogen fit`` on 2 CPU processes (Lightning relaunches it per rank); returns last.ckpt."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "videogen", "fit", "--config", str(RECIPES / recipe),
            "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}", *QUIET,
            *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (last,) = workdir.rglob("last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=True)
