"""Video I/O and value-range conversions.

Inside the library a video is float ``(B, C, T, H, W)`` (or one video ``(C, T, H, W)``) in [-1, 1];
uint8 ``(B, T, H, W, C)`` / ``(T, H, W, C)`` appears only at the file boundary. This module is that
boundary: decoding (decord, PyAV or torchcodec: :mod:`videogen.core.decoders`), encoding (imageio:
mp4/avi through ffmpeg + libx264, gif through Pillow), PNG contact sheets, aspect-preserving resizing,
and the shared ``check_video`` validator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .decoders import SEEKABLE_EXTENSIONS

__all__ = [
    "check_video",
    "clip_indices",
    "from_uint8",
    "read_video",
    "resize_center_crop",
    "resize_frames",
    "save_contact_sheet",
    "to_uint8",
    "uint8_to_float",
    "write_video",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def check_video(x: torch.Tensor, name: str = "video", *, ndim: int = 5, tol: float = 1e-3) -> None:
    """Raise ``ValueError`` unless ``x`` is a float video of rank ``ndim``, finite, in [-1, 1] (+- ``tol``).

    ``ndim=5`` means ``(B, C, T, H, W)``; ``ndim=4`` one video ``(C, T, H, W)``. The message names the
    violated constraint so that callers can reuse it before any compute.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        layout = "(B, C, T, H, W)" if ndim == 5 else "(C, T, H, W)"
        raise ValueError(f"{name} must have rank {ndim} {layout}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - tol or hi > 1.0 + tol:
        raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]")


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """Float ``(B, C, T, H, W)`` in [-1, 1] -> uint8 ``(B, T, H, W, C)`` (also ``(C,T,H,W) -> (T,H,W,C)``).

    Values are clamped to [-1, 1] and rounded to the nearest level, so ``from_uint8(to_uint8(x))``
    is within 1/255 of ``x``.
    """
    if video.ndim not in (4, 5) or not video.is_floating_point():
        raise ValueError(
            f"to_uint8 expects a float video (B, C, T, H, W) or (C, T, H, W), got {video.dtype} "
            f"{tuple(video.shape)}"
        )
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-4, -1)  # (..., C, T, H, W) -> (..., T, H, W, C)


def from_uint8(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 ``(B, T, H, W, C)`` -> float32 ``(B, C, T, H, W)`` in [-1, 1] (also
    ``(T,H,W,C) -> (C,T,H,W)``)."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim not in (4, 5) or x.dtype != torch.uint8:
        raise ValueError(f"from_uint8 expects uint8 (B, T, H, W, C) or (T, H, W, C), got {x.dtype} "
                         f"{tuple(x.shape)}")
    x = x.movedim(-1, -4)  # (..., T, H, W, C) -> (..., C, T, H, W)
    return x.float() / 127.5 - 1.0


def uint8_to_float(video: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1], layout unchanged: ``x / 127.5 - 1`` (the values of :func:`from_uint8`).

    For batches that a dataset kept uint8 until the device (``ClipDataset(dtype="uint8")``): the
    conversion runs where the batch is, on 4x fewer bytes moved than a float batch.
    """
    if video.dtype != torch.uint8:
        raise ValueError(f"uint8_to_float expects a uint8 tensor, got {video.dtype}")
    return video.float().div_(127.5).sub_(1.0)


def clip_indices(
    length: int,
    num_frames: int | None,
    frame_stride: int = 1,
    start: str | int = "first",
    generator: np.random.Generator | None = None,
) -> list[int]:
    """Frame indices of a clip of ``num_frames`` frames, ``frame_stride`` apart, in a video of ``length``
    frames.

    ``start`` is an int (first index), ``"first"``, ``"center"`` or ``"random"`` (drawn with
    ``generator``). ``num_frames=None`` takes every ``frame_stride``-th frame of the whole video.
    Raises ``ValueError`` when the video is shorter than the clip span ``(num_frames - 1) * stride + 1``.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if num_frames is None:
        num_frames = (length - 1) // frame_stride + 1 if length > 0 else 0
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    span = (num_frames - 1) * frame_stride + 1
    if length < span:
        raise ValueError(
            f"video has {length} frames, fewer than the clip span {span} "
            f"(num_frames={num_frames}, frame_stride={frame_stride})"
        )
    slack = length - span
    if isinstance(start, int):
        if not 0 <= start <= slack:
            raise ValueError(f"start={start} must be in [0, {slack}] for this video and clip")
        first = start
    elif start == "first":
        first = 0
    elif start == "center":
        first = slack // 2
    elif start == "random":
        rng = generator if generator is not None else np.random.default_rng()
        first = int(rng.integers(0, slack + 1))
    else:
        raise ValueError(f"start must be an int, 'first', 'center' or 'random', got {start!r}")
    return list(range(first, first + span, frame_stride))


def read_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    frame_stride: int = 1,
    start: str | int = "first",
    generator: np.random.Generator | None = None,
    *,
    seek: bool | None = None,
    decoder: str = "auto",
) -> torch.Tensor:
    """Decode a clip; returns uint8 ``(T, H, W, C)``.

    ``decoder``: ``"decord"``, ``"pyav"``, ``"torchcodec"`` or ``"auto"`` (decord if it imports, else
    PyAV, else torchcodec; see :mod:`videogen.core.decoders`).  All return the same frames for the same
    clip.  An explicit backend that is not installed is a one-line ``ImportError`` (torchcodec without
    loadable FFmpeg libraries a ``RuntimeError``) naming what to install.

    A new reader is opened per call (a reader shared with DataLoader workers can deadlock).  Clip
    selection follows :func:`clip_indices` on the backend's frame count.  Missing file ->
    ``FileNotFoundError``; empty file or a video too short for the clip -> ``ValueError`` naming the
    file; undecodable data -> the backend's error.

    ``seek``: decode only what the clip's frames need instead of the whole span ``indices[0] ..
    indices[-1]`` (decord: ``get_batch(indices)``; PyAV: from the keyframe before the first index instead
    of from the first frame; torchcodec always seeks exactly).  ``None`` (default) seeks in the
    containers where seeking is frame-accurate (:data:`SEEKABLE_EXTENSIONS`: MP4, MOV, MKV, WebM) and
    decodes sequentially in the others (AVI: decord's ``get_batch`` of frames 2 apart returned a
    neighbouring frame).  At stride 4 the span is 4x the frames a clip needs; both ways give identical
    frames where seeking is exact.
    """
    from .decoders import check_decoder, open_video

    check_decoder(decoder)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"video file is empty (0 bytes): {path}")
    if seek is None:
        seek = path.suffix.lower() in SEEKABLE_EXTENSIONS
    reader = open_video(path, decoder)
    try:
        try:
            indices = clip_indices(len(reader), num_frames, frame_stride, start, generator)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return reader.frames(indices, seek)
    finally:
        reader.close()


def _as_uint8_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """One video as uint8 ``(T, H, W, 3)`` numpy: accepts uint8 ``(T,H,W,C)`` or float ``(C,T,H,W)`` in [-1,
    1]."""
    x = torch.as_tensor(video)
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    if x.dtype == torch.uint8:
        if x.ndim != 4:
            raise ValueError(f"uint8 video must be (T, H, W, C), got shape {tuple(x.shape)}")
        frames = x
    else:
        if x.ndim != 4:
            raise ValueError(f"float video must be (C, T, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        frames = to_uint8(x)  # (C, T, H, W) -> (T, H, W, C)
    if frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"video must have 1, 3 or 4 channels, got {frames.shape[-1]}")
    frames = frames[..., :3]
    if frames.shape[-1] == 1:
        frames = frames.expand(-1, -1, -1, 3)
    return np.ascontiguousarray(frames.cpu().numpy())


def write_video(path: str | os.PathLike, video: torch.Tensor | np.ndarray, fps: float = 8.0) -> Path:
    """Write one video to ``.mp4``/``.avi``/``.mov``/``.mkv`` (libx264, yuv420p) or ``.gif``.

    ``video`` is uint8 ``(T, H, W, C)`` or float ``(C, T, H, W)`` in [-1, 1] (``(1, C, T, H, W)`` too).
    yuv420p needs even sizes: odd heights/widths are padded by one replicated row/column (bottom/right).
    The file appears under its name only once complete (``videogen.core.files.atomic_path``).
    """
    path = Path(path)
    frames = _as_uint8_frames(video)  # (T, H, W, 3)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4", ".avi", ".mov", ".mkv"):
        raise ValueError(f"unsupported video extension {suffix!r}: use .mp4, .avi, .mov, .mkv or .gif")
    import imageio.v2 as imageio

    from .files import atomic_path

    with atomic_path(path) as tmp:  # a killed writer never leaves a half-written video under the final name
        if suffix == ".gif":
            imageio.mimsave(tmp, list(frames), duration=1000.0 / fps, loop=0)
        else:
            _, h, w, _ = frames.shape
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            with imageio.get_writer(
                tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                output_params=["-crf", "18"], ffmpeg_log_level="error",
            ) as writer:
                for frame in frames:
                    writer.append_data(frame)
    return path


def save_contact_sheet(
    path: str | os.PathLike,
    videos: torch.Tensor | Sequence[torch.Tensor],
    nrow: int | None = None,
    every: int = 1,
    padding: int = 2,
    pad_value: int = 255,
) -> np.ndarray:
    """Save a PNG grid with one row per video and one column per frame; returns the uint8 ``(H, W, 3)`` grid.

    ``videos`` is float ``(B, C, T, H, W)`` in [-1, 1] (or a list of ``(C, T, H, W)`` with equal
    frame size). ``nrow`` caps the number of rows (videos), ``every`` keeps every k-th frame, and
    ``padding`` pixels of ``pad_value`` separate the cells.
    """
    if every < 1 or padding < 0:
        raise ValueError(f"every must be >= 1 and padding >= 0, got every={every}, padding={padding}")
    if isinstance(videos, torch.Tensor):
        check_video(videos, "videos")
        videos = list(videos)
    rows = [_as_uint8_frames(v)[::every] for v in videos[:nrow]]  # each (T', H, W, 3)
    if not rows:
        raise ValueError("save_contact_sheet needs at least one video")
    _, h, w, _ = rows[0].shape
    if any(r.shape[1:3] != (h, w) for r in rows):
        raise ValueError("all videos in a contact sheet must share the frame size (H, W)")
    ncol = max(r.shape[0] for r in rows)
    grid = np.full(
        (padding + len(rows) * (h + padding), padding + ncol * (w + padding), 3), pad_value, dtype=np.uint8
    )
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            y, x = padding + i * (h + padding), padding + j * (w + padding)
            grid[y : y + h, x : x + w] = frame
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import imageio.v2 as imageio

    imageio.imwrite(path, grid)
    return grid


def resize_center_crop(video: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize the short side then centre-crop to ``size``, keeping the aspect ratio (no squashing).

    ``video`` is float or uint8 ``(C, T, H, W)`` or ``(B, C, T, H, W)``; ``size`` is an int (square) or
    ``(height, width)``. The frame is scaled by ``max(h_out / H, w_out / W)`` (bilinear, antialiased
    when shrinking) so that it covers the target, then the centre is cut out.  uint8 is resized in
    uint8 (PyTorch's integer kernel, fastest on the channels-last layout that a ``(T, H, W, C)`` decode
    permuted to ``(C, T, H, W)`` already has): the result is within one level of the float resize.
    """
    if video.ndim not in (4, 5) or not (video.is_floating_point() or video.dtype == torch.uint8):
        raise ValueError("resize_center_crop expects float or uint8 (C,T,H,W) or (B,C,T,H,W), got "
                         f"{video.dtype} {tuple(video.shape)}")
    out_h, out_w = _target_size(size)
    *lead, c, t, h, w = video.shape
    new_h, new_w, shrink = _cover_size(h, w, out_h, out_w)
    x = video
    if (new_h, new_w) != (h, w):
        x = x.reshape(-1, c, t, h, w).transpose(1, 2).reshape(-1, c, h, w)  # (B,C,T,H,W) -> (B*T,C,H,W)
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=shrink)
        x = x.reshape(-1, t, c, new_h, new_w).transpose(1, 2).reshape(*lead, c, t, new_h, new_w)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w].contiguous()


def resize_frames(frames: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """:func:`resize_center_crop` of decoded frames in their own layout: uint8 ``(T, H, W, C)`` in, uint8
    ``(T, h, w, C)`` out, contiguous, with the same values as ``resize_center_crop(frames.permute(3, 0, 1,
    2), size)`` permuted back.

    The loader's uint8 path: the frames stay channels-last from the decoder to the batch (the crop copies
    whole rows), instead of a ``(C, T, H, W)`` copy that de-interleaves every pixel (about 25 ms per
    16 x 512 x 1024 clip on one CPU thread, a third of its decode)."""
    if frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError(f"resize_frames expects uint8 (T, H, W, C) frames, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    out_h, out_w = _target_size(size)
    t, h, w, c = frames.shape
    new_h, new_w, shrink = _cover_size(h, w, out_h, out_w)
    if (new_h, new_w, out_h, out_w) == (h, w, h, w):
        return frames  # nothing to resize or cut
    x = frames.permute(0, 3, 1, 2)  # (T, C, H, W), channels-last storage
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=shrink)  # channels-last in, channels-last out
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w].permute(0, 2, 3, 1).contiguous()


def _target_size(size: int | Sequence[int]) -> tuple[int, int]:
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be positive, got {size}")
    return out_h, out_w


def _cover_size(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, bool]:
    """The frame size that covers ``out_h x out_w`` at the aspect ratio of ``h x w``, and whether that
    shrinks the frame (then the resize is antialiased)."""
    scale = max(out_h / h, out_w / w)
    return max(out_h, math.ceil(h * scale - 1e-6)), max(out_w, math.ceil(w * scale - 1e-6)), scale < 1
