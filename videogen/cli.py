"""The ``videogen`` command line (also ``python -m videogen``).

Training runs through Lightning's CLI; a few tool commands are dispatched before it::

    videogen fit|validate|test|predict --config recipes/<recipe>.yaml [--ckpt_path ...]   (LightningCLI)
    videogen demo     [--model all|lamd|cmd|lvdm] --out DIR   CPU demos on synthetic data (default: all three)
    videogen bench    --out DIR [--only a,b] [--quick]       paper tables -> results.json, docs/bench.md
    videogen sample   --model DIR --out DIR [...]            generate from a save_pretrained directory / .ckpt
    videogen generate --model M --recipe R --out DIR         N samples per item of a split (test-set
    generation)
    videogen evaluate --real DIR --fake DIR --metric fvd     streaming metrics on two folders of videos
    videogen convert  lvdm|cmd --ckpt FILE --out DIR         official checkpoints -> a save_pretrained folder
    videogen cache    --recipe R --out DIR                   a recipe's data through its frozen stages

Recipes use ``class_path``/``init_args`` for the model and the data module (subclass mode), and
unknown keys are errors: a misspelt hyperparameter never passes silently.  Heavy libraries (torch,
lightning) are imported only once a command needs them, so ``videogen --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videogen.core.files import FolderLockedError  # stdlib only: --help stays instant

__all__ = ["LIGHTNING_COMMANDS", "TOOL_COMMANDS", "CommandError", "main", "user_error"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
TOOL_COMMANDS = ("demo", "bench", "sample", "generate", "evaluate", "convert", "cache")
#: `videogen evaluate --metric` choices (videogen.evaluation.METRICS, repeated to keep --help import-free)
METRIC_CHOICES = ("fvd", "kvd", "cfvd", "fid", "lpips", "clipsim", "psnr", "ssim")
SEED_DEFAULT = 0

_USAGE = """\
usage: videogen <command> [options]   (videogen <command> --help for a command's options)

training (LightningCLI; recipes in recipes/*.yaml, see docs/recipes.md):
  fit        train:            videogen fit --config recipes/<recipe>.yaml [--ckpt_path last.ckpt]
  validate   validation loop:  videogen validate --config ... --ckpt_path model.ckpt
  test       test loop
  predict    prediction loop

tools:
  demo       train and sample the models on synthetic videos (CPU, minutes): videogen demo \
[--model cmd] --out DIR
  bench      rebuild the benchmark tables: videogen bench --out outputs/bench [--only lamd_params]
  sample     generate videos from a save_pretrained directory or .ckpt: videogen sample --model DIR --out DIR
  generate   N samples per item of a test split: videogen generate --model M --recipe R --out DIR
  evaluate   metrics between two folders of videos: videogen evaluate --real DIR --fake DIR --metric fvd
  convert    official LVDM / CMD checkpoints -> a videogen folder: videogen convert lvdm --ckpt \
short_sky.ckpt --out DIR
  cache      encode a stage-2 recipe's videos and captions once (latents on disk): videogen cache \
--recipe R --out DIR
"""

#: the released LVDM files `videogen convert lvdm` knows without a config (videogen.lvdm.convert.PRESETS;
#: repeated here to keep --help import-free, checked equal by the tests)
LVDM_PRESETS = ("ae_sky", "short_sky", "ae_taichi", "short_taichi", "t2v")


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
                # exit_on_error=False: a bad recipe key or value raises ArgumentError, which main() prints
                # as one "videogen: error:" line (strictness is unchanged)
                "parser_kwargs": {"prog": "videogen", "exit_on_error": False},
                **kwargs,
            }
            super().__init__(args=args, **kwargs)

        def _parse_ckpt_path(self) -> None:
            """Check ``--ckpt_path`` before Lightning reads it: a missing path, a folder or a FIFO, a file
            that is not a readable checkpoint (read with ``weights_only=True``), or one whose recorded
            class is not the recipe's model class ends in one error line; no class a checkpoint names
            is imported (Lightning's own parsing would import ``hyper_parameters._class_path``)."""
            import stat

            from videogen.core.persistence import safe_load

            sub = self.config.get("subcommand")
            ckpt_path = self.config[sub].get("ckpt_path") if sub else None
            if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc", "registry"):
                return
            path = Path(ckpt_path)
            if not path.exists():
                raise FileNotFoundError(f"--ckpt_path {path} not found")
            if path.is_dir():
                raise IsADirectoryError(f"--ckpt_path {path} is a folder: give the .ckpt file")
            if not stat.S_ISREG(path.stat().st_mode):
                raise ValueError(f"--ckpt_path {path} is not a regular file")
            ckpt = safe_load(path, "checkpoint (--ckpt_path)")
            hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
            named = hparams.get("_class_path")
            model = self.config[sub].get("model")
            wanted = model.get("class_path") if hasattr(model, "get") else None
            if named is not None and wanted is not None and named != wanted:
                raise ValueError(f"--ckpt_path {path} is a checkpoint of {named}, not of the recipe's model "
                                 f"{wanted}")
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            """A GPU accelerator on a machine without one ends in one error line, before anything is built."""
            import torch

            sub = self.config.get("subcommand")
            trainer = self.config[sub].get("trainer") if sub else None
            accelerator = str(trainer.get("accelerator", "")) if trainer is not None else ""
            if accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
                raise ValueError(f"--trainer.accelerator={accelerator}: no CUDA device is available here "
                                 "(use cpu)")

        def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
            """Lightning restores ``--ckpt_path`` with ``weights_only=True`` unless the recipe says otherwise
            (its own default unpickles anything the file holds)."""
            kwargs = super()._prepare_subcommand_kwargs(subcommand)
            if kwargs.get("ckpt_path") and kwargs.get("weights_only") is None:
                kwargs["weights_only"] = True
            return kwargs

    return VideogenCLI


def __getattr__(name: str) -> Any:
    if name == "VideogenCLI":
        return _videogen_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- tool commands


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.model == "all":
        from videogen.toy.tour import run_tour

        run_tour(out_dir=Path(args.out), seed=args.seed, fast=args.fast)
        return 0
    if args.model == "cmd":
        from videogen.toy.cmd import run_demo as run
    elif args.model == "lvdm":
        from videogen.toy.lvdm import run_demo as run
    else:
        from videogen.toy.lamd import run_demo as run
    run(out_dir=Path(args.out), seed=args.seed, fast=args.fast)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from videogen.bench.harness import run_bench

    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    if args.docs and not Path(args.docs).resolve().parent.is_dir():  # before hours of computing, not after
        raise CommandError(f"--docs {args.docs}: its folder {Path(args.docs).parent} does not exist")
    _check_out(args.out)
    run_bench(args.out, only=only, quick=args.quick,
              docs_path=None if args.no_docs else (args.docs or "auto"))
    return 0


def _recipe_class(name: Any, base: type = object) -> type:
    """The class a recipe's ``class_path`` names: like LightningCLI's rule, it must be a class and a
    subclass of ``base`` (recipes may name the user's own classes; a function such as ``os.system`` is
    refused before anything is called)."""
    import inspect

    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"class_path must be a dotted class name (package.module.Class), got {name!r}")
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"class_path {name!r} cannot be imported: {exc}") from None
    if not inspect.isclass(obj) or not issubclass(obj, base):
        raise ValueError(f"class_path {name!r} is not a {base.__name__} class")
    return obj


def _read_image(path: str, size: int | None) -> Any:
    """An RGB image file as float ``(3, H, W)`` in [-1, 1], resized (short side) and centre-cropped to
    ``size``."""
    import imageio.v2 as imageio
    import torch

    from videogen.core.video import from_uint8, resize_center_crop

    if not Path(path).is_file():
        raise FileNotFoundError(f"image {path} not found")
    frame = imageio.imread(path)
    if frame.ndim == 2:
        frame = frame[..., None].repeat(3, axis=-1)
    video = from_uint8(torch.from_numpy(frame[None, ..., :3].copy()))  # (1, H, W, 3) -> (3, 1, H, W)
    if size is not None and tuple(video.shape[-2:]) != (size, size):
        video = resize_center_crop(video, size)
    return video[:, 0]


def _check_out(out: str | None) -> None:
    if out and Path(out).exists() and not Path(out).is_dir():
        raise CommandError(f"--out {out} is a file, not a folder")


def _check_device(device: str) -> None:
    """Refuse a device this machine does not have, before a model is loaded."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    if str(device).startswith("mps") and not torch.backends.mps.is_available():
        raise CommandError(f"--device {device}: no MPS device is available here (use --device cpu)")


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from videogen.core.persistence import load_pretrained
    from videogen.core.pipeline import UnsupportedConditionError
    from videogen.core.video import save_contact_sheet, write_video

    _check_out(args.out)
    _check_device(args.device)

    model = load_pretrained(*args.model).eval().to(args.device)
    kwargs: dict[str, Any] = {"generator": torch.Generator(device=args.device).manual_seed(args.seed)}
    images = args.image or []
    if images:
        size = getattr(model, "image_size", None) if args.resize else None
        frames = torch.stack([_read_image(p, size) for p in images])  # (I, 3, H, W)
        # every image num_samples times: (I * num_samples, 3, H, W)
        kwargs["image"] = frames.repeat_interleave(args.num_samples, dim=0).to(args.device)
    batch = max(1, len(images)) * args.num_samples
    kwargs["num_samples"] = batch
    if args.label is not None:
        kwargs["label"] = torch.full((batch,), args.label, dtype=torch.long, device=args.device)
    if args.text is not None:
        kwargs["text"] = [args.text] * batch
    for key in ("num_steps", "num_frames", "sampler", "guidance_scale", "max_frames"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    try:
        model.check_conditions(kwargs.get("image"), kwargs.get("label"), kwargs.get("text"))
    except UnsupportedConditionError as exc:
        flags = " ".join(f"--{c}" for c in model.conditions) or "none"
        raise CommandError(f"{exc} (condition flags it takes: {flags})") from None
    with torch.no_grad():
        videos = model.generate(**kwargs).float().cpu()  # (B, C, T, H, W) in [-1, 1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, video in enumerate(videos):
        write_video(out / f"sample_{i:03d}.mp4", video, fps=args.fps)
    save_contact_sheet(out / "samples.png", videos)
    print(f"wrote {len(videos)} videos to {out}")
    return 0


def _instantiate(config: Any, base: type = object) -> Any:
    """Build ``{class_path, init_args}`` configs (nested ones too), as a recipe's ``data`` block holds them;
    the outer class must be a ``base`` (see :func:`_recipe_class`)."""
    if isinstance(config, dict) and "class_path" in config:
        cls = _recipe_class(config["class_path"], base)
        return cls(**{k: _instantiate(v) for k, v in (config.get("init_args") or {}).items()})
    if isinstance(config, dict):
        return {k: _instantiate(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_instantiate(v) for v in config]
    return config


def _merge_recipe(base: Any, over: Any) -> Any:
    """``over`` merged into ``base`` as LightningCLI merges ``--config A --config B``: mappings key by key,
    anything else (and a block whose ``class_path`` changes) replaced."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    if "class_path" in over and over.get("class_path") != base.get("class_path"):
        return over
    return {**base, **{k: _merge_recipe(base.get(k), v) for k, v in over.items()}}


def _read_recipe(*paths: str) -> Any:
    """One recipe file, or several merged in order (:func:`_merge_recipe`), read with ``yaml.safe_load``."""
    import yaml

    config: Any = {}
    for recipe in paths:
        path = Path(recipe)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {recipe} not found")
        try:
            layer = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CommandError(f"recipe {recipe} is not YAML: {' '.join(str(exc).split())[:200]}") from None
        config = _merge_recipe(config, layer)
    return config


def _split_dataset(recipe: str, split: str) -> Any:
    """The ``dataset`` / ``val_dataset`` / ``test_dataset`` block of a recipe's data module, built."""
    recipe_dict = _read_recipe(recipe)
    data = recipe_dict.get("data") if isinstance(recipe_dict, dict) else None
    data = (data or {}).get("init_args") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise CommandError(f"recipe {recipe} has no data.init_args block (a LightningCLI recipe's data "
                           "module)")
    key = {"train": "dataset", "val": "val_dataset", "test": "test_dataset"}[split]
    block = data.get(key) or (data.get("val_dataset") if split == "test" else None)
    if not block:
        raise ValueError(f"{recipe} has no data.init_args.{key}: give --split with a split it defines")
    from torch.utils.data import Dataset

    if isinstance(block, dict) and isinstance(block.get("init_args"), dict) and "dtype" in block["init_args"]:
        # a recipe's uint8 frames become float on the device in training; generate/evaluate read items
        block = {**block, "init_args": {**block["init_args"], "dtype": "float32"}}
    return _instantiate(block, Dataset)


def _cmd_generate(args: argparse.Namespace) -> int:
    from videogen.core.persistence import load_pretrained
    from videogen.evaluation import generate_split

    _check_out(args.out)
    _check_device(args.device)
    if args.random_items and args.limit is None:
        raise CommandError("--random-items needs --limit N (how many items to draw)")
    if args.recipe is None and args.num_samples is None:
        raise CommandError("give --recipe (samples per item of its split) or, for an unconditional model, "
                           "--num-samples N")
    if args.recipe is not None and args.num_samples is not None:
        raise CommandError("--num-samples is for generating without --recipe (with a recipe use "
                           "--samples-per-item)")
    model = load_pretrained(*args.model).eval().to(args.device)
    if args.recipe is None:
        required = tuple(getattr(model, "required_conditions", ()))
        if required:
            raise CommandError(f"{type(model).__name__} needs {', '.join(required)} for every video: give "
                               "--recipe whose split provides them")
        dataset = [{}] * args.num_samples  # one item per video, no condition, no real clip
        args.no_real, args.conditions = True, ""
    else:
        dataset = _split_dataset(args.recipe, args.split)
    if args.limit is not None:
        from torch.utils.data import Subset

        n = min(args.limit, len(dataset))
        if args.random_items:
            import random

            dataset = Subset(dataset, sorted(random.Random(args.seed).sample(range(len(dataset)), n)))
        else:
            dataset = Subset(dataset, range(n))

    kwargs = {k: getattr(args, k) for k
              in ("num_steps", "num_frames", "sampler", "guidance_scale", "max_frames")
              if getattr(args, k) is not None}
    if args.conditions is not None:
        kwargs["conditions"] = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    summary = generate_split(model, dataset, args.out, args.samples_per_item, batch_size=args.batch_size,
                             device=args.device, seed=args.seed, write_real=not args.no_real, fps=args.fps,
                             **kwargs)
    print(json.dumps(summary))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from videogen.evaluation import evaluate_folders

    _check_device(args.device)
    if args.out and Path(args.out).is_dir():
        raise CommandError(f"--out {args.out} is a folder: give the JSON file to write")
    results = evaluate_folders(
        args.real, args.fake, args.metric, num_frames=args.num_frames, size=args.size,
                               batch_size=args.batch_size,
        device=args.device, i3d=args.i3d, resize=args.resize, real_stats=args.real_stats,
        inception=args.inception, lpips_backbone=args.lpips_backbone, clip_model=args.clip_model,
        clip_weights=args.clip_weights, progress=not args.no_progress)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        from videogen.core.files import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """Official checkpoint(s) -> a ``save_pretrained`` folder (network or pipeline) that
    ``videogen.load_pretrained``, ``videogen sample`` and ``videogen generate`` open."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} already exists: remove it or choose another folder")
    for ckpt in [*args.ckpt, *([args.ae_ckpt] if getattr(args, "ae_ckpt", None) else [])]:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"--ckpt {ckpt} not found" if not Path(ckpt).exists()
                                    else f"--ckpt {ckpt} is not a file")
    if args.source == "lvdm":
        (ckpt,) = args.ckpt
        preset = args.preset
        if preset is None and args.config is None:
            preset = Path(ckpt).stem if Path(ckpt).stem in LVDM_PRESETS else None
            if preset is None:
                raise CommandError(f"--ckpt {ckpt}: give the official config (--config configs/.../X.yaml)"
                                   f" or --preset ({', '.join(LVDM_PRESETS)})")
        from videogen.lvdm.convert import convert_lvdm

        extra = {"tokenizer": args.tokenizer} if args.tokenizer else {}
        converted = convert_lvdm(ckpt, config=args.config, preset=preset, ae_ckpt=args.ae_ckpt,
                                 ema=args.ema, official=not args.corrected, **extra)
    else:
        from videogen.cmd.convert import convert_cmd

        converted = convert_cmd(*args.ckpt, ema=args.ema, official=not args.corrected)
    converted.save_pretrained(out)
    print(json.dumps({"out": str(out), "class": type(converted).__name__,
                      "mode": "corrected" if args.corrected else "official"}))
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from videogen.data.cache import cache_command

    return cache_command(args, _read_recipe(*args.recipe), _instantiate)


def _count(low: int):
    """An argparse type: an integer >= ``low`` (counts >= 1, seeds and labels >= 0)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def _finite(low: float, above: bool = False):
    """An argparse type: a finite number >= ``low`` (> ``low`` with ``above``); NaN and inf are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if above else '>='} {low}, got "
                                             f"{text}")
        return value
    return parse


def _tool_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"videogen {command}", exit_on_error=False)
    if command == "demo":
        p.description = ("Train models on synthetic moving shapes (CPU), sample, render and score the "
                         "videos: all three briefly with one summary page (default), or one model's full "
                         "demo.")
        p.add_argument("--model", choices=("all", "lamd", "cmd", "lvdm"), default="all",
                       help="all (brief runs of the three, OUT/index.html), or one full demo: lamd "
                            "(image-to-video), cmd (text-to-video), lvdm (long video)")
        p.add_argument("--out", required=True, help="output directory (videos, contact sheet, metrics.json)")
        p.add_argument("--seed", type=_count(0), default=SEED_DEFAULT,
                       help="seed for data, training and sampling")
        p.add_argument("--fast", action="store_true", help="a seconds-long smoke version (used by the tests)")
    elif command == "bench":
        p.description = "Build the registered benchmark tables; write results.json and docs/bench.md."
        p.add_argument("--out", required=True,
                       help="output directory (results.json, bench.md, per-table files)")
        p.add_argument("--only", default=None, help="comma-separated table names (default: all)")
        p.add_argument("--quick", action="store_true", help="cheapest version of every table")
        p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/bench.md of the checkout")
        p.add_argument("--docs", default=None, help="write the report there instead of docs/bench.md")
    elif command == "sample":
        p.description = "Generate videos with a save_pretrained directory or a final-stage .ckpt."
        p.add_argument("--model", required=True, nargs="+",
                       help="directory written by <Model>.save_pretrained, or final-stage .ckpt file(s) "
                            "(CMD: the content and the motion stage's)")
        p.add_argument("--out", required=True, help="output directory for mp4s and a contact sheet")
        p.add_argument("--num-samples", type=_count(1), default=4,
                       help="samples per image (or in all without --image)")
        p.add_argument("--image", action="append", default=None,
                       help="first frame (PNG/JPG) for image-to-video models; repeat for several images")
        p.add_argument("--no-resize", dest="resize", action="store_false",
                       help="do not resize + centre-crop images to the model's size")
        p.add_argument("--label", type=_count(0), default=None,
                       help="class label for class-conditional models")
        p.add_argument("--text", default=None, help="caption for text-conditional models")
        p.add_argument("--num-steps", type=_count(1), default=None,
                       help="sampling steps (model default if unset)")
        p.add_argument("--num-frames", type=_count(1), default=None,
                       help="frames per video (default one clip; LVDM samples longer videos hierarchically, "
                            "LaMD and CMD chain clips)")
        p.add_argument("--max-frames", type=_count(1), default=None,
                       help="allow --num-frames above 1024 (long videos take hours)")
        p.add_argument("--sampler", default=None,
                       help="ddim | ddpm | dpm++ | unipc (model default if unset; docs/diffusion.md: unipc "
                            "at 20 steps)")
        p.add_argument("--guidance-scale", type=_finite(0.0), default=None,
                       help="classifier-free guidance scale")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
        p.add_argument("--seed", type=_count(0), default=SEED_DEFAULT)
        p.add_argument("--fps", type=_finite(0.0, above=True), default=8.0)
    elif command == "generate":
        p.description = ("Generate N samples per item of a recipe's dataset split (test-set generation), "
                         "resumable; writes OUT/fake and OUT/real with manifests, the layout `videogen "
                         "evaluate` reads.")
        p.add_argument("--model", required=True, nargs="+",
                       help="save_pretrained directory or final-stage .ckpt(s)")
        p.add_argument("--recipe", default=None,
                       help="recipe whose data block defines the split; leave it out for an unconditional "
                            "model and give --num-samples (e.g. 2048 for FVD on Sky Time-lapse)")
        p.add_argument("--num-samples", type=_count(1), default=None,
                       help="without --recipe: how many unconditional videos to generate")
        p.add_argument("--split", default="test", choices=("train", "val", "test"),
                       help="test falls back to the recipe's val_dataset")
        p.add_argument("--out", required=True)
        p.add_argument("--samples-per-item", type=_count(1), default=1, help="e.g. 100 for the BAIR protocol")
        p.add_argument("--limit", type=_count(1), default=None, help="first N items only")
        p.add_argument("--random-items", action="store_true",
                       help="with --limit: N items drawn at random (seeded by --seed) instead of the first "
                            "N, e.g. LVDM's 2,048 real clips from the shuffled training split")
        p.add_argument("--batch-size", type=_count(1), default=16)
        p.add_argument("--device", default="cpu")
        p.add_argument("--num-steps", type=_count(1), default=None)
        p.add_argument("--sampler", default=None)
        p.add_argument("--guidance-scale", type=_finite(0.0), default=None)
        p.add_argument("--num-frames", type=_count(1), default=None,
                       help="frames per generated video (default one clip)")
        p.add_argument("--max-frames", type=_count(1), default=None, help="allow --num-frames above 1024")
        p.add_argument("--conditions", default=None,
                       help="comma-separated conditions taken from each item: image (its first frame), "
                            "label, text (its caption); default the label / caption the model takes, and the "
                            "image where the model needs it")
        p.add_argument("--seed", type=_count(0), default=SEED_DEFAULT)
        p.add_argument("--fps", type=_finite(0.0, above=True), default=8.0)
        p.add_argument("--no-real", action="store_true",
                       help="do not write the split's real clips to OUT/real")
    elif command == "evaluate":
        p.description = ("Score a folder of generated videos against real ones, streaming in batches on a "
                         "device (FVD/KVD need local I3D weights: --i3d PATH).")
        p.add_argument("--real", required=True, help="folder of real videos (manifest.jsonl optional)")
        p.add_argument("--fake", required=True, help="folder of generated videos (manifest.jsonl optional)")
        p.add_argument("--metric", action="append", choices=METRIC_CHOICES, required=True,
                       help="repeat for several; psnr/ssim/lpips pair videos by the manifest's source or by "
                            "name")
        p.add_argument("--num-frames", type=_count(1), default=16,
                       help="frames read from the start of each video")
        p.add_argument("--size", type=_count(1), default=None,
                       help="resize short side + centre-crop to this size")
        p.add_argument("--batch-size", type=_count(1), default=16, help="videos per batch (bounds memory)")
        p.add_argument("--device", default="cpu")
        p.add_argument("--i3d", default=None,
                       help="i3d_pretrained_400.pt or i3d_torchscript.pt (file or dir)")
        p.add_argument("--resize", default="direct", choices=("direct", "center_crop"),
                       help="FVD preprocessing to 224x224 (TATS/LVDM: direct; VideoGPT/CMD: center_crop)")
        p.add_argument("--real-stats", default=None,
                       help="real I3D statistics (.safetensors): read if it exists, else written")
        p.add_argument("--inception", default=None,
                       help="FID Inception weights (torch-fidelity's pt_inception file)")
        p.add_argument("--lpips-backbone", default=None, help="AlexNet weights for LPIPS (file or directory)")
        p.add_argument("--clip-model", default=None,
                       help="open_clip model name for clipsim (default ViT-B-32)")
        p.add_argument("--clip-weights", default=None, help="open_clip checkpoint for clipsim")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--out", default=None, help="also write the results JSON here")
    elif command == "convert":
        p.description = ("Convert official checkpoints (YingqingHe/LVDM's released files and configs, "
                         "NVlabs/CMD's training scripts' files) into a folder that "
                         "videogen.load_pretrained, `videogen sample` and `videogen generate` open. Files "
                         "are read without running code from them. By default the folder computes the "
                         "official function (docs/lvdm.md, docs/cmd.md: 'Official weights'); --corrected "
                         "loads the same weights into videogen's corrected model.")
        sources = p.add_subparsers(dest="source", required=True, metavar="{lvdm,cmd}")
        lvdm = sources.add_parser(
            "lvdm", exit_on_error=False, help="an LVDM checkpoint (+ official config)",
            description="An official LVDM checkpoint: 3D autoencoder, short, prediction / interpolation or "
                        "text-to-video model.")
        lvdm.add_argument("--ckpt", required=True, nargs=1,
                          help="the official .ckpt (e.g. lvdm_short/short_sky.ckpt)")
        lvdm.add_argument("--config", default=None,
                          help="its official config (configs/videoae/*.yaml, configs/lvdm_short/*.yaml, "
                               "...); not needed for the released files (see --preset)")
        lvdm.add_argument("--preset", default=None, choices=LVDM_PRESETS,
                          help="a released file's settings (default: the --ckpt file name if it is one of "
                               "them)")
        lvdm.add_argument("--ae-ckpt", default=None,
                          help="the autoencoder checkpoint when the model file lacks first_stage_model.*")
        ema = lvdm.add_mutually_exclusive_group()
        ema.add_argument("--ema", dest="ema", action="store_const", const=True, default=None,
                         help="use the EMA weights (default: what the official script uses: raw for short "
                              "videos, EMA for long)")
        ema.add_argument("--no-ema", dest="ema", action="store_const", const=False,
                         help="use the raw weights")
        lvdm.add_argument("--tokenizer", default=None,
                          help="text-to-video only: the CLIP ViT-L/14 tokenizer folder (tokenizer/ of a "
                               "Stable Diffusion 1.x download); the checkpoint holds none")
        lvdm.add_argument("--corrected", action="store_true",
                          help="videogen's corrected model instead of the official function")
        lvdm.add_argument("--out", required=True, help="the folder to write (must not exist or be empty)")
        cmd = sources.add_parser(
            "cmd", exit_on_error=False, help="CMD training scripts' files",
            description="Files of the official CMD training scripts ({autoenc|cdiff_model|mdiff_model, "
                        "ema, opt, args}): one file -> that network; the autoencoder + content + motion "
                        "files -> a CMD pipeline.")
        cmd.add_argument("--ckpt", required=True, nargs="+", help="one or more official .pt/.pth files")
        cmd.add_argument("--no-ema", dest="ema", action="store_false",
                         help="raw DiT weights instead of the EMA ones (default EMA)")
        cmd.add_argument("--corrected", action="store_true",
                         help="videogen's corrected networks (rotary positions, true position grid)")
        cmd.add_argument("--out", required=True, help="the folder to write (must not exist or be empty)")
    elif command == "cache":
        p.description = ("Encode a recipe's videos and captions once through its frozen stages into a latent "
                         "cache (shards + index.json; resumable; rank r of W writes shards r, r+W, ...) that "
                         "the recipe trains from with data: videogen.data.LatentCache {root: OUT}.")
        p.add_argument("--recipe", required=True, nargs="+",
                       help="the stage-2 recipe (its model and data blocks); more files are merged over it "
                            "as `videogen fit --config A --config B` does (e.g. a data block for shards)")
        p.add_argument("--out", required=True, help="cache directory")
        p.add_argument("--split", default="train", choices=("train", "val"))
        p.add_argument("--clips-per-video", type=_count(1), default=1,
                       help="clips stored per video (the dataset's own clip draws; default 1)")
        p.add_argument("--flip", action="store_true", help="also store each clip mirrored left-right")
        p.add_argument("--shard-size", type=_count(1), default=256, help="videos per shard")
        p.add_argument("--batch-size", type=_count(1), default=8, help="clips per encoder call")
        p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
        p.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK under torchrun), ...")
        p.add_argument("--rank", type=_count(0), default=None, help="this writer's rank (default $RANK or 0)")
        p.add_argument("--world-size", type=_count(1), default=None,
                       help="number of writers (default $WORLD_SIZE or 1)")
        p.add_argument("--no-progress", action="store_true")
    return p


_TOOLS = {"demo": _cmd_demo, "bench": _cmd_bench, "sample": _cmd_sample, "generate": _cmd_generate,
          "evaluate": _cmd_evaluate, "convert": _cmd_convert,
          "cache": _cmd_cache}


class CommandError(ValueError):
    """A mistake in a command's input that the user can fix; reported as one ``videogen: error:`` line."""


#: exception types that a user's input can cause (bad value, missing file or weights, NaN training loss);
#: reported as one line when videogen's own code raised them, with a traceback otherwise
USER_ERROR_TYPES = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                    FloatingPointError, FolderLockedError)
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _raised_by_videogen(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)


def user_error(exc: BaseException) -> BaseException | None:
    """The exception to report in one line, or None to keep the traceback.

    Follows the ``raise ... from`` chain (LightningCLI/jsonargparse wrap an error raised while building a
    class in "Does not validate against any of the Union subtypes") to the innermost exception of a
    :data:`USER_ERROR_TYPES` type that videogen's own code raised.
    """
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    for candidate in reversed(chain):
        if isinstance(candidate, USER_ERROR_TYPES) and _raised_by_videogen(candidate):
            return candidate
    return None


def _compact_parser_error(message: str) -> str:
    """jsonargparse's multi-line Union report -> ``Parser key "k": <the errors that are not 'None'>``."""
    message = " ".join(message.split())
    if " Errors: " not in message:
        return message
    head = message.split(": Does not validate", 1)[0]
    body = message.split(" Errors: ", 1)[1]
    given = body.split(" Given value: ", 1)[1] if " Given value: " in body else None
    body = body.split(" Given value type: ", 1)[0]
    errors = [e.strip() for e in body.split(" - ") if e.strip(" -") and "Expected a <class 'NoneType'>"
              not in e]
    errors = [e.lstrip("- ") for e in errors]
    text = f"{head}: {'; '.join(errors) or body}"
    return text + (f" (given: {given})" if given and "Option '" not in text else "")


def _dispatch(argv: list[str], from_sys_argv: bool) -> int:
    command = argv[0]
    if command in _TOOLS:
        return _TOOLS[command](_tool_parser(command).parse_args(argv[1:]))
    if command in LIGHTNING_COMMANDS:
        # args=None lets LightningCLI read sys.argv itself (it warns when given both)
        _videogen_cli_class()(args=None if from_sys_argv else argv)
        return 0
    print(f"videogen: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``videogen``; returns the exit status.

    Errors a user can cause (see :func:`user_error`) print ``videogen: error: <message>`` on stderr and
    return 2; ``--debug`` (anywhere on the command line) or ``VIDEOGEN_DEBUG=1`` shows the traceback
    instead. Unexpected errors keep their traceback. Bad recipe keys and values are reported by
    jsonargparse in the same ``videogen: error:`` form (exit code 2).
    """
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VIDEOGEN_DEBUG", "") not in ("", "0")
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        if from_sys_argv:  # LightningCLI parses sys.argv itself
            sys.argv = [sys.argv[0], *argv]
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from videogen import __version__

        print(f"videogen {__version__}")
        return 0
    try:
        return _dispatch(argv, from_sys_argv)
    except argparse.ArgumentError as exc:  # a bad recipe key or value (jsonargparse, exit_on_error=False)
        if debug:
            raise
        print(f"videogen: error: {_compact_parser_error(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = None if debug else user_error(exc)
        if cause is None:
            raise
        message = " ".join(str(cause).split())  # one line
        print(f"videogen: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2
