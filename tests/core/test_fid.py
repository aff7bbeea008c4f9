"""Frame-level FID vs a float64 scipy Frechet distance; Inception loading from a local file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from videogen.core.metrics.fid import INCEPTION_FILENAME, FrechetInceptionDistance
from videogen.core.pretrained import MissingWeightsError


class TinyExtractor(nn.Module):
    """A fixed random conv net: frames (N, 3, H, W) in [-1, 1] -> (N, 6) features."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
        return self.fc(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def _videos(seed: int, shift: float = 0.0, shape=(4, 3, 5, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1)


def _scipy_fid(extractor, real, fake):
    def stats(v):
        frames = v.transpose(1, 2).reshape(-1, *v.shape[1:2], *v.shape[3:])
        with torch.no_grad():
            f = extractor(frames).double().numpy()
        return f.mean(0), np.cov(f, rowvar=False)

    (m1, s1), (m2, s2) = stats(real), stats(fake)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_scipy_reference_and_accumulates_over_updates():
    extractor = TinyExtractor()
    real, fake = _videos(0), _videos(1, shift=0.15)
    metric = FrechetInceptionDistance(extractor, frame_chunk=7)  # chunks cut across videos
    metric.update(real[:3], real=True)
    metric.update(real[3:], real=True)
    metric.update(fake, real=False)
    assert int(metric.real_features_num_samples) == 4 * 5  # every frame is a sample
    expected = _scipy_fid(extractor, real, fake)
    assert expected > 1e-3
    assert metric.compute().item() == pytest.approx(expected, rel=1e-4)


def test_identical_sets_give_zero_and_real_stats_can_be_kept():
    extractor = TinyExtractor()
    real = _videos(2)
    metric = FrechetInceptionDistance(extractor, reset_real_features=False)
    metric.update(real, real=True)
    metric.update(real, real=False)
    assert abs(metric.compute().item()) < 1e-4
    metric.reset()  # real statistics survive, fake ones are cleared
    metric.update(_videos(3, shift=0.3), real=False)
    assert metric.compute().item() > 1e-3


def test_input_and_extractor_validation():
    with pytest.raises(ValueError, match="num_features"):
        FrechetInceptionDistance(nn.Conv2d(3, 3, 1))
    metric = FrechetInceptionDistance(TinyExtractor())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metric.update(_videos(0) * 4, real=True)
    with pytest.raises(ValueError, match="RGB"):
        metric.update(_videos(0)[:, :1], real=True)
    with pytest.raises(ValueError, match="rank 5"):
        metric.update(_videos(0)[0], real=True)


def test_missing_or_unsafe_inception_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match=INCEPTION_FILENAME):
        FrechetInceptionDistance()
    unsafe = tmp_path / INCEPTION_FILENAME
    torch.save({"w": torch.zeros(1), "obj": nn.Linear(1, 1)}, unsafe)  # a pickled module, not tensors
    with pytest.raises(ValueError, match="plain state dict"):
        FrechetInceptionDistance(tmp_path)


def test_inception_loads_from_local_file_and_gets_uint8_frames(tmp_path, monkeypatch):
    """Random weights in torch-fidelity's layout, saved and loaded back through the real code path."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with monkeypatch.context() as m:  # build the module once without weights to get its state-dict layout
        m.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        random_inception = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(random_inception.state_dict(), tmp_path / INCEPTION_FILENAME)

    real_load, calls = torch.load, []
    monkeypatch.setattr(torch, "load", lambda f, *a,
                        **k: calls.append(k.get("weights_only")) or real_load(f, *a, **k))
    metric = FrechetInceptionDistance(tmp_path / INCEPTION_FILENAME)
    assert calls == [True]  # read once, safely: torch-fidelity never unpickles the user's file
    loaded = metric.inception.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in random_inception.state_dict().items())
    videos = _videos(4, shape=(1, 3, 1, 16, 16))
    metric.update(videos, real=True)
    frames_u8 = ((videos.transpose(1, 2).reshape(1, 3, 16, 16) + 1) * 127.5).round().to(torch.uint8)
    with torch.no_grad():
        expected = metric.inception(frames_u8).double().sum(0)
    assert expected.shape == (2048,)
    torch.testing.assert_close(metric.real_features_sum, expected)


def test_merged_states_equal_one_process():
    """merge_state applies the DDP reductions (float64 sums): two halves give the one-process FID."""
    extractor = TinyExtractor()
    real, fake = _videos(5), _videos(6, shift=0.2)
    whole, first, second = (FrechetInceptionDistance(extractor) for _ in range(3))
    whole.update(real, real=True)
    whole.update(fake, real=False)
    first.update(real[:2], real=True)
    first.update(fake[:1], real=False)
    second.update(real[2:], real=True)
    second.update(fake[1:], real=False)
    first.merge_state(second)
    assert first.compute().item() == pytest.approx(whole.compute().item(), rel=1e-6)
