"""Inception-I3D (Carreira & Zisserman 2017), the Kinetics-400 video classifier behind FVD and KVD.

:class:`I3D` keeps the module and parameter names of the widely used PyTorch port
``InceptionI3d(400, in_channels=3)`` (piergiaj/pytorch-i3d layout), so the ``i3d_pretrained_400.pt``
state dict used by VideoGPT, TATS, LVDM, PVDM and CMD loads with ``strict=True``. As in those FVD
codebases, ``forward`` returns the 400 Kinetics logits (before softmax) averaged over the remaining time
steps: these are the features FVD fits Gaussians to.

:func:`load_i3d` also accepts StyleGAN-V's TorchScript detector ``i3d_torchscript.pt`` and wraps both
behind one interface: ``(B, 3, T, 224, 224)`` float in [-1, 1] -> ``(B, 400)`` float features.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from videogen.core.persistence import safe_load

from ..pretrained import MissingWeightsError, resolve_weight_file

__all__ = ["I3D", "TorchScriptI3D", "load_i3d", "I3D_STATE_DICT_FILE", "I3D_TORCHSCRIPT_FILE", "I3D_BN_EPS"]

I3D_STATE_DICT_FILE = "i3d_pretrained_400.pt"
I3D_TORCHSCRIPT_FILE = "i3d_torchscript.pt"
_HOW_TO_GET = (
    f"FVD needs Kinetics-400 I3D weights: either {I3D_STATE_DICT_FILE!r}, the state dict of the PyTorch port "
    "InceptionI3d(400) (piergiaj/pytorch-i3d layout) that VideoGPT's and TATS's FVD code download "
    "(see their READMEs / fvd scripts), or StyleGAN-V's TorchScript detector "
    f"{I3D_TORCHSCRIPT_FILE!r} (https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt)."
)

# Inception blocks: name -> (in_channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels).
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
# Max-pools: name -> (kernel, stride); the stem convolutions are built in I3D.__init__.
_POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
_ORDER = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
    "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)
# Total spatial / temporal strides up to Mixed_5c, and the final average-pool window (T, H, W).
_SPATIAL_STRIDE, _TEMPORAL_STRIDE, _POOL_WINDOW = 32, 8, (2, 7, 7)


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """TensorFlow "SAME" padding for a (B, C, T, H, W) input, as the original I3D was trained with.

    Output length per axis is ceil(size / stride); the extra element of an odd padding goes at the end.
    """
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]  # F.pad order: (W_front, W_back, H_front, H_back, T_...)
    return F.pad(x, pads)


#: BatchNorm epsilon of the FVD code that distributes and uses ``i3d_pretrained_400.pt`` (VideoGPT's
#: ``fvd/pytorch_i3d.py``, copied by TATS, LVDM and PVDM).  piergiaj's original port uses 1e-3 (with other
#: weights); with the real file, channels whose running variance is near 1e-3 would differ far more than
#: rounding, so published FVDs are only comparable with 1e-5.
I3D_BN_EPS = 1e-5


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) + BatchNorm3d(eps=1e-5) + ReLU; the logits layer keeps only the conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True, activation: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=I3D_BN_EPS, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """3D max-pooling with SAME padding (zero padding, as in the PyTorch port)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)  # (B, sum(out_i), T, H, W)


class I3D(nn.Module):
    """Inception-I3D with the canonical PyTorch-port parameter layout; ``forward`` gives FVD features.

    Input frames must be 193..224 pixels on each side (224 in every FVD protocol), so that the last
    feature map is 7x7, and at least 9 frames long, so that the 2-frame average pool has an input.
    Dropout is omitted: it has no parameters and FVD runs the network in eval mode.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        for name, (kernel, stride) in _POOLS.items():
            self.add_module(name, MaxPool3dSame(kernel, stride))
        for name, (in_ch, out) in _MIXED.items():
            self.add_module(name, InceptionBlock(in_ch, out))
        self.avg_pool = nn.AvgPool3d(kernel_size=_POOL_WINDOW, stride=1)
        self.logits = Unit3D(384 + 384 + 128 + 128, num_classes, batch_norm=False, activation=False,
                             bias=True)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, T >= 9, 193..224, 193..224)."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if any(math.ceil(s / _SPATIAL_STRIDE) != _POOL_WINDOW[1] for s in (h, w)):
            raise ValueError(f"I3D expects frames of 193..224 pixels per side (224 for FVD), got {h}x{w}")
        if math.ceil(t / _TEMPORAL_STRIDE) < _POOL_WINDOW[0]:
            raise ValueError(f"I3D needs at least 9 frames, got {t}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) in [-1, 1] -> (B, num_classes) logits averaged over time."""
        self.check_input(x)
        for name in _ORDER:
            x = getattr(self, name)(x)  # -> (B, 1024, ceil(T/8), 7, 7) after Mixed_5c
        x = self.logits(self.avg_pool(x))  # (B, num_classes, ceil(T/8) - 1, 1, 1)
        return x.flatten(2).mean(dim=2)  # (B, num_classes, T') -> (B, num_classes)


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's TorchScript I3D detector behind the :class:`I3D` interface.

    The detector is called with ``rescale=False, resize=False``: it then takes float frames in [-1, 1]
    that are already 224x224 (our FVD preprocessing does the resizing), and ``return_features=True``
    makes it return the 400 pre-softmax logits.
    """

    def __init__(self, detector: torch.jit.ScriptModule):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D detector expects (B, 3, T, H, W), got {tuple(x.shape)}")
        return self.detector(x, rescale=False, resize=False, return_features=True)  # (B, 400)


def _resolve(path: str | os.PathLike | None):
    """Find the state-dict file or, failing that, the TorchScript file; one error naming both."""
    errors: list[MissingWeightsError] = []
    for filename in (I3D_STATE_DICT_FILE, I3D_TORCHSCRIPT_FILE):
        try:
            return resolve_weight_file(path, filename, _HOW_TO_GET)
        except MissingWeightsError as err:
            errors.append(err)
    raise MissingWeightsError(f"no I3D weights found (also tried {I3D_TORCHSCRIPT_FILE!r}): {errors[0]}")


def load_i3d(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """Load a pretrained I3D feature extractor in eval mode with frozen parameters.

    Args:
        path: a weight file, a directory holding ``i3d_pretrained_400.pt`` or ``i3d_torchscript.pt``,
            or None to look in the videogen cache directory. The format is detected from the file:
            anything but a TorchScript archive must be a state dict
            (loaded with ``torch.load(weights_only=True)`` and ``strict=True`` into :class:`I3D`).
            TorchScript archives are recognised by their ``code/`` folder and loaded with
            ``torch.jit.load``.
        device: where to put the network.

    Raises:
        MissingWeightsError: no file found; the message says where to get one.
    """
    file = _resolve(path)
    if _is_torchscript(file):
        with warnings.catch_warnings():  # torch.jit is deprecated, but StyleGAN-V's detector is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            model: nn.Module = TorchScriptI3D(torch.jit.load(str(file), map_location=device))
    else:
        state_dict = safe_load(file, "I3D state dict", map_location=device)
        if not isinstance(state_dict, dict):
            raise ValueError(f"{file} is neither a TorchScript archive nor a state dict")
        model = I3D()
        model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval().requires_grad_(False)


def _is_torchscript(file: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; torch.save state dicts have none."""
    if not zipfile.is_zipfile(file):
        return False  # legacy (pre-zip) torch.save file
    with zipfile.ZipFile(file) as archive:
        return any("/code/" in name for name in archive.namelist())
