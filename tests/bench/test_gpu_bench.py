"""The GPU bench (``make bench-gpu``): its paper-size denoisers take the inputs it gives them (meta device), a
throughput row is measured correctly on a tiny network (CPU), the sampling plumbing runs, and without CUDA
the tables are skipped and no report is touched."""

from __future__ import annotations

import pytest
import torch

from videogen.bench import gpu
from videogen.bench.harness import count_flops, registered_tables, run_bench
from videogen.lvdm import UNet3D


def test_paper_denoisers_take_their_inputs():
    cases = gpu.denoisers()
    assert len(cases) == 5
    for case in cases:
        with torch.device("meta"):
            model = case.build()
            args, kwargs = case.inputs(model, 2)
            out = model(*args, **kwargs)
        assert tuple(getattr(out, "sample", out).shape) == tuple(args[0].shape), case.name


def test_peak_lookup():
    assert gpu.peak_bf16_tflops("NVIDIA H200") == 989.4
    assert gpu.peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.peak_bf16_tflops("NVIDIA GeForce RTX 4090") == 165.2
    assert gpu.peak_bf16_tflops("Some Future GPU") is None


def test_throughput_row_counts_a_forward_and_backward():
    unet = dict(in_channels=4, out_channels=4, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(2,), num_heads=2)
    case = gpu.Denoiser("tiny UNet3D", lambda: UNet3D(**unet),
                        lambda m, b: ((torch.randn(b, 4, 4, 8, 8), torch.randint(0, 1000, (b,))), {}),
                        batch=2)
    row = gpu.throughput_row(case, torch.device("cpu"), repeats=1, warmup=0, compile=False)
    torch.manual_seed(0)
    model = case.build()
    (x, t), _ = case.inputs(model, 2)
    forward = count_flops(lambda: model(x, t))
    # backward is about 2x forward
    assert 2.5 * forward < row["GFLOPs / step (fwd+bwd)"] * 1e9 < 3.5 * forward
    assert row["s / step, bf16"] > 0 and row["samples / s"] == pytest.approx(2 / row["s / step, bf16"],
                                                                             rel=0.05)
    assert row["MFU %"] is None and row["peak memory GiB"] is None  # CUDA-only columns
    assert isinstance(row["s / step, SDPA math"], float)


def test_cmd_sampling_plumbing_on_meta():
    row = gpu.cmd_sampling_seconds(torch.device("meta"), None, repeats=1)
    assert row["video"] == "CMD 512x1024x16" and row["s / video (extrap.)"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_without_cuda_the_gpu_tables_are_skipped(tmp_path, capsys):
    tables = registered_tables()
    assert sorted(n for n, t in tables.items() if t.requires_cuda) == ["gpu_sampling", "gpu_throughput"]
    docs = tmp_path / "bench_gpu.md"
    assert run_bench(tmp_path / "out", ["gpu_throughput", "gpu_sampling"], docs_path=docs) == {"tables": {}}
    assert not docs.exists() and not (tmp_path / "out").exists()
    assert "needs a CUDA GPU and this machine has none" in capsys.readouterr().out
