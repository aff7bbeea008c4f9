"""Motion accuracy on the synthetic moving-shapes set: does the generated object move where it was asked?

A model-free tracker finds the single object in each frame: the background colour is the per-frame
median of the border pixels, the object mask is every pixel whose RGB distance from that colour exceeds
``threshold``, and the object position is the mask's centroid. The direction of a video is the
least-squares velocity of the tracked centre, matched to the closest of the given direction vectors
by angle; a video whose object travels less than ``min_displacement`` (a static or empty video) gets
no direction (-1) and counts as wrong.

Coordinates follow ``videogen.data.synthetic``: pixel ``(row i, column j)`` is at ``(x, y) = (j, i)``,
y pointing down. Direction vectors are passed in (``videogen.data.direction_vectors`` gives the set's),
so the tracker serves any number of directions.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from videogen.core.video import check_video

__all__ = ["MotionAccuracy", "motion_accuracy", "object_mask", "predict_direction", "track_object"]


@torch.no_grad()
def object_mask(videos: torch.Tensor, threshold: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Object pixels of each frame: ``(B, C, T, H, W)`` -> mask ``(B, T, H, W)`` float in {0, 1} and the
    background colour ``(B, T, C)`` (the per-frame median of the border pixels).

    A pixel belongs to the object when its RGB (Euclidean, [-1, 1] units) distance from the background
    exceeds ``threshold``.
    """
    check_video(videos, "videos")
    x = videos.float().permute(0, 2, 3, 4, 1)  # (B, C, T, H, W) -> (B, T, H, W, C)
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)  # (B, T, N, C)
    background = border.median(dim=2).values  # (B, T, C)
    dist = (x - background[:, :, None, None]).norm(dim=-1)  # (B, T, H, W)
    return (dist > threshold).float(), background


@torch.no_grad()
def track_object(videos: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Centroid ``(x, y)`` of the non-background pixels per frame: ``(B, C, T, H, W)`` -> ``(B, T, 2)``.

    ``threshold`` as in :func:`object_mask`.  Frames with no object pixel give NaN.
    """
    mask, _ = object_mask(videos, threshold)
    h, w = mask.shape[-2:]
    mass = mask.sum(dim=(2, 3))  # (B, T)
    ys = torch.arange(h, dtype=torch.float32, device=mask.device)
    xs = torch.arange(w, dtype=torch.float32, device=mask.device)
    cx = (mask.sum(dim=2) * xs).sum(-1) / mass  # (B, T); NaN where mass == 0
    cy = (mask.sum(dim=3) * ys).sum(-1) / mass
    return torch.stack([cx, cy], dim=-1)


def _velocity(track: torch.Tensor) -> torch.Tensor:
    """Least-squares velocity (pixels/frame) per video from ``(B, T, 2)`` centres, ignoring NaN frames."""
    b, t, _ = track.shape
    valid = torch.isfinite(track).all(-1).float()  # (B, T)
    time = torch.arange(t, dtype=track.dtype, device=track.device).expand(b, t)
    n = valid.sum(1, keepdim=True).clamp_min(1)
    t_mean = (time * valid).sum(1, keepdim=True) / n
    pos = torch.nan_to_num(track)
    p_mean = (pos * valid[..., None]).sum(1, keepdim=True) / n[..., None]
    dt = (time - t_mean) * valid  # (B, T)
    var = (dt**2).sum(1)  # (B,); 0 with fewer than two valid frames
    cov = (dt[..., None] * (pos - p_mean)).sum(1)  # (B, 2)
    return torch.where(var[:, None] > 0, cov / var.clamp_min(1e-12)[:, None], torch.zeros_like(cov))


@torch.no_grad()
def predict_direction(
    videos: torch.Tensor,
    direction_vectors: torch.Tensor,
    threshold: float = 0.3,
    min_displacement: float = 0.1,
) -> torch.Tensor:
    """Index of the direction closest in angle to each video's motion, or -1 for no motion: ``(B,)`` int64.

    ``direction_vectors`` is ``(D, 2)`` (dx, dy). The travelled distance is the least-squares velocity
    times ``T - 1``; below ``min_displacement * min(H, W)`` pixels the video counts as static (-1).
    """
    dirs = torch.as_tensor(direction_vectors, dtype=torch.float32)
    if dirs.ndim != 2 or dirs.shape[1] != 2 or dirs.shape[0] < 1:
        raise ValueError(f"direction_vectors must be (D, 2), got shape {tuple(dirs.shape)}")
    track = track_object(videos, threshold)  # (B, T, 2)
    t, h, w = videos.shape[2:]
    velocity = _velocity(track)  # (B, 2)
    travel = velocity * (t - 1)
    dirs = dirs.to(travel.device) / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12).to(travel.device)
    pred = (travel @ dirs.T).argmax(dim=1)  # max cosine == min angle (|travel| is common to all)
    moving = travel.norm(dim=1) >= min_displacement * min(h, w)
    return torch.where(moving, pred, torch.full_like(pred, -1))


@torch.no_grad()
def motion_accuracy(
    videos: torch.Tensor,
    labels: torch.Tensor,
    direction_vectors: torch.Tensor,
    threshold: float = 0.3,
    min_displacement: float = 0.1,
) -> float:
    """Fraction of videos whose tracked object moves in the direction ``labels`` asks for (static = wrong).

    ``videos`` float ``(B, C, T, H, W)`` in [-1, 1]; ``labels`` ``(B,)`` direction indices into
    ``direction_vectors`` ``(D, 2)``.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() != videos.shape[0]:
        raise ValueError(f"labels must have one entry per video: {labels.numel()} vs {videos.shape[0]}")
    pred = predict_direction(videos, direction_vectors, threshold, min_displacement)
    return float((pred.cpu() == labels.cpu()).float().mean())


class MotionAccuracy(Metric):
    """Streaming (and distributed) version of :func:`motion_accuracy`: ``update(videos, labels)``,
    ``compute()``."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, direction_vectors: torch.Tensor, threshold: float = 0.3, min_displacement: float = 0.1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("direction_vectors", torch.as_tensor(direction_vectors, dtype=torch.float32))
        self.threshold, self.min_displacement = threshold, min_displacement
        self.add_state("correct", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, videos: torch.Tensor, labels: torch.Tensor) -> None:
        pred = predict_direction(videos, self.direction_vectors, self.threshold, self.min_displacement)
        labels = torch.as_tensor(labels, device=pred.device).reshape(-1)
        if labels.numel() != pred.numel():
            raise ValueError(f"labels must have one entry per video: {labels.numel()} vs {pred.numel()}")
        self.correct += (pred == labels).sum()
        self.total += pred.numel()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp_min(1)
