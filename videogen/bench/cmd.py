"""CMD bench tables: parameter counts (App. B.3 / spec) and sampling cost in the paper's FLOP convention.

* ``cmd_params``: every network of the CMD recipes built on the ``meta`` device, with the count of the
  official modules (or the paper) next to it.
* ``cmd_flops``: forward cost of the networks and of sampling one 512x1024x16 video (Sec. 4.3: 46.83
  TFLOPs on an A100, SD decoder excluded, 50 DDIM steps of each model, no CFG doubling). The paper's
  "FLOPs" are multiply-accumulates of linear and convolution layers without the attention matmuls
  (fvcore's convention: it skips SDPA); we print that and our own convention (2 FLOPs per
  multiply-add, attention included).  Baselines: ModelScope's 3D UNet (diffusers ``UNet3DConditionModel``
  config; paper: 9.41 T per training forward at 512x512, 938.9 T per 512x1024 video) and LVDM's UNet3D.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from videogen.bench.harness import _explicit_attention, register_table

__all__ = ["AE_SD1024", "MOTION_SD1024", "SD21_BASE_UNET", "build_params_table", "build_flops_table",
           "build_rotary_table", "macs_and_flops"]

#: Stable Diffusion 2.1-base UNet (diffusers config of stabilityai/stable-diffusion-2-1-base/unet)
#: The 512x1024 text-to-video networks: CMDAutoencoder on 4x16x64x128 SD latents, motion DiT-XL/2 (key patch
#: 8).
AE_SD1024 = dict(in_channels=4, mode="latent", height=64, width=128)
MOTION_SD1024 = dict(content_channels=4, content_height=64, content_width=128, content_patch_size=8,
                     motion_width=96, hidden_size=1152, depth=28, text_dim=1024)
SD21_BASE_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                      block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                      attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                      down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                      up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


#: ModelScope's text-to-video 3D UNet (diffusers UNet3DConditionModel), the paper's efficiency baseline
MODELSCOPE_UNET3D = dict(sample_size=64, in_channels=4, out_channels=4,
                         block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                         cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32,
                         down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
                         up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3)


def macs_and_flops(fn) -> tuple[float, float]:
    """(linear + conv multiply-adds without attention, all FLOPs incl. attention) of ``fn()``."""
    with torch.no_grad(), _explicit_attention(), FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    linear_conv = sum(v for k, v in per_op.items() if k in ("aten.mm", "aten.addmm", "aten.convolution"))
    return linear_conv / 2, float(sum(per_op.values()))


def _networks() -> dict[str, Any]:
    from diffusers import UNet2DConditionModel

    from videogen.cmd import CMDAutoencoder, ContentDiT, MotionDiT

    with torch.device("meta"):
        return {
            "ae_ucf": CMDAutoencoder(),
            "ae_sd512": CMDAutoencoder(in_channels=4, mode="latent"),
            "ae_sd1024": CMDAutoencoder(**AE_SD1024),
            "content_ucf": ContentDiT(),
            "motion_ucf": MotionDiT(num_classes=101),
            "motion_sd512": MotionDiT(content_channels=4, hidden_size=1152, depth=28, text_dim=1024),
            "motion_sd1024": MotionDiT(**MOTION_SD1024),
            "sd21_unet": UNet2DConditionModel(**SD21_BASE_UNET),
        }


def _n(m) -> int:
    return sum(p.numel() for p in m.parameters())


def build_params_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    nets = _networks()
    rows = [
        ("autoencoder, UCF pixels 3x16x64x64", "ae_ucf", 47_359_510, "official ProjectedAutoencoder"),
        ("autoencoder, SD latents 4x16x64x64 (512x512)", "ae_sd512", 47_365_656, "official, latent mode"),
        ("autoencoder, SD latents 4x16x64x128 (512x1024)", "ae_sd1024", 47_365_656, "official, latent mode"),
        ("content DiT-XL/2, UCF (from scratch)", "content_ucf", 673_785_240, "official, learned sigma"),
        ("motion DiT-L/2, UCF (key patch 4)", "motion_ucf", 456_915_008,
         "official trainable, no class table"),
        ("motion DiT-XL/2, SD 512x512 (key patch 4)", "motion_sd512", 674_401_600 - 512 * 1152 + 1_180_800,
         "official trainable + text projection"),
        ("motion DiT-XL/2, SD 512x1024 (key patch 8)", "motion_sd1024", 674_622_784 - 512 * 1152 + 1_180_800,
         "official trainable + text projection"),
        ("SD 2.1-base UNet (fine-tuned whole)", "sd21_unet", 865_910_724,
         "spec: 865.9M from the diffusers config"),
    ]
    out = []
    for what, key, ref, source in rows:
        n = _n(nets[key])
        out.append({"network": what, "setting": "paper", "ours M": round(n / 1e6, 3),
                    "reference M": round(ref / 1e6, 3), "diff %": round(100 * (n - ref) / ref, 3),
                    "reference": source})
    t2v = _n(nets["ae_sd1024"]) + _n(nets["sd21_unet"]) + _n(nets["motion_sd1024"])
    ucf = _n(nets["ae_ucf"]) + _n(nets["content_ucf"]) + _n(nets["motion_ucf"])
    out.append({"network": "CMD text-to-video total (AE + SD UNet + motion DiT)", "setting": "paper",
                "ours M": round(t2v / 1e6, 1), "reference M": 1600.0,
                "diff %": round(100 * (t2v - 1.6e9) / 1.6e9, 2),
                "reference": "Sec. 4.2 \"1.6B\" (text encoder and VAE excluded)"})
    out.append({"network": "CMD UCF-101 total (AE + content DiT + motion DiT)", "setting": "paper",
                "ours M": round(ucf / 1e6, 1), "reference M": None, "diff %": None,
                "reference": "not in the paper"})
    return out


def build_flops_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    nets = _networks()
    with torch.device("meta"):
        t = torch.zeros(1, dtype=torch.long)
        text = torch.empty(1, 77, 1024)
        ae512, ae1024 = nets["ae_sd512"], nets["ae_sd1024"]
        x512 = torch.empty(1, 4, 16, 64, 64)
        content1024, motion1024 = torch.empty(1, 4, 64, 128), torch.empty(1, 8, 16, 96)
        costs = {
            "AE encoder + decoder, 4x16x64x64 (512x512)": (macs_and_flops(lambda: ae512(x512)), 0.77),
            "AE decoder, 4x16x64x128 (512x1024)": (macs_and_flops(lambda: ae1024.decode(content1024,
                                                                                        motion1024)), None),
            "SD 2.1-base UNet, 4x64x128, per step": (macs_and_flops(
                lambda: nets["sd21_unet"](content1024, t, encoder_hidden_states=text)), None),
            "motion DiT-XL/2, 512 tokens, per step": (macs_and_flops(
                lambda: nets["motion_sd1024"](motion1024, t, content1024, text=torch.empty(1, 1024))), None),
        }
    from diffusers import UNet3DConditionModel

    from videogen.lvdm import UNet3D

    with torch.device("meta"):
        ms = UNet3DConditionModel(**MODELSCOPE_UNET3D)
        lvdm = UNet3D()
        costs["ModelScope UNet3D, 4x16x64x64 (512x512), per step"] = (macs_and_flops(
            lambda: ms(torch.empty(1, 4, 16, 64, 64), t, encoder_hidden_states=text)), 9.41)
        costs["ModelScope UNet3D, 4x16x64x128 (512x1024), per step"] = (macs_and_flops(
            lambda: ms(torch.empty(1, 4, 16, 64, 128), t, encoder_hidden_states=text)), None)
        costs["LVDM UNet3D (official config), 4x4x32x32 (16x256x256), per step"] = (macs_and_flops(
            lambda: lvdm(torch.empty(1, 4, 4, 32, 32), t)), None)
    rows = [{"network": k, "setting": "paper", "paper T (MACs)": ref,
             "T MACs, linear+conv": round(m / 1e12, 4),
             "TFLOPs, incl. attention": round(f / 1e12, 4)} for k, ((m, f), ref) in costs.items()]
    steps = 50
    unet, motion, dec = (costs[k][0] for k in ("SD 2.1-base UNet, 4x64x128, per step",
                                               "motion DiT-XL/2, 512 tokens, per step",
                                               "AE decoder, 4x16x64x128 (512x1024)"))
    rows.append({"network": f"CMD sample 512x1024x16 = {steps} x UNet + {steps} x motion DiT + AE decoder "
                            "(no CFG, SD VAE decoder excluded)", "setting": "paper", "paper T (MACs)": 46.83,
                 "T MACs, linear+conv": round((steps * unet[0] + steps * motion[0] + dec[0]) / 1e12, 2),
                 "TFLOPs, incl. attention": round((steps * unet[1] + steps * motion[1] + dec[1]) / 1e12, 2)})
    ms_step = costs["ModelScope UNet3D, 4x16x64x128 (512x1024), per step"][0]
    cmd_sample = (steps * unet[0] + steps * motion[0] + dec[0], steps * unet[1] + steps * motion[1] + dec[1])
    rows.append({"network": f"ModelScope sample 512x1024x16 = {steps} x UNet3D", "setting": "paper",
                 "paper T (MACs)": 938.9, "T MACs, linear+conv": round(steps * ms_step[0] / 1e12, 1),
                 "TFLOPs, incl. attention": round(steps * ms_step[1] / 1e12, 1)})
    ae_train = costs["AE encoder + decoder, 4x16x64x64 (512x512)"][0]
    ms_train = costs["ModelScope UNet3D, 4x16x64x64 (512x512), per step"][0]
    rows.append({"network": "ratio ModelScope / CMD: sampling (512x1024x16)", "setting": "paper",
                 "paper T (MACs)": round(938.9 / 46.83, 2),
                 "T MACs, linear+conv": round(steps * ms_step[0] / cmd_sample[0], 2),
                 "TFLOPs, incl. attention": round(steps * ms_step[1] / cmd_sample[1], 2)})
    rows.append({"network": "ratio ModelScope UNet3D / CMD autoencoder: training forward (512x512x16)",
                 "setting": "paper", "paper T (MACs)": round(9.41 / 0.77, 2),
                 "T MACs, linear+conv": round(ms_train[0] / ae_train[0], 2),
                 "TFLOPs, incl. attention": round(ms_train[1] / ae_train[1], 2)})
    rows.append({"network": "the same with the recipes' sampler: 50 content steps x 2 (CFG 7.5) + 100 motion "
                            "steps",
                 "setting": "paper", "paper T (MACs)": None,
                 "T MACs, linear+conv": round((2 * steps * unet[0] + 100 * motion[0] + dec[0]) / 1e12, 2),
                 "TFLOPs, incl. attention": round((2 * steps * unet[1] + 100 * motion[1] + dec[1]) / 1e12,
                                                  2)})
    return rows


register_table(
    "cmd_params", build_params_table, title="CMD: parameters of the recipe networks",
    description="Counted on the meta device. References: the official modules (NVlabs/CMD at its only "
                "commit, counted "
    "by instantiating them; ours predict eps only, so DiTs have a half-width final layer, and keep fixed "
    "positions as buffers, not parameters; our UCF motion DiT has the class table the official one lacks) "
    "and the paper's 1.6B.",
)
register_table(
    "cmd_flops", build_flops_table, title="CMD: sampling cost (Sec. 4.3)",
    description="Forward cost on the meta device, batch 1. 'T MACs, linear+conv' is the paper's convention "
    "(multiply-accumulates of linear and convolution layers, attention matmuls not counted, as fvcore): the "
    "autoencoder's 0.77 and the 46.83 TFLOPs of one 512x1024x16 video are in it. 'TFLOPs, incl. attention' "
    "is ours (2 FLOPs per multiply-add, attention included, as the LaMD tables).",
)


def _peak_step_memory(net: torch.nn.Module, x: torch.Tensor) -> float:
    """Peak tensor memory (MiB) of one training step: parameters, gradients, activations, temporaries,
    counted by torch's ``MemTracker`` (device independent, so it works on the CPU)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    net.zero_grad(set_to_none=True)
    tracker = MemTracker()
    tracker.track_external(net)
    with tracker:
        content, motion = net.encode(x)
        net.decode(content, motion).square().mean().backward()
    peak = tracker.get_tracker_snapshot("peak")
    return sum(stats["Total"] for stats in peak.values()) / 2**20


def build_rotary_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Training step (encode + decode + backward) of the CMD autoencoder with and without rotary positions,
    one thread, interleaved A B A B, median; and its peak tensor memory."""
    import statistics
    import time

    from videogen.cmd import CMDAutoencoder

    settings = [("width 384, 8 heads, depth 2, pixels 2x3x8x32x32 (256 tokens a frame)",
                 dict(num_frames=8, height=32, width=32, depth=2), (2, 3, 8, 32, 32), 3 if quick else 9)]
    if not quick:  # the UCF-101 training clip: 16 frames of 64x64 at patch 2, 1,024 tokens a frame
        settings.append(("width 384, 8 heads, depth 1, pixels 1x3x16x64x64 (UCF clip, 1,024 tokens a frame)",
                         dict(num_frames=16, height=64, width=64, depth=1), (1, 3, 16, 64, 64), 5))
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, shape, size, rounds in settings:
            cfg = dict(in_channels=3, patch_size=2, hidden_size=384, heads=8, motion_channels=8, **shape)
            nets = {}
            for rot in (True, False):
                torch.manual_seed(0)
                nets[rot] = CMDAutoencoder(**cfg, rotary=rot)
            x = torch.rand(*size) * 2 - 1

            def step(net: torch.nn.Module, x: torch.Tensor = x) -> float:
                net.zero_grad(set_to_none=True)
                start = time.perf_counter()
                content, motion = net.encode(x)
                net.decode(content, motion).square().mean().backward()
                return time.perf_counter() - start

            for net in nets.values():
                step(net)  # warm-up
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(rounds):
                for rot, net in nets.items():
                    times[rot].append(step(net))
            with_rot, without = statistics.median(times[True]), statistics.median(times[False])
            mem = {rot: _peak_step_memory(net, x) for rot, net in nets.items()}
            rows.append({"autoencoder": name, "rotary ms": round(1000 * with_rot),
                         "no positions ms": round(1000 * without), "time ratio": round(with_rot / without, 3),
                         "rotary peak MiB": round(mem[True], 1),
                         "no positions peak MiB": round(mem[False], 1),
                         "memory ratio": round(mem[True] / mem[False], 3), "rounds": rounds})
    finally:
        torch.set_num_threads(threads)
    return rows


register_table(
    "cmd_rotary_cost", build_rotary_table, title="CMD: cost of the autoencoder's rotary positions (CPU)",
    description="One training step (encode, decode, backward of a squared-output loss) of the CMD "
                "autoencoder at the official width with rotary positions (videogen's default) and without "
                "(the official code's behaviour, rotary=False), one thread, interleaved, median, and the "
                "peak tensor memory of the step (torch's MemTracker). q and k come from their projection "
                "rows in pair order and turn by one complex multiply with phases cached per token layout; "
                "only the rotated q, k and v are kept for backward, as without positions.")
