"""The tool commands' argument parsers (``videogen <tool> --help``) and the CLI's constants; stdlib only,
so that ``videogen --help`` stays instant."""

from __future__ import annotations

import argparse
import math

__all__ = ["LIGHTNING_COMMANDS", "LVDM_PRESETS", "METRIC_CHOICES", "SEED_DEFAULT", "TOOL_COMMANDS", "USAGE",
           "tool_parser"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
TOOL_COMMANDS = ("demo", "bench", "sample", "generate", "evaluate", "convert", "cache")
#: `videogen evaluate --metric` choices (videogen.evaluation.METRICS, repeated to keep --help import-free)
METRIC_CHOICES = ("fvd", "kvd", "cfvd", "fid", "lpips", "clipsim", "psnr", "ssim")
SEED_DEFAULT = 0

USAGE = """\
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


def _sampling_options(p: argparse.ArgumentParser) -> None:
    """The sampling options ``sample`` and ``generate`` share."""
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


def tool_parser(command: str) -> argparse.ArgumentParser:
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
        _sampling_options(p)
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
        p.add_argument("--conditions", default=None,
                       help="comma-separated conditions taken from each item: image (its first frame), "
                            "label, text (its caption); default the label / caption the model takes, and the "
                            "image where the model needs it")
        _sampling_options(p)
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
