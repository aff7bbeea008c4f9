"""The latent cache: a recipe's videos and captions encoded once through its frozen stages, on disk.

A stage-2 step (CMD content / motion, LVDM short / long / text-to-video, LaMD's DMG) spends most of its
compute in the frozen first stage and text encoder at WebVid size (the SD VAE on 16 frames of 512x1024,
the CLIP / OpenCLIP text tower).  ``videogen cache`` (:func:`write_cache`) runs them once per stored clip
and writes what the modules already accept in place of ``video`` / ``caption``; :class:`LatentCache` is
the map-style dataset a recipe then trains from (``data.init_args.dataset: {class_path:
videogen.data.LatentCache, init_args: {root: DIR}}``).

Layout of a cache directory::

    DIR/shard-000000.safetensors   N videos: every cached key stacked, captions in the metadata
    DIR/shard-000001.safetensors   ...
    DIR/index.json                 written last: settings, fingerprint, keys, shard sizes

Each shard is written to a temporary name and renamed when whole, and ``index.json`` only once every
shard exists, so a killed run leaves no file that a reader takes for a complete one; a rerun skips the
shards already there (they carry the settings key of the run that wrote them: a shard of another cache
is refused).  Rank ``r`` of ``W`` writers takes shards ``r, r + W, ...``; whichever finishes last writes
the index (all ranks would write the same bytes).

What a module provides (duck-typed, so that ``videogen.data`` imports no model package):

* ``frozen``: the names of its frozen networks (``TrainingModule``); their weights make the cache's
  fingerprint, which each cached item carries as ``cache_id``: a module reading a batch of another
  cache's items raises (:func:`cached_batch`).
* ``cache_encode(batch) -> {key: (B, ...)}``: for ``batch["video"]`` the per-clip keys (posterior
  means: ``content_frame`` / ``motion_latent`` for CMD, ``latent`` for LVDM, ``z_m`` / ``content`` /
  ``first_frame`` for the DMG), for ``batch["caption"]`` the per-video text keys ``text_states`` (B, L, D)
  and ``text_mask`` (B, L) (:func:`encode_text`; modules that use a pooled feature pool these,
  :func:`pool_text`).

Choices and their reasons:

* **1 clip per video, no flip, by default.**  The encoders are the cost the cache removes, and each stored
  clip costs one encoder pass and its bytes (at 512x1024: ~176 KB of CMD latents or 512 KB of per-frame SD
  latents, + 315 KB of text states in float32); the WebVid recipes train 3 epochs, so a video is seen
  about 3 times, and one clip keeps both the write time and the disk at one pass over the data.
  ``clips_per_video = K`` stores K clips (the dataset's own seeded clip starts, e.g. ``start: random``)
  and :class:`LatentCache` picks one per access.  Flipping is off because neither the official CMD nor
  LVDM code flips WebVid clips, and a mirrored clip contradicts captions that say left / right.
* **Posterior means.**  The raw-video path samples the frozen VAE's posterior in training (the official
  code does); a cache stores the mean (sampling after the CMD autoencoder or the MCD-VAE's normalisation
  is not possible from stored moments).  Training on raw video stays the official behaviour.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from videogen.core.files import TEMP_MARK, atomic_path, atomic_write_text

__all__ = ["INDEX_NAME", "LatentCache", "cache_command", "cached_batch", "encode_text", "module_fingerprint",
           "pool_text", "write_cache"]

INDEX_NAME = "index.json"
FORMAT = "videogen.latent_cache"
VERSION = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TEXT_KEYS = ("text_states", "text_mask")  # one per video (the caption), not per clip
_META_KEYS = ("label", "index")  # per video, from the dataset item


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}.safetensors"


# ---- the module side ------------------------------------------------------------------------------------
def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of the module's frozen networks (``module.frozen``: names, parameter / buffer names, dtypes,
    shapes and bytes): what makes two models' cached encodings interchangeable."""
    digest = hashlib.sha256()
    for name in getattr(module, "frozen", ()):
        net = getattr(module, name, None)
        if net is None:
            continue
        digest.update(name.encode())
        for key, value in net.state_dict().items():
            t = value.detach().cpu().contiguous()
            digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cache_id(fingerprint: str) -> int:
    return int(fingerprint[:15], 16)  # fits an int64 tensor


def cached_batch(module: torch.nn.Module, batch: dict[str, Any], keys: tuple[str, ...]) -> bool:
    """True when ``batch`` comes from a :class:`LatentCache` (it has ``cache_id``): then the cache must
    have been written with this module's frozen stages and hold ``keys``, else ``ValueError`` (one line).
    False for raw batches (and the in-memory ``cache_latents`` items of the demos)."""
    if "cache_id" not in batch:
        return False
    own = getattr(module, "_latent_cache_fingerprint", None)
    if own is None:  # the frozen weights never change: hash them once
        own = module_fingerprint(module)
        module._latent_cache_fingerprint = own
    ids = torch.as_tensor(batch["cache_id"]).reshape(-1)
    if bool((ids != _cache_id(own)).any()):
        raise ValueError(f"this latent cache was written with other frozen stages than "
                         f"{type(module).__name__}'s (cache id {int(ids[0])}, this model's "
                         f"{_cache_id(own)}): write one for this recipe with `videogen cache --recipe ...`")
    missing = [k for k in keys if k not in batch]
    if missing:
        have = sorted(k for k, v in batch.items() if isinstance(v, torch.Tensor))
        raise ValueError(f"{type(module).__name__} needs {missing} from its latent cache, which holds "
                         f"{have}: a cache of another stage; write one with `videogen cache --recipe "
                         "<this recipe>`")
    return True


@torch.no_grad()
def encode_text(text_encoder: torch.nn.Module, captions: list[str]) -> dict[str, torch.Tensor]:
    """``{"text_states": (B, L, D), "text_mask": (B, L) bool}`` of a frozen ``TextEncoder``."""
    states, mask = text_encoder(list(captions))
    return {"text_states": states, "text_mask": mask}


def pool_text(states: torch.Tensor, mask: torch.Tensor, masked: bool) -> torch.Tensor:
    """``(B, D)``: ``TextEncoder.pooled`` of cached token states ``(B, L, D)`` and mask ``(B, L)``."""
    weights = (mask if masked else torch.ones_like(mask)).to(states.dtype).unsqueeze(-1)  # (B, L, 1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


# ---- writing ------------------------------------------------------------------------------------------
def _settings(module: torch.nn.Module, dataset: Dataset, clips_per_video: int, flip: bool, shard_size: int,
              dtype: str) -> dict[str, Any]:
    fingerprint = module_fingerprint(module)
    return {"module": f"{type(module).__module__}.{type(module).__qualname__}",
            "dataset": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
            "num_videos": len(dataset), "clips_per_video": clips_per_video, "flip": flip,
            "shard_size": shard_size, "dtype": dtype, "fingerprint": fingerprint,
            "cache_id": _cache_id(fingerprint)}


def _settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def _stack_encode(module: torch.nn.Module, batch_key: str, values: list, batch_size: int
                  ) -> dict[str, torch.Tensor]:
    """``module.cache_encode({batch_key: chunk})`` over ``values`` in chunks of ``batch_size``, concatenated
    on the CPU."""
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(values), batch_size):
        chunk = values[start:start + batch_size]
        if batch_key == "video":
            chunk = torch.stack(chunk).to(module.device)
            if chunk.dtype == torch.uint8:  # a dtype="uint8" dataset: the values training would see
                from videogen.core.video import uint8_to_float

                chunk = uint8_to_float(chunk)
        for key, value in module.cache_encode({batch_key: chunk}).items():
            parts.setdefault(key, []).append(value.detach().cpu())
    return {key: torch.cat(value) for key, value in parts.items()}


def _encode_shard(module: torch.nn.Module, dataset: Dataset, indices: range, clips: int, flip: bool,
                  batch_size: int, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of one shard: per-clip keys ``(n, V, ...)`` (V = clips x (2 if flip)),
    text keys ``(n, ...)``, ``label`` / ``index`` ``(n,)``; captions in the metadata."""
    videos, captions, meta = [], [], {k: [] for k in _META_KEYS}
    for i in indices:
        items = [dataset[i] for _ in range(clips)]  # the dataset's seeded clip choice, draw by draw
        for item in items:
            if "video" not in item:
                raise ValueError(f"dataset item {i} has no 'video': `videogen cache` encodes video datasets")
            videos.append(item["video"])
            if flip:
                videos.append(item["video"].flip(-1))  # mirrored left-right (W axis)
        first = items[0]
        captions.append(first.get("caption"))
        meta["label"].append(first.get("label"))
        meta["index"].append(first.get("index", i))
    variants = clips * (2 if flip else 1)
    tensors = {k: v.reshape(len(indices), variants, *v.shape[1:])
               for k, v in _stack_encode(module, "video", videos, batch_size).items()}
    if all(c is not None for c in captions):
        tensors.update(_stack_encode(module, "caption", captions, batch_size))
    for key, values in meta.items():
        if all(v is not None for v in values):
            tensors[key] = torch.stack([torch.as_tensor(v, dtype=torch.int64) for v in values])
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    metadata = {"captions": json.dumps(captions)} if all(c is not None for c in captions) else {}
    return tensors, metadata


def _save_shard(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write to a temporary name, flush to disk, rename: the final name only ever holds a whole shard."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _shard_key(path: Path) -> str | None:
    """The settings key a finished shard was written with (None when its header cannot be read)."""
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("settings_key")
    except (SafetensorError, OSError):
        return None


def _write_index(out: Path, settings: dict[str, Any], key: str, num_shards: int,
                 source: str | None) -> dict[str, Any]:
    shards = []
    for s in range(num_shards):
        path = out / shard_name(s)
        start = s * settings["shard_size"]
        shards.append({"file": path.name, "start": start,
                       "count": min(settings["shard_size"], settings["num_videos"] - start),
                       "bytes": path.stat().st_size})
    with safe_open(str(out / shards[0]["file"]), "pt") as f:
        keys = {k: {"shape": list(f.get_slice(k).get_shape()[1:]), "dtype": f.get_slice(k).get_dtype(),
                    "per": "video" if k in TEXT_KEYS or k in _META_KEYS else "clip"} for k in f.keys()}
        has_captions = "captions" in (f.metadata() or {})
    index = {"format": FORMAT, "version": VERSION, "settings": settings, "settings_key": key,
             "source": source, "keys": keys, "captions": has_captions, "shards": shards}
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1) + "\n")
    return index


def write_cache(module: torch.nn.Module, dataset: Dataset, out: str | os.PathLike, *,
                clips_per_video: int = 1, flip: bool = False, shard_size: int = 256, batch_size: int = 8,
                rank: int = 0, world_size: int = 1, dtype: str = "float32", source: str | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Encode ``dataset`` through ``module``'s frozen stages (``module.cache_encode``) into ``out``.

    Rank ``rank`` of ``world_size`` writers writes shards ``rank, rank + world_size, ...`` of
    ``shard_size`` videos; finished shards of the same settings are skipped (resume).  Each video gets
    ``clips_per_video`` clips (``dataset[i]`` read that many times) and, with ``flip``, their mirror
    images.  ``dtype`` stores the float keys as float32 / bfloat16 / float16.  Returns ``{"written",
    "skipped", "shards", "complete"}`` (complete: the index exists).
    """
    for name, value, low in (("clips_per_video", clips_per_video, 1), ("shard_size", shard_size, 1),
                             ("batch_size", batch_size, 1), ("world_size", world_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not callable(getattr(module, "cache_encode", None)):
        raise ValueError(f"{type(module).__name__} has no cache_encode: only the stage-2 modules (CMD "
                         "content / motion, LVDM short / long / text-to-video, LaMD DMG) can be cached")
    if len(dataset) == 0:
        raise ValueError(f"dataset {type(dataset).__name__} is empty")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    module.eval()
    settings = _settings(module, dataset, clips_per_video, flip, shard_size, dtype)
    key = _settings_key(settings)
    index_path = out / INDEX_NAME
    num_shards = math.ceil(len(dataset) / shard_size)
    if index_path.is_file():
        index = _read_index(out)
        if index.get("settings_key") != key:
            raise ValueError(f"{out} already holds a latent cache of other settings or frozen stages "
                             f"({index.get('settings', {}).get('module')}); give an empty --out")
        return {"written": 0, "skipped": len(range(rank, num_shards, world_size)), "shards": num_shards,
                "complete": True}
    written = skipped = 0
    mine = range(rank, num_shards, world_size)
    t0 = time.time()
    for n, s in enumerate(mine):
        path = out / shard_name(s)
        for stale in out.glob(f".{path.stem}{TEMP_MARK}*"):  # a killed writer's temporary file
            stale.unlink(missing_ok=True)
        if path.is_file():
            found = _shard_key(path)
            if found != key:
                raise ValueError(f"{path} belongs to another latent cache (or is unreadable); give an "
                                 "empty --out, or delete the shard to rewrite it")
            skipped += 1
            continue
        indices = range(s * shard_size, min((s + 1) * shard_size, len(dataset)))
        tensors, metadata = _encode_shard(module, dataset, indices, clips_per_video, flip, batch_size,
                                          DTYPES[dtype])
        _save_shard(tensors, path, {**metadata, "settings_key": key, "format": FORMAT})
        written += 1
        if progress:
            print(f"videogen cache: rank {rank}: shard {n + 1}/{len(mine)} ({time.time() - t0:.0f} s)",
                  file=sys.stderr)
    complete = all((out / shard_name(s)).is_file() for s in range(num_shards))
    if complete:
        _write_index(out, settings, key, num_shards, source)
    return {"written": written, "skipped": skipped, "shards": num_shards, "complete": complete}


# ---- reading ------------------------------------------------------------------------------------------
def _read_index(root: Path) -> dict[str, Any]:
    path = root / INDEX_NAME
    if not root.is_dir():
        raise FileNotFoundError(f"latent cache {root} does not exist (write it with `videogen cache`)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a latent cache, or `videogen cache` has not finished "
                                "it (rerun it: finished shards are kept)")
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a latent cache index: {exc}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a latent cache index (format {FORMAT!r})")
    if index.get("version") != VERSION:
        raise ValueError(f"{path}: latent cache version {index.get('version')}, this videogen reads "
                         f"{VERSION}; rewrite it with `videogen cache`")
    return index


class LatentCache(Dataset):
    """Map-style dataset over a ``videogen cache`` directory: item ``i`` is video ``i``'s cached keys
    (one of its stored clips) plus ``label`` / ``caption`` / ``index`` where the source had them and
    ``cache_id`` (the frozen stages' fingerprint, checked by the module).

    Args:
        root: the cache directory (``index.json`` + shards).
        seed: seed of the clip choice among the ``clips_per_video`` (x2 with flips) stored ones: drawn from
            ``(seed, index, draw count of that index)``, as ``ClipDataset``'s random starts.
        clip: ``"random"`` (that draw) or ``"first"`` (always the first stored clip, unflipped).

    Being map-style, it goes through ``VideoDataModule``'s seeded, resumable samplers like any dataset.
    Missing index, missing / truncated shards and unreadable shard data raise one-line errors.
    """

    def __init__(self, root: str | os.PathLike, seed: int = 0, clip: str = "random") -> None:
        if clip not in ("random", "first"):
            raise ValueError(f"clip must be 'random' or 'first', got {clip!r}")
        self.root, self.seed, self.clip = Path(root), seed, clip
        index = _read_index(self.root)
        self.index = index
        settings = index["settings"]
        self.num_videos, self.shard_size = int(settings["num_videos"]), int(settings["shard_size"])
        self.variants = int(settings["clips_per_video"]) * (2 if settings["flip"] else 1)
        self.cache_id = int(settings["cache_id"])
        self.keys = dict(index["keys"])
        for shard in index["shards"]:
            path = self.root / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"latent cache shard {path} is missing (rerun `videogen cache`)")
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise ValueError(f"latent cache shard {path} is corrupt: {size} bytes, the index says "
                                 f"{shard['bytes']}; delete it and index.json and rerun `videogen cache`")
        self._draws = torch.zeros(self.num_videos, dtype=torch.int32).share_memory_()
        self._handles: dict[int, Any] = {}
        self._captions: dict[int, list[str] | None] = {}

    def __len__(self) -> int:
        return self.num_videos

    def __getstate__(self) -> dict[str, Any]:  # open shard handles stay in the process that opened them
        state = dict(self.__dict__)
        state["_handles"], state["_captions"] = {}, {}
        return state

    def _open(self, shard: int):
        handle = self._handles.get(shard)
        if handle is None:
            path = self.root / self.index["shards"][shard]["file"]
            try:
                handle = safe_open(str(path), "pt")
                metadata = handle.metadata() or {}
            except (SafetensorError, OSError) as exc:
                raise ValueError(f"latent cache shard {path} is unreadable: {exc}") from None
            if metadata.get("settings_key") != self.index["settings_key"]:
                raise ValueError(f"latent cache shard {path} belongs to another cache than {self.root}/"
                                 f"{INDEX_NAME}; rerun `videogen cache` into an empty folder")
            self._handles[shard] = handle
            self._captions[shard] = json.loads(metadata["captions"]) if "captions" in metadata else None
        return handle

    def _variant(self, index: int) -> int:
        if self.variants == 1 or self.clip == "first":
            return 0
        rng = np.random.default_rng([self.seed, index, int(self._draws[index])])
        self._draws[index] += 1
        return int(rng.integers(self.variants))

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = self.num_videos
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} cached videos")
        index %= n
        shard, row = divmod(index, self.shard_size)
        variant = self._variant(index)
        handle = self._open(shard)
        item: dict[str, Any] = {}
        try:
            for key, info in self.keys.items():
                part = handle.get_slice(key)
                item[key] = part[row:row + 1, variant:variant + 1][0, 0] if info["per"] == "clip" \
                    else part[row:row + 1][0]
        except (SafetensorError, RuntimeError, OSError) as exc:
            path = self.root / self.index["shards"][shard]["file"]
            raise ValueError(f"latent cache shard {path} is unreadable: {exc}") from None
        item = {k: (v.float() if v.is_floating_point() else v) for k, v in item.items()}
        captions = self._captions[shard]
        if captions is not None:
            item["caption"] = captions[row]
        item["cache_id"] = torch.tensor(self.cache_id, dtype=torch.int64)
        return item


# ---- the command --------------------------------------------------------------------------------------
def cache_command(args: Any, config: dict[str, Any], build: Callable[[Any, type], Any]) -> int:
    """``videogen cache``: ``config`` is the recipe (its files merged by the CLI), ``build(config, base)``
    instantiates its ``class_path`` blocks (the CLI's builder); the model's frozen stages encode the
    ``--split`` dataset of the recipe's data module."""
    import lightning.pytorch as pl

    recipes = [str(r) for r in ([args.recipe] if isinstance(args.recipe, (str, Path)) else args.recipe)]
    recipe = recipes[0]
    model_block = config.get("model") if isinstance(config, dict) else None
    data = ((config.get("data") or {}).get("init_args") if isinstance(config, dict) else None) or {}
    split = {"train": "dataset", "val": "val_dataset"}[args.split]
    if not isinstance(model_block, dict) or not isinstance(data.get(split), dict):
        raise ValueError(f"recipe {recipe} needs a model block and data.init_args.{split}")
    if data[split].get("class_path", "").endswith("LatentCache"):
        raise ValueError(f"recipe {recipe} already trains from a latent cache: give the recipe that reads "
                         "the videos")
    rank = int(os.environ.get("RANK", 0)) if args.rank is None else args.rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if args.world_size is None else args.world_size
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    module = build(model_block, pl.LightningModule).to(device)
    block = data[split]
    if str(block.get("class_path", "")).rsplit(".", 1)[-1] == "WebVideoShards":
        # streamed shards: encode every sample once, by position (same clip options)
        import inspect

        from videogen.data.shards import ShardSamples

        takes = inspect.signature(ShardSamples).parameters
        block = {"class_path": "videogen.data.ShardSamples",
                 "init_args": {k: v for k, v in (block.get("init_args") or {}).items() if k in takes}}
    dataset = build(block, Dataset)
    summary = write_cache(module, dataset, args.out, clips_per_video=args.clips_per_video, flip=args.flip,
                          shard_size=args.shard_size, batch_size=args.batch_size, rank=rank, world_size=world,
                          dtype=args.dtype, source=" + ".join(recipes),
                          progress=not args.no_progress)
    print(json.dumps({"out": str(args.out), "rank": rank, "world_size": world, **summary}))
    return 0
