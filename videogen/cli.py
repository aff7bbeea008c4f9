"""The ``videogen`` command line (also ``python -m videogen``).

Training runs through Lightning's CLI; a few tool commands are dispatched before it::

    videogen fit|validate|test|predict --config recipes/<recipe>.yaml [--ckpt_path ...]   (LightningCLI)
    videogen demo     --out DIR [--seed N] [--fast]          the main demo (LaMD on synthetic data)
    videogen bench    --out DIR [--only a,b] [--quick]       paper tables -> results.json, docs/bench.md
    videogen sample   --model DIR --out DIR [...]            generate from a save_pretrained directory
    videogen evaluate --real DIR --fake DIR --metric fvd     metrics on two folders of videos

Recipes use ``class_path``/``init_args`` for the model and the data module (subclass mode), and
unknown keys are errors: a misspelt hyperparameter never passes silently.  Heavy libraries (torch,
lightning) are imported only once a command needs them, so ``videogen --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LIGHTNING_COMMANDS", "TOOL_COMMANDS", "main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
TOOL_COMMANDS = ("demo", "bench", "sample", "evaluate")
MODEL_PACKAGES = ("lamd", "cmd", "lvdm")
SEED_DEFAULT = 0

_USAGE = """\
usage: videogen <command> [options]   (videogen <command> --help for a command's options)

training (LightningCLI; recipes in recipes/*.yaml, see docs/recipes.md):
  fit        train:            videogen fit --config recipes/<recipe>.yaml [--ckpt_path last.ckpt]
  validate   validation loop:  videogen validate --config ... --ckpt_path model.ckpt
  test       test loop
  predict    prediction loop

tools:
  demo       train and sample LaMD on synthetic videos (CPU, minutes): videogen demo --out outputs/demo
  bench      rebuild the benchmark tables: videogen bench --out outputs/bench [--only lamd_params]
  sample     generate videos from a save_pretrained directory: videogen sample --model DIR --out DIR
  evaluate   metrics between two folders of videos: videogen evaluate --real DIR --fake DIR --metric fvd
"""


# ----------------------------------------------------------------------------- LightningCLI


def _videogen_cli_class() -> type:
    """Build ``VideogenCLI`` (a LightningCLI subclass) on first use, so that lightning loads lazily."""
    from lightning.pytorch.cli import LightningCLI

    class VideogenCLI(LightningCLI):
        """LightningCLI with the library's defaults: subclass mode for model and data, seed 0, strict keys.

        jsonargparse rejects unknown keys by default; this class keeps it that way (no
        ``parser_mode``/``exit_on_error`` relaxation), so a typo in a recipe stops the run.
        """

        def __init__(self, args: Sequence[str] | None = None, **kwargs: Any) -> None:
            from lightning.pytorch import LightningDataModule, LightningModule

            kwargs = {
                "model_class": LightningModule,
                "datamodule_class": LightningDataModule,
                "subclass_mode_model": True,
                "subclass_mode_data": True,
                "seed_everything_default": SEED_DEFAULT,
                # SaveConfigCallback refuses to overwrite config.yaml of an earlier run otherwise.
                "save_config_kwargs": {"overwrite": True},
                "parser_kwargs": {"prog": "videogen"},
                **kwargs,
            }
            super().__init__(args=args, **kwargs)

    return VideogenCLI


def __getattr__(name: str) -> Any:
    if name == "VideogenCLI":
        return _videogen_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- tool commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from videogen.lamd.demo import run_demo

    run_demo(out_dir=Path(args.out), seed=args.seed, fast=args.fast)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from videogen.bench.harness import run_bench

    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    run_bench(args.out, only=only, quick=args.quick, docs_path=None if args.no_docs else "auto")
    return 0


def _model_class(name: str) -> type:
    """Resolve the ``class`` entry of a saved config: a dotted path, or a name exported by a model package."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    for pkg in MODEL_PACKAGES:
        module = importlib.import_module(f"videogen.{pkg}")
        if hasattr(module, name):
            return getattr(module, name)
    raise ValueError(f"unknown model class {name!r}: not exported by videogen.{{{','.join(MODEL_PACKAGES)}}}")


#: save_pretrained layouts whose config file does not name the class: file name -> class
PRETRAINED_CONFIG_FILES = {"lamd_config.json": "videogen.lamd.LaMD"}


def load_pretrained(directory: str | Path) -> Any:
    """Load any model saved with ``save_pretrained``.

    The class comes from the directory's config: a file listed in ``PRETRAINED_CONFIG_FILES`` (e.g.
    ``lamd_config.json`` -> ``LaMD``), else the ``"class"`` entry of ``config.json`` (a dotted path or
    a name exported by ``videogen.lamd``/``cmd``/``lvdm``).
    """
    directory = Path(directory)
    for file_name, class_name in PRETRAINED_CONFIG_FILES.items():
        if (directory / file_name).is_file():
            return _model_class(class_name).from_pretrained(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        known = ", ".join(["config.json", *PRETRAINED_CONFIG_FILES])
        raise FileNotFoundError(f"{directory} has none of {known}: --model must be a save_pretrained directory")
    name = json.loads(config_path.read_text()).get("class")
    if not name:
        raise ValueError(f"{config_path} has no 'class' entry naming the model class")
    return _model_class(name).from_pretrained(directory)


def _cmd_sample(args: argparse.Namespace) -> int:
    import inspect

    import torch

    from videogen.core.video import from_uint8, save_contact_sheet, write_video

    model = load_pretrained(args.model).eval()
    params = inspect.signature(model.generate).parameters
    kwargs: dict[str, Any] = {"generator": torch.Generator().manual_seed(args.seed)}
    if args.image is not None:
        import imageio.v2 as imageio

        frame = torch.from_numpy(imageio.imread(args.image)[None, ..., :3].copy())  # (1, H, W, 3) uint8
        image = from_uint8(frame)[:, 0]  # (1, H, W, 3) -> (3, 1, H, W) -> (3, H, W) in [-1, 1]
        kwargs["image"] = image[None].expand(args.num_samples, -1, -1, -1)  # (B, 3, H, W)
    if args.label is not None:
        kwargs["label"] = torch.full((args.num_samples,), args.label, dtype=torch.long)
    if args.text is not None:
        kwargs["text"] = [args.text] * args.num_samples
    for key in ("num_steps", "sampler", "guidance_scale"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if "num_samples" in params:
        kwargs["num_samples"] = args.num_samples
    unsupported = sorted(k for k in kwargs if k not in params)
    if unsupported:
        raise SystemExit(f"videogen sample: {type(model).__name__}.generate does not take {unsupported}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise SystemExit(f"videogen sample: {type(model).__name__}.generate needs {flags}")
    with torch.no_grad():
        videos = model.generate(**kwargs)  # (B, C, T, H, W) in [-1, 1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, video in enumerate(videos):
        write_video(out / f"sample_{i:03d}.mp4", video, fps=args.fps)
    save_contact_sheet(out / "samples.png", videos)
    print(f"wrote {len(videos)} videos to {out}")
    return 0


def _read_folder(folder: str, num_frames: int, size: int | None) -> Any:
    """All videos of a folder as float ``(N, C, T, H, W)`` in [-1, 1] (first ``num_frames`` frames)."""
    import torch

    from videogen.core.video import VIDEO_EXTENSIONS, from_uint8, read_video, resize_center_crop

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {folder}")
    videos = []
    for f in files:
        video = from_uint8(read_video(f, num_frames=num_frames))  # (T, H, W, C) -> (C, T, H, W)
        videos.append(resize_center_crop(video, size) if size else video)
    return torch.stack(videos)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from videogen.core.metrics.fvd import FrechetVideoDistance
    from videogen.core.metrics.psnr_ssim import psnr_per_video, ssim_per_video

    # load I3D before reading any video: missing weights fail fast with a message saying where to get them
    fvd = FrechetVideoDistance(feature_extractor=args.i3d, resize=args.resize) if "fvd" in args.metric else None
    real = _read_folder(args.real, args.num_frames, args.size)
    fake = _read_folder(args.fake, args.num_frames, args.size)
    results: dict[str, Any] = {"num_real": len(real), "num_fake": len(fake), "num_frames": args.num_frames}
    if fvd is not None:
        fvd.update(real, real=True)
        fvd.update(fake, real=False)
        results["fvd"] = float(fvd.compute())
        results["fvd_resize"] = args.resize
    for name in ("psnr", "ssim"):
        if name in args.metric:
            if real.shape != fake.shape:
                raise ValueError(f"{name} pairs videos by file order and needs equal shapes: {real.shape} vs {fake.shape}")
            fn = psnr_per_video if name == "psnr" else ssim_per_video
            results[name] = float(fn(fake, real).mean())
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def _tool_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"videogen {command}")
    if command == "demo":
        p.description = "Train LaMD on synthetic moving shapes (CPU), sample, render and score the videos."
        p.add_argument("--out", required=True, help="output directory (videos, contact sheet, metrics.json)")
        p.add_argument("--seed", type=int, default=SEED_DEFAULT, help="seed for data, training and sampling")
        p.add_argument("--fast", action="store_true", help="a seconds-long smoke version (used by the tests)")
    elif command == "bench":
        p.description = "Build the registered benchmark tables; write results.json and docs/bench.md."
        p.add_argument("--out", required=True, help="output directory (results.json, bench.md, per-table files)")
        p.add_argument("--only", default=None, help="comma-separated table names (default: all)")
        p.add_argument("--quick", action="store_true", help="cheapest version of every table")
        p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/bench.md of the checkout")
    elif command == "sample":
        p.description = "Generate videos with a model saved by save_pretrained (config.json + model.safetensors)."
        p.add_argument("--model", required=True, help="directory written by <Model>.save_pretrained")
        p.add_argument("--out", required=True, help="output directory for mp4s and a contact sheet")
        p.add_argument("--num-samples", type=int, default=4)
        p.add_argument("--image", default=None, help="first frame (PNG/JPG) for image-to-video models")
        p.add_argument("--label", type=int, default=None, help="class label for class-conditional models")
        p.add_argument("--text", default=None, help="caption for text-conditional models")
        p.add_argument("--num-steps", type=int, default=None, help="sampling steps (model default if unset)")
        p.add_argument("--sampler", default=None, help="ddim | ddpm | dpm++ (model default if unset)")
        p.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
        p.add_argument("--seed", type=int, default=SEED_DEFAULT)
        p.add_argument("--fps", type=float, default=8.0)
    elif command == "evaluate":
        p.description = "Compare two folders of videos (FVD needs local I3D weights: --i3d PATH)."
        p.add_argument("--real", required=True, help="folder of real videos")
        p.add_argument("--fake", required=True, help="folder of generated videos")
        p.add_argument("--metric", action="append", choices=("fvd", "psnr", "ssim"), required=True,
                       help="repeat for several metrics; psnr/ssim pair files by sorted name")
        p.add_argument("--num-frames", type=int, default=16, help="frames read from the start of each video")
        p.add_argument("--size", type=int, default=None, help="resize short side + centre-crop to this size")
        p.add_argument("--i3d", default=None, help="i3d_pretrained_400.pt or i3d_torchscript.pt (file or dir)")
        p.add_argument("--resize", default="direct", choices=("direct", "center_crop"),
                       help="FVD preprocessing to 224x224 (TATS/LVDM: direct; VideoGPT/CMD: center_crop)")
        p.add_argument("--out", default=None, help="also write the results JSON here")
    return p


_TOOLS = {"demo": _cmd_demo, "bench": _cmd_bench, "sample": _cmd_sample, "evaluate": _cmd_evaluate}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``videogen``; returns the exit status (LightningCLI exits itself on bad input)."""
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from videogen import __version__

        print(f"videogen {__version__}")
        return 0
    command = argv[0]
    if command in _TOOLS:
        return _TOOLS[command](_tool_parser(command).parse_args(argv[1:]))
    if command in LIGHTNING_COMMANDS:
        # args=None lets LightningCLI read sys.argv itself (it warns when given both)
        _videogen_cli_class()(args=None if from_sys_argv else argv)
        return 0
    print(f"videogen: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2
