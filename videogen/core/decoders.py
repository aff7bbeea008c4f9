"""Video decoder backends behind :func:`videogen.core.video.read_video`: decord, PyAV and torchcodec.

Every backend opens one file, reports its frame count and returns the frames of given indices as uint8
``(T, H, W, C)`` RGB, one decoding thread (DataLoader workers give the parallelism); for the same
indices all three return the same frames (``tests/core/test_decoders.py``).

- ``"decord"``: the fastest at small frame sizes (docs/data.md "Decoding"), but its wheels exist for
  x86_64 only (Linux, Intel macOS, Windows).
- ``"pyav"`` (package ``av``): wheels for every platform, FFmpeg bundled.  Decodes only up to the clip's
  last frame: in seekable containers (:data:`SEEKABLE_EXTENSIONS`) it seeks to the keyframe at or before
  the first index and matches the decoded frames to indices by their presentation timestamps; elsewhere
  (AVI) it decodes from the first frame, counting.
- ``"torchcodec"``: ``VideoDecoder(seek_mode="exact")``; needs the FFmpeg shared libraries (4 to 8) of
  the system, which its wheels do not ship.  Not in AVI by default (an index one frame off was seen).

``"auto"`` takes decord when it imports, else PyAV, else torchcodec.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["DECODERS", "SEEKABLE_EXTENSIONS", "check_decoder", "open_video", "resolve_decoder"]

#: the accepted ``decoder`` values; ``"auto"`` resolves to the first importable of the other three
DECODERS = ("auto", "decord", "pyav", "torchcodec")
#: containers in which seeking returned exactly the frames of a sequential decode (decord's
#: ``get_batch(indices)`` checked on libx264 MP4/MOV/MKV and VP9 WebM at strides 2-4, every start; AVI
#: failed); PyAV seeks in these and decodes AVI and the others from the first frame
SEEKABLE_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")

_INSTALL = {
    "decord": "decord is not installed: pip install decord (wheels for x86_64 only; elsewhere use "
              "decoder='pyav')",
    "pyav": "PyAV is not installed: pip install av",
    "torchcodec": "torchcodec is not installed: pip install torchcodec (the release built for your torch "
                  "version; it also needs the system's FFmpeg shared libraries), or use decoder='pyav'",
}


def check_decoder(decoder: str) -> str:
    """Raise ``ValueError`` unless ``decoder`` is one of :data:`DECODERS` (nothing is imported)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    return decoder


def _import(decoder: str):
    """The backend's module; one-line ``ImportError`` (not installed) or ``RuntimeError`` (torchcodec
    installed but its FFmpeg libraries cannot be loaded)."""
    if decoder == "decord":
        try:
            return importlib.import_module("decord")
        except ImportError:
            raise ImportError(f"decoder='decord': {_INSTALL['decord']}") from None
    if decoder == "pyav":
        try:
            return importlib.import_module("av")
        except ImportError:
            raise ImportError(f"decoder='pyav': {_INSTALL['pyav']}") from None
    try:
        spec = importlib.util.find_spec("torchcodec")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ImportError(f"decoder='torchcodec': {_INSTALL['torchcodec']}")
    try:  # importing its decoders loads libtorchcodec + FFmpeg; a failure is a many-line RuntimeError
        return importlib.import_module("torchcodec.decoders")
    except (ImportError, OSError, RuntimeError) as err:
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise RuntimeError(
            "decoder='torchcodec': torchcodec is installed but could not load its FFmpeg libraries "
            f"({first.strip()[:120]}): install FFmpeg 4-8 shared libraries (e.g. apt-get install ffmpeg) "
            "or use decoder='pyav'") from None


def resolve_decoder(decoder: str = "auto") -> str:
    """The backend name ``decoder`` stands for: ``"auto"`` -> decord if it imports, else PyAV, else
    torchcodec; an explicit name is checked to be usable (the one-line errors of an unusable one)."""
    check_decoder(decoder)
    if decoder != "auto":
        _import(decoder)
        return decoder
    for name in ("decord", "pyav", "torchcodec"):
        try:
            _import(name)
        except (ImportError, RuntimeError):
            continue
        return name
    raise ImportError("no video decoder is installed: pip install av (any platform) or decord (x86_64)")


class _Decord:
    """decord ``VideoReader`` (one thread).  ``seek=False`` decodes the span ``indices[0]..indices[-1]``
    and subsamples (decord's ``get_batch`` of frames 2 apart returned a neighbouring frame in AVI)."""

    def __init__(self, path: Path) -> None:
        self.module = _import("decord")
        self.path = path
        self.reader = self.module.VideoReader(str(path), ctx=self.module.cpu(0), num_threads=1)

    def __len__(self) -> int:
        return len(self.reader)

    def frames(self, indices: Sequence[int], seek: bool) -> torch.Tensor:
        try:
            if seek or len(indices) < 2 or indices[1] - indices[0] == 1:
                frames = self.reader.get_batch(list(indices)).asnumpy()  # (T, H, W, C) uint8
            else:
                span = list(range(indices[0], indices[-1] + 1))
                frames = self.reader.get_batch(span).asnumpy()[[i - indices[0] for i in indices]]
        except self.module.DECORDError as err:
            # decord 0.6 fails on some frame widths (16, 24, 48, ...: a row-alignment bug); ffmpeg reads them
            if "size must exactly match" not in str(err):
                raise
            frames = _read_frames_ffmpeg(self.path)[list(indices)]
        return torch.from_numpy(frames)

    def close(self) -> None:
        pass  # the reader's file is released with the reader


def _read_frames_ffmpeg(path: Path) -> np.ndarray:
    """Every frame of a video through imageio-ffmpeg, uint8 ``(N, H, W, 3)``."""
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    w, h = next(frames)["size"]  # the generator yields its metadata first
    return np.stack([np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in frames])


class _PyAV:
    """PyAV (FFmpeg bundled in the ``av`` wheel), one decoding thread.

    Frame count: the container's ``nb_frames`` (``stream.frames``) outside the seekable containers; in
    seekable ones the number of video packets, read without decoding into a presentation-order index of
    their timestamps (frame ``i`` is the ``i``-th smallest), which also covers MKV/WebM, where
    ``stream.frames`` is 0.  A non-seekable file whose ``stream.frames`` is 0 has its packets counted too.

    Frames: with ``seek``, seek to the last keyframe whose timestamp is at or before frame
    ``indices[0]``'s, decode forward, keep the frames whose timestamps are the wanted ones and stop at the
    last; if a wanted frame does not come (timestamps missing or not matching), decode again from the
    first frame.  Without ``seek`` (AVI): decode from the first frame, counting, up to ``indices[-1]``.
    """

    def __init__(self, path: Path) -> None:
        self.av = _import("pyav")
        self.path = path
        self.container = self._open()
        # (frame count, sorted packet timestamps or None when one is missing, the keyframes' timestamps)
        self._scan: tuple[int, list[int] | None, list[int]] | None = None
        self._rewind = False  # the file was read past its start: reopen before a sequential decode

    def _open(self):
        container = self.av.open(str(self.path))
        if not container.streams.video:
            container.close()
            raise ValueError(f"no video stream in {self.path}")
        # one thread per DataLoader worker (decord: num_threads=1); PyAV's default is one per core
        container.streams.video[0].codec_context.thread_count = 1
        return container

    def _reopen(self) -> None:
        self.container.close()
        self.container = self._open()

    @property
    def stream(self):
        return self.container.streams.video[0]

    def _packets(self) -> tuple[int, list[int] | None, list[int]]:
        """Read every video packet of the file once (no decoding); the next decode seeks, or reopens."""
        if self._scan is None:
            pts, keys = [], []
            for packet in self.container.demux(self.stream):
                if packet.size == 0:  # the demuxer's end-of-stream flush packet
                    continue
                if packet.is_discard:  # an edit list cuts it (an MP4 trimmed with -c copy): never shown
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe and packet.pts is not None:
                    keys.append(packet.pts)
            self._rewind = True
            complete = all(p is not None for p in pts)
            self._scan = (len(pts), sorted(pts) if complete else None, sorted(keys))
        return self._scan

    def __len__(self) -> int:
        if self.path.suffix.lower() not in SEEKABLE_EXTENSIONS and self.stream.frames > 0:
            return int(self.stream.frames)
        return self._packets()[0]

    def frames(self, indices: Sequence[int], seek: bool) -> torch.Tensor:
        out = None
        if seek:
            _, pts, keys = self._packets()
            if pts is not None and keys:
                out = self._seek_decode(indices, pts, keys)
        if out is None:
            out = self._sequential_decode(indices)
        return torch.from_numpy(np.stack(out))  # (T, H, W, 3)

    def _collect(self, frames, key, indices: Sequence[int], wanted: list, last) -> list[np.ndarray | None]:
        """The frames of ``indices`` from a stream of decoded frames; ``key(n, frame)`` is the value of a
        frame compared with ``wanted`` (index ``k`` of the clip wants ``wanted[k]``), ``last`` ends it."""
        positions: dict = {}
        for k, w in enumerate(wanted):
            positions.setdefault(w, []).append(k)
        out: list[np.ndarray | None] = [None] * len(indices)
        missing = len(positions)
        for n, frame in enumerate(frames):
            value = key(n, frame)
            if value in positions and out[positions[value][0]] is None:
                array = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                for k in positions[value]:
                    out[k] = array
                missing -= 1
            if missing == 0 or (value is not None and value >= last):
                break
        return out

    def _seek_decode(self, indices: Sequence[int], pts: list[int], keys: list[int]
                     ) -> list[np.ndarray] | None:
        wanted = [pts[i] for i in indices]
        key = max((k for k in keys if k <= min(wanted)), default=keys[0])
        # MP4 and MKV seek by presentation timestamp (mov turns back to a sample whose pts is not later,
        # Matroska cues hold pts): this lands on that keyframe (its dts, earlier with B-frames, landed one
        # GOP too early in MP4)
        self.container.seek(key, stream=self.stream, backward=True, any_frame=False)
        out = self._collect(self.container.decode(self.stream), lambda n, f: f.pts, indices, wanted,
                            max(wanted))
        if any(a is None for a in out):  # a wanted frame did not come: decode from the start instead
            self._rewind = True
            return None
        return out

    def _sequential_decode(self, indices: Sequence[int]) -> list[np.ndarray]:
        if self._rewind:
            self._reopen()
            self._rewind = False
        out = self._collect(self.container.decode(self.stream), lambda n, f: n, indices, list(indices),
                            max(indices))
        if any(a is None for a in out):
            raise ValueError(f"{self.path} decoded to fewer frames than the clip needs (frame "
                             f"{max(indices)})")
        return out

    def close(self) -> None:
        self.container.close()


class _TorchCodec:
    """torchcodec ``VideoDecoder(seek_mode="exact")`` (one FFmpeg thread): the file is scanned once for
    a frame index, ``get_frames_at`` returns the frames of any indices.

    Only with ``seek``: in a libx264 AVI (B-frames) its timestamp index was one frame off (frame 2 gave
    frame 0, the last frames failed), so the sequential containers (AVI) raise ``ValueError`` unless
    ``seek=True`` is asked for (MPEG-4 part 2 AVI, UCF-101's codec, without B-frames was exact).
    """

    def __init__(self, path: Path) -> None:
        decoders = _import("torchcodec")
        self.path = path
        self.decoder = decoders.VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1,
                                             dimension_order="NHWC")

    def __len__(self) -> int:
        return int(self.decoder.metadata.num_frames)

    def frames(self, indices: Sequence[int], seek: bool) -> torch.Tensor:
        if not seek:
            raise ValueError(f"decoder='torchcodec' is not frame-exact in {self.path.suffix} files (its "
                             "index was one frame off in AVI with B-frames): use decoder='pyav' or 'decord' "
                             f"for {self.path.name}, or seek=True to trust it")
        return self.decoder.get_frames_at(list(indices)).data  # (T, H, W, C) uint8

    def close(self) -> None:
        pass  # the decoder's file is released with the decoder


_BACKENDS = {"decord": _Decord, "pyav": _PyAV, "torchcodec": _TorchCodec}


def open_video(path: Path, decoder: str = "auto"):
    """A backend reader of ``path``: ``len(reader)`` frames, ``reader.frames(indices, seek)`` -> uint8
    ``(T, H, W, C)``, ``reader.close()``.  The file's existence is the caller's check (:func:`read_video`)."""
    return _BACKENDS[resolve_decoder(decoder)](path)
