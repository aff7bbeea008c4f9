"""Deterministic moving-shapes videos: a labelled, captioned toy set whose motion a metric can check.

Each video shows one coloured shape (circle, square or triangle) on a plain background of another
colour, moving in a straight line at constant speed in one of 4 directions (right, left, down, up) or
8 (plus the diagonals). The label is the direction index, the caption says what moves where ("the red
circle moves left"), and ``trajectory`` gives the shape's centre (x, y) in pixels in every frame, so a
generated video can be scored by tracking the shape (``videogen.toy.motion``).

Coordinates: pixel ``(row i, column j)`` has its centre at ``(x, y) = (j, i)``; x grows to the right
and y downwards. Shapes are drawn anti-aliased from signed distance functions, so the colour-weighted
centroid of a shape is its ``trajectory`` point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CAPTION_WORDS", "COLORS", "DIRECTION_NAMES", "DIRECTION_VECTORS", "SHAPES",
           "SyntheticVideoDataset", "direction_vectors"]

#: Direction names in label order; 4-direction sets use the first four.
DIRECTION_NAMES: tuple[str, ...] = ("right", "left", "down", "up", "down-right", "down-left", "up-right",
                                    "up-left")
_S = 2**-0.5
#: Unit (dx, dy) per direction in image coordinates (y points down), float32 (8, 2).
DIRECTION_VECTORS = torch.tensor(
    [[1, 0], [-1, 0], [0, 1], [0, -1], [_S, _S], [-_S, _S], [_S, -_S], [-_S, -_S]], dtype=torch.float32
)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
#: Object colours, RGB in [0, 1]; saturated and far apart so that names in captions are unambiguous.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 1.0),
    "yellow": (0.95, 0.9, 0.1),
    "white": (1.0, 1.0, 1.0),
}
#: Every word of the captions ("the red circle moves left"): the vocabulary of the demos' word-level text
#: encoder.
CAPTION_WORDS: tuple[str, ...] = ("the", "moves", *COLORS, *SHAPES, *DIRECTION_NAMES)
_TASKS = ("direction", "shape_direction")


def direction_vectors(directions: int) -> torch.Tensor:
    """Unit direction vectors ``(directions, 2)`` as (dx, dy) for a 4- or 8-direction set."""
    if directions not in (4, 8):
        raise ValueError(f"directions must be 4 or 8, got {directions}")
    return DIRECTION_VECTORS[:directions].clone()


def _shape_alpha(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Coverage in [0, 1] of ``shape`` at offsets (dx, dy) from its centre, anti-aliased over one pixel."""
    if shape == "circle":
        sdf = np.sqrt(dx**2 + dy**2) - radius
    elif shape == "square":  # half side 0.85 r: about the circle's area
        sdf = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * radius
    elif shape == "triangle":  # equilateral, pointing up, centroid at the centre, circumradius 1.25 r
        big_r = 1.25 * radius
        sdf = np.full_like(dx, -np.inf)
        for angle in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6):  # outward edge normals (y down)
            sdf = np.maximum(sdf, dx * np.float32(np.cos(angle)) + dy * np.float32(np.sin(angle)) - big_r / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    return np.clip(np.float32(0.5) - sdf, 0.0, 1.0)


def reflect(points: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold unbounded straight-line positions into ``[lo, hi]`` as a ball bouncing off the walls would
    move."""
    span = hi - lo
    phase = np.mod(points - lo, 2 * span)
    return lo + np.where(phase > span, 2 * span - phase, phase)


class SyntheticVideoDataset(Dataset):
    """Moving-shape videos with direction labels, captions and ground-truth trajectories.

    Item ``i`` depends only on ``(seed, i)`` (its own ``numpy.random.Generator``), so any subset,
    order or worker split yields identical videos. Items are dicts with ``video`` float
    ``(3, T, H, W)`` in [-1, 1], ``label`` (int64; the direction index, or
    ``shape * directions + direction`` for ``task="shape_direction"``), ``direction`` (int64),
    ``caption`` (str), ``trajectory`` float ``(T, 2)`` centre (x, y) in pixels and ``index``.

    Args:
        num_videos: dataset length.
        num_frames: frames per video ``T``.
        size: frame side ``H = W`` in pixels.
        seed: base seed.
        directions: 4 (right, left, down, up) or 8 (adds diagonals).
        shapes: shape names to draw from (subset of ``SHAPES``).
        colors: object colour names (keys of ``COLORS``) or a ``{name: (r, g, b)}`` dict in [0, 1].
        speed: distance travelled over the clip as a fraction of ``size``; a ``(low, high)`` range
            (uniform per video) or a float. The start point is chosen so the whole path stays inside
            with the border pixels untouched.
        object_size: object (circle) diameter as a fraction of ``size``.
        num_distractors: static extra shapes drawn under the moving one (default none).
        task: what ``label`` encodes: ``"direction"`` or ``"shape_direction"``.
        min_color_distance: minimum RGB distance (in [0, 1] units) between background and every object.
        motion: ``"linear"`` (a straight path that fits inside the frame) or ``"bounce"``: for long videos,
            the shape starts anywhere and reflects off the walls (``speed`` is then the distance per 16
            frames, whatever ``num_frames`` is; the direction label is the initial direction).
        background: a fixed RGB background in [0, 1] for every video (default: random per video, at
            least ``min_color_distance`` from the object colours).
    """

    DIRECTION_NAMES = DIRECTION_NAMES
    DIRECTION_VECTORS = DIRECTION_VECTORS
    SHAPES = SHAPES
    COLORS = COLORS

    def __init__(
        self,
        num_videos: int,
        num_frames: int = 16,
        size: int = 32,
        seed: int = 0,
        directions: int = 4,
        shapes: Sequence[str] = SHAPES,
        colors: Sequence[str] | dict[str, Sequence[float]] = ("red", "green", "blue", "yellow", "white"),
        speed: float | tuple[float, float] = (1 / 3, 1 / 2),
        object_size: float = 0.25,
        num_distractors: int = 0,
        task: str = "direction",
        min_color_distance: float = 0.6,
        motion: str = "linear",
        background: Sequence[float] | None = None,
    ) -> None:
        if num_videos < 1 or num_frames < 2 or size < 8:
            raise ValueError(
                f"need num_videos >= 1, num_frames >= 2, size >= 8; got {num_videos}, {num_frames}, {size}"
            )
        self.direction_vectors = direction_vectors(directions)  # validates directions
        unknown = [s for s in shapes if s not in SHAPES]
        if not shapes or unknown:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {tuple(shapes)}")
        if not isinstance(colors, dict):
            missing = [c for c in colors if c not in COLORS]
            if not colors or missing:
                raise ValueError(f"unknown colour names {missing}; known: {tuple(COLORS)}")
            colors = {c: COLORS[c] for c in colors}
        speed_range = (float(speed), float(speed)) if isinstance(speed,
                                                                 (int, float)) else tuple(map(float, speed))
        if not 0 < speed_range[0] <= speed_range[1]:
            raise ValueError(f"speed must be positive with low <= high, got {speed}")
        if task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
        if motion not in ("linear", "bounce"):
            raise ValueError(f"motion must be 'linear' or 'bounce', got {motion!r}")
        self.radius = object_size * size / 2
        # Centres stay `margin` px from the border pixels: the largest shape reaches 1.25 r from its
        # centre (triangle vertex) and anti-aliasing one more pixel, so border pixels stay background.
        self.margin = 1.25 * self.radius + 1
        # The longest path must fit between the margins on each axis (diagonals need D / sqrt(2) per axis).
        room = size - 1 - 2 * self.margin
        if room <= 0 or (motion == "linear" and speed_range[1] * size > room):
            raise ValueError(
                f"speed {speed_range[1]:.3g} * size {size} = {speed_range[1] * size:.1f} px does not fit the "
                f"{room:.1f} px of room left by object_size {object_size}: lower speed or object_size"
            )
        self.num_videos, self.num_frames, self.size, self.seed = num_videos, num_frames, size, seed
        self.directions, self.shapes, self.task = directions, tuple(shapes), task
        self.colors = {k: np.asarray(v, dtype=np.float32) for k, v in colors.items()}
        self.speed, self.num_distractors, self.min_color_distance = \
            speed_range, num_distractors, min_color_distance
        self.motion = motion
        self.background = None if background is None else np.asarray(background, dtype=np.float32)
        if self.background is not None:
            if self.background.shape != (3,) or not ((0 <= self.background) & (self.background <= 1)).all():
                raise ValueError(f"background must be 3 values in [0, 1], got {tuple(background)}")
            near = [n for n,
                    c in self.colors.items() if np.linalg.norm(self.background - c) < min_color_distance]
            if near:
                raise ValueError(f"background {tuple(background)} is closer than min_color_distance "
                                 f"{min_color_distance} to the object colours {near}")
        self.direction_names = DIRECTION_NAMES[:directions]
        if task == "direction":
            self.class_names = tuple(self.direction_names)
        else:
            self.class_names = tuple(f"{s} {d}" for s in self.shapes for d in self.direction_names)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return self.num_videos

    def direction_of(self, label: torch.Tensor | int) -> torch.Tensor | int:
        """Direction index encoded by ``label`` (identity for ``task="direction"``)."""
        return label % self.directions

    def _background(self, rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
        """A random RGB background at least ``min_color_distance`` from every colour in ``avoid`` (or the
        fixed one)."""
        if self.background is not None:  # (drawn last: the other properties do not depend on it)
            return self.background
        for _ in range(1000):
            bg = rng.uniform(0.0, 1.0, 3).astype(np.float32)
            if all(np.linalg.norm(bg - c) >= self.min_color_distance for c in avoid):
                return bg
        raise ValueError(f"cannot find a background {self.min_color_distance} away from the object colours")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        rng = np.random.default_rng([self.seed, index])
        t, s, r = self.num_frames, self.size, self.radius
        direction = int(rng.integers(self.directions))
        shape_idx = int(rng.integers(len(self.shapes)))
        color_name = list(self.colors)[int(rng.integers(len(self.colors)))]
        unit = self.direction_vectors[direction].numpy()
        # px per frame
        step = unit * rng.uniform(*self.speed) * s / ((t if self.motion == "linear" else 16) - 1)
        if self.motion == "linear":
            path = step * (t - 1)
            lo, hi = self.margin - np.minimum(path, 0), s - 1 - self.margin - np.maximum(path, 0)
            start = lo + rng.uniform(0, 1, 2) * (hi - lo)
            centres = start + np.arange(t)[:, None] * step  # (T, 2) as (x, y)
        else:
            start = self.margin + rng.uniform(0, 1, 2) * (s - 1 - 2 * self.margin)
            centres = reflect(start + np.arange(t)[:, None] * step, self.margin, s - 1 - self.margin)

        distractors = []
        for _ in range(self.num_distractors):
            name = list(self.colors)[int(rng.integers(len(self.colors)))]
            distractors.append((self.shapes[int(rng.integers(len(self.shapes)))], self.colors[name],
                                rng.uniform(self.margin, s - 1 - self.margin, 2)))
        bg = self._background(rng, [self.colors[color_name]] + [c for _, c, _ in distractors])

        ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)  # (H, W) pixel-centre coordinates
        frame = np.broadcast_to(bg[:, None, None], (3, s, s))  # (3, H, W)
        for shape, color, (cx, cy) in distractors:
            a = _shape_alpha(shape, xs - cx, ys - cy, r)
            frame = frame * (1 - a) + color[:, None, None] * a
        c32 = centres.astype(np.float32)
        dx = xs[None] - c32[:, 0, None, None]  # (T, H, W)
        dy = ys[None] - c32[:, 1, None, None]
        alpha = _shape_alpha(self.shapes[shape_idx], dx, dy, r)[None]  # (1, T, H, W)
        # (3,T,H,W)
        video = frame[:, None] * (1 - alpha) + self.colors[color_name][:, None, None, None] * alpha
        video = torch.from_numpy((video * 2 - 1).astype(np.float32, copy=False))
        label = direction if self.task == "direction" else shape_idx * self.directions + direction
        return {
            "video": video,
            "label": torch.tensor(label, dtype=torch.int64),
            "direction": torch.tensor(direction, dtype=torch.int64),
            "caption": f"the {color_name} {self.shapes[shape_idx]} moves {self.direction_names[direction]}",
            "trajectory": torch.from_numpy(centres.astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }
