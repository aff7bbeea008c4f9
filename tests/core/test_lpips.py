"""VideoLPIPS vs the lpips package itself, backbone loading from a torchvision file, errors."""

from __future__ import annotations

import lpips
import pytest
import torch
import torchvision

from videogen.core.metrics.lpips import BACKBONE_FILES, VideoLPIPS, build_lpips, lpips_per_video
from videogen.core.pretrained import MissingWeightsError


@pytest.fixture(scope="module")
def reference():
    """The lpips package's own model, random AlexNet backbone, wheel linear layers."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()


def _videos(seed: int, shape=(3, 3, 4, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _per_frame_reference(ref, preds, target):
    """Per-video mean of the reference model called frame by frame: (B, C, T, H, W) -> (B,)."""
    b, _, t = preds.shape[:3]
    with torch.no_grad():
        d = [[ref(preds[i, :, j : j + 1].transpose(0, 1), target[i, :, j : j + 1].transpose(0, 1)).item()
              for j in range(t)] for i in range(b)]
    return torch.tensor(d, dtype=torch.float64).mean(1)


def test_same_seed_gives_the_package_model_and_output(reference):
    torch.manual_seed(0)
    ours = build_lpips("alex", pnet_rand=True)
    ref_state = reference.state_dict()
    for k, v in ours.state_dict().items():
        assert torch.equal(v, ref_state[k]), k
    preds, target = _videos(1), _videos(2)
    expected = _per_frame_reference(reference, preds, target)
    with torch.no_grad():
        per_video = lpips_per_video(ours, preds, target, frame_chunk=5)
    torch.testing.assert_close(per_video.double(), expected, rtol=0, atol=1e-6)

    metric = VideoLPIPS(model=ours, frame_chunk=5)
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    assert metric.compute().item() == pytest.approx(expected.mean().item(), abs=1e-6)


def test_backbone_loads_from_torchvision_state_dict(tmp_path, reference):
    # A torchvision AlexNet carrying the reference backbone's weights, saved as torchvision would.
    tv = torchvision.models.alexnet(weights=None)
    for name, p in reference.net.named_parameters():
        idx_param = name.split(".", 1)[1]  # slice{k}.{i}.{p} -> {i}.{p}
        tv.features.get_parameter(idx_param).data.copy_(p)
    torch.save(tv.state_dict(), tmp_path / BACKBONE_FILES["alex"])

    torch.manual_seed(123)  # a different random init, fully overwritten by the file
    metric = VideoLPIPS(net="alex", pretrained_backbone_path=tmp_path)  # directory lookup
    preds, target = _videos(3, (2, 3, 2, 32, 32)), _videos(4, (2, 3, 2, 32, 32))
    metric.update(preds, target)
    expected = _per_frame_reference(reference, preds, target).mean().item()
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)
    metric.train()  # following a parent into train mode must not switch on dropout
    assert not metric.net.training


def test_missing_or_wrong_backbone_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        build_lpips("alex", pretrained_backbone_path=tmp_path / "nowhere.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"classifier.1.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ValueError, match="features.0.weight"):
        build_lpips("alex", pretrained_backbone_path=bad)
    with pytest.raises(ValueError, match="net must be one of"):
        build_lpips("resnet", pnet_rand=True)


def test_input_validation(reference):
    metric = VideoLPIPS(model=reference)
    x = _videos(5, (1, 3, 2, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metric.update(x * 3, x)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(x, x[:, :, :1])
    with pytest.raises(ValueError, match="rank 5"):
        metric.update(x[0], x[0])
    with pytest.raises(ValueError, match="at least 31x31"):
        metric.update(x[..., :16, :16], x[..., :16, :16])
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
