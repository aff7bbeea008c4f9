"""Webdataset tar shards: stream a WebVid-scale dataset, and write any videogen dataset as shards.

The layout is the one video2dataset writes: tar files of samples that share a key, one file per field,
e.g. ``000000012.mp4`` (the video), ``000000012.txt`` (the caption), ``000000012.json`` (metadata) and,
for labelled data, ``000000012.cls`` (the class index). The reader is ``webdataset`` (the library of
that format: tar streaming, ``pipe:``/``http``/``gs``/``hf`` URLs, brace expansion); URLs of schemes it
does not know (``s3://``, ``az://`` ...) are opened with ``fsspec``.

- :class:`WebVideoShards`: an ``IterableDataset`` that reads the shards once per epoch, split by rank
  and DataLoader worker, shuffled (per-epoch shard order + a seeded sample buffer), and decodes clips with
  the map-style datasets' options (``num_frames``, ``frame_stride``, ``size``, ``start``, ``seed``,
  ``dtype``, ``decoder``) into the same item dicts (``video``, ``index``, ``caption``, ``label``).
- :class:`ShardSamples`: local shards read by position (what ``videogen cache`` encodes).
- Writing shards from any videogen dataset: :mod:`videogen.data.shard_writer` (``write_shards``, ``python
  -m videogen.data.shard_writer``).

A sample's ``index`` is its key read as an integer (video2dataset keys and ``write_shards`` keys are
zero-padded integers; other keys are hashed), so shards written from a map-style dataset give the same
``index`` - and, with ``start="random"``, the same clip - as reading that dataset directly.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from videogen.core.video import VIDEO_EXTENSIONS
from videogen.data.clips import ClipDataset, ClipSource

__all__ = ["ShardSamples", "WebVideoShards", "expand_urls"]

#: the sample fields that hold a video, in the order they are looked for
VIDEO_FIELDS = tuple(e.lstrip(".") for e in VIDEO_EXTENSIONS)
_SLOTS = 257  # skip-counter slots: the main process (0) and up to 256 DataLoader workers
_WARN_LIMIT = 20  # warnings per process; further skips are only counted


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Shard URLs from a brace pattern (``shards/{00000..00099}.tar``), several joined by ``::`` (the
    webdataset convention), or a list of either; each is a local path or a URL."""
    import braceexpand

    items = urls.split("::") if isinstance(urls, str) else list(urls)
    out = [u for item in items for u in braceexpand.braceexpand(str(item).strip()) if u]
    if not out:
        raise ValueError(f"no shard URLs in {urls!r}")
    return out


def _is_local(url: str) -> bool:
    return urlparse(url).scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", url) is not None


def _open(url: str):
    """A binary stream of ``url``: webdataset's ``gopen`` for local paths and the schemes it knows
    (``pipe:``, ``http(s)``, ``gs``, ``hf``, ``ais`` ...), ``fsspec`` for the others (``s3``, ``az`` ...)."""
    import importlib

    gopen = importlib.import_module("webdataset.gopen")  # the module (the package exports the function)
    scheme = urlparse(url).scheme
    if _is_local(url) or scheme in gopen.gopen_schemes:
        return gopen.gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


def _raw_samples(url: str) -> Iterator[dict]:
    """Samples of one shard as dicts ``{"__key__", "__url__", field: bytes}`` (webdataset's grouping of
    consecutive tar members by key). A shard that cannot be opened or read to its end raises."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    stream = _open(url)
    try:
        files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
        yield from group_by_keys(files)
    finally:
        stream.close()


def _key_index(key: str) -> int:
    """The integer a sample key stands for (``"000000012"`` -> 12); other keys hash to a stable int."""
    name = key.rsplit("/", 1)[-1]
    return int(name) if name.isdigit() else zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


def _shuffled(samples: Iterator[dict], size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Shuffle a stream with a buffer of ``size`` samples: each new sample replaces a random one of the
    buffer, which is yielded; the remainder comes out in random order at the end."""
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], sample = sample, buffer[i]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


def _quotas(rank_items: int, workers: int, batch_size: int) -> list[int]:
    """Items per DataLoader worker so that the loader's round-robin yields ``ceil(rank_items /
    batch_size)`` batches, all full but the last: batch ``j`` comes from worker ``j % workers``."""
    batches = math.ceil(rank_items / batch_size)
    per_worker = [batch_size * (batches // workers + (w < batches % workers)) for w in range(workers)]
    if batches:
        per_worker[(batches - 1) % workers] -= batches * batch_size - rank_items
    return per_worker


class WebVideoShards(IterableDataset):
    """Clips streamed from webdataset tar shards in the video2dataset layout.

    Each epoch the shard list is shuffled with ``(seed, epoch)`` (``shuffle=True``), dealt out round-robin
    to the ``world_size x num_workers`` readers (rank-major: reader ``rank * num_workers + worker``), and
    every reader streams its shards through a shuffle buffer seeded by ``(seed, epoch, reader)``. With
    ``epoch_size=None`` every sample is read once per epoch (single process: give at least as many shards
    as DataLoader workers, or some workers get none). With ``epoch_size=N`` every rank yields exactly
    ``ceil(N / world_size)`` items per epoch, its readers going round their shards again when they run
    out (the DistributedSampler's padding) and stopping early otherwise: under DDP this is required, as
    ranks with unequal batch counts hang in the gradient all-reduce.

    Args:
        urls: shard URLs: a brace pattern (``shards/{00000..00099}.tar``), several joined by ``::``, or a
            list; local paths, ``pipe:`` commands, or URLs (webdataset ``gopen`` schemes, else fsspec).
        num_frames, frame_stride, size, start, seed, dtype: the clip options of
            :class:`~videogen.data.clips.ClipDataset`. The random start of a sample is drawn from
            ``(seed, index, epoch)``, the draw a map-style dataset makes on its ``epoch``-th read.
        shuffle: shuffle the shard order and the samples; ``False`` reads the shards as listed.
        shuffle_buffer: samples held per reader for shuffling (memory: about this many encoded videos,
            per DataLoader worker).
        epoch_size: items per epoch over all ranks (``None``: one pass over the shards). It gives the
            dataset a length (``ceil(epoch_size / world_size)`` per rank).
        require_caption: a sample without a caption (``txt``, else ``json["caption"]``) is broken and
            skipped; ``False`` yields it without ``caption`` (unconditional data).
        tmp_dir: folder of the temporary file each video is decoded from (default: the system's); a
            memory-backed one (``/dev/shm``) saves a disk write per clip.
        dtype: ``"float32"`` (``video`` in [-1, 1]) or ``"uint8"`` (made float on the device), as
            :class:`~videogen.data.clips.ClipDataset`.
        decoder: the video decoder (``"auto"``, ``"decord"``, ``"pyav"``, ``"torchcodec"``), as
            :class:`~videogen.data.clips.ClipDataset`; the file extension of the sample's video field
            (``mp4``, ``avi`` ...) chooses seeking as for files.

    Broken samples (no video field, undecodable or too short video, missing caption) and unreadable or
    truncated shards are skipped with a warning and counted in ``num_skipped`` (shared memory, so counts
    made in DataLoader workers reach the main process).

    Mid-epoch resume (``ResumableDataLoader`` calls :meth:`skip_next`): each reader replays its part of
    the interrupted epoch - same shards, same buffer order - reading without decoding the samples its
    batches had delivered, so the epoch continues with exactly the batches it would have had. Exact
    when the loader's round-robin over workers held for the consumed batches (always with
    ``epoch_size``) and no broken sample was among them (each one of those makes one delivered sample
    come again). The replay reads the consumed part of the shards again (I/O, no decoding).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        num_frames: int = 16,
        frame_stride: int = 1,
        size: int | Sequence[int] | None = None,
        start: str = "random",
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 100,
        epoch_size: int | None = None,
        require_caption: bool = True,
        tmp_dir: str | os.PathLike | None = None,
        dtype: str = "float32",
        decoder: str = "auto",
    ) -> None:
        super().__init__()
        # a ClipDataset without sources: it validates the clip options and decodes exactly as map-style
        self.clips = ClipDataset(num_frames, frame_stride, size, start, seed, dtype, decoder)
        self.urls = expand_urls(urls)
        missing = [u for u in self.urls if _is_local(u) and not Path(urlparse(u).path or u).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(self.urls)} shards not found (first: "
                                    f"{missing[0]})")
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
        if epoch_size is not None and epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1 or None, got {epoch_size}")
        if tmp_dir is not None and not Path(tmp_dir).is_dir():
            raise FileNotFoundError(f"tmp_dir not found: {tmp_dir}")
        self.seed, self.shuffle, self.shuffle_buffer = seed, shuffle, shuffle_buffer
        self.epoch_size, self.require_caption, self.tmp_dir = epoch_size, require_caption, tmp_dir
        self.rank, self.world_size, self.batch_size, self._distributed_set = 0, 1, 1, False
        # shared with DataLoader workers (set in the main process before they start their pass):
        # [epoch, batches to skip, their batch size], and the skip counts per process
        self._state = torch.zeros(3, dtype=torch.int64).share_memory_()
        self._skips = torch.zeros(_SLOTS, dtype=torch.int64).share_memory_()
        self._warned = 0

    # ---- the main process's controls -------------------------------------------------------------------

    def set_distributed(self, rank: int, world_size: int, batch_size: int = 1) -> None:
        """This rank's place among ``world_size`` and the loader's batch size (for whole batches per
        worker); ``VideoDataModule`` calls it before making the loader. Without a call, an initialised
        ``torch.distributed`` group gives rank and world size, else (0, 1)."""
        if not 0 <= rank < world_size or batch_size < 1:
            raise ValueError(f"need 0 <= rank < world_size and batch_size >= 1, got {rank}, {world_size}, "
                             f"{batch_size}")
        if world_size > 1 and self.epoch_size is None:
            raise ValueError(f"WebVideoShards over {world_size} ranks needs epoch_size: ranks would get "
                             "unequal numbers of batches (their shards differ) and DDP would hang")
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self._distributed_set = True

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (shard order, buffer order, clip starts); clears any pending skip."""
        self._state[0], self._state[1] = int(epoch), 0

    def skip_next(self, batches: int, batch_size: int) -> None:
        """The next pass starts after the first ``batches`` batches of ``batch_size`` its loader delivered
        (mid-epoch resume); stays in force until :meth:`set_epoch`."""
        self._state[1], self._state[2] = int(batches), int(batch_size)

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    @property
    def num_skipped(self) -> int:
        """Broken samples and unreadable shards met so far (this process and its DataLoader workers)."""
        return int(self._skips.sum())

    def _world(self) -> tuple[int, int]:
        if self._distributed_set:
            return self.rank, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        """Items per epoch on this rank; only with ``epoch_size`` (a stream has no length otherwise)."""
        if self.epoch_size is None:
            raise TypeError("WebVideoShards has no length without epoch_size")
        return math.ceil(self.epoch_size / self._world()[1])

    # ---- a reader's pass -------------------------------------------------------------------------------

    def shard_order(self, epoch: int) -> list[str]:
        """The shards in the order of ``epoch`` (a permutation seeded by ``(seed, epoch)`` when shuffling)."""
        if not self.shuffle:
            return list(self.urls)
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.urls))
        return [self.urls[i] for i in order]

    def _skip(self, slot: int, what: str, err: BaseException | str) -> None:
        self._skips[slot] += 1
        self._warned += 1
        if self._warned <= _WARN_LIMIT:
            more = (" (further skips in this process are counted without a warning: see "
                    "WebVideoShards.num_skipped)" if self._warned == _WARN_LIMIT else "")
            reason = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
            warnings.warn(f"WebVideoShards: skipping {what}: {reason}{more}", stacklevel=3)

    def _stream(self, shards: list[str], epoch: int, reader: int, slot: int) -> Iterator[tuple[dict, int]]:
        """(raw sample, pass number) of a reader, its shards again and again (one pass when not padding),
        through the shuffle buffer; unreadable shards are counted and left."""
        passes = 0
        while True:
            def samples(pass_: int = passes) -> Iterator[tuple[dict, int]]:
                for url in shards:
                    try:
                        for sample in _raw_samples(url):
                            yield sample, pass_
                    except Exception as err:  # a truncated or unreadable shard must not end a long run
                        self._skip(slot, f"the rest of shard {url}", err)

            stream = samples()
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch, 1, reader, passes])
                stream = _shuffled(stream, self.shuffle_buffer, rng)
            got = False
            for sample_and_pass in stream:
                got = True
                yield sample_and_pass
            passes += 1
            if self.epoch_size is None or not got:
                return

    def _item(self, sample: dict, epoch: int, pass_: int) -> dict:
        """Decode one raw sample into the map-style item dict; raises on anything broken."""
        field = next((f for f in VIDEO_FIELDS if f in sample), None)
        if field is None:
            raise ValueError(f"no video field ({', '.join(VIDEO_FIELDS)}) among {sorted(sample)}")
        meta = json.loads(sample["json"]) if "json" in sample else {}
        caption = sample["txt"].decode("utf-8").strip() if "txt" in sample else meta.get("caption")
        if caption is None and self.require_caption:
            raise ValueError("no caption (txt, or json 'caption')")
        label = int(sample["cls"]) if "cls" in sample else meta.get("label")
        index = _key_index(sample["__key__"])
        draw = [self.seed, index, epoch] + ([pass_] if pass_ else [])
        with tempfile.NamedTemporaryFile(suffix="." + field, dir=self.tmp_dir) as f:
            f.write(sample[field])
            f.flush()
            frames = self.clips.load_frames(ClipSource(Path(f.name)), np.random.default_rng(draw))
        item = {"video": self.clips.to_output(frames),  # (T, H, W, C) uint8 -> (C, T, H, W) in dtype
                "index": torch.tensor(index, dtype=torch.int64)}
        if label is not None:
            item["label"] = torch.tensor(int(label), dtype=torch.int64)
        if caption is not None:
            item["caption"] = str(caption).strip()
        return item

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot = (worker + 1) % _SLOTS if info is not None else 0  # the process's skip counter
        rank, world = self._world()
        epoch, skip_batches, skip_batch_size = (int(v) for v in self._state)
        # The loader takes batch j from worker j % workers. After n skipped batches its round-robin starts
        # again at worker 0, so worker w plays the part of worker (w + n) % workers of the whole epoch.
        worker = (worker + skip_batches) % workers
        readers, reader = world * workers, rank * workers + worker
        shards = self.shard_order(epoch)[reader::readers]
        quota = None
        batch_size = skip_batch_size or self.batch_size
        if self.epoch_size is not None:
            quota = _quotas(math.ceil(self.epoch_size / world), workers, self.batch_size)[worker]
            if quota and not shards:
                raise ValueError(f"WebVideoShards: {len(self.urls)} shards cannot feed {readers} readers "
                                 f"({world} ranks x {workers} workers): write more shards or use fewer "
                                 "workers")
        # mid-epoch resume: the batches j < skip_batches with j % workers == worker were this worker's
        skip = len(range(worker, skip_batches, workers)) * batch_size
        done = 0
        if quota == 0:
            return
        for sample, pass_ in self._stream(shards, epoch, reader, slot):
            if quota is not None and done >= quota:
                return
            if skip:
                skip -= 1
                done += 1
                continue
            try:
                item = self._item(sample, epoch, pass_)
            except Exception as err:  # any decoder error: a corrupt sample must not end a long run
                self._skip(slot, f"sample {sample.get('__key__')} of {sample.get('__url__')}", err)
                continue
            done += 1
            yield item


# ---- writing shards ------------------------------------------------------------------------------------


_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # "dir/000012.mp4" -> key "dir/000012", field "mp4"


class ShardSamples(Dataset):
    """Map-style access to local webdataset shards: item ``i`` is the ``i``-th sample of the shards in the
    order listed, decoded exactly as :class:`WebVideoShards` decodes it (epoch 0).

    Made for reading every sample once by position, as ``videogen cache`` does (a recipe whose data are
    shards is cached through it); train with :class:`WebVideoShards`, which streams.  Only local shards:
    the member offsets of a tar are read from its headers (no video is read) when one of its samples is
    first asked for, and kept for the last shard read.  The sample counts come from the
    ``<stem>_stats.json`` beside each shard (``successes``, as video2dataset and ``write_shards`` write
    it), else from the tar's headers.  A broken sample is skipped, warned about and counted
    (``num_skipped``) and the next one is returned, as the map-style datasets do.

    Args: ``urls`` as :class:`WebVideoShards` (local paths only), and its clip options and ``decoder``.
    """

    def __init__(self, urls: str | Sequence[str], num_frames: int = 16, frame_stride: int = 1,
                 size: int | Sequence[int] | None = None, start: str = "random", seed: int = 0,
                 require_caption: bool = True, tmp_dir: str | os.PathLike | None = None,
                 dtype: str = "float32", decoder: str = "auto") -> None:
        self.stream = WebVideoShards(urls, num_frames, frame_stride, size, start, seed, shuffle=False,
                                     require_caption=require_caption, tmp_dir=tmp_dir, dtype=dtype,
                                     decoder=decoder)
        remote = [u for u in self.stream.urls if not _is_local(u)]
        if remote:
            raise ValueError(f"ShardSamples reads local shards only (random access), got {remote[0]}: "
                             "copy the shards to a local disk, or stream them with WebVideoShards")
        self.paths = [urlparse(u).path or u for u in self.stream.urls]
        counts = np.array([self._count(k) for k in range(len(self.paths))], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])  # sample i lies in shard searchsorted(i)
        self._members: tuple[int, list[tuple[str, dict[str, tuple[int, int]]]]] | None = None
        self.num_skipped = 0

    def _count(self, k: int) -> int:
        path = self.paths[k]
        stats = Path((path[: -len(".tar")] if path.endswith(".tar") else path) + "_stats.json")
        if stats.is_file():
            try:
                return int(json.loads(stats.read_text())["successes"])
            except (ValueError, KeyError, TypeError):
                pass  # an unreadable record: count from the tar itself
        return len(self._read_members(k))

    def _read_members(self, k: int) -> list[tuple[str, dict[str, tuple[int, int]]]]:
        """``[(key, {field: (offset, size)})]`` of shard ``k``, in tar order (headers only)."""
        import tarfile

        samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
        try:
            with tarfile.open(self.paths[k], "r:") as tar:
                for member in tar:
                    found = _MEMBER.match(member.name) if member.isfile() else None
                    if found is None:
                        continue
                    key, field = found.group(1), found.group(2).lower()
                    if not samples or samples[-1][0] != key:
                        samples.append((key, {}))
                    samples[-1][1][field] = (member.offset_data, member.size)
        except (tarfile.TarError, OSError) as err:
            raise ValueError(f"shard {self.paths[k]} is not a readable tar: {err}") from None
        return samples

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _sample(self, i: int) -> dict:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        if self._members is None or self._members[0] != k:
            self._members = (k, self._read_members(k))
        members = self._members[1]
        j = i - int(self.starts[k])
        if j >= len(members):
            raise ValueError(f"shard {self.paths[k]} holds {len(members)} samples, its stats file "
                             f"{int(self.starts[k + 1] - self.starts[k])}")
        key, fields = members[j]
        sample: dict = {"__key__": key, "__url__": self.paths[k]}
        with open(self.paths[k], "rb") as f:
            for field, (offset, size) in fields.items():
                f.seek(offset)
                sample[field] = f.read(size)
        return sample

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        for offset in range(n):
            i = (index + offset) % n
            try:
                return self.stream._item(self._sample(i), epoch=0, pass_=0)
            except Exception as err:  # any decoder error: a corrupt sample must not end a long run
                self.num_skipped += 1
                if self.num_skipped <= _WARN_LIMIT:
                    warnings.warn(f"ShardSamples: skipping sample {i}: {' '.join(str(err).split())[:200]}",
                                  stacklevel=2)
        raise ValueError(f"ShardSamples: all {n} samples are unreadable or too short for the clip")
