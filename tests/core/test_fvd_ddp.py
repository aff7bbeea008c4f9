"""FVD / KVD under DDP: 2 CPU processes (gloo) with a padding DistributedSampler equal 1 process."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from videogen.core.metrics import FrechetVideoDistance, KernelVideoDistance

NUM_REAL, NUM_FAKE, BATCH, SIZE, WORLD = 37, 29, 5, 8, 2  # 37 and 29 do not split evenly over 2 ranks


class _Extractor(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same weights in every process
        self.proj = nn.Linear(3 * 4 * 4, 6, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float64 so that a video's features do not depend on which batch it was in (float32 GEMMs may)
        return torch.tanh(self.proj(F.adaptive_avg_pool3d(x.double(), (4, 2, 2)).flatten(1)))  # (B, 6)


def _dataset(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, SIZE, SIZE, generator=g) * 2 - 1  # (N, C, T, H, W)


def _evaluate(rank: int, world: int, use_index: bool) -> dict:
    """Run the metrics over this rank's share (DistributedSampler pads by repeating items)."""
    extractor = _Extractor()
    fvd = FrechetVideoDistance(extractor, image_size=SIZE)
    kvd = KernelVideoDistance(extractor, image_size=SIZE)
    for real, n, seed in ((True, NUM_REAL, 1), (False, NUM_FAKE, 2)):
        videos = _dataset(n, seed) + (0.0 if real else 0.1)
        videos = videos.clamp(-1, 1)
        indices = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
        groups = torch.arange(n) % 3
        for start in range(0, len(indices), BATCH):
            idx = torch.tensor(indices[start : start + BATCH])
            kwargs = {"index": idx} if use_index else {}
            fvd.update(videos[idx], real=real, group=groups[idx], **kwargs)
            kvd.update(videos[idx], real=real, **kwargs)
    mean, std, _ = fvd.compute_grouped()
    return {"fvd": fvd.compute().item(), "kvd": kvd.compute().item(), "cfvd": [mean, std],
            "num_real": fvd.protocol["num_real"]}


def _worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        results = {str(use_index): _evaluate(rank, WORLD, use_index) for use_index in (True, False)}
        if rank == 0:
            with open(out_file, "w") as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_processes_equal_one(tmp_path):
    single = _evaluate(rank=0, world=1, use_index=True)
    assert single["num_real"] == NUM_REAL
    out = tmp_path / "results.json"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    results = json.loads(out.read_text())
    ddp = results["True"]
    assert ddp["num_real"] == NUM_REAL
    assert ddp["fvd"] == pytest.approx(single["fvd"], rel=1e-9, abs=1e-12)
    assert ddp["kvd"] == pytest.approx(single["kvd"], rel=1e-9, abs=1e-12)
    assert ddp["cfvd"] == pytest.approx(single["cfvd"], rel=1e-9, abs=1e-12)
    # without dataset indices the sampler's padding duplicates enter the statistics
    padded = results["False"]
    assert padded["num_real"] == NUM_REAL + 1
    assert padded["fvd"] != pytest.approx(single["fvd"], rel=1e-6)
