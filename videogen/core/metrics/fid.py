"""Frame-level FID of videos: torchmetrics' ``FrechetInceptionDistance`` fed with every frame.

Each frame of each ``(B, C, T, H, W)`` video in [-1, 1] is one sample. Feature sums are kept in float64
by torchmetrics (so DDP reduction is exact), the covariance is unbiased (N - 1) and the Frechet
distance uses the eigenvalues of Sigma_real Sigma_fake.

Feature extractors:

- the standard FID Inception-v3 (torch-fidelity's port of the 2015-12-05 TensorFlow graph), from a
  local file ``weights-inception-2015-12-05-6726825d.pth``. It gets uint8 frames in [0, 255] and
  resizes them to 299x299 itself, as in the published protocol.
- any ``nn.Module`` with an int ``num_features`` attribute. It gets float32 frames ``(N, 3, H, W)``
  in [-1, 1], the library's convention, and returns ``(N, num_features)``.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance as _TorchmetricsFID

from videogen.core.metrics._frames import to_frames
from videogen.core.pretrained import resolve_weight_file
from videogen.core.video import check_video

__all__ = ["INCEPTION_FILENAME", "FrechetInceptionDistance"]

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
_INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"


def _inception_weights(path: str | os.PathLike | None) -> tuple[str, dict]:
    """Resolve the Inception file and read it as a plain state dict (``weights_only=True``).

    torch-fidelity reads the file itself with ``torch.load(..., weights_only=False)``; videogen hands it
    this already-read state dict instead (:func:`_handed_over`), so the user's file is unpickled once,
    safely, and never by torch-fidelity.
    """
    file = resolve_weight_file(path, INCEPTION_FILENAME,
                               f"It is torch-fidelity's FID Inception-v3, {_INCEPTION_URL}.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means: not a plain tensor state dict
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"{file} is not a plain state dict of tensors (refused to unpickle it: "
                         f"{first})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{file} is not a state dict of tensors")
    return str(file), state


@contextlib.contextmanager
def _handed_over(file: str, state: dict):
    """While torch-fidelity builds its Inception, its ``torch.load(file, ...)`` returns ``state`` (read
    safely above) instead of unpickling ``file`` again; any other load is refused."""
    real_load = torch.load

    def load(f, *args, **kwargs):
        if str(f) != file:
            raise RuntimeError(f"unexpected torch.load({f!r}) while building the FID Inception")
        return state

    torch.load = load
    try:
        yield
    finally:
        torch.load = real_load


class FrechetInceptionDistance(_TorchmetricsFID):
    """FID between the frames of real and generated videos.

    Args:
        feature_extractor: an ``nn.Module`` with ``num_features`` (gets frames in [-1, 1]), or the
            Inception weight file / a directory holding it / None (the videogen cache).
        feature_dim: Inception feature layer, 2048 (pool3, the standard), 768, 192 or 64.
        frame_chunk: frames per extractor call (bounds memory).
        reset_real_features: as in torchmetrics; False keeps the real statistics across ``reset()``.

    ``update(videos, real)`` takes ``(B, 3, T, H, W)`` float videos in [-1, 1].

    Raises:
        MissingWeightsError: the Inception file is not found (the message names it and its URL).
    """

    def __init__(
        self,
        feature_extractor: nn.Module | str | os.PathLike | None = None,
        feature_dim: int = 2048,
        frame_chunk: int = 64,
        reset_real_features: bool = True,
        **kwargs,
    ) -> None:
        if isinstance(feature_extractor, nn.Module):
            num_features = getattr(feature_extractor, "num_features", None)
            if not isinstance(num_features, int):
                raise ValueError("a custom feature_extractor needs an int attribute `num_features`")
            super().__init__(feature=feature_extractor, reset_real_features=reset_real_features, **kwargs)
        else:
            weights, state = _inception_weights(feature_extractor)
            with _handed_over(weights, state):
                super().__init__(
                    feature=feature_dim,
                    reset_real_features=reset_real_features,
                    feature_extractor_weights_path=weights,
                    **kwargs,
                )
        if frame_chunk < 1:
            raise ValueError(f"frame_chunk must be >= 1, got {frame_chunk}")
        self.frame_chunk = frame_chunk

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """[-1, 1] float frames -> what the extractor expects (uint8 [0, 255] for the Inception)."""
        if self.used_custom_model:
            return frames.float()
        return ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def update(self, videos: torch.Tensor, real: bool) -> None:  # type: ignore[override]
        check_video(videos, "videos")
        if videos.shape[1] != 3:
            raise ValueError(f"videos must be RGB (B, 3, T, H, W), got {tuple(videos.shape)}")
        frames = to_frames(videos)  # (B, C, T, H, W) -> (B*T, C, H, W)
        for i in range(0, frames.shape[0], self.frame_chunk):
            super().update(self._prepare(frames[i : i + self.frame_chunk]), real=real)
