"""GPU throughput tables (``make bench-gpu``): each paper-size denoiser's bf16 training step and sampling
time.

Two tables, registered with ``requires_cuda=True`` so that ``make bench`` (CPU) leaves them out and
``make bench-gpu`` on a machine without CUDA says so and exits 0 without touching the report:

- ``gpu_throughput``: for LaMD's DMG (Landscape recipe), CMD's content DiT-XL/2 (UCF), motion DiT-XL/2
  (512x1024 text-to-video), the SD 2.1-base UNet (CMD's content model, 4x64x128) and LVDM's UNet3D
  (official config, 4x4x32x32): one forward + backward under bf16 autocast (AdamW-free: the optimiser's
  cost is not the model's) -- seconds per step, samples/s, model FLOPs per step (counted once by
  ``torch.utils.flop_counter`` on the same step, 2 FLOPs per multiply-add, attention included), model
  FLOPs utilisation = FLOPs / s / the GPU's dense bf16 peak (``PEAK_BF16_TFLOPS``, by device name;
  n/a when the GPU is not listed), peak memory (``torch.cuda.max_memory_allocated``), the same step with
  SDPA restricted to the flash and to the math kernel, and with ``torch.compile`` (compile time
  reported apart).
- ``gpu_sampling``: seconds per video, batch 1, float32 and bf16, extrapolated from timed denoiser steps
  x the paper's step counts + the decoders once: CMD 512x1024x16 (50 SD UNet steps x2 for CFG + 50
  motion steps + CMD decoder + SD VAE decoder; the paper: 3.1 s on an A100) and LaMD Landscape at
  128x128, 16 and 128 frames (200 DMG steps; Table 11: about 10 s and 10.7 s on an RTX 3090).

Weights are random (nothing downloads): cost does not depend on their values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videogen.bench.harness import register_table, time_callable

__all__ = ["PEAK_BF16_TFLOPS", "Denoiser", "build_sampling_table", "build_throughput_table", "denoisers",
           "peak_bf16_tflops", "throughput_row"]

#: Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, by a substring of ``torch.cuda.get_device_name``.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0,
                    "RTX 4090": 165.2, "RTX 3090": 71.0, "V100": 125.0}


def peak_bf16_tflops(device_name: str) -> float | None:
    """The listed peak for ``device_name`` (longest matching key), or None."""
    hits = [k for k in PEAK_BF16_TFLOPS if k in device_name]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


@dataclasses.dataclass
class Denoiser:
    """A network to time: ``build()`` makes it (random weights), ``inputs(model, batch)`` gives
    ``(args, kwargs)`` of one training forward on the current default device."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[nn.Module, int], tuple[tuple, dict]]
    batch: int


def denoisers() -> list[Denoiser]:
    """The paper-size denoisers of the three models (see the module docstring)."""
    from diffusers import UNet2DConditionModel

    from videogen.bench.cmd import MOTION_SD1024, SD21_BASE_UNET
    from videogen.bench.lamd import build_lamd, load_recipe
    from videogen.bench.lvdm import OFFICIAL_UNET
    from videogen.cmd import ContentDiT, MotionDiT
    from videogen.lvdm import UNet3D

    recipe = load_recipe("landscape")

    def dmg_build() -> nn.Module:
        return build_lamd(recipe)[1]

    def dmg_inputs(m: nn.Module, b: int) -> tuple[tuple, dict]:
        z, size = m.config["z_channels"], m.config["latent_size"]
        content = torch.randn(b, m.content_dim, size, size)  # f_x0 at the latent size (E_I is frozen)
        return (torch.randn(b, z, size, size), _t(b)), {"content": content}

    def dit_inputs(m: nn.Module, b: int) -> tuple[tuple, dict]:
        return (torch.randn(b, *m.sample_shape), _t(b)), {"label": torch.zeros(b, dtype=torch.long)}

    def motion_inputs(m: nn.Module, b: int) -> tuple[tuple, dict]:
        return (torch.randn(b, *m.motion_shape), _t(b),
                torch.randn(b, 4, 64, 128)), {"text": torch.randn(b, 1024)}

    def sd_inputs(m: nn.Module, b: int) -> tuple[tuple, dict]:
        return (torch.randn(b, 4, 64, 128), _t(b)), {"encoder_hidden_states": torch.randn(b, 77, 1024)}

    def lvdm_inputs(m: nn.Module, b: int) -> tuple[tuple, dict]:
        return (torch.randn(b, 4, 4, 32, 32), _t(b)), {}

    return [
        Denoiser("LaMD DMG (Landscape recipe)", dmg_build, dmg_inputs, 32),
        Denoiser("CMD content DiT-XL/2, UCF 3x64x64", lambda: ContentDiT(), dit_inputs, 32),
        Denoiser("CMD motion DiT-XL/2, 512x1024x16", lambda: MotionDiT(**MOTION_SD1024), motion_inputs, 16),
        Denoiser("SD 2.1-base UNet, 4x64x128 (CMD content)", lambda: UNet2DConditionModel(**SD21_BASE_UNET),
                 sd_inputs, 8),
        Denoiser("LVDM UNet3D (official), 4x4x32x32", lambda: UNet3D(**OFFICIAL_UNET), lvdm_inputs, 8),
    ]


def _t(b: int) -> torch.Tensor:
    return torch.randint(0, 1000, (b,))


def _train_step(model: nn.Module, args: tuple, kwargs: dict, dtype: torch.dtype | None) -> Callable[[], None]:
    device_type = args[0].device.type
    autocast = (torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            out = model(*args, **kwargs)
        out = getattr(out, "sample", out)
        out.float().square().mean().backward()

    return step


def _step_flops(step: Callable[[], None]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


@contextlib.contextmanager
def _sdpa(backend: str | None):
    if backend is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}[backend]):
        yield


def _timed(step: Callable[[], None], repeats: int, warmup: int, backend: str | None = None) -> float | str:
    try:
        with _sdpa(backend):
            return time_callable(step, repeats, warmup)["mean_s"]
    except RuntimeError as exc:  # e.g. no flash kernel for this shape / dtype / GPU
        return f"n/a ({str(exc).splitlines()[0][:60]})"


def throughput_row(case: Denoiser, device: torch.device, repeats: int = 10, warmup: int = 3,
                   compile: bool = True, batch: int | None = None) -> dict[str, Any]:
    """One ``gpu_throughput`` row for ``case`` on ``device`` (CUDA memory columns are n/a elsewhere)."""
    cuda = device.type == "cuda"
    b = batch or case.batch
    torch.manual_seed(0)
    with torch.device(device):
        model = case.build().train()
        args, kwargs = case.inputs(model, b)
    n_params = sum(p.numel() for p in model.parameters())
    step = _train_step(model, args, kwargs, torch.bfloat16)
    step()  # allocate the gradients
    flops = _step_flops(step)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_callable(step, repeats, warmup)["mean_s"]
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    peak = peak_bf16_tflops(torch.cuda.get_device_name(device)) if cuda else None
    row: dict[str, Any] = {
        "network": case.name, "setting": "paper", "params M": round(n_params / 1e6, 1), "batch": b,
        "GFLOPs / step (fwd+bwd)": round(flops / 1e9, 3), "s / step, bf16": round(seconds, 4),
        "samples / s": round(b / seconds, 1), "TFLOP/s": round(flops / seconds / 1e12, 1),
        "MFU %": None if peak is None else round(100 * flops / seconds / 1e12 / peak, 1),
        "peak memory GiB": None if peak_mem is None else round(peak_mem, 2),
        "s / step, SDPA flash": _timed(step, repeats, warmup, "flash") if cuda else None,
        "s / step, SDPA math": _timed(step, repeats, warmup, "math"),
    }
    if compile:
        compiled = torch.compile(model)
        cstep = _train_step(compiled, args, kwargs, torch.bfloat16)
        start = time.perf_counter()
        try:
            cstep()
            if cuda:
                torch.cuda.synchronize(device)
            row["compile s"] = round(time.perf_counter() - start, 1)
            row["s / step, torch.compile"] = round(time_callable(cstep, repeats, warmup)["mean_s"], 4)
        except Exception as exc:  # a graph break that fails, a missing compiler: report, keep the table
            row["compile s"], row["s / step, torch.compile"] = None, f"n/a ({type(exc).__name__})"
    del model, step
    if cuda:
        torch.cuda.empty_cache()
    return row


def build_throughput_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    device = torch.device("cuda")
    return [throughput_row(case, device, repeats=3 if quick else 10, warmup=1 if quick else 3,
                           compile=not quick)
            for case in denoisers()]


# ----------------------------------------------------------------------------- sampling seconds


def _per_call(fn: Callable[[], Any], repeats: int) -> float:
    return time_callable(fn, repeats, 2)["mean_s"]


def cmd_sampling_seconds(device: torch.device, dtype: torch.dtype | None, repeats: int = 5,
                         content_steps: int = 50, motion_steps: int = 50) -> dict[str, Any]:
    """CMD 512x1024x16, batch 1: SD 2.1 UNet steps (x2, CFG) + motion DiT-XL/2 steps + CMD decoder + SD VAE
    decoder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from videogen.bench.cmd import AE_SD1024, MOTION_SD1024, SD21_BASE_UNET
    from videogen.cmd import CMDAutoencoder, MotionDiT

    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    with torch.device(device), torch.no_grad(), autocast:
        unet = UNet2DConditionModel(**SD21_BASE_UNET).eval()
        motion = MotionDiT(**MOTION_SD1024).eval()
        ae = CMDAutoencoder(**AE_SD1024).eval()
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4).eval()
        t = torch.full((2,), 500)
        x, text = torch.randn(2, 4, 64, 128), torch.randn(2, 77, 1024)
        # cond + uncond in one batch
        unet_s = _per_call(lambda: unet(x, t, encoder_hidden_states=text), repeats)
        content, z = torch.randn(1, 4, 64, 128), torch.randn(1, *motion.motion_shape)
        motion_s = _per_call(lambda: motion(z, t[:1], content, text=text[:1, 0]), repeats)
        dec_s = _per_call(lambda: ae.decode(content, z), 2)
        latents = ae.decode(content, z)  # (1, 4, 16, 64, 128)
        vae_s = _per_call(lambda: vae.decode(latents[0].transpose(0, 1)), 2)  # 16 frames as a batch
    total = content_steps * unet_s + motion_steps * motion_s + dec_s + vae_s
    return {"video": "CMD 512x1024x16", "dtype": str(dtype or torch.float32).replace("torch.", ""),
            "steps": f"{content_steps} content (x2 CFG, batched) + {motion_steps} motion",
            "denoiser s / step": f"UNet {unet_s:.4f}, motion DiT {motion_s:.4f}",
            "decoders s": round(dec_s + vae_s, 4), "s / video (extrap.)": round(total, 3),
            "paper s / video": "3.1 (A100)"}


def build_sampling_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    from videogen.bench.lamd import load_recipe, sampling_seconds

    device = torch.device("cuda")
    repeats = 2 if quick else 5
    rows = [cmd_sampling_seconds(device, dtype, repeats) for dtype in (None, torch.bfloat16)]
    with torch.device(device):
        for r in sampling_seconds(load_recipe("landscape"), (16, 128), resolution=128, timed_steps=repeats,
                                  warmup=2):
            rows.append({"video": f"LaMD Landscape {r['video (LxHxW)']}", "dtype": "float32",
                         "steps": "200 DMG", "denoiser s / step": f"DMG {r['DMG s/step']:.4f}",
                         "decoders s": round(r["D_V s"] + r["E_I s"], 4),
                         "s / video (extrap.)": round(r["LaMD video s (extrap.)"], 3),
                         "paper s / video": "~10 (16 frames), 10.7 (128 frames), RTX 3090"})
    return rows


register_table(
    "gpu_throughput", build_throughput_table,
               title="GPU: training-step throughput of the paper-size denoisers",
    requires_cuda=True,
    description="One forward + backward under bf16 autocast, random weights and inputs, no optimiser. MFU = "
                "model "
    "FLOPs (torch.utils.flop_counter, attention included, 2 FLOPs per multiply-add) per second / the GPU's "
    "dense bf16 peak. SDPA columns restrict scaled_dot_product_attention to one kernel; torch.compile's "
    "first call is 'compile s'. Run by `make bench-gpu` on a CUDA machine only.")
register_table(
    "gpu_sampling", build_sampling_table, title="GPU: sampling seconds per video vs the papers",
    requires_cuda=True,
    description="Batch 1, random weights: timed denoiser steps x the step counts + the decoders once (an "
    "extrapolation, as the LaMD CPU table). CMD: the paper's 3.1 s on an A100 at 512x1024x16; LaMD: Table "
    "11's RTX 3090 times. Run by `make bench-gpu` on a CUDA machine only.")
