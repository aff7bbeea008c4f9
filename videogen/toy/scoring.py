"""Scores a generated video against the rules of the synthetic moving-shapes set.

**Caption accuracy**: is the generated object the colour and shape asked for?

The object's pixels come from the same model-free tracker as motion accuracy
(:func:`videogen.toy.motion.object_mask`).  Its **colour** is the median RGB of those pixels over the
video, named by the nearest of the set's colours.  Its **shape** is decided per frame by drawing each
candidate shape at the mask's centroid, scaled to the mask's area (so a blob that is too big or too
small is still judged by its outline), and keeping the one with the highest IoU; the video's shape is
the majority over frames that show an object.  A video with no object pixel in any frame matches no
caption.

Chance for a caption (colour and shape both right) is ``1 / (colours * shapes)``: 1/15 for the default
5 colours and 3 shapes.

**Long motion accuracy** (bouncing videos, ``SyntheticVideoDataset(motion="bounce")``): the video is cut
into windows of 16 frames; a window follows the rule when the object is tracked in every frame, its
median speed lies within [0.5, 1.5] x the set's speed range, no step jumps further than twice the fastest
speed (+1 px), and the motion reverses along an axis only next to a wall (a bounce).  Reversals of steps
under 0.3 px (tracker noise on the axis the shape does not move along) are ignored.  A static video fails
every window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from videogen.data.synthetic import COLORS, DIRECTION_NAMES, SHAPES, SyntheticVideoDataset, _shape_alpha
from videogen.toy.motion import object_mask, track_object

__all__ = ["caption_accuracy", "describe_objects", "long_motion_accuracy", "parse_caption"]

# Area of each shape drawn with radius r, in units of r^2 (see synthetic._shape_alpha).
_AREA = {"circle": np.pi, "square": 1.7**2, "triangle": 3 * 3**0.5 / 4 * 1.25**2}
_CAPTION = re.compile(r"^the (\w+) (\w+) moves ([\w-]+)$")


def parse_caption(caption: str) -> tuple[str, str, str]:
    """``"the red circle moves left"`` -> ``("red", "circle", "left")``; other texts raise ValueError."""
    m = _CAPTION.match(caption.strip())
    if m is None or m.group(2) not in SHAPES or m.group(3) not in DIRECTION_NAMES:
        raise ValueError(f"not a synthetic caption ('the <colour> <shape> moves <direction>'): {caption!r}")
    return m.group(1), m.group(2), m.group(3)


@torch.no_grad()
def describe_objects(videos: torch.Tensor, colors: dict[str, Sequence[float]] | None = None,
                     shapes: Sequence[str] = SHAPES,
                     threshold: float = 0.3) -> list[tuple[str | None, str | None]]:
    """``(colour, shape)`` of the object in each video ``(B, C, T, H, W)`` in [-1, 1]; ``(None, None)`` if
    no frame shows an object.  ``colors``: name -> RGB in [0, 1] (default: the set's ``COLORS``)."""
    colors = dict(COLORS if colors is None else colors)
    names = list(colors)
    palette = torch.tensor([colors[n] for n in names], dtype=torch.float32) * 2 - 1  # (K, 3) in [-1, 1]
    mask, _ = object_mask(videos, threshold)  # (B, T, H, W)
    b, t, h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = videos.float().permute(0, 2, 3, 4, 1).cpu()  # (B, T, H, W, C)
    out: list[tuple[str | None, str | None]] = []
    for i in range(b):
        m = mask[i].cpu()
        if m.sum() == 0:
            out.append((None, None))
            continue
        rgb = pixels[i][m.bool()].median(dim=0).values  # (C,)
        colour = names[int((palette - rgb).norm(dim=1).argmin())]
        votes = dict.fromkeys(shapes, 0)
        for f in range(t):
            mf = m[f].numpy()
            mass = mf.sum()
            if mass == 0:
                continue
            cx, cy = (mf * xs).sum() / mass, (mf * ys).sum() / mass
            best, best_iou = None, -1.0
            for shape in shapes:
                radius = float(np.sqrt(mass / _AREA[shape]))
                template = _shape_alpha(shape, xs - cx, ys - cy, radius) > 0.5
                inter = float((template & (mf > 0)).sum())
                iou = inter / float((template | (mf > 0)).sum())
                if iou > best_iou:
                    best, best_iou = shape, iou
            votes[best] += 1
        out.append((colour, max(votes, key=votes.get)))
    return out


@torch.no_grad()
def caption_accuracy(videos: torch.Tensor, captions: Sequence[str],
                     colors: dict[str, Sequence[float]] | None = None, shapes: Sequence[str] = SHAPES,
                     threshold: float = 0.3) -> dict[str, float]:
    """Fractions of videos whose object has the caption's colour, shape, and both (``caption_accuracy``)."""
    if len(captions) != videos.shape[0]:
        raise ValueError(f"give one caption per video: {len(captions)} captions for {videos.shape[0]} videos")
    wanted = [parse_caption(c)[:2] for c in captions]
    found = describe_objects(videos, colors, shapes, threshold)
    colour = [f[0] == w[0] for f, w in zip(found, wanted)]
    shape = [f[1] == w[1] for f, w in zip(found, wanted)]
    n = len(wanted)
    return {"colour_accuracy": sum(colour) / n, "shape_accuracy": sum(shape) / n,
            "caption_accuracy": sum(c and s for c, s in zip(colour, shape)) / n}


@torch.no_grad()
def long_motion_accuracy(videos: torch.Tensor, dataset: SyntheticVideoDataset, window: int = 16,
                         threshold: float = 0.3) -> dict[str, Any]:
    """Fraction of ``window``-frame windows of ``videos (B, C, T, H, W)`` that follow the bouncing rule of
    ``dataset`` (its size, speed range and wall margin; see the module docstring).

    Returns ``{"long_motion_accuracy": float, "windows": int, "per_video": [float, ...]}``; a trailing
    part shorter than ``window`` is not scored.
    """
    t, h = videos.shape[2], videos.shape[3]
    if t < window:
        raise ValueError(f"need at least {window} frames to score long motion, got {t}")
    if h != dataset.size:
        raise ValueError(f"videos are {h} px high, the dataset's frames {dataset.size}")
    v_lo, v_hi = (v * dataset.size / 15 for v in dataset.speed)  # px per frame (bounce: speed per 16 frames)
    lo, hi = dataset.margin, dataset.size - 1 - dataset.margin
    near = v_hi + 1.5  # a reversal within this distance of a wall is a bounce
    per_video = []
    for video in videos:
        track = track_object(video[None], threshold)[0]  # (T, 2)
        ok = []
        for start in range(0, t - window + 1, window):
            p = track[start:start + window]
            if not torch.isfinite(p).all():
                ok.append(False)
                continue
            steps = p[1:] - p[:-1]  # (window - 1, 2)
            speed = steps.norm(dim=1)
            good = 0.5 * v_lo <= float(speed.median()) <= 1.5 * v_hi and float(speed.max()) <= 2 * v_hi + 1
            ok.append(good and not _reverses_off_wall(p, steps, lo, hi, near))
        per_video.append(sum(ok) / len(ok))
    return {"long_motion_accuracy": sum(per_video) / len(per_video),
            "windows": len(per_video) * (t // window), "per_video": per_video}


def _reverses_off_wall(p: torch.Tensor, steps: torch.Tensor, lo: float, hi: float, near: float) -> bool:
    """Whether the track ``p (T, 2)`` turns back along an axis away from the walls: consecutive steps over
    0.3 px (smaller ones skipped) of opposite sign, with the object between them not near a wall."""
    for axis in range(2):
        last = None  # (sign, index) of the previous step that moved
        for i, step in enumerate(steps[:, axis].tolist()):
            if abs(step) <= 0.3:
                continue
            sign = step > 0
            if last is not None and sign != last[0]:
                between = p[last[1] + 1 : i + 1, axis]  # positions where the turn happened
                if not bool(((between - lo < near) | (hi - between < near)).any()):
                    return True
            last = (sign, i)
    return False
