"""Test-set generation and streaming evaluation: the two halves of reproducing a paper's quality table.

``generate_split`` animates every item of a dataset split ``N`` times with any inference object
(``LaMD``, ...) and writes ``fake/<item>_s<k>.mp4`` plus ``fake/manifest.jsonl`` (one line per video:
file, source item, sample number, label, caption); with ``write_real`` it also writes the split's own
clips to ``real/<item>.mp4`` (with their manifest), so that real and generated videos are scored with
the same frames, size and codec.  It is batched, runs on a device, shows a progress bar and resumes:
a video counts as done only if the run that wrote it logged it (``generate_done.jsonl``) and it still
decodes with that many frames.  Every file is written to a temporary name and renamed when complete,
and ``out`` is locked while a run writes into it (a second run stops with one line naming the first).

``evaluate_folders`` reads two folders in batches and feeds ``videogen.core.metrics`` on a device, so
memory is bounded by the batch, not the set: FVD/KVD keep 400 float64 features per video, FID keeps
running sums.  Unreadable videos are skipped and counted.  Paired metrics (PSNR, SSIM, LPIPS) pair each
generated video with its source (``source`` of the manifest, else the same relative name) and stop with
the unpaired names listed.  Per-class FVD groups by the manifests' ``label`` (else the sub-folder name).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videogen.core.files import FolderLock, atomic_write_text, is_temporary
from videogen.core.video import VIDEO_EXTENSIONS, from_uint8, read_video, resize_center_crop, write_video

__all__ = ["MANIFEST", "METRICS", "VideoEntry", "evaluate_folders", "generate_split", "index_folder"]

MANIFEST = "manifest.jsonl"
#: ``generate_split``'s record of the items it has read (label / caption), for resuming without re-reading
ITEMS = "generate_items.jsonl"
#: ``generate_split``'s record of the videos it has finished (file, frames): what a resumed run trusts
DONE = "generate_done.jsonl"
METRICS = ("fvd", "kvd", "cfvd", "fid", "lpips", "clipsim", "psnr", "ssim")
PAIRED = ("psnr", "ssim", "lpips")


@dataclass(frozen=True)
class VideoEntry:
    """One video of a folder: its file, its key (relative name without suffix), the key of the real video
    it was generated from (``source``), its group (class / subject, for cFVD) and caption."""

    file: Path
    key: str
    source: str
    group: str | None = None
    caption: str | None = None


def index_folder(folder: str | os.PathLike) -> list[VideoEntry]:
    """The videos of ``folder`` (recursively), described by its ``manifest.jsonl`` when it has one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    manifest = folder / MANIFEST
    entries: list[VideoEntry] = []
    if manifest.is_file():
        for n, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                file = _inside(folder, row["file"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{manifest}:{n}: not a manifest line ({err})") from None
            if file is None:
                raise ValueError(f"{manifest}:{n}: file {row['file']!r} lies outside {folder}: a manifest "
                                 "names videos inside its own folder only")
            key = str(Path(row["file"]).with_suffix(""))
            label = row.get("label")
            entries.append(VideoEntry(file, key, str(row.get("source", key)),
                                      None if label is None else str(label), row.get("caption")))
    else:
        for file in sorted(p for p in folder.rglob("*")
                           if p.suffix.lower() in VIDEO_EXTENSIONS and not is_temporary(p)):
            rel = file.relative_to(folder)
            key = str(rel.with_suffix(""))
            group = str(rel.parent) if rel.parent != Path(".") else None
            entries.append(VideoEntry(file, key, key, group))
    if not entries:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {folder}")
    return entries


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` if it resolves inside ``folder`` (no ``..``, absolute path or link out), else
    None."""
    if not isinstance(name, str):
        raise TypeError(f"'file' must be a string, got {name!r}")
    root = folder.resolve()
    path = (folder / name).resolve()
    return folder / name if path == root or root in path.parents else None


class _Reader:
    """Reads videos as float ``(C, T, H, W)`` in [-1, 1]; unreadable ones are counted and named."""

    def __init__(self, num_frames: int, size: int | None):
        self.num_frames, self.size = num_frames, size
        self._skipped: dict[Path, str] = {}  # each unreadable file once, however often it is asked for

    @property
    def skipped(self) -> list[str]:
        return list(self._skipped.values())

    def read(self, file: Path) -> torch.Tensor | None:
        if file in self._skipped:
            return None
        try:
            video = from_uint8(read_video(file, num_frames=self.num_frames))  # (T, H, W, C) -> (C, T, H, W)
        except Exception as err:  # decord raises RuntimeError/DECORDError on corrupt files
            self._skipped[file] = f"{file.name}: {str(err).splitlines()[0][:120]}"
            warnings.warn(f"skipping unreadable video {file}: {err}", stacklevel=2)
            return None
        return resize_center_crop(video, self.size) if self.size else video

    def batches(self, entries: Sequence[VideoEntry], batch_size: int
                ) -> Iterator[tuple[torch.Tensor, list[VideoEntry]]]:
        """``(videos (B, C, T, H, W), their entries)``; skipped files are left out of the batch."""
        for start in range(0, len(entries), batch_size):
            chunk = [(e, self.read(e.file)) for e in entries[start:start + batch_size]]
            chunk = [(e, v) for e, v in chunk if v is not None]
            if chunk:
                yield torch.stack([v for _, v in chunk]), [e for e, _ in chunk]


def _pairs(real: Sequence[VideoEntry], fake: Sequence[VideoEntry]) -> list[tuple[VideoEntry, VideoEntry]]:
    by_key = {e.key: e for e in real}
    missing = sorted({f.source for f in fake if f.source not in by_key})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"paired metrics ({'/'.join(PAIRED)}) need a real video for every generated one: no "
                         f"real video for source {shown} (pairing uses the fake manifest's 'source', else "
                         "equal names)")
    return [(by_key[f.source], f) for f in fake]


def evaluate_folders(real: str | os.PathLike, fake: str | os.PathLike, metrics: Sequence[str], *,
                     num_frames: int = 16, size: int | None = None, batch_size: int = 16,
                     device: str | torch.device = "cpu", i3d: str | os.PathLike | None = None,
                     resize: str = "direct", real_stats: str | os.PathLike | None = None,
                     inception: str | os.PathLike | None = None,
                     lpips_backbone: str | os.PathLike | None = None, clip_model: str | None = None,
                     clip_weights: str | os.PathLike | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Score the videos of ``fake`` against ``real``; returns a JSON-ready dict (see the module docstring).

    ``real_stats``: a ``.safetensors`` file of real I3D statistics: read when it exists (the real folder
    is then not read for FVD), written after computing them otherwise.
    """
    from tqdm.auto import tqdm

    from videogen.core.metrics import load_i3d
    from videogen.core.metrics.fvd import FrechetVideoDistance, KernelVideoDistance

    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise ValueError(f"metrics must be among {', '.join(METRICS)}, got {list(metrics)}")
    if batch_size < 1 or num_frames < 1:
        raise ValueError(f"batch_size and num_frames must be >= 1, got {batch_size}, {num_frames}")
    device = torch.device(device)
    # build every metric first: a missing weight file fails before any video is read
    feature = [m for m in ("fvd", "kvd", "cfvd") if m in metrics]
    extractor = load_i3d(i3d, device=device) if feature else None
    fvd = FrechetVideoDistance(extractor, resize=resize).to(device) if {"fvd",
                                                                        "cfvd"} & set(metrics) else None
    kvd = KernelVideoDistance(extractor, resize=resize).to(device) if "kvd" in metrics else None
    stats_path = Path(real_stats) if real_stats else None
    stats_loaded = (fvd is not None and stats_path is not None and stats_path.is_file()
                    and "cfvd" not in metrics)
    if stats_loaded:
        fvd.load_real_stats(stats_path)
    others: dict[str, Any] = {}
    if "fid" in metrics:
        from videogen.core.metrics.fid import FrechetInceptionDistance
        others["fid"] = FrechetInceptionDistance(inception).to(device)
    if "lpips" in metrics:
        from videogen.core.metrics.lpips import VideoLPIPS
        others["lpips"] = VideoLPIPS(pretrained_backbone_path=lpips_backbone).to(device)
    if "clipsim" in metrics:
        from videogen.core.metrics.clipsim import DEFAULT_MODEL, CLIPSimilarity
        others["clipsim"] = CLIPSimilarity(clip_model or DEFAULT_MODEL, clip_weights).to(device)
    real_entries, fake_entries = index_folder(real), index_folder(fake)
    if "clipsim" in others and any(e.caption is None for e in fake_entries):
        raise ValueError("clipsim needs a caption for every generated video (the 'caption' of "
                         f"{fake}/{MANIFEST})")
    groups = sorted({e.group for e in [*real_entries, *fake_entries] if e.group is not None})
    group_id = {g: i for i, g in enumerate(groups)}
    if "cfvd" in metrics and any(e.group is None for e in [*real_entries, *fake_entries]):
        raise ValueError("cfvd needs a group for every video: a 'label' in the manifests or class "
                         "sub-folders")

    reader = _Reader(num_frames, size)
    unpaired = any(m in metrics for m in ("fvd", "kvd", "cfvd", "fid", "clipsim"))
    paired = [m for m in PAIRED if m in metrics]
    pairs = _pairs(real_entries, fake_entries) if paired else []
    total = (len(fake_entries) + len(real_entries) if unpaired else 0) + len(pairs)
    bar = tqdm(total=total, desc="evaluate", unit="video", disable=not progress)
    for split, entries in (("real", real_entries), ("fake", fake_entries)):
        if not unpaired:
            break
        for videos, batch in reader.batches(entries, batch_size):
            videos = videos.to(device)
            group = torch.tensor([group_id.get(e.group, -1) for e in batch], device=device)
            if fvd is not None and not (split == "real" and stats_loaded):
                fvd.update(videos, real=split == "real", group=group if "cfvd" in metrics else None)
            if kvd is not None:
                kvd.update(videos, real=split == "real")
            if "fid" in others:
                others["fid"].update(videos, real=split == "real")
            if "clipsim" in others and split == "fake":
                others["clipsim"].update(videos, [e.caption for e in batch])
            bar.update(len(batch))
    sums = {m: 0.0 for m in ("psnr", "ssim") if m in paired}
    num_pairs = 0
    if paired:
        from videogen.core.metrics.psnr_ssim import psnr_per_video, ssim_per_video
        for start in range(0, len(pairs), batch_size):
            # samples of one source are adjacent (generate's manifests): decode each real video once per batch
            reals = {r.file: reader.read(r.file) for r, _ in pairs[start:start + batch_size]}
            chunk = [(reals[r.file], reader.read(f.file)) for r, f in pairs[start:start + batch_size]]
            chunk = [(r, f) for r, f in chunk if r is not None and f is not None]
            bar.update(len(pairs[start:start + batch_size]))
            if not chunk:
                continue
            r = torch.stack([c[0] for c in chunk]).to(device)
            f = torch.stack([c[1] for c in chunk]).to(device)
            if r.shape != f.shape:
                raise ValueError(f"paired videos differ in shape: real {tuple(r.shape[1:])}, generated "
                                 f"{tuple(f.shape[1:])}; give --size (and enough frames in both)")
            num_pairs += len(chunk)
            if "psnr" in sums:
                sums["psnr"] += float(psnr_per_video(f, r).double().sum())
            if "ssim" in sums:
                sums["ssim"] += float(ssim_per_video(f, r).double().sum())
            if "lpips" in others:
                others["lpips"].update(f, r)
    bar.close()

    results: dict[str, Any] = {"num_real": len(real_entries), "num_fake": len(fake_entries),
                               "num_frames": num_frames, "size": size, "num_skipped": len(reader.skipped),
                               "skipped": reader.skipped[:20]}
    if fvd is not None and "fvd" in metrics:
        results["fvd"] = float(fvd.compute())
        results["fvd_protocol"] = fvd.protocol
        if stats_path is not None and not stats_loaded:
            stats_path.parent.mkdir(parents=True, exist_ok=True)
            fvd.save_real_stats(stats_path)
    if "cfvd" in metrics:
        mean, std, per_group = fvd.compute_grouped()
        results.update(cfvd_mean=float(mean), cfvd_std=float(std),
                       cfvd_per_group={groups[int(k)]: float(v) for k, v in per_group.items()})
    if kvd is not None:
        results["kvd"] = float(kvd.compute())
    for name in ("fid", "clipsim"):
        if name in others:
            results[name] = float(others[name].compute())
    if paired:
        if num_pairs == 0:
            raise ValueError("no readable pair of real and generated videos to score")
        results["num_pairs"] = num_pairs
        for name, total in sums.items():
            results[name] = total / num_pairs
        if "lpips" in others:
            results["lpips"] = float(others["lpips"].compute())
    return results


def generate_split(model: Any, dataset: Any, out: str | os.PathLike, samples_per_item: int = 1, *,
                   batch_size: int = 16, device: str | torch.device = "cpu", seed: int = 0,
                   write_real: bool = True, fps: float = 8.0, progress: bool = True,
                   conditions: Sequence[str] | None = None, **generate_kwargs: Any) -> dict[str, int]:
    """Write ``samples_per_item`` generated videos per dataset item (and the real clips) under ``out``.

    ``model`` is an inference object with ``generate(image=..., label=..., text=..., generator=...)``
    and a ``conditions`` tuple naming what it takes (``"image"``, ``"label"``, ``"text"``).  Items are
    the dataset's dicts (``video (C, T, H, W)``, optional ``label`` / ``caption``).  ``conditions``: what
    each item gives the model (default: the label and / or caption it takes, and the first frame only
    where the model needs it, so CMD is scored on class / text-to-video, LaMD on image-to-video; pass
    ``("image",)`` to score CMD's or LVDM's image-to-video).  The noise of each
    batch comes from a generator seeded with ``(seed, first job)``: a fresh run is reproducible; a
    resumed one regroups the remaining jobs and so draws other noise for them, and reads only the items
    it still has to generate or write (the others' labels and captions are in ``out/generate_items.jsonl``):
    resume into ``out`` only with the same dataset.
    """
    if samples_per_item < 1 or batch_size < 1:
        raise ValueError(f"samples_per_item and batch_size must be >= 1, got {samples_per_item}, "
                         f"{batch_size}")
    takes = tuple(getattr(model, "conditions", ("image",)))
    if conditions is None:
        required = tuple(getattr(model, "required_conditions", ("image",) if "image" in takes else ()))
        conditions = tuple(c for c in takes if c in required or c in ("label", "text"))
    bad = [c for c in conditions if c not in takes]
    if bad:
        raise ValueError(f"{type(model).__name__} does not take {bad}; it takes {takes or 'no condition'}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, "generate"):  # two runs into one folder would mix their samples
        return _generate_locked(model, dataset, out, samples_per_item, batch_size, device, seed, write_real,
                                fps, progress, conditions, generate_kwargs)


def _finished(out: Path) -> dict[str, int]:
    """The videos an earlier run finished (``out/generate_done.jsonl``: file -> frames) that still decode
    with that many frames; anything else under ``out`` is generated again."""
    from videogen.core.decoders import open_video

    done: dict[str, int] = {}
    log = out / DONE
    if not log.is_file():
        return done
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
            name, frames = str(row["file"]), int(row["frames"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut short by a killed run
        try:
            reader = open_video(out / name)
            try:
                if len(reader) == frames:
                    done[name] = frames
            finally:
                reader.close()
        except Exception:  # noqa: BLE001 - missing or undecodable: not done
            pass
    return done


def _generate_locked(model: Any, dataset: Any, out: Path, samples_per_item: int, batch_size: int,
                     device: str | torch.device, seed: int, write_real: bool, fps: float, progress: bool,
                     conditions: Sequence[str], generate_kwargs: dict[str, Any]) -> dict[str, int]:
    from tqdm.auto import tqdm

    from videogen.core.training import derived_seed

    fake_dir, real_dir = out / "fake", out / "real"
    fake_dir.mkdir(parents=True, exist_ok=True)
    done = _finished(out)

    def record(name: str, video: torch.Tensor) -> None:  # after the video is in place under its name
        with (out / DONE).open("a") as log:
            log.write(json.dumps({"file": name, "frames": int(video.shape[1])}) + "\n")  # (C, T, H, W)

    n = len(dataset)
    jobs = [(i, k) for i in range(n) for k in range(samples_per_item)]
    todo = [(j, i, k) for j, (i, k) in enumerate(jobs) if f"fake/{i:06d}_s{k:03d}.mp4" not in done]
    written = 0
    # item -> label / caption for the manifests; kept in OUT/ITEMS as items are read, so that a resumed
    # run does not read (decode) the finished items again only to name them in the manifests
    meta: dict[int, dict[str, Any]] = {}
    items_file = out / ITEMS
    if items_file.is_file():
        for line in items_file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run: that item is read again
                continue
            meta[int(row.pop("item"))] = row
    cache: dict[int, dict] = {}

    def load(i: int) -> dict:
        if i not in cache:
            cache[i] = dataset[i]
            item = cache[i]
            fresh = i not in meta
            meta[i] = {**({"label": int(item["label"])} if "label" in item else {}),
                       **({"caption": item["caption"]} if "caption" in item else {})}
            if fresh:
                with items_file.open("a") as f:
                    f.write(json.dumps({"item": i, **meta[i]}) + "\n")
        return cache[i]

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="generate", unit="video",
               disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        items = [load(i) for _, i, _ in batch]
        kwargs: dict[str, Any] = dict(generate_kwargs, num_samples=len(batch))
        if "image" in conditions:
            kwargs["image"] = torch.stack([it["video"][:, 0] for it in items]).to(device)  # (B, C, H, W)
        if "label" in conditions:
            if any("label" not in it for it in items):
                raise ValueError("this model is class-conditional but the dataset items have no 'label'")
            kwargs["label"] = torch.stack([it["label"] for it in items]).to(device)
        if "text" in conditions:
            if any("caption" not in it for it in items):
                raise ValueError("this model is text-conditional but the dataset items have no 'caption'")
            kwargs["text"] = [it["caption"] for it in items]
        gen = torch.Generator(device=device).manual_seed(derived_seed(seed, batch[0][0]))
        with torch.no_grad():
            videos = model.generate(generator=gen, progress=False, **kwargs).float().cpu()  # (B, C, T, H, W)
        for (_, i, k), video in zip(batch, videos):
            write_video(fake_dir / f"{i:06d}_s{k:03d}.mp4", video, fps=fps)
            record(f"fake/{i:06d}_s{k:03d}.mp4", video)
            written += 1
        bar.update(len(batch))
        last = batch[-1][1]  # jobs run item by item: earlier items are done
        for i in [i for i in cache if i < last]:
            del cache[i]
    bar.close()
    rows_fake, rows_real = [], []
    for i in range(n):
        if write_real and f"real/{i:06d}.mp4" not in done:
            write_video(real_dir / f"{i:06d}.mp4", load(i)["video"], fps=fps)
            record(f"real/{i:06d}.mp4", load(i)["video"])
        if i not in meta:
            load(i)
        cache.pop(i, None)
        rows_real.append({"file": f"{i:06d}.mp4", "source": f"{i:06d}", **meta[i]})
        rows_fake += [{"file": f"{i:06d}_s{k:03d}.mp4", "source": f"{i:06d}", "sample": k, **meta[i]}
                      for k in range(samples_per_item)]
    atomic_write_text(fake_dir / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows_fake))
    if write_real:
        atomic_write_text(real_dir / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows_real))
    return {"items": n, "videos": len(jobs), "written": written, "skipped_existing": len(jobs) - len(todo)}
