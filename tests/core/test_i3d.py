"""I3D: canonical parameter layout, weight loading (state dict and TorchScript), forward contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videogen.core.metrics.i3d import I3D, TorchScriptI3D, load_i3d
from videogen.core.pretrained import MissingWeightsError

# Parameter count of the PyTorch port InceptionI3d(400, in_channels=3) (piergiaj/pytorch-i3d).
CANONICAL_NUM_PARAMS = 12_697_264
# A few (name, shape) entries of the canonical i3d_pretrained_400.pt state dict.
CANONICAL_ENTRIES = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_var": (64,),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
    "Mixed_4f.b2b.bn.bias": (128,),
    "Mixed_5c.b3b.bn.running_mean": (128,),
    "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


def test_parameter_count_and_canonical_names_on_meta():
    with torch.device("meta"):
        model = I3D()
    assert sum(p.numel() for p in model.parameters()) == CANONICAL_NUM_PARAMS
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 344  # 9 inception blocks x 6 units + 3 stem units, 6 entries each; + 2 logits
    for name, shape in CANONICAL_ENTRIES.items():
        assert shapes[name] == shape, name
    assert not any(k.startswith("logits.bn") for k in shapes)  # the logits unit has no BatchNorm


def _random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the I3D layout (BatchNorm scales near 1 keep activations in range)."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        layout = I3D().state_dict()
    sd = {}
    for k, v in layout.items():
        if k.endswith("num_batches_tracked"):
            continue  # files saved by older torch have none; strict loading must still work
        if k.endswith(("running_var", "bn.weight")):
            sd[k] = 0.75 + 0.5 * torch.rand(v.shape, generator=g)
        else:
            sd[k] = 0.05 * torch.randn(v.shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random state dict saved under the canonical file name: (directory, state dict)."""
    directory = tmp_path_factory.mktemp("i3d")
    sd = _random_state_dict()
    torch.save(sd, directory / "i3d_pretrained_400.pt")
    return directory, sd


def test_state_dict_round_trip_strict_and_forward(weights):
    directory, sd = weights
    model = load_i3d(directory)  # directory lookup by the canonical file name
    assert isinstance(model, I3D) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    loaded = model.state_dict()
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k
    x = torch.rand(1, 3, 9, 193, 193) * 2 - 1  # 9 frames, 193 px: the smallest input with a 7x7 last map
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 400) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert y.std() > 0


def test_wrong_state_dict_is_rejected(weights, tmp_path):
    sd = dict(weights[1])
    sd.pop("logits.conv3d.bias")
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="logits.conv3d.bias"):
        load_i3d(tmp_path / "bad.pt")


@pytest.mark.parametrize("shape",
                         [(1, 3, 8, 224, 224), (1, 3, 16, 192, 224), (1, 3, 16, 225, 224),
                          (1, 1, 16, 224, 224)])
def test_forward_rejects_invalid_sizes(shape):
    with pytest.raises(ValueError, match="I3D"):
        I3D()(torch.zeros(shape))


class _FakeStyleGANVDetector(nn.Module):
    """Same calling convention as StyleGAN-V's i3d_torchscript.pt: (B,3,T,H,W) + keyword flags."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        if rescale:  # uint8-range input -> [-1, 1]
            x = x / 127.5 - 1
        feats = self.proj(x.mean(dim=(2, 3, 4)))
        return feats if return_features else feats.softmax(dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_detector_through_load_i3d(tmp_path):
    detector = _FakeStyleGANVDetector()
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(detector).save(str(path))
    model = load_i3d(tmp_path)  # no state-dict file there: falls back to the TorchScript name
    assert isinstance(model, TorchScriptI3D)
    x = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = detector(x, rescale=False, resize=False, return_features=True)
        got = model(x)
    assert got.shape == (2, 400)
    torch.testing.assert_close(got, expected)


def test_missing_weights_error_names_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError) as err:
        load_i3d(tmp_path / "nowhere")
    message = str(err.value)
    assert "i3d_pretrained_400.pt" in message and "i3d_torchscript.pt" in message


def test_unit3d_batchnorm_matches_the_fvd_code_formula_in_float64():
    """Conv + BN (eval) + ReLU equals ``relu(g * (conv - mu) / sqrt(var + 1e-5) + b)`` computed in float64,
    with running variances from 1e-6 to 1: the regime where eps 1e-3 (piergiaj) and 1e-5 (VideoGPT's
    ``pytorch_i3d.py``, which ships ``i3d_pretrained_400.pt``) disagree most."""
    from videogen.core.metrics.i3d import I3D_BN_EPS, Unit3D

    assert I3D_BN_EPS == 1e-5
    torch.manual_seed(0)
    unit = Unit3D(3, 7, kernel=(1, 3, 3)).eval()
    bn = unit.bn
    with torch.no_grad():
        bn.running_var.copy_(torch.logspace(-6, 0, 7))
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
        unit.conv3d.weight.mul_(1e-2)  # conv outputs on the scale of sqrt(running_var)
    x = torch.randn(2, 3, 2, 6, 6)
    with torch.no_grad():
        got = unit(x).double()
        conv = unit.conv3d.double()(torch.nn.functional.pad(x.double(), (1, 1, 1, 1, 0, 0)))
        shape = (1, -1, 1, 1, 1)
        ref = (conv - bn.running_mean.double().view(shape)) / torch.sqrt(bn.running_var.double().view(shape)
                                                                         + 1e-5)
        ref = torch.relu(ref * bn.weight.double().view(shape) + bn.bias.double().view(shape))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the same formula with eps 1e-3 is far off for the small-variance channels
        wrong = (conv - bn.running_mean.double().view(shape)) / torch.sqrt(bn.running_var.double().view(shape)
                                                                           + 1e-3)
        wrong = torch.relu(wrong * bn.weight.double().view(shape) + bn.bias.double().view(shape))
    assert (wrong - ref).abs().max() > 1e-1
