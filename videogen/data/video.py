"""Real video datasets in the layouts the papers' data come in (users bring the files).

- ``ClassFolderVideos``: ``root/<class>/<video>.avi`` (UCF-101, NATOPS) with optional
  ``ucfTrainTestlist/{train,test}list0{1,2,3}.txt`` and ``classInd.txt``; label = class index.
- ``CsvCaptionVideos``: a CSV with one row per video (WebVid-10M: ``videoid, contentUrl, duration,
  page_dir, name``), files at ``root/<path_template>`` (default ``{videoid}.mp4``), caption = ``name``.
- ``FrameFolderVideos``: every folder of JPG/PNG frames under ``root`` is one video (Sky Time-lapse
  ``sky_train/<id>/<clip>/*.jpg``, BAIR PNG folders, MUG, Taichi frame folders).
- ``JsonCaptionVideos``: a JSON ``{idx: {"video": file, "caption": text}}`` (CATER-GEN) over ``root``.

Each layout builds a lean :class:`~videogen.data.clips.SourceIndex` (NumPy columns, no Python object per
row) and asks the file system nothing per listed row: a 10.7M-row WebVid CSV is one parse.  Files that a
list names but that do not exist, and files that cannot give a clip, are skipped when read, with a
warning, and counted (``dataset.missing``, ``dataset.skipped``, ``dataset.num_skipped``; see
``videogen.data.clips``). Clip options (``num_frames``, ``frame_stride``, ``size``, ``start``, ``seed``,
``dtype``, ``decoder``) are those of :class:`~videogen.data.clips.ClipDataset`.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import os
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from videogen.core.video import VIDEO_EXTENSIONS
from videogen.data.clips import ClipDataset, SourceIndex, StringColumn, StringColumnBuilder, natural_key

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


_CHUNK_ROWS = 1 << 13  # rows parsed per chunk: construction holds the index plus one chunk of parsed rows


def _positional_template(template: str) -> tuple[str, list[str]]:
    """``"{page_dir}/{videoid}.mp4"`` -> (``"{0}/{1}.mp4"``, ``["page_dir", "videoid"]``): a row's path is
    then one ``format`` of its column values (no dict per row). Format specs and conversions are kept."""
    parts, names = [], []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"path_template {template!r} is not a str.format template: {err}") from None
    for literal, field, spec, conversion in parsed:
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        name = re.match(r"\w*", field).group(0)
        if not name or name.isdigit() or "{" in (spec or ""):
            raise ValueError(f"path_template {template!r}: fields must name CSV columns, e.g. {{videoid}}")
        if name not in names:
            names.append(name)
        parts.append("{" + str(names.index(name)) + field[len(name):]
                     + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(parts), names


def _row_formatter(template: str, positions: list[int]) -> Callable[[list[str]], str]:
    """``row -> path`` for a positional template over the given column positions."""
    fmt = template.format
    if len(positions) == 1:
        (k,) = positions
        return lambda row: fmt(row[k])
    get = operator.itemgetter(*positions)
    return lambda row: fmt(*get(row))
class ClassFolderVideos(ClipDataset):
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
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed, dtype, decoder)
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
        labels = np.empty(len(rel), np.int64)
        for k, r in enumerate(rel):
            name = r.replace("\\", "/").split("/")[0]
            if name not in index:
                raise ValueError(f"video {r} is in class folder {name!r}, which is not among the classes")
            labels[k] = index[name]
        self._set_index(SourceIndex(self.root, StringColumn.from_strings(rel), labels=labels,
                                    label_captions=[_class_caption(c) for c in self.classes]), where)


class CsvCaptionVideos(ClipDataset):
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
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed, dtype, decoder)
        self.root = _existing_dir(root, "video root")
        csv_path = _existing_file(csv_path, "caption CSV")
        template, fields = _positional_template(path_template)
        paths, captions = StringColumnBuilder(), StringColumnBuilder()
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            column = {name: k for k, name in enumerate(header)}  # a repeated name: its last column
            needed = {caption_column, *fields}
            if not needed <= column.keys():
                raise ValueError(f"{csv_path} lacks columns {sorted(needed - column.keys())}; it has "
                                 f"{sorted(column)}")
            positions = [column[name] for name in fields]
            width = max(column[name] for name in needed) + 1
            # one field (WebVid's {videoid}.mp4): store its value, the path is formatted when read
            path_format = template if len(positions) == 1 else None
            path_of = _row_formatter(template, positions)
            c, checked = column[caption_column], False
            while block := list(itertools.islice(reader, _CHUNK_ROWS)):
                rows = [row for row in block if row]  # blank lines, as DictReader skips them
                short = next((row for row in rows if len(row) < width), None) if not checked else None
                try:
                    if path_format is not None:
                        k = positions[0]
                        paths.extend([row[k] for row in rows])
                    else:
                        paths.extend([path_of(row) for row in rows])
                    captions.extend([row[c].strip() for row in rows])
                except IndexError:
                    short = next(row for row in rows if len(row) < width)
                if short is not None:
                    raise ValueError(f"{csv_path}: a row has {len(short)} fields, fewer than the header's "
                                     f"{len(header)} (up to line {reader.line_num}): {short!r:.200}")
                if not checked and rows:  # a template that cannot format a row fails here, not when read
                    try:
                        path_of(rows[0])
                    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
                        raise ValueError(f"path_template {path_template!r} does not format the row "
                                         f"{rows[0]!r:.200}: {err}") from None
                    checked = True
        self._set_index(SourceIndex(self.root, paths.build(), path_format=path_format,
                                    captions=captions.build()), str(csv_path))


class JsonCaptionVideos(ClipDataset):
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
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed, dtype, decoder)
        self.root = _existing_dir(root, "video root")
        json_path = _existing_file(json_path, "caption JSON")
        data = json.loads(json_path.read_text(encoding="utf-8"))
        entries = [data[k] for k in sorted(data, key=natural_key)] if isinstance(data, dict) else data
        for entry in entries:
            if not isinstance(entry, dict) or video_key not in entry or caption_key not in entry:
                raise ValueError(f"{json_path}: every entry needs {video_key!r} and {caption_key!r}, got "
                                 f"{entry!r:.200}")
        paths = StringColumn.from_strings(str(entry[video_key]) for entry in entries)
        captions = StringColumn.from_strings(str(entry[caption_key]) for entry in entries)
        del data, entries
        self._set_index(SourceIndex(self.root, paths, captions=captions), str(json_path))


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
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        super().__init__(num_frames, frame_stride, size, start, seed, dtype, decoder)
        self.root = _existing_dir(root, "frame-folder dataset root")
        suffixes = {e.lower() for e in extensions}
        found = []  # (folder relative to root, its frame names in natural order)
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort(key=natural_key)
            frames = sorted((f for f in filenames if os.path.splitext(f)[1].lower() in suffixes),
                            key=natural_key)
            if frames:
                found.append((os.path.relpath(dirpath, self.root), frames))
        found.sort(key=lambda entry: natural_key(entry[0]))
        offsets = np.zeros(len(found) + 1, np.int64)
        np.cumsum([len(frames) for _, frames in found], out=offsets[1:])
        index = SourceIndex(self.root, StringColumn.from_strings(rel for rel, _ in found),
                            frames=StringColumn.from_strings(f for _, frames in found for f in frames),
                            frame_offsets=offsets)
        self._set_index(index, str(self.root))
