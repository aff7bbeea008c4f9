"""The synthetic benchmark (``videogen bench --only synthetic``): LaMD, CMD and LVDM trained on the same
synthetic moving-shapes data with the same number of optimiser steps, scored on the tasks each supports.

**Data** (:data:`DATA`): :class:`videogen.data.SyntheticVideoDataset` with bouncing shapes at 16 x 16 (one
shape of 3 kinds and 5 colours, initial direction one of 4, reflecting off the walls, captions such as
"the red circle moves left"; training seed 0, held-out seed 10 000).  Every model sees clips of its own
length from this one distribution: LaMD and CMD 8 frames (their clip), LVDM 16 frames.

**Budget** (:data:`BUDGET_STEPS`): 1 600 optimiser steps per model, split over its stages (LaMD 800 MCD-VAE
+ 800 DMG; CMD 800 autoencoder + 400 content DiT + 400 motion DiT; LVDM 700 autoencoder + 300 short UNet +
200 keyframe prediction + 200 interpolation + 200 autoregressive prediction; LVDM's text-to-video model 600
frame VAE + 1 000 UNet), through the demos' trainers (``videogen.toy.<model>``; LVDM text-to-video:
``videogen.toy.lvdm_t2v``) with their network sizes and batch sizes; the wall time each took is reported
next to it.

**Tasks**, every model through the one ``generate`` protocol of the saved pipeline
(``videogen.load_pretrained``):

- *image-to-video*: a held-out first frame (+ its direction: LaMD's class label, CMD's caption; LVDM
  takes no direction, so its chance is the floor) -> an 8-frame video.  LaMD: its task; CMD: the frame is
  animated as the content frame; LVDM: the frame held for f_t frames, then prediction.
- *text-to-video*: a held-out caption -> an 8-frame video.  CMD, and LVDM's text-to-video model
  (``LVDMTextToVideo``: an SD-style ``UNet2DConditionModel`` with temporal layers on per-frame
  ``AutoencoderKL`` latents and a tiny word-level CLIP text encoder, all trained from scratch here since
  no SD weights exist; ``videogen.toy.lvdm_t2v``).  LaMD needs an image.
- *long video*: 256 frames.  LVDM: hierarchical and autoregressive ``generate_long`` (unconditional, as in
  its paper); LaMD and CMD: clips chained from the last frame, starting from a held-out first frame and
  direction / caption.

**Scores**: ``direction acc`` (the tracked object's initial direction over the first 4 frames, chance
0.25; the shapes bounce in a 16-pixel frame, so real videos score about 0.7: the first row gives every
score of the real videos), ``bounce-rule acc`` (the 8-frame clip follows the bouncing rule of
``videogen.toy.scoring.long_motion_accuracy``: tracked, at the set's speed, turning only at walls; a static
video scores 0), ``colour acc`` and ``caption acc`` (colour, and colour and shape, of the object; chance 0.2
and 1/15; the shape reader is weak on shapes 4 pixels wide, so real videos score about 0.6; for
image-to-video they say whether the object kept its looks), ``long motion acc`` (16-frame windows that
follow the bouncing rule), held-out reconstruction PSNR of each autoencoder, sampling FLOPs of one video
(``count_flops``: matmuls, convolutions and attention, a multiply-add = 2) and seconds per video on this
CPU.  Toy-setting numbers: small networks, minutes of training.

The trained models stay in ``<out>/synthetic/models/<model>`` (``make bench``: ``outputs/bench``); a finished
model directory is reused.
``--quick`` trains the seconds-long smoke versions, whose numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from videogen.bench.harness import count_flops, register_table

__all__ = ["BUDGET_STEPS", "DATA", "LONG_FRAMES", "build_synthetic_table", "model_configs"]

#: The common data of the three models (SyntheticVideoDataset keywords).
DATA: dict[str, Any] = dict(size=16, object_size=0.25, speed=(2 / 3, 1.0), motion="bounce", directions=4)
#: Optimiser steps per model, over all its stages.
BUDGET_STEPS = 1600
LONG_FRAMES = 256
NUM_LONG = 4
SHORT_FRAMES = 8
#: Frames over which the initial direction is read: the shapes bounce, and within 8 frames many turn.
DIRECTION_FRAMES = 4
#: Score columns of the table.
SCORES = ("direction acc", "bounce-rule acc", "colour acc", "caption acc", "long motion acc")


def model_configs(quick: bool) -> dict[str, Any]:
    """The demo config of each model on :data:`DATA` with the :data:`BUDGET_STEPS` split (``quick``: the
    demos' seconds-long smoke configs on the same data)."""
    config = {name: cls for name, (_, cls) in _trainers().items()}
    data = {k: v for k, v in DATA.items() if k != "directions"}
    # LVDM's demo data always bounces; its demo draws white shapes on black, the benchmark the shared colours
    lvdm_data = {**{k: v for k, v in data.items() if k != "motion"},
                 "colors": ("red", "green", "blue", "yellow", "white"), "background": None}
    # CMD at 16 x 16: autoencoder patch 2 (an 8 x 8 grid, as the demo's patch 4 at 32 x 32), content DiT
    # patch 2 and motion-DiT content patch 4 keep the demo's token counts
    cmd_data = {**data, "ae_patch": 2, "content_patch": 2, "motion_content_patch": 4}
    t2v_data = {**data, "directions": DATA["directions"], "num_frames": SHORT_FRAMES}
    if quick:
        return {"lamd": dataclasses.replace(config["lamd"].fast(), **data),
                "cmd": dataclasses.replace(config["cmd"].fast(), **cmd_data),
                "lvdm": dataclasses.replace(config["lvdm"].fast(), **lvdm_data, long_frames=32),
                "lvdm_t2v": dataclasses.replace(config["lvdm_t2v"].fast(), **t2v_data)}
    return {"lamd": config["lamd"](num_frames=SHORT_FRAMES, **data, vae_steps=800, dmg_steps=800),
            # D 4: the demo's D 8 pays off with 1,600 autoencoder steps, more than this budget gives
            "cmd": config["cmd"](num_frames=SHORT_FRAMES, **cmd_data, ae_steps=800, ae_motion_channels=4,
                                 content_steps=400, motion_steps=400),
            "lvdm": config["lvdm"](**lvdm_data, ae_steps=700, short_steps=300, long_steps=200,
                                   num_long=NUM_LONG, long_frames=LONG_FRAMES),
            "lvdm_t2v": config["lvdm_t2v"](**t2v_data, vae_steps=600, unet_steps=1000)}


def _trainers() -> dict[str, tuple[Callable[..., dict[str, Any]], type]]:
    """The demos' trainers (``videogen.toy.tour.demo_runners``) and LVDM's toy text-to-video trainer."""
    from videogen.toy import lvdm_t2v
    from videogen.toy.tour import demo_runners

    return {**demo_runners(), "lvdm_t2v": (lvdm_t2v.run_demo, lvdm_t2v.LVDMT2VDemoConfig)}


def _steps(name: str, cfg: Any) -> tuple[int, int]:
    """(optimiser steps, clips seen) of one model's training."""
    if name == "lamd":
        parts = [(cfg.vae_steps, cfg.vae_batch), (cfg.dmg_steps, cfg.dmg_batch)]
    elif name == "cmd":
        parts = [(cfg.ae_steps, cfg.ae_batch), (cfg.content_steps, cfg.dit_batch),
                 (cfg.motion_steps, cfg.dit_batch)]
    elif name == "lvdm_t2v":
        parts = [(cfg.vae_steps, cfg.vae_batch), (cfg.unet_steps, cfg.unet_batch)]
    else:
        parts = [(cfg.ae_steps, cfg.ae_batch), (cfg.short_steps, cfg.unet_batch),
                 (3 * cfg.long_steps, cfg.unet_batch)]
    return sum(s for s, _ in parts), sum(s * b for s, b in parts)


def _train(name: str, cfg: Any, root: Path) -> dict[str, Any]:
    """Train (or reuse) one model's demo into ``root/name``; returns its demo metrics."""
    target = root / name
    if not ((target / "metrics.json").is_file() and (target / name).is_dir()):
        _trainers()[name][0](target, config=cfg)
    return json.loads((target / "metrics.json").read_text())


def _measure(generate: Callable[[int], torch.Tensor], count: int) -> tuple[torch.Tensor, float, float]:
    """Videos of ``generate(count)``, seconds per video, and GFLOPs of one video (``generate(1)``)."""
    t0 = time.perf_counter()
    videos = generate(count)
    seconds = (time.perf_counter() - t0) / count
    flops = count_flops(generate, 1)
    return videos, seconds, flops / 1e9


def build_synthetic_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    from videogen import load_pretrained
    from videogen.core.pipeline import UnsupportedConditionError
    from videogen.data import SyntheticVideoDataset, direction_vectors
    from videogen.toy.common import materialise, stack_items
    from videogen.toy.lamd import heldout_set
    from videogen.toy.motion import motion_accuracy
    from videogen.toy.scoring import caption_accuracy, long_motion_accuracy

    root = Path(out_dir) / ("models_quick" if quick else "models")
    configs = model_configs(quick)
    trained = {name: _train(name, cfg, root) for name, cfg in configs.items()}
    pipes = {name: load_pretrained(root / name / name).eval() for name in configs}

    held = heldout_set(configs["lamd"], seed=0)  # LaMD's and CMD's held-out videos (the same set)
    real = stack_items(held, "video")  # (N, 3, 8, H, W)
    first, labels, directions = real[:, :, 0], stack_items(held, "label"), stack_items(held, "direction")
    captions = [it["caption"] for it in held.items]
    dirs = direction_vectors(DATA["directions"])
    long_frames = configs["lvdm"].long_frames
    long_set = SyntheticVideoDataset(NUM_LONG, num_frames=long_frames, seed=20_000, **DATA)
    long_held = materialise(long_set)
    long_real = stack_items(long_held, "video")  # (NUM_LONG, 3, long_frames, H, W)
    long_first, long_labels = long_real[:, :, 0], stack_items(long_held, "label")
    long_captions = [it["caption"] for it in long_held.items]

    # each model's sampler setting: its demo's
    lamd_cfg, cmd_cfg, lvdm_cfg, t2v_cfg = \
        configs["lamd"], configs["cmd"], configs["lvdm"], configs["lvdm_t2v"]
    settings = {
        "lamd": dict(num_steps=lamd_cfg.sample_steps, sampler=lamd_cfg.sampler,
                     guidance_scale=lamd_cfg.guidance_scale),
        "cmd": dict(num_steps=cmd_cfg.motion_sample_steps, content_steps=cmd_cfg.content_sample_steps,
                    guidance_scale=cmd_cfg.guidance_scale,
                    motion_guidance_scale=cmd_cfg.motion_guidance_scale),
        # with an image CMD samples motion only, and guidance_scale is the motion CFG
        "cmd_image": dict(num_steps=cmd_cfg.motion_sample_steps,
                          guidance_scale=cmd_cfg.motion_guidance_scale),
        "lvdm": dict(num_steps=lvdm_cfg.sample_steps, guidance_scale=1 + lvdm_cfg.guidance,
                     eta=lvdm_cfg.sample_eta),
        "lvdm_t2v": dict(num_steps=t2v_cfg.sample_steps, guidance_scale=t2v_cfg.guidance_scale,
                         eta=t2v_cfg.sample_eta),
    }
    sampling = {"lamd": f"DDIM {lamd_cfg.sample_steps}, CFG {lamd_cfg.guidance_scale}",
                "cmd": f"DDIM {cmd_cfg.content_sample_steps} + {cmd_cfg.motion_sample_steps}, CFG "
                       f"{cmd_cfg.guidance_scale} / {cmd_cfg.motion_guidance_scale}",
                "lvdm": f"DDIM {lvdm_cfg.sample_steps} (eta {lvdm_cfg.sample_eta}), guidance w "
                        f"{lvdm_cfg.guidance}",
                "lvdm_t2v": f"DDIM {t2v_cfg.sample_steps} (eta {t2v_cfg.sample_eta}), CFG "
                            f"{t2v_cfg.guidance_scale}"}

    def generate(name: str, **kw: Any) -> torch.Tensor:
        setting = settings["cmd_image" if name == "cmd" and "image" in kw else name]
        return pipes[name].generate(generator=torch.Generator().manual_seed(0), progress=False, **setting,
                                    **kw)

    def scores(videos: torch.Tensor, long: bool) -> dict[str, float]:
        if long:
            return {"long motion acc": round(long_motion_accuracy(videos, long_set)["long_motion_accuracy"],
                                             3)}
        clip = videos[:, :, :SHORT_FRAMES]
        cap = caption_accuracy(clip, captions)
        rule = long_motion_accuracy(clip, long_set, window=SHORT_FRAMES)["long_motion_accuracy"]
        return {"direction acc": round(float(motion_accuracy(clip[:, :, :DIRECTION_FRAMES], directions,
                                                             dirs)), 3),
                "bounce-rule acc": round(rule, 3),
                "colour acc": round(cap["colour_accuracy"], 3),
                "caption acc": round(cap["caption_accuracy"], 3)}

    rows: list[dict[str, Any]] = []

    def row(task: str, name: str, how: str, videos: torch.Tensor | None = None, seconds: float | None = None,
            gflops: float | None = None, long: bool = False, note: str = "") -> None:
        steps, clips = _steps(name, configs[name])
        metrics = trained[name]
        r = {"task": task, "model": {"lamd": "LaMD", "cmd": "CMD", "lvdm": "LVDM", "lvdm_t2v": "LVDM"}[name],
             "how": how, "setting": "toy", **dict.fromkeys(SCORES, "—")}
        if videos is not None:
            r.update(scores(videos, long))
        r.update({"frames": "—" if videos is None else int(videos.shape[2]),
                  "recon PSNR dB": round(float(metrics["recon_psnr"]), 2),
                  "train steps": steps, "clips seen": clips,
                  "train s": round(sum(metrics["stage_seconds"].values()), 1),
                  "sampler": sampling[name],
                  "GFLOPs / video": "—" if gflops is None else round(gflops, 2),
                  "s / video": "—" if seconds is None else round(seconds, 3), "note": note})
        rows.append(r)

    # real videos: the scores' ceiling
    rows.append({"task": "(real held-out videos)", "model": "—", "how": "the data itself", "setting": "toy",
                 **scores(real, False), **scores(long_real, True),
                 "frames": f"{SHORT_FRAMES} / {long_frames}", "recon PSNR dB": "—", "train steps": "—",
                 "clips seen": "—", "train s": "—", "sampler": "—", "GFLOPs / video": "—", "s / video": "—",
                 "note": "chance: direction 0.25, colour 0.2, caption 0.067; a static video: rule 0"})

    # ---- image-to-video -------------------------------------------------------------------------
    i2v = {
        "lamd": ("first frame + direction label",
                 lambda n: generate("lamd", image=first[:n], label=labels[:n])),
        "cmd": ("first frame as content frame + caption",
                lambda n: generate("cmd", image=first[:n], text=captions[:n])),
        "lvdm": ("first frame held f_t frames, then prediction (no direction given)",
                 lambda n: generate("lvdm", image=first[:n], num_frames=SHORT_FRAMES)),
    }
    for name, (how, fn) in i2v.items():
        videos, seconds, gflops = _measure(fn, len(first))
        row("image-to-video", name, how, videos, seconds, gflops)

    # ---- text-to-video ----------------------------------------------------------------------------
    videos, seconds, gflops = _measure(lambda n: generate("cmd", text=captions[:n]), len(captions))
    row("text-to-video", "cmd", "caption -> content frame -> motion", videos, seconds, gflops)
    videos, seconds, gflops = _measure(lambda n: generate("lvdm_t2v", text=captions[:n]), len(captions))
    row("text-to-video", "lvdm_t2v", "caption -> SD-style video UNet on per-frame VAE latents", videos,
        seconds, gflops,
        note="LVDMTextToVideo's classes at toy size, trained from scratch (no SD weights here)")
    try:
        pipes["lamd"].check_conditions(text=captions[:1])
        reason = ""
    except UnsupportedConditionError as err:
        reason = f"not supported: {err}"
    row("text-to-video", "lamd", "—", note=reason)

    # ---- long video ---------------------------------------------------------------------------------
    long_runs = {
        "lamd": ("clips chained from the last frame (first frame + label)",
                 lambda n: generate("lamd", image=long_first[:n], label=long_labels[:n],
                                    num_frames=long_frames)),
        "cmd": ("clips chained from the last frame (first frame + caption)",
                lambda n: generate("cmd", image=long_first[:n], text=long_captions[:n],
                                   num_frames=long_frames)),
    }
    for mode in ("hierarchical", "autoregressive"):
        long_runs[f"lvdm:{mode}"] = (f"generate_long, {mode} (unconditional)",
                                     lambda n,
                                     mode=mode: generate("lvdm", num_samples=n, num_frames=long_frames,
                                                                   mode=mode))
    for key, (how, fn) in long_runs.items():
        videos, seconds, gflops = _measure(fn, NUM_LONG)
        row(f"long video ({long_frames} frames)", key.split(":")[0], how, videos, seconds, gflops, long=True)
    return rows


register_table(
    "synthetic", build_synthetic_table, title="The three models on one synthetic task set (toy setting)",
    description="LaMD, CMD and LVDM trained on the same bouncing-shapes data (16 x 16; LaMD and CMD on "
                "8-frame "
    "clips, LVDM on 16; LVDM's text-to-video model, SD-style networks trained from scratch, on 8) with the "
    "same 1,600 optimiser steps each (the demos' networks and batch sizes; 'clips seen' "
    "and 'train s' give the resulting data and wall time on this 2-core CPU), then scored through the one "
    "generate protocol on 64 held-out first frames / captions and 4 long videos. direction acc: the initial "
    "direction over 4 frames (chance 0.25); bounce-rule acc: the clip moves by the bouncing rule (a static "
    "clip: 0); colour / caption acc: the object's colour / colour and shape (chance 0.2 / 0.067); long "
    "motion acc: 16-frame windows that follow the rule. The first row scores the real videos: the ceilings "
    "at 16 x 16. GFLOPs: one video's sampling (matmuls, convolutions, attention; a multiply-add = 2). Small "
    "networks trained for minutes: a comparison of the three designs at toy scale, not of the papers' "
    "models.")
