"""The fast-sampler study (``videogen bench --only samplers``): DPM-Solver++ and UniPC at 10-25 steps vs
DDIM at up to 200 steps, on the trained CPU demo models and their synthetic metrics.

For each model the same held-out conditions are sampled with every setting from the same seed, so every
setting starts from the same noise and (all being deterministic ODE solvers: DDIM eta 0, DPM-Solver++
2M, UniPC bh2) solves the same probability-flow ODE; the 200-step DDIM samples are the reference.
Columns: the task metrics (LaMD: motion accuracy; CMD: motion and caption accuracy; LVDM: long motion
accuracy), their ratio to the reference's, the PSNR of each setting's videos against the reference videos
(how close to the converged ODE solution), network evaluations and seconds per video.

The models are the demos' (``videogen demo``): a finished demo directory is reused when it is there
(``outputs/demo_lamd``, ``outputs/demo_cmd``, ``outputs/demo_lvdm``, relative to the working directory:
``videogen demo --model lamd --out outputs/demo_lamd``), else the demo is trained into the table's
directory (6, 12 and 13 minutes measured on 2 cores; ``--quick``: the seconds-long smoke demos, whose
numbers mean nothing).  LVDM's task is hierarchical sampling of 64-frame videos (the demo scores 256
frames; at 64 the 200-step reference takes minutes, not a quarter of an hour), every prediction and
interpolation clip with the setting's sampler and steps.  Toy-setting numbers, not paper numbers.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from videogen.bench.harness import register_table

__all__ = ["REFERENCE", "SETTINGS", "SamplerTask", "cmd_task", "lamd_task", "lvdm_task", "sampler_study"]

REFERENCE = ("ddim", 200)
SETTINGS: tuple[tuple[str, int], ...] = (
    REFERENCE, ("ddim", 100), ("ddim", 50), ("ddim", 25), ("ddim", 20), ("ddim", 10),
    ("dpm++", 25), ("dpm++", 20), ("dpm++", 10), ("unipc", 25), ("unipc", 20), ("unipc", 10),
)


@dataclasses.dataclass
class SamplerTask:
    """One model on its held-out conditions: ``generate(sampler, steps)`` -> videos (N, C, T, H, W),
    ``score(videos)`` -> task metrics (higher is better), ``evals_per_step`` network calls per video."""

    model: str
    generate: Callable[[str, int], torch.Tensor]
    score: Callable[[torch.Tensor], dict[str, float]]
    evals_per_step: int
    num_videos: int


def _demo_setup(demo_dir: Path, config_class: type) -> tuple[Any, int]:
    """The demo's config (rebuilt from its ``metrics.json``) and seed."""
    metrics = json.loads((demo_dir / "metrics.json").read_text())
    return config_class(**metrics["config"]), int(metrics["seed"])


def lamd_task(demo_dir: str | Path) -> SamplerTask:
    """The LaMD demo's held-out first frames and directions (``videogen demo --model lamd``)."""
    from videogen.data import direction_vectors
    from videogen.lamd import LaMD
    from videogen.toy.common import stack_items
    from videogen.toy.lamd import LaMDDemoConfig, heldout_set
    from videogen.toy.motion import motion_accuracy

    demo_dir = Path(demo_dir)
    cfg, seed = _demo_setup(demo_dir, LaMDDemoConfig)
    pipe = LaMD.from_pretrained(demo_dir / "lamd")
    held = heldout_set(cfg, seed)
    first, labels = stack_items(held, "video")[:, :, 0], stack_items(held, "label")
    dirs = direction_vectors(cfg.directions)

    def generate(sampler: str, steps: int) -> torch.Tensor:
        return pipe.generate(first, label=labels, num_steps=steps, sampler=sampler,
                             guidance_scale=cfg.guidance_scale, generator=torch.Generator().manual_seed(seed),
                             progress=False)

    def score(videos: torch.Tensor) -> dict[str, float]:
        return {"motion_accuracy": float(motion_accuracy(videos, labels, dirs))}

    return SamplerTask("LaMD", generate, score, 2 if cfg.guidance_scale != 1 else 1, len(first))


def cmd_task(demo_dir: str | Path) -> SamplerTask:
    """The CMD demo's held-out captions (``videogen demo --model cmd``); content and motion use the same
    sampler and step count."""
    from videogen.cmd import CMD
    from videogen.data import direction_vectors
    from videogen.toy.cmd import CMDDemoConfig, heldout_set
    from videogen.toy.common import stack_items
    from videogen.toy.motion import motion_accuracy
    from videogen.toy.scoring import caption_accuracy

    demo_dir = Path(demo_dir)
    cfg, seed = _demo_setup(demo_dir, CMDDemoConfig)
    pipe = CMD.from_pretrained(demo_dir / "cmd")
    held = heldout_set(cfg, seed)
    captions, directions = [it["caption"] for it in held.items], stack_items(held, "direction")
    dirs = direction_vectors(cfg.directions)

    def generate(sampler: str, steps: int) -> torch.Tensor:
        return pipe.generate(text=captions, num_steps=steps, content_steps=steps, sampler=sampler,
                             guidance_scale=cfg.guidance_scale,
                             motion_guidance_scale=cfg.motion_guidance_scale,
                             generator=torch.Generator().manual_seed(seed), progress=False)

    def score(videos: torch.Tensor) -> dict[str, float]:
        return {"motion_accuracy": float(motion_accuracy(videos, directions, dirs)),
                "caption_accuracy": float(caption_accuracy(videos, captions)["caption_accuracy"])}

    per_step = (2 if cfg.guidance_scale != 1 else 1) + (2 if cfg.motion_guidance_scale != 1 else 1)
    return SamplerTask("CMD", generate, score, per_step, len(captions))


def lvdm_task(demo_dir: str | Path, num_frames: int = 64, num_videos: int = 16) -> SamplerTask:
    """The LVDM demo's unconditional long videos (``videogen demo --model lvdm``): ``num_videos`` videos of
    ``num_frames`` frames (16 x 64: 64 scored windows, as many as the other tasks' held-out videos), sampled
    hierarchically (keyframes by chained prediction, then interpolation) and scored by
    ``long_motion_accuracy`` (16-frame windows that follow the bouncing rule)."""
    from videogen.data import SyntheticVideoDataset
    from videogen.lvdm import LVDM, hierarchical_plan
    from videogen.toy.lvdm import LVDMDemoConfig
    from videogen.toy.scoring import long_motion_accuracy

    demo_dir = Path(demo_dir)
    cfg, seed = _demo_setup(demo_dir, LVDMDemoConfig)
    pipe = LVDM.from_pretrained(demo_dir / "lvdm")
    # the scorer's rule
    rule = SyntheticVideoDataset(1, num_frames=num_frames, seed=seed, **cfg.data_kwargs())

    def generate(sampler: str, steps: int) -> torch.Tensor:
        return pipe.generate_long(num_frames, batch=num_videos, mode="hierarchical", num_steps=steps,
                                  sampler=sampler, guidance=cfg.guidance, eta=0.0, progress=False,
                                  generator=torch.Generator().manual_seed(seed))

    def score(videos: torch.Tensor) -> dict[str, float]:
        return {"long_motion_accuracy": float(long_motion_accuracy(videos, rule)["long_motion_accuracy"])}

    plan = hierarchical_plan(num_frames, pipe.autoencoder.temporal_factor, pipe.keyframe_stride,
                             given=pipe.prediction.num_given)
    clips = plan["prediction_clips"] + plan["interpolation_clips"]
    return SamplerTask("LVDM", generate, score, clips * (2 if cfg.guidance else 1), num_videos)


def sampler_study(task: SamplerTask,
                  settings: tuple[tuple[str, int], ...] = SETTINGS) -> list[dict[str, Any]]:
    """One row per (sampler, steps); the first setting is the reference."""
    from videogen.toy.common import mean_psnr

    rows, reference, ref_scores = [], None, None
    for sampler, steps in settings:
        start = time.perf_counter()
        videos = task.generate(sampler, steps)
        seconds = (time.perf_counter() - start) / task.num_videos
        scores = task.score(videos)
        if reference is None:
            reference, ref_scores = videos, scores
        ratio = min(scores[k] / ref_scores[k] if ref_scores[k] else 1.0 for k in scores)
        closeness = None if videos is reference else mean_psnr(videos, reference)
        rows.append({"model": task.model, "setting": "toy", "sampler": sampler, "steps": steps,
                     "network evals / video": steps * task.evals_per_step,
                     **{k: round(v, 4) for k, v in scores.items()},
                     "worst metric / reference": round(ratio, 3),
                     "within 2% of reference": ratio >= 0.98,
                     "PSNR vs reference dB": "reference" if videos is reference else round(closeness, 2),
                     "s / video": round(seconds, 4)})
    return rows


def _demo_dir(name: str, default: Path, out_dir: Path, quick: bool) -> Path:
    """A finished demo directory: ``default`` when it holds the model, else one trained into ``out_dir``."""
    from videogen.toy.tour import demo_runners

    if not quick and (default / "metrics.json").is_file() and (default / name).is_dir():
        return default
    target = out_dir / f"demo_{name}"
    if not ((target / "metrics.json").is_file() and (target / name).is_dir()):
        run, config = demo_runners()[name]
        run(target, config=config.fast() if quick else None)
    return target


def build_samplers_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    settings = ((REFERENCE, ("dpm++", 10), ("unipc", 10)) if quick else SETTINGS)
    rows = sampler_study(lamd_task(_demo_dir("lamd", Path("outputs/demo_lamd"), out_dir, quick)), settings)
    rows += sampler_study(cmd_task(_demo_dir("cmd", Path("outputs/demo_cmd"), out_dir, quick)), settings)
    rows += sampler_study(lvdm_task(_demo_dir("lvdm", Path("outputs/demo_lvdm"), out_dir, quick)), settings)
    return rows


register_table(
    "samplers", build_samplers_table, title="Fast samplers vs DDIM on the demo models (toy setting)",
    description="Each model's held-out conditions sampled with every setting from the same seed (same "
                "initial "
    "noise; all settings deterministic). Reference: DDIM 200 steps. 'worst metric / reference': the smallest "
    "ratio of a task metric to the reference's; 'within 2%' when it is >= 0.98. 'PSNR vs reference': the "
    "videos against the reference videos. CMD runs content and motion with the same sampler and steps; LVDM "
    "samples 64-frame videos hierarchically, every clip with the setting. The models are the CPU "
    "demos' (a few minutes of training): a study of the samplers on small models, not of the papers' models.")
