"""What the latent / text-embedding cache (``videogen cache``, :mod:`videogen.data.cache`) removes.

* ``data_cache_flops``: at paper size, on the ``meta`` device, the FLOPs of one training sample of the WebVid
  stages split into the frozen encoders (SD VAE encoder, CMD autoencoder encoder, text encoder: one forward
  each) and the trained network (forward + backward = 3x its forward; 4x for the CMD content stage, which
  recomputes activations under gradient checkpointing).  The frozen share is the part of a step the cache
  removes.
* ``data_cache_step``: the measured CPU step time of the tiny CMD motion recipe's module (untrained tiny
  autoencoder, batch 16, one thread) from raw videos vs from a cache written by ``write_cache``, interleaved
  A B A B, median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from videogen.bench.harness import register_table

__all__ = ["build_flops_table", "build_step_table"]

T = 1e12
#: the SD 1.x / 2.x VAE (both WebVid stages of CMD; LVDM text-to-video)
SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512)


def _flops() -> dict[str, tuple[float, float]]:
    """name -> (multiply-adds without attention, all FLOPs) of one sample's forward, on ``meta``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from videogen.bench.cmd import AE_SD1024, MOTION_SD1024, SD21_BASE_UNET, macs_and_flops
    from videogen.cmd import CMDAutoencoder, MotionDiT
    from videogen.core.sd import SDUNet
    from videogen.lvdm import VideoUNetFromSD
    from videogen.lvdm.convert_text2video import TEXT2VIDEO_PRESET

    text21 = CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                            num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu")
    text15 = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    sd15 = dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8)
    del TEXT2VIDEO_PRESET  # imported to fail loudly if the text-to-video converter moves
    with torch.device("meta"):
        vae, ae = AutoencoderKL(**SD_VAE), CMDAutoencoder(**AE_SD1024)
        motion, unet21 = MotionDiT(**MOTION_SD1024), UNet2DConditionModel(**SD21_BASE_UNET)
        t21, t15 = CLIPTextModel(text21), CLIPTextModel(text15)
        t2v = VideoUNetFromSD(SDUNet(unet=UNet2DConditionModel(**sd15)), temporal_layout="official")
        ids, t = torch.zeros(1, 77, dtype=torch.long), torch.zeros(1, dtype=torch.long)
        return {
            "vae 16x512x1024": macs_and_flops(lambda: vae.encode(torch.empty(16, 3, 512, 1024))),
            "vae 16x256x256": macs_and_flops(lambda: vae.encode(torch.empty(16, 3, 256, 256))),
            "cmd ae": macs_and_flops(lambda: ae.encode(torch.empty(1, 4, 16, 64, 128))),
            "text sd2.1": macs_and_flops(lambda: t21(input_ids=ids)),
            "text sd1.x": macs_and_flops(lambda: t15(input_ids=ids)),
            "sd2.1 unet": macs_and_flops(lambda: unet21(torch.empty(1, 4, 64, 128), t,
                                                        encoder_hidden_states=torch.empty(1, 77, 1024))),
            "motion dit": macs_and_flops(lambda: motion(torch.empty(1, 8, 16, 96), t,
                                                        torch.empty(1, 4, 64, 128),
                                                        text=torch.empty(1, 1024))),
            "t2v unet": macs_and_flops(lambda: t2v(torch.empty(1, 4, 16, 32, 32), t,
                                                   torch.empty(1, 77, 768))),
        }


def build_flops_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    f = _flops()
    stages = [  # stage, frozen encoders, trained network, backward multiplier, what trains
        ("CMD content (SD 2.1 UNet, 16x512x1024 clips)", ["vae 16x512x1024", "cmd ae", "text sd2.1"],
         "sd2.1 unet", 4, "whole UNet, gradient checkpointing"),
        ("CMD motion (DiT-XL/2, 16x512x1024 clips)", ["vae 16x512x1024", "cmd ae", "text sd2.1"],
         "motion dit", 3, "whole DiT"),
        ("LVDM text-to-video (16x256x256 clips)", ["vae 16x256x256", "text sd1.x"], "t2v unet", 3,
         "upper bound: every weight's gradient"),
        ("LVDM text-to-video (16x256x256 clips)", ["vae 16x256x256", "text sd1.x"], "t2v unet", 2,
         "temporal layers only (input gradients through all)"),
    ]
    rows = []
    for name, frozen, trained, mult, note in stages:
        fz = sum(f[k][1] for k in frozen)
        tr = f[trained][1] * mult
        fz_mac, tr_mac = sum(f[k][0] for k in frozen), f[trained][0] * mult
        rows.append({"stage": name, "frozen encoders TFLOPs": round(fz / T, 2),
                     "trained network TFLOPs": round(tr / T, 2), "x forward": mult,
                     "frozen share": f"{100 * fz / (fz + tr):.1f}%",
                     "frozen share (MACs, no attention)": f"{100 * fz_mac / (fz_mac + tr_mac):.1f}%",
                     "trained": note})
    return rows


def build_step_table(out_dir: Path, quick: bool) -> list[dict[str, Any]]:
    import yaml
    from torch.utils.data import default_collate

    from videogen.cli import _instantiate
    from videogen.cmd import CMDAutoencoder, CMDMotionModule
    from videogen.data import LatentCache, SyntheticVideoDataset
    from videogen.data.cache import write_cache

    recipes = Path(__file__).resolve().parents[2] / "recipes"
    ae_cfg = yaml.safe_load((recipes / "cmd_tiny_autoencoder.yaml").read_text()
                            )["model"]["init_args"]["autoencoder"]["init_args"]
    motion = yaml.safe_load((recipes / "cmd_tiny_motion.yaml").read_text())["model"]["init_args"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = CMDMotionModule(_instantiate(motion["denoiser"]), CMDAutoencoder(**ae_cfg), cond_drop_prob=0.1)
    opt = torch.optim.Adam(module.denoiser.parameters(), lr=1e-4)
    batch_size, rounds = 16, 3 if quick else 10
    data = SyntheticVideoDataset(2 * batch_size, num_frames=8, size=32, seed=0)

    def step(batch: dict[str, Any]) -> float:
        start = time.perf_counter()
        module.train()
        x0, cond = module.encode_batch(batch, drop=True)
        loss = module.diffusion_loss(x0, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    try:
        with tempfile.TemporaryDirectory() as tmp:
            write_cache(module, data, tmp, shard_size=batch_size)
            cache = LatentCache(tmp)
            raw = default_collate([data[i] for i in range(batch_size)])
            cached = default_collate([cache[i] for i in range(batch_size)])
            step(raw), step(cached)  # warm-up
            times: dict[str, list[float]] = {"raw": [], "cached": []}
            for _ in range(rounds):
                times["raw"].append(step(raw))
                times["cached"].append(step(cached))
    finally:
        torch.set_num_threads(threads)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [{"recipe": "cmd_tiny_motion (CMDMotionModule, tiny autoencoder, batch 16, 8x32x32, 1 thread)",
             "raw video ms": round(1000 * med["raw"], 1), "from cache ms": round(1000 * med["cached"], 1),
             "raw / cached": round(med["raw"] / med["cached"], 2), "rounds": rounds}]


register_table(
    "data_cache_flops", build_flops_table,
    title="Data: what the latent cache removes at paper size (FLOPs)",
    description="One training sample of the WebVid stages, counted on the meta device (FLOPs incl. "
                "attention; the last column counts only linear/conv multiply-adds): frozen encoders one "
                "forward each, the trained network 'x forward' times its forward (forward + backward; 4 "
                "with gradient checkpointing). The frozen share is what `videogen cache` takes out of "
                "every step.")
register_table(
    "data_cache_step", build_step_table,
    title="Data: training step from raw video vs from a latent cache (CPU)",
    description="The tiny CMD motion module's step (encode + loss + backward + Adam) on one ready batch, raw "
                "videos through the frozen autoencoder vs the cached latents, interleaved, median. A toy "
                "setting: the ratio grows with the encoders' share (table above), not a paper-size timing.")
