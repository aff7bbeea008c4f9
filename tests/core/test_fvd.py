"""FVD / KVD / grouped FVD against direct numpy computations, with a tiny feature extractor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from videogen.core.metrics import (
    FrechetVideoDistance,
    KernelVideoDistance,
    grouped_fvd,
    preprocess_videos,
)

SIZE = 16  # frame side after preprocessing (224 for the real I3D)


class TinyExtractor(nn.Module):
    """(B, 3, T, S, S) -> (B, 8): pooled frames through a fixed random projection (stands in for I3D)."""

    def __init__(self, num_frames: int = 4, dim: int = 8):
        super().__init__()
        self.proj = nn.Linear(3 * num_frames * 4, dim)
        self.bn = nn.BatchNorm1d(dim)  # lets a test see whether the extractor stayed in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool3d(x, (x.shape[2], 2, 2)).flatten(1)  # (B, 3*T*4)
        return self.bn(torch.tanh(self.proj(pooled)))


def _videos(n: int, seed: int, shift: float = 0.0, t: int = 4, h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, t, h, w, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1)


def _features(extractor: nn.Module, videos: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return extractor.eval()(preprocess_videos(videos, "direct", SIZE)).double().numpy()


def _numpy_fvd(real: np.ndarray, fake: np.ndarray, bias: bool = False) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False, bias=bias), np.cov(fake, rowvar=False, bias=bias)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))


def _numpy_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, polynomial kernel (a.b/d + 1)^3, written with explicit off-diagonal masks."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off_x, off_y = ~np.eye(len(x), dtype=bool), ~np.eye(len(y), dtype=bool)
    return float(kxx[off_x].mean() + kyy[off_y].mean() - 2 * kxy.mean())


@pytest.fixture
def extractor():
    torch.manual_seed(0)
    return TinyExtractor()


@pytest.mark.parametrize("cov_normalization", ["unbiased", "biased"])
def test_fvd_matches_numpy(extractor, cov_normalization):
    real, fake = _videos(40, seed=1), _videos(30, seed=2, shift=0.3)
    metric = FrechetVideoDistance(extractor, image_size=SIZE, cov_normalization=cov_normalization)
    for chunk in real.split(16):
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    value = metric.compute()
    assert value.dtype == torch.float64
    expected = _numpy_fvd(_features(extractor, real), _features(extractor, fake),
                          bias=cov_normalization == "biased")
    assert value.item() == pytest.approx(expected, rel=1e-8)
    assert metric.protocol == {"num_real": 40, "num_fake": 30, "num_frames": 4, "resize": "direct",
                               "image_size": SIZE, "cov_normalization": cov_normalization}


def test_identical_sets_give_zero(extractor):
    videos = _videos(30, seed=3)
    metric = FrechetVideoDistance(extractor, image_size=SIZE)
    metric.update(videos, real=True)
    metric.update(videos, real=False)
    assert abs(metric.compute().item()) < 1e-8


def test_index_drops_duplicated_padding(extractor):
    videos, fake = _videos(10, seed=4), _videos(10, seed=5, shift=0.2)
    plain = FrechetVideoDistance(extractor, image_size=SIZE)
    plain.update(videos, real=True)
    plain.update(fake, real=False)
    padded = FrechetVideoDistance(extractor, image_size=SIZE)
    padded.update(videos, real=True, index=torch.arange(10))
    padded.update(videos[:3], real=True, index=torch.arange(3))  # what a DistributedSampler repeats
    padded.update(fake, real=False)
    assert padded.compute().item() == pytest.approx(plain.compute().item(), rel=1e-12)
    assert padded.protocol["num_real"] == 10


def test_kvd_full_set_matches_numpy(extractor):
    real, fake = _videos(25, seed=6), _videos(20, seed=7, shift=0.2)
    metric = KernelVideoDistance(extractor, image_size=SIZE)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = _numpy_mmd(_features(extractor, real), _features(extractor, fake))
    assert metric.compute().item() == pytest.approx(expected, rel=1e-10)


def test_kvd_subsets(extractor):
    real, fake = _videos(12, seed=8), _videos(12, seed=9, shift=0.2)
    full = _numpy_mmd(_features(extractor, real), _features(extractor, fake))
    # subsets holding every video are permutations: each estimate equals the full one
    metric = KernelVideoDistance(extractor, image_size=SIZE, subsets=(3, 12))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert metric.compute().item() == pytest.approx(full, rel=1e-10)
    assert metric.protocol["std"] == pytest.approx(0.0, abs=1e-10)
    smaller = KernelVideoDistance(extractor, image_size=SIZE, subsets=(5, 6), seed=1)
    smaller.update(real, real=True)
    smaller.update(fake, real=False)
    assert smaller.compute().item() != pytest.approx(full) and smaller.protocol["std"] > 0
    too_big = KernelVideoDistance(extractor, image_size=SIZE, subsets=(2, 20))
    too_big.update(real, real=True)
    too_big.update(fake, real=False)
    with pytest.raises(ValueError, match="subset_size"):
        too_big.compute()


def test_grouped_fvd_matches_manual(extractor):
    real, fake = _videos(36, seed=10), _videos(30, seed=11, shift=0.2)
    real_groups, fake_groups = torch.arange(36) % 3, torch.arange(30) % 3
    metric = FrechetVideoDistance(extractor, image_size=SIZE)
    metric.update(real, real=True, group=real_groups)
    metric.update(fake, real=False, group=fake_groups)
    mean, std, per_group = metric.compute_grouped()
    fr, ff = _features(extractor, real), _features(extractor, fake)
    manual = [_numpy_fvd(fr[real_groups.numpy() == g], ff[fake_groups.numpy() == g]) for g in range(3)]
    assert sorted(per_group) == [0, 1, 2]
    np.testing.assert_allclose([per_group[g] for g in range(3)], manual, rtol=1e-8)
    assert mean == pytest.approx(np.mean(manual), rel=1e-8)
    assert std == pytest.approx(np.std(manual), rel=1e-6)
    assert metric.protocol["num_groups"] == 3
    # string labels (subjects) through the function
    _, _, by_name = grouped_fvd(fr, ff, ["a", "b", "c"] * 12, ["a", "b", "c"] * 10)
    assert by_name["b"] == pytest.approx(manual[1], rel=1e-8)
    with pytest.raises(ValueError, match="both sets"):
        grouped_fvd(fr, ff, [0] * 36, [1] * 30)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_real_stats_round_trip(extractor, tmp_path, suffix):
    real, fake = _videos(30, seed=12), _videos(20, seed=13, shift=0.2)
    source = FrechetVideoDistance(extractor, image_size=SIZE)
    source.update(real, real=True)
    source.update(fake, real=False)
    expected = source.compute().item()
    source.save_real_stats(tmp_path / f"real{suffix}")

    reused = FrechetVideoDistance(extractor, image_size=SIZE)
    reused.load_real_stats(tmp_path / f"real{suffix}")
    reused.update(fake, real=False)
    assert reused.compute().item() == pytest.approx(expected, rel=1e-12)
    assert reused.protocol["num_real"] == 30
    with pytest.raises(ValueError, match="loaded"):
        reused.update(real, real=True)
    # saved unbiased, used biased: the covariance is rescaled by (N-1)/N
    biased = FrechetVideoDistance(extractor, image_size=SIZE, cov_normalization="biased")
    biased.load_real_stats(tmp_path / f"real{suffix}")
    biased.update(fake, real=False)
    fr, ff = _features(extractor, real), _features(extractor, fake)
    assert biased.compute().item() == pytest.approx(_numpy_fvd(fr, ff, bias=True), rel=1e-8)
    with pytest.raises(ValueError, match="resize"):
        FrechetVideoDistance(extractor, image_size=SIZE, resize="center_crop").load_real_stats(
            tmp_path / f"real{suffix}")


def test_preprocess_modes():
    video = _videos(1, seed=14, h=SIZE, w=2 * SIZE)
    cropped = preprocess_videos(video, "center_crop", SIZE)  # short side already SIZE: a pure crop
    torch.testing.assert_close(cropped, video[..., SIZE // 2 : SIZE // 2 + SIZE])
    direct = preprocess_videos(video, "direct", SIZE)
    frames = video[0].transpose(0, 1)  # (T, C, H, W)
    expected = F.interpolate(frames, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(direct[0].transpose(0, 1), expected)
    tall = preprocess_videos(_videos(2, seed=15, h=40, w=20), "center_crop", SIZE)
    assert tall.shape == (2, 3, 4, SIZE, SIZE)
    gray = preprocess_videos(video[:, :1], "direct", SIZE)
    assert gray.shape == (1, 3, 4, SIZE, SIZE) and torch.equal(gray[:, 0], gray[:, 2])


def test_bad_input_raises(extractor):
    metric = FrechetVideoDistance(extractor, image_size=SIZE)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metric.update(_videos(2, seed=0) * 2, real=True)
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        metric.update(torch.zeros(2, 3, 16, 16), real=True)
    with pytest.raises(ValueError, match="float"):
        metric.update(torch.zeros(2, 3, 4, 16, 16, dtype=torch.uint8), real=True)
    with pytest.raises(ValueError, match="resize"):
        FrechetVideoDistance(extractor, resize="bicubic")
    with pytest.raises(ValueError, match="cov_normalization"):
        FrechetVideoDistance(extractor, cov_normalization="N")
    metric.update(_videos(2, seed=0), real=True)
    with pytest.raises(ValueError, match="frames"):
        metric.update(_videos(2, seed=0, t=5), real=True)
    with pytest.raises(ValueError, match="no fake"):
        metric.compute()


def test_extractor_stays_in_eval_mode(extractor):
    metric = FrechetVideoDistance(extractor, image_size=SIZE).train()
    assert metric.training and not metric.feature_extractor.training
    running_mean = extractor.bn.running_mean.clone()
    metric.update(_videos(4, seed=16), real=True)
    assert torch.equal(extractor.bn.running_mean, running_mean)
