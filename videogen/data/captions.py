"""Caption accuracy on the synthetic moving-shapes set: is the generated object the colour and shape asked for?

The object's pixels come from the same model-free tracker as motion accuracy
(:func:`videogen.core.metrics.object_mask`).  Its **colour** is the median RGB of those pixels over the
video, named by the nearest of the set's colours.  Its **shape** is decided per frame by drawing each
candidate shape at the mask's centroid, scaled to the mask's area (so a blob that is too big or too
small is still judged by its outline), and keeping the one with the highest IoU; the video's shape is
the majority over frames that show an object.  A video with no object pixel in any frame matches no
caption.

Chance for a caption (colour and shape both right) is ``1 / (colours * shapes)``: 1/15 for the default
5 colours and 3 shapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from videogen.core.metrics.motion import object_mask

from .synthetic import COLORS, DIRECTION_NAMES, SHAPES, _shape_alpha

__all__ = ["caption_accuracy", "describe_objects", "parse_caption"]

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
                     shapes: Sequence[str] = SHAPES, threshold: float = 0.3) -> list[tuple[str | None, str | None]]:
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
def caption_accuracy(videos: torch.Tensor, captions: Sequence[str], colors: dict[str, Sequence[float]] | None = None,
                     shapes: Sequence[str] = SHAPES, threshold: float = 0.3) -> dict[str, float]:
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
