"""LPIPS (Zhang et al. 2018) on videos, built on the ``lpips`` package without any download.

The ``lpips`` wheel ships the learned linear layers (``weights/v0.1/{net}.pth``); the backbone
(AlexNet / VGG16 / SqueezeNet1.1 ``features``) is an ImageNet torchvision model that ``lpips`` would
download at run time. Here the backbone comes from a local torchvision state-dict file instead
(``pretrained_backbone_path``: the file, a directory holding it, or the torch-hub / videogen caches), or
is left random with ``pnet_rand=True`` (tests). A video's LPIPS is the mean over its frames; the metric
is the mean over videos.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lpips
import torch
from torch.utils.checkpoint import checkpoint
from torchmetrics import Metric

from videogen.core.metrics._frames import check_video_pair, to_frames
from videogen.core.persistence import safe_load
from videogen.core.pretrained import resolve_weight_file

__all__ = ["BACKBONE_FILES", "MIN_FRAME_SIZE", "FrozenLPIPS", "VideoLPIPS", "build_lpips", "lpips_per_video"]

# torchvision's canonical file names for the backbones that lpips uses.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_BACKBONE_URL = "https://download.pytorch.org/models/{}"
# Smallest frame side each backbone accepts (its pooling stack reduces smaller frames to nothing).
MIN_FRAME_SIZE = {"alex": 31, "vgg": 16, "squeeze": 17}


class FrozenLPIPS(lpips.LPIPS):
    """An ``lpips.LPIPS`` that stays in eval mode (no dropout) and never trains, whatever its parent does."""

    def train(self, mode: bool = True) -> FrozenLPIPS:
        return super().train(False)


def _load_backbone(model: lpips.LPIPS, file: Path) -> None:
    """Copy a torchvision ``{alexnet,vgg16,squeezenet1_1}`` state dict into the lpips backbone slices.

    lpips registers torchvision's ``features[i]`` as ``slice{k}.{i}``, so ``net.slice{k}.{i}.{p}`` is
    ``features.{i}.{p}`` of the torchvision file.
    """
    state = safe_load(file, "LPIPS weight file", map_location="cpu")
    if not isinstance(state, dict):
        raise ValueError(f"{file} is not a torchvision state dict (got {type(state).__name__})")
    mapped = {}
    for name, param in model.net.state_dict().items():
        key = "features." + name.split(".", 1)[1]  # slice{k}.{i}.{p} -> features.{i}.{p}
        if key not in state:
            raise ValueError(f"{file} lacks {key!r}: not a torchvision {model.pnet_type} state dict")
        if state[key].shape != param.shape:
            raise ValueError(f"{file}: {key} has shape {tuple(state[key].shape)}, expected "
                             f"{tuple(param.shape)}")
        mapped[name] = state[key]
    model.net.load_state_dict(mapped, strict=True)


def build_lpips(
    net: str = "alex",
    pretrained_backbone_path: str | os.PathLike | None = None,
    pnet_rand: bool = False,
) -> FrozenLPIPS:
    """Build a frozen LPIPS v0.1 model with the wheel's linear layers, offline.

    Args:
        net: ``"alex"`` (the usual choice for metrics and losses), ``"vgg"`` or ``"squeeze"``.
        pretrained_backbone_path: torchvision backbone weights (file or directory). ``None`` looks in
            ``$TORCH_HOME/hub/checkpoints`` (where torchvision caches it) and the videogen cache.
        pnet_rand: keep the backbone random (tests only: the numbers mean nothing).

    Raises:
        MissingWeightsError: the backbone file is not found (the message names the file and its URL).
    """
    if net not in BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    backbone_file = None
    if not pnet_rand:
        filename = BACKBONE_FILES[net]
        where = pretrained_backbone_path or Path(torch.hub.get_dir()) / "checkpoints"
        backbone_file = resolve_weight_file(
            where, filename, f"It is torchvision's ImageNet {net} file, {_BACKBONE_URL.format(filename)}."
        )
    # pretrained=False: lpips would torch.load the linear layers without weights_only; we do it below.
    with warnings.catch_warnings():  # lpips still calls torchvision with the deprecated `pretrained=`
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = FrozenLPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    lin_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    lin_state = safe_load(lin_file, "LPIPS weight file", map_location="cpu")
    unexpected = model.load_state_dict(lin_state, strict=False).unexpected_keys
    if unexpected or not lin_state:
        raise RuntimeError(f"lpips linear weights {lin_file} do not match the model (unexpected: "
                           f"{unexpected})")
    if backbone_file is not None:
        _load_backbone(model, backbone_file)
    model.requires_grad_(False)
    return model.eval()


def lpips_per_video(
    model: lpips.LPIPS, preds: torch.Tensor, target: torch.Tensor, frame_chunk: int | None = None
) -> torch.Tensor:
    """LPIPS of each video, the mean over its frames: ``(B, C, T, H, W) x 2 -> (B,)``.

    Inputs are in [-1, 1] (not validated here, so that a training loss may see a decoder's slightly
    out-of-range output). ``frame_chunk`` bounds how many frames go through the backbone at once; under
    autograd each chunk is checkpointed, so the bound also holds for the activations kept for backward.
    """
    b, t = preds.shape[0], preds.shape[2]
    min_size = MIN_FRAME_SIZE.get(model.pnet_type, 1)
    if min(preds.shape[-2:]) < min_size:
        raise ValueError(f"LPIPS-{model.pnet_type} needs frames of at least {min_size}x{min_size}, got "
                         f"{tuple(preds.shape)}")
    x, y = to_frames(preds), to_frames(target)  # (B, C, T, H, W) -> (B*T, C, H, W)
    chunk = frame_chunk or x.shape[0]
    use_ckpt = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad) and chunk < x.shape[0]
    scores = []
    for i in range(0, x.shape[0], chunk):
        xi, yi = x[i : i + chunk], y[i : i + chunk]
        d = checkpoint(model, xi, yi, use_reentrant=False) if use_ckpt else model(xi, yi)
        scores.append(d.flatten())  # (n, 1, 1, 1) -> (n,)
    return torch.cat(scores).view(b, t).mean(dim=1)  # (B*T,) -> (B,)


class VideoLPIPS(Metric):
    """Mean LPIPS over videos, each video the mean over its frames (lower is more similar).

    ``update(preds, target)`` takes two ``(B, 3, T, H, W)`` float videos in [-1, 1]; frames need
    H, W >= 31 for AlexNet. States are a sum and a count, so DDP reduction is exact.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        net: str = "alex",
        pretrained_backbone_path: str | os.PathLike | None = None,
        pnet_rand: bool = False,
        frame_chunk: int | None = 64,
        model: lpips.LPIPS | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.net = model if model is not None else build_lpips(net, pretrained_backbone_path, pnet_rand)
        self.frame_chunk = frame_chunk
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        check_video_pair(preds, target)
        with torch.no_grad():
            scores = lpips_per_video(self.net, preds.float(), target.float(), self.frame_chunk)
        self.score_sum += scores.double().sum()
        self.num_videos += scores.numel()

    def compute(self) -> torch.Tensor:
        if self.num_videos == 0:
            raise RuntimeError("VideoLPIPS.compute() called before any update()")
        return (self.score_sum / self.num_videos).float()
