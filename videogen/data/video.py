"""Real video datasets in the layouts the papers' data come in (users bring the files).

- ``ClassFolderVideos``: ``root/<class>/<video>.avi`` (UCF-101, NATOPS) with optional
  ``ucfTrainTestlist/{train,test}list0{1,2,3}.txt`` and ``classInd.txt``; label = class index.
- ``CsvCaptionVideos``: a CSV with one row per video (WebVid-10M: ``videoid, contentUrl, duration,
  page_dir, name``), files at ``root/<path_template>`` (default ``{videoid}.mp4``), caption = ``name``.
- ``FrameFolderVideos``: every folder of JPG/PNG frames under ``root`` is one video (Sky Time-lapse
  ``sky_train/<id>/<clip>/*.jpg``, BAIR PNG folders, MUG, Taichi frame folders).
- ``JsonCaptionVideos``: a JSON ``{idx: {"video": file, "caption": text}}`` (CATER-GEN) over ``root``.

Files that a list names but that do not exist are dropped at construction with one summary warning
(``dataset.missing``); files that exist but cannot give a clip are skipped at load time (see
``videogen.data.clips``). Clip options (``num_frames``, ``frame_stride``, ``size``, ``start``, ``seed``)
are those of :class:`~videogen.data.clips.ClipDataset`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from videogen.core.video import VIDEO_EXTENSIONS
from videogen.data.clips import ClipDataset, ClipSource, natural_key

__all__ = ["ClassFolderVideos", "CsvCaptionVideos", "FrameFolderVideos", "JsonCaptionVideos"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _existing_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {path}")
    return path


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return path


def _class_caption(name: str) -> str:
    """``ApplyEyeMakeup`` / ``apply_eye_makeup`` -> ``apply eye makeup``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    return " ".join(words.lower().split())


class _ListedFiles(ClipDataset):
    """A layout whose sources come from a list: drop missing files with one warning, then store."""

    def _set_listed(self, sources: list[ClipSource], where: str) -> None:
        self.missing = [s.path for s in sources if not s.path.is_file()]
        if self.missing:
            warnings.warn(
                f"{type(self).__name__}: {len(self.missing)} of {len(sources)} listed videos are missing "
                f"(first: {self.missing[0]}); they are left out",
                stacklevel=3,
            )
        self._set_sources([s for s in sources if s.path.is_file()], where)


class ClassFolderVideos(_ListedFiles):
    """Videos in class folders, ``root/<class>/<file>``, labelled by class (UCF-101 layout).

    Args:
        root: folder holding one sub-folder per class.
        split: ``None`` (every video under ``root``), ``"train"`` or ``"test"`` (the official list).
        fold: which split list (1, 2 or 3: ``trainlist01.txt`` ...).
        split_dir: folder of the split lists and ``classInd.txt``; default ``root/ucfTrainTestlist``
            or ``root/../ucfTrainTestlist``, whichever exists.
        extensions: video file suffixes to collect when ``split`` is ``None``.

    Labels follow ``classInd.txt`` (1-based there, 0-based here) when present, else sorted class
    names. ``caption`` is the class name in words ("apply eye makeup"). ``classes`` lists the names.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        fold: int = 1,
        split_dir: str | os.PathLike | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed)
        self.root = _existing_dir(root, "class-folder dataset root")
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        if fold not in (1, 2, 3):
            raise ValueError(f"fold must be 1, 2 or 3, got {fold}")
        if split_dir is None:
            candidates = [self.root / "ucfTrainTestlist", self.root.parent / "ucfTrainTestlist"]
            split_dir = next((c for c in candidates if c.is_dir()), None)
        elif not Path(split_dir).is_dir():
            raise FileNotFoundError(f"split_dir not found: {split_dir}")
        split_dir = Path(split_dir) if split_dir is not None else None

        class_ind = split_dir / "classInd.txt" if split_dir is not None else None
        if class_ind is not None and class_ind.is_file():
            pairs = [line.split() for line in class_ind.read_text().splitlines() if line.strip()]
            self.classes = [name for _, name in sorted(pairs, key=lambda p: int(p[0]))]
        else:
            self.classes = sorted((d.name for d in self.root.iterdir() if d.is_dir() and d.name
                                   != "ucfTrainTestlist"),
                                  key=natural_key)
        index = {name: i for i, name in enumerate(self.classes)}

        if split is None:
            suffixes = {e.lower() for e in extensions}
            rel = sorted(
                (str(p.relative_to(self.root)) for name in self.classes if (self.root / name).is_dir()
                 for p in (self.root / name).iterdir() if p.suffix.lower() in suffixes),
                key=natural_key,
            )
            where = str(self.root)
        else:
            if split_dir is None:
                raise FileNotFoundError(f"split={split!r} needs ucfTrainTestlist/ in or next to {self.root}, "
                                        "or an explicit split_dir")
            list_file = _existing_file(split_dir / f"{split}list0{fold}.txt", "split list")
            rel = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
            where = str(list_file)
        sources = []
        for r in rel:
            name = r.replace("\\", "/").split("/")[0]
            if name not in index:
                raise ValueError(f"video {r} is in class folder {name!r}, which is not among the classes")
            sources.append(ClipSource(self.root / r, label=index[name], caption=_class_caption(name)))
        self._set_listed(sources, where)


class CsvCaptionVideos(_ListedFiles):
    """Captioned videos listed in a CSV (WebVid-10M layout).

    Args:
        root: folder the video paths are relative to.
        csv_path: the CSV file (header row required).
        path_template: ``str.format`` template of a video's path from its row, e.g.
            ``"{videoid}.mp4"`` (default) or ``"{page_dir}/{videoid}.mp4"``.
        caption_column: column with the caption (WebVid: ``name``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        csv_path: str | os.PathLike,
        path_template: str = "{videoid}.mp4",
        caption_column: str = "name",
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed)
        self.root = _existing_dir(root, "video root")
        csv_path = _existing_file(csv_path, "caption CSV")
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or ())
            needed = {caption_column, *re.findall(r"{(\w+)", path_template)}
            if not needed <= columns:
                raise ValueError(f"{csv_path} lacks columns {sorted(needed - columns)}; it has "
                                 f"{sorted(columns)}")
            sources = [ClipSource(self.root / path_template.format(**row),
                                  caption=row[caption_column].strip())
                       for row in reader]
        self._set_listed(sources, str(csv_path))


class JsonCaptionVideos(_ListedFiles):
    """Captioned videos listed in JSON ``{idx: {"video": file, "caption": text}}`` or a list of such dicts
    (CATER-GEN)."""

    def __init__(
        self,
        root: str | os.PathLike,
        json_path: str | os.PathLike,
        video_key: str = "video",
        caption_key: str = "caption",
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed)
        self.root = _existing_dir(root, "video root")
        json_path = _existing_file(json_path, "caption JSON")
        data = json.loads(json_path.read_text(encoding="utf-8"))
        entries = [data[k] for k in sorted(data, key=natural_key)] if isinstance(data, dict) else data
        sources = []
        for entry in entries:
            if not isinstance(entry, dict) or video_key not in entry or caption_key not in entry:
                raise ValueError(f"{json_path}: every entry needs {video_key!r} and {caption_key!r}, got "
                                 f"{entry!r}")
            sources.append(ClipSource(self.root / entry[video_key], caption=str(entry[caption_key])))
        self._set_listed(sources, str(json_path))


class FrameFolderVideos(ClipDataset):
    """Every folder under ``root`` that directly holds image files is one video, frames in natural order.

    Covers Sky Time-lapse (``sky_train/<id>/<clip>/*.jpg``), BAIR and other PNG/JPG frame dumps.
    Folders with fewer frames than the clip needs are skipped (with a warning) when loaded.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed)
        self.root = _existing_dir(root, "frame-folder dataset root")
        suffixes = {e.lower() for e in extensions}
        sources = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort(key=natural_key)
            frames = sorted((f for f in filenames if Path(f).suffix.lower() in suffixes), key=natural_key)
            if frames:
                folder = Path(dirpath)
                sources.append(ClipSource(folder, frames=tuple(folder / f for f in frames)))
        sources.sort(key=lambda s: natural_key(str(s.path.relative_to(self.root))))
        self._set_sources(sources, str(self.root))
