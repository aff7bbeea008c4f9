"""Decoder backends of ``read_video`` (videogen.core.decoders): decord, PyAV and torchcodec give the same
frames, checked against an independent oracle (the ffmpeg command line decoding every frame, through
imageio-ffmpeg); "auto" order; one-line errors for unusable backends; the datasets' ``decoder`` option.

torchcodec is not installed in the test environment (and needs system FFmpeg libraries): its real decode
runs only where it loads (``test_torchcodec_matches_pyav``, skipped otherwise); here its errors are tested.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videogen.core import decoders
from videogen.core.decoders import _read_frames_ffmpeg, resolve_decoder
from videogen.core.video import read_video, write_video

FRAMES, H, W = 40, 32, 48


def _content(frames: int = FRAMES) -> np.ndarray:
    """uint8 (T, H, W, 3): a random texture moving 2 px a frame plus a per-frame level (every frame differs,
    and the encoder uses B-frames and motion prediction as on real footage)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (H, W + 2 * frames, 3), dtype=np.uint8)
    return np.stack([texture[:, 2 * t:2 * t + W] // 2 + 3 * t for t in range(frames)]).astype(np.uint8)


def _write_gop(path: Path, gop: int = 6) -> Path:
    """libx264 with a keyframe every ``gop`` frames and 2 B-frames (several keyframes to seek to)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "18", "bf": "2", "sc_threshold": "0"}
        for frame in _content():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (file, every frame as ffmpeg decodes it)."""
    folder = tmp_path_factory.mktemp("decoders")
    files = {ext: write_video(folder / f"v.{ext}", _content()) for ext in ("mp4", "mkv", "avi")}
    files["gop_mp4"] = _write_gop(folder / "gop.mp4")
    files["gop_mkv"] = _write_gop(folder / "gop.mkv")
    return {name: (path, _read_frames_ffmpeg(path)) for name, path in files.items()}


CLIPS = [(8, 1, 0), (8, 2, 5), (6, 3, 7), (9, 4, 7), (4, 4, 27), (3, 5, 29), (1, 1, 39), (16, 2, 9)]


@pytest.mark.parametrize("name", ["mp4", "mkv", "avi", "gop_mp4", "gop_mkv"])
def test_decord_and_pyav_give_the_frames_of_a_full_decode(videos, name):
    path, every = videos[name]
    assert len(every) == FRAMES
    for decoder in ("decord", "pyav"):
        for num_frames, stride, start in CLIPS:
            clip = read_video(path, num_frames, stride, start, decoder=decoder)
            assert clip.dtype == torch.uint8 and clip.shape == (num_frames, H, W, 3)
            span = every[start:start + (num_frames - 1) * stride + 1]
            np.testing.assert_array_equal(clip.numpy(), span[::stride],
                                          err_msg=f"{decoder} {name} {num_frames}x{stride} from {start}")
        whole = read_video(path, decoder=decoder)
        np.testing.assert_array_equal(whole.numpy(), every)
        for seed in range(3):  # random starts: the same draw from the same generator
            a = read_video(path, 8, 4, "random", np.random.default_rng(seed), decoder="decord")
            b = read_video(path, 8, 4, "random", np.random.default_rng(seed), decoder="pyav")
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["gop_mp4", "gop_mkv"])
def test_pyav_seeks_to_the_keyframe_before_the_clip(videos, monkeypatch, name):
    """In a file with a keyframe every 6 frames (and B-frames), a late clip is decoded from the keyframe
    before its first frame, matched by timestamp, without the fall-back to a decode from frame 0."""
    path, every = videos[name]
    decoded = []
    original = decoders._PyAV._collect

    def counting(self, frames, *args):
        def counted():
            for frame in frames:
                decoded.append(frame.pts)
                yield frame
        return original(self, counted(), *args)

    monkeypatch.setattr(decoders._PyAV, "_collect", counting)
    monkeypatch.setattr(decoders._PyAV, "_sequential_decode",
                        lambda self, indices: pytest.fail("fell back to a decode from the first frame"))
    clip = read_video(path, 4, 3, 25, decoder="pyav")  # frames 25, 28, 31, 34; keyframe 24
    np.testing.assert_array_equal(clip.numpy(), every[25:35:3])
    assert 34 - 24 + 1 <= len(decoded) <= 34 - 24 + 1 + 2  # keyframe 24 to frame 34 (+ B-frame reordering)


def test_pyav_falls_back_when_timestamps_do_not_match(videos, monkeypatch):
    path, every = videos["gop_mkv"]
    reader_cls = decoders._PyAV
    scan = reader_cls._packets

    def shifted(self):  # timestamps that match no decoded frame: the seek path must give up, not guess
        n, pts, keys = scan(self)
        return n, [p + 1 for p in pts], keys

    monkeypatch.setattr(reader_cls, "_packets", shifted)
    np.testing.assert_array_equal(read_video(path, 5, 2, 20, decoder="pyav").numpy(), every[20:29:2])


def test_pyav_frame_count_without_nb_frames(videos):
    """MKV stores no frame count (``stream.frames == 0``): PyAV counts the packets; decord agrees."""
    import av
    import decord

    path, _ = videos["mkv"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    assert len(decoders.open_video(path, "pyav")) == len(decord.VideoReader(str(path))) == FRAMES


def test_pyav_leaves_out_the_frames_an_edit_list_cuts(videos, tmp_path):
    """An MP4 trimmed without re-encoding (``ffmpeg -ss 0.5 -c copy``) keeps the packets before the cut and
    an edit list that discards them: PyAV counts and indexes only the frames ffmpeg shows."""
    import subprocess

    import imageio_ffmpeg

    cut = tmp_path / "cut.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", "0.5", "-i",
                    str(videos["gop_mp4"][0]), "-c", "copy", str(cut)], check=True)
    every = _read_frames_ffmpeg(cut)
    assert 0 < len(every) < FRAMES
    reader = decoders.open_video(cut, "pyav")
    try:
        assert len(reader) == len(every)
    finally:
        reader.close()
    for start in range(0, len(every) - 7, 3):
        clip = read_video(cut, 4, 2, start, decoder="pyav")
        np.testing.assert_array_equal(clip.numpy(), every[start:start + 7:2])
    np.testing.assert_array_equal(read_video(cut, decoder="pyav").numpy(), every)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_error_contracts(tmp_path, videos, decoder):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        read_video(tmp_path / "missing.mp4", decoder=decoder)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_video(tmp_path / "empty.mp4", decoder=decoder)
    path, _ = videos["mp4"]
    with pytest.raises(ValueError, match=rf"{path.name}: video has 40 frames, fewer than the clip span 41"):
        read_video(path, 11, 4, decoder=decoder)
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error, as callers catch any Exception
        read_video(tmp_path / "junk.mp4", decoder=decoder)
    with pytest.raises(ValueError, match="decoder must be one of"):
        read_video(path, decoder="ffmpeg")


def test_auto_order(monkeypatch):
    assert resolve_decoder("auto") == "decord"
    monkeypatch.setitem(sys.modules, "decord", None)  # decord's import fails
    assert resolve_decoder("auto") == "pyav"
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    with pytest.raises(ImportError, match="no video decoder is installed: pip install av"):
        resolve_decoder("auto")


def test_auto_without_decord_reads_with_pyav(videos, monkeypatch):
    path, every = videos["mp4"]
    monkeypatch.setitem(sys.modules, "decord", None)
    np.testing.assert_array_equal(read_video(path, 4, 4, 3).numpy(), every[3:16:4])


@pytest.mark.parametrize("decoder, module, hint", [("decord", "decord", "pip install decord"),
                                                   ("pyav", "av", "pip install av"),
                                                   ("torchcodec", "torchcodec", "pip install torchcodec")])
def test_unavailable_backend_is_one_line(videos, monkeypatch, decoder, module, hint):
    monkeypatch.setitem(sys.modules, module, None)
    if module == "torchcodec":  # find_spec would find an installed torchcodec; make it look absent
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError) as err:
        read_video(videos["mp4"][0], decoder=decoder)
    assert hint in str(err.value) and "\n" not in str(err.value) and f"decoder='{decoder}'" in str(err.value)


def test_torchcodec_without_ffmpeg_is_one_line(videos, monkeypatch):
    """torchcodec installed but its FFmpeg libraries missing: its import raises a many-line RuntimeError
    (what it does on a machine without FFmpeg); read_video turns it into one line."""
    real_import = importlib.import_module

    def fake_import(name, *args):
        if name == "torchcodec.decoders":
            raise RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly "
                               "installed\n[start of libtorchcodec loading traceback]\nFFmpeg version 8: ...")
        return real_import(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(RuntimeError) as err:
        read_video(videos["mp4"][0], decoder="torchcodec")
    message = str(err.value)
    assert "\n" not in message and "FFmpeg" in message and "decoder='pyav'" in message
    assert resolve_decoder("auto") == "decord"  # auto is not disturbed by an unusable torchcodec


def _torchcodec_loads() -> bool:
    try:
        resolve_decoder("torchcodec")
    except (ImportError, RuntimeError):
        return False
    return True


@pytest.mark.skipif(not _torchcodec_loads(), reason="torchcodec (or its FFmpeg libraries) not installed")
@pytest.mark.parametrize("name", ["mp4", "mkv", "gop_mp4", "gop_mkv"])
def test_torchcodec_matches_pyav(videos, name):
    path, every = videos[name]
    for num_frames, stride, start in CLIPS:
        clip = read_video(path, num_frames, stride, start, decoder="torchcodec")
        np.testing.assert_array_equal(clip.numpy(), every[start:start + (num_frames - 1) * stride + 1:stride])


@pytest.mark.skipif(not _torchcodec_loads(), reason="torchcodec (or its FFmpeg libraries) not installed")
def test_torchcodec_refuses_avi_unless_asked(videos):
    with pytest.raises(ValueError, match="not frame-exact in .avi"):
        read_video(videos["avi"][0], 4, 2, decoder="torchcodec")


def test_datasets_pass_the_decoder(tmp_path, videos, monkeypatch):
    """A dataset built with decoder="pyav" yields the items of decord (random starts, resize, uint8), and
    so does a shard stream; an unknown or unusable decoder fails at construction, in one line."""
    from videogen.data import JsonCaptionVideos, WebVideoShards, write_shards

    path, _ = videos["gop_mp4"]
    (tmp_path / "list.json").write_text(json.dumps([{"video": str(path), "caption": "a"}] * 3))
    opts = dict(num_frames=6, frame_stride=4, size=(16, 24), seed=3, dtype="uint8")
    by = {d: JsonCaptionVideos(tmp_path, tmp_path / "list.json", decoder=d, **opts)
          for d in ("decord", "pyav")}
    assert by["pyav"].decoder == "pyav"
    for i in range(3):
        a, b = by["decord"][i], by["pyav"][i]
        assert a["video"].shape == (3, 6, 16, 24) and torch.equal(a["video"], b["video"])
    assert by["decord"][0]["video"].float().std() > 0
    shards = write_shards(JsonCaptionVideos(tmp_path, tmp_path / "list.json", num_frames=1),
                          str(tmp_path / "s" / "%05d.tar"), samples_per_shard=3)
    stream = {d: list(WebVideoShards(shards, shuffle=False, decoder=d, **opts)) for d in ("decord", "pyav")}
    assert len(stream["pyav"]) == 3
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(stream["decord"], stream["pyav"]))
    with pytest.raises(ValueError, match="decoder must be one of"):
        JsonCaptionVideos(tmp_path, tmp_path / "list.json", decoder="opencv")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="pip install av"):
        WebVideoShards(shards, decoder="pyav")


def test_dataset_counts_a_corrupt_file_with_pyav(tmp_path, videos):
    from videogen.data import JsonCaptionVideos

    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    entries = [{"video": "junk.mp4", "caption": "x"}, {"video": str(videos["mp4"][0]), "caption": "y"}]
    (tmp_path / "list.json").write_text(json.dumps(entries))
    data = JsonCaptionVideos(tmp_path, tmp_path / "list.json", num_frames=4, decoder="pyav")
    with pytest.warns(UserWarning, match="skipping unreadable video"):
        item = data[0]
    assert item["caption"] == "y" and data.num_skipped == 1
