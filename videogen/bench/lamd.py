"""LaMD tables for ``videogen bench``: parameters (Tables 1-2) and sampling cost (Table 11).

Every network is built from the recipes' ``init_args`` (``recipes/lamd_<name>_{mcdvae,dmg}.yaml``), never
from a copy of them here.  Three tables:

* ``lamd_params``: N_params of MCD-VAE and DMG per recipe vs Tables 1-2 (``meta`` device), and ``z_m``.
* ``lamd_flops``: forward FLOPs of sampling one video with LaMD (K = 200 DMG steps, x2 where the recipe
  samples with classifier-free guidance, + E_I once + D_V once) vs one image with an LDM of equal width
  (a ``core.nn.UNet2D`` with the DMG's channel settings on the f=4 image latent ``(3, H/4, W/4)``, 200
  steps, + LDM's KL-f4 image decoder once), counted on ``meta`` tensors.
* ``lamd_time``: wall time on this machine of the same two sampling procedures, 128x128 at 16 and 128
  frames, paper widths, with 200 steps extrapolated from a few timed steps (a CPU cannot run 200).

Table 11's claim under test: "sampling a video with our LaMD achieves a comparable speed to sampling an
image with LDM", also when the number of frames grows (the DMG's input ``z_m`` has no temporal axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.bench.harness import count_flops, count_params, register_table, time_callable
from videogen.core.nn.unet2d import UNet2D
from videogen.lamd.dmg import MotionGenerator
from videogen.lamd.mcdvae import MCDVAE

__all__ = [
    "K_STEPS",
    "PAPER",
    "RECIPES",
    "LamdRecipe",
    "build_flops_table",
    "build_ldm",
    "build_lamd",
    "build_params_table",
    "build_time_table",
    "dmg_step_flops",
    "load_recipe",
    "params_row",
    "sampling_flops",
    "sampling_seconds",
]

#: Sampling steps: "a subsequence of K = 200 timesteps" (Sec. 4), also Table 11's setting.
K_STEPS = 200
RECIPES = ("bair", "landscape", "natops", "mug128", "mug256", "catergen")
#: (MCD-VAE N_params of Table 1, DMG N_params of Table 2, z_m shape of Table 1).  mug128 is the
#: 32x128x128 MUG setting of Sec. 4.1: Table 1 lists MUG once; the widths are the same.
PAPER: dict[str, tuple[float, float, str]] = {
    "bair": (165e6, 241e6, "16x16x3"),
    "landscape": (175e6, 241e6, "32x32x3"),
    "natops": (149e6, 282e6, "32x32x3"),
    "mug128": (175e6, 282e6, "32x32x3"),
    "mug256": (175e6, 282e6, "32x32x3"),
    "catergen": (165e6, 282e6, "32x32x3"),
}
#: Table 11 rows of LaMD (frames, resolution), on the Landscape recipe's networks (~416M, the paper's
#: "~400M").
TABLE11_RECIPE = "landscape"
TABLE11_SETTINGS = ((16, 128), (128, 128), (128, 256))
#: The image LDM of the comparison: f=4 first stage with a 3-channel latent (LDM's KL-f4).
LDM_DOWNSAMPLE, LDM_LATENT_CHANNELS = 4, 3
#: Wall-time table: paper widths, 128x128, these frame counts; timed steps after warm-up steps, on one
#: CPU thread (on a shared machine, several threads mostly measure contention).
TIME_FRAMES, TIME_RESOLUTION, TIME_STEPS, TIME_WARMUP, TIME_THREADS = (16, 128), 128, 3, 1, 1


# ----------------------------------------------------------------------------- recipes and networks


@dataclass(frozen=True)
class LamdRecipe:
    """The parts of a recipe pair the bench needs: both networks' ``init_args`` and how it samples."""

    name: str
    mcdvae: dict[str, Any]
    dmg: dict[str, Any]
    guidance_scale: float
    text_length: int | None  # tokens of the text encoder (text-guided recipes), else None

    @property
    def guided(self) -> bool:
        """Classifier-free guidance doubles every DMG evaluation (cond + uncond batch)."""
        return self.guidance_scale != 1.0


def _recipe_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "recipes"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: the LaMD bench reads the recipes of a source checkout")
    return path


def load_recipe(name: str) -> LamdRecipe:
    """Read ``recipes/lamd_<name>_mcdvae.yaml`` and ``..._dmg.yaml``."""
    import yaml

    args = {}
    for stage in ("mcdvae", "dmg"):
        path = _recipe_dir() / f"lamd_{name}_{stage}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (LaMD recipe {name!r}, stage {stage})")
        args[stage] = yaml.safe_load(path.read_text())["model"]["init_args"]
    text = args["dmg"].get("text_encoder")
    return LamdRecipe(
        name=name,
        mcdvae=dict(args["mcdvae"]["autoencoder"]["init_args"]),
        dmg=dict(args["dmg"]["dmg"]["init_args"]),
        guidance_scale=float(args["dmg"].get("sample_guidance_scale", 1.0)),
        text_length=None if text is None else int(text.get("init_args", {}).get("max_length", 77)),
    )


def build_lamd(recipe: LamdRecipe, num_frames: int | None = None, resolution: int | None = None
               ) -> tuple[MCDVAE, MotionGenerator]:
    """The recipe's MCD-VAE and DMG (on the current default device).

    ``num_frames`` / ``resolution`` override the recipe's: the MCD-VAE keeps its widths (a longer clip
    only adds temporal stages, ``r_t = L``) and the DMG's latent size follows the resolution.
    """
    ae_args = dict(recipe.mcdvae)
    ae_args.update({k: v for k,
                    v in (("num_frames", num_frames), ("resolution", resolution)) if v is not None})
    ae = MCDVAE(**ae_args)
    return ae, MotionGenerator(**dict(recipe.dmg, latent_size=ae.latent_shape[1]))


def build_ldm(ae: MCDVAE, dmg: MotionGenerator) -> tuple[UNet2D, nn.Module]:
    """The image LDM of equal width: a UNet2D with the DMG's channel settings (unconditional) for the f=4
    latent ``(3, H/4, W/4)``, and LDM's KL-f4 first stage (diffusers ``AutoencoderKL``: ch = D_V's base
    width, ch_mult 1,2,4, 2 res blocks, z 3; only its decoder runs)."""
    from diffusers import AutoencoderKL

    cfg = dmg.config
    unet = UNet2D(in_channels=LDM_LATENT_CHANNELS, out_channels=LDM_LATENT_CHANNELS,
                  model_channels=cfg["model_channels"], channel_mult=tuple(cfg["channel_mult"]),
                  num_res_blocks=cfg["num_res_blocks"],
                  attention_resolutions=tuple(cfg["attention_resolutions"]),
                  num_head_channels=cfg["num_head_channels"], context_dim=None)
    base = ae.config["decoder_channels"]
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=LDM_LATENT_CHANNELS,
                        down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(base, 2 * base, 4 * base), layers_per_block=2,
                        norm_num_groups=ae.config["norm_groups"])
    return unet, vae


def _inputs(ae: MCDVAE, dmg: MotionGenerator, recipe: LamdRecipe) -> dict[str, torch.Tensor | None]:
    """Batch-1 sampling inputs on the current default device (values do not matter for cost)."""
    r = ae.resolution
    text = None if dmg.text_dim is None else torch.randn(1, recipe.text_length or 77, dmg.text_dim)
    return {
        "x0": torch.rand(1, ae.in_channels, r, r) * 2 - 1,
        "z_m": torch.randn(1, *ae.latent_shape),
        "t": torch.full((1,), 500, dtype=torch.long),
        "text": text,
        "z_img": torch.randn(1, LDM_LATENT_CHANNELS, r // LDM_DOWNSAMPLE, r // LDM_DOWNSAMPLE),
    }


# ----------------------------------------------------------------------------- FLOPs


def dmg_step_flops(dmg: MotionGenerator, z_m: torch.Tensor, t: torch.Tensor, content: torch.Tensor,
                   text: torch.Tensor | None = None) -> tuple[int, int]:
    """FLOPs of the DMG condition (built once per video by ``LaMD.generate``) and of one UNet step."""
    context, mask = dmg.encode_condition(content, text=text)
    condition = count_flops(lambda: dmg.encode_condition(content, text=text))
    step = count_flops(lambda: dmg(z_m, t, context=context, context_mask=mask))
    return condition, step


def sampling_flops(recipe: LamdRecipe, num_frames: int | None = None, resolution: int | None = None,
                   steps: int = K_STEPS) -> dict[str, Any]:
    """Forward FLOPs of one LaMD video vs one equal-width LDM image, counted on the meta device."""
    with torch.device("meta"), torch.no_grad():
        ae, dmg = build_lamd(recipe, num_frames, resolution)
        unet, vae = build_ldm(ae, dmg)
        x = _inputs(ae, dmg, recipe)
        content = ae.image_encoder(x["x0"])  # [f_x0, f^1, ..., f^k]
    cfg = 2 if recipe.guided else 1
    enc = count_flops(ae.encode_content, x["x0"])
    dec = count_flops(ae.decode, x["z_m"], content)
    cond, step = dmg_step_flops(dmg, x["z_m"], x["t"], content[0], x["text"])
    ldm_step = count_flops(unet, x["z_img"], x["t"])
    ldm_dec = count_flops(lambda z: vae.decode(z, return_dict=False), x["z_img"])
    video = cfg * cond + steps * cfg * step + enc + dec
    image = steps * ldm_step + ldm_dec
    g = 1e9
    return {
        "recipe": recipe.name,
        "video (LxHxW)": f"{ae.num_frames}x{ae.resolution}x{ae.resolution}",
        "CFG": "x2" if recipe.guided else "no",
        "DMG condition GFLOPs (once)": cond / g,
        "DMG GFLOPs/step": step / g,
        "E_I GFLOPs": enc / g,
        "D_V GFLOPs": dec / g,
        "LaMD video TFLOPs": video / 1e12,
        "LDM UNet GFLOPs/step": ldm_step / g,
        "LDM decoder GFLOPs": ldm_dec / g,
        "LDM image TFLOPs": image / 1e12,
        "video / image": video / image,
    }


# ----------------------------------------------------------------------------- wall time


def sampling_seconds(recipe: LamdRecipe, frames: tuple[int, ...], resolution: int | None = None,
                     timed_steps: int = TIME_STEPS, warmup: int = TIME_WARMUP, steps: int = K_STEPS,
                     threads: int = TIME_THREADS) -> list[dict[str, Any]]:
    """Seconds per LaMD video (one row per frame count) and per LDM image, batch 1, on this machine.

    Each network's denoising step is timed ``timed_steps`` times after ``warmup`` untimed calls; E_I,
    D_V and the LDM decoder run once.  Totals extrapolate to ``steps`` steps (x2 with CFG on LaMD).
    Runs on ``threads`` CPU threads (restored afterwards).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return _sampling_seconds(recipe, frames, resolution, timed_steps, warmup, steps)
    finally:
        torch.set_num_threads(previous)


def _sampling_seconds(recipe: LamdRecipe, frames: tuple[int, ...], resolution: int | None, timed_steps: int,
                      warmup: int, steps: int) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    ldm: dict[str, float] = {}
    rows = []
    for num_frames in frames:
        ae, dmg = (m.eval() for m in build_lamd(recipe, num_frames, resolution))
        x = _inputs(ae, dmg, recipe)
        if not ldm:  # the image side does not depend on the frame count: time it once
            ldm = _time_ldm(ae, dmg, x, timed_steps, warmup)
        lamd = _time_lamd(ae, dmg, x, timed_steps, warmup)
        del ae, dmg
        cfg = 2 if recipe.guided else 1
        video = cfg * lamd["cond"] + steps * cfg * lamd["step"] + lamd["enc"] + lamd["dec"]
        image = steps * ldm["step"] + ldm["dec"]
        rows.append({
            "video (LxHxW)": f"{num_frames}x{x['x0'].shape[-1]}x{x['x0'].shape[-1]}",
            "CFG": "x2" if recipe.guided else "no",
            "DMG condition s (once)": lamd["cond"],
            "DMG s/step": lamd["step"],
            "E_I s": lamd["enc"],
            "D_V s": lamd["dec"],
            "LaMD video s (extrap.)": video,
            "LDM UNet s/step": ldm["step"],
            "LDM decoder s": ldm["dec"],
            "LDM image s (extrap.)": image,
            "video / image": video / image,
        })
    return rows


def _time_lamd(ae: MCDVAE, dmg: MotionGenerator, x: dict, timed_steps: int, warmup: int) -> dict[str, float]:
    """Seconds of E_I (once), one DMG step (mean of ``timed_steps``) and D_V (once)."""
    enc = time_callable(lambda: ae.encode_content(x["x0"]), 1, 0)["mean_s"]
    content = ae.encode_content(x["x0"])
    cond = time_callable(lambda: dmg.encode_condition(content[0], text=x["text"]), 1, 0)["mean_s"]
    context, mask = dmg.encode_condition(content[0], text=x["text"])
    step = time_callable(lambda: dmg(x["z_m"], x["t"], context=context, context_mask=mask), timed_steps,
                         warmup)["mean_s"]
    dec = time_callable(lambda: ae.decode(x["z_m"], content), 1, 0)["mean_s"]
    return {"enc": enc, "cond": cond, "step": step, "dec": dec}


def _time_ldm(ae: MCDVAE, dmg: MotionGenerator, x: dict, timed_steps: int, warmup: int) -> dict[str, float]:
    """Seconds of one LDM UNet step (mean of ``timed_steps``) and of the KL-f4 decoder (once)."""
    unet, vae = (m.eval() for m in build_ldm(ae, dmg))
    step = time_callable(lambda: unet(x["z_img"], x["t"]), timed_steps, warmup)["mean_s"]
    dec = time_callable(lambda: vae.decode(x["z_img"]), 1, 0)["mean_s"]
    return {"step": step, "dec": dec}


# ----------------------------------------------------------------------------- tables


def params_row(name: str) -> dict[str, Any]:
    """N_params of recipe ``name``'s MCD-VAE and DMG (meta device) vs Tables 1-2, and the z_m shape."""
    recipe = load_recipe(name)
    paper_ae, paper_dmg, paper_zm = PAPER[name]
    with torch.device("meta"):
        ae, dmg = build_lamd(recipe)
    ae_n = count_params(lambda: ae)  # already on meta: the factory only hands it over
    dmg_n = count_params(lambda: dmg)
    d, h, w = ae.latent_shape
    return {
        "recipe": name,
        "setting": "paper",
        "video (LxHxW)": f"{ae.num_frames}x{ae.resolution}x{ae.resolution}",
        "z_m (hxwxd)": f"{h}x{w}x{d}",
        "z_m paper": paper_zm,
        "MCD-VAE M": ae_n / 1e6,
        "MCD-VAE paper M": paper_ae / 1e6,
        "MCD-VAE diff %": 100 * (ae_n / paper_ae - 1),
        "DMG M": dmg_n / 1e6,
        "DMG paper M": paper_dmg / 1e6,
        "DMG diff %": 100 * (dmg_n / paper_dmg - 1),
    }


def build_params_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Table 1-2 parameter rows for every recipe (meta device: quick mode computes the same)."""
    return [params_row(name) for name in RECIPES]


def build_flops_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Sampling FLOPs: every recipe at its own size, then Table 11's sizes on the Landscape networks.

    Quick mode keeps only the two 128x128 Table 11 rows (16 and 128 frames); each row takes seconds.
    """
    settings = [s for s in TABLE11_SETTINGS if s[1] == TIME_RESOLUTION] if quick else TABLE11_SETTINGS
    table11 = load_recipe(TABLE11_RECIPE)
    rows = [] if quick else [{"setting": "paper", **sampling_flops(load_recipe(name))} for name in RECIPES]
    return rows + [{"setting": "Table 11", **sampling_flops(table11, frames, res)} for frames,
                   res in settings]


def build_time_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Measured seconds at 128x128, 16 and 128 frames (quick: the tiny recipe's networks, 1 timed step)."""
    if quick:
        rows = sampling_seconds(load_recipe("tiny"), TIME_FRAMES, timed_steps=1, warmup=1)
        setting = "toy: lamd_tiny networks, 1 step timed"
    else:
        rows = sampling_seconds(load_recipe(TABLE11_RECIPE), TIME_FRAMES, resolution=TIME_RESOLUTION)
        setting = f"{TABLE11_RECIPE} networks, {TIME_STEPS} steps timed"
    return [{"setting": setting, **row} for row in rows]


register_table(
    "lamd_params", build_params_table, title="LaMD: parameters (Tables 1-2)",
    description="N_params of the MCD-VAE (Table 1) and DMG (Table 2) that each recipe builds (meta device), "
    "vs the paper. mug128 is MUG at 32x128x128 (Sec. 4.1; Table 1 lists MUG once). Table 1 gives z_m = "
    "32x32x3 for MUG 256x256, which r_s = 4 cannot give: our mug256 MCD-VAE uses r_s = 8 (channel_mult "
    "1,1,2,4) to give it.",
)
register_table(
    "lamd_flops", build_flops_table, title="LaMD: sampling FLOPs, video vs image (Table 11)",
    description="Forward FLOPs (torch.utils.flop_counter on the meta device: matmuls, convolutions, "
                "attention; "
    "a multiply-add = 2 FLOPs) of sampling ONE video with LaMD = DMG step (conditioning + UNet) x "
    f"K={K_STEPS} (x2 where the recipe samples with classifier-free guidance: CFG column) + E_I once + D_V "
    "once, vs ONE image with an LDM of equal width: core.nn.UNet2D with the DMG's channel settings "
    f"(unconditional, no CFG) on the f=4 image latent 3x(H/4)x(W/4), x{K_STEPS}, + LDM's KL-f4 decoder once "
    "(ch 128, mult 1,2,4). 'Table 11' rows run the Landscape networks at the sizes of Table 11's LaMD rows. "
    "The DMG cost does not depend on the frame count (z_m has no temporal axis); only D_V does.",
)
register_table(
    "lamd_time", build_time_table, title="LaMD: sampling wall time, video vs image (Table 11)",
    description=f"Seconds on this machine (batch 1, float32) to sample one 128x128 video with LaMD vs one "
    f"128x128 image with the equal-width LDM (no CFG on either side: the Landscape recipe is unguided). Each "
    f"network's denoising step is timed {TIME_STEPS}x after {TIME_WARMUP} warm-up; the {K_STEPS}-step totals "
    f"are EXTRAPOLATED (step x {K_STEPS} + E_I, D_V and the LDM decoder timed once), {TIME_THREADS} CPU "
    "thread. Paper widths (the Landscape networks of the FLOPs table's 'Table 11' rows: compare the ratios). "
    "Paper (RTX 3090, LDM ~600M vs LaMD ~400M): LDM image 9.8 s; LaMD 16 frames ~10 s (Table 2), 128 frames "
    "10.7 s.",
)
