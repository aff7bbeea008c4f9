"""The tool commands: ``videogen demo|bench|sample|generate|evaluate|convert|cache`` (each
``_cmd_<name>(args)`` takes the parsed arguments of :func:`videogen.cli.parsers.tool_parser` and returns
the exit status) and the recipe helpers they share."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from .errors import CommandError
from .parsers import LVDM_PRESETS

__all__ = ["TOOLS"]


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


TOOLS = {"demo": _cmd_demo, "bench": _cmd_bench, "sample": _cmd_sample, "generate": _cmd_generate,
          "evaluate": _cmd_evaluate, "convert": _cmd_convert,
          "cache": _cmd_cache}
