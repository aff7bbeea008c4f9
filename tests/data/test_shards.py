"""videogen.data.shards: webdataset shards read as the map-style datasets read the same videos, split over
ranks and workers, broken samples counted, mid-epoch resume, and training from shards through the CLI."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.helpers import frame_levels, level_frames
from videogen.core.video import write_video
from videogen.data import CsvCaptionVideos, WebVideoShards, write_shards
from videogen.data.datamodule import ResumableDataLoader
from videogen.data.shard_writer import main as shards_main

CLIP = {"num_frames": 3, "frame_stride": 2, "start": "random", "seed": 5}


@pytest.fixture(scope="module")
def webvid(tmp_path_factory):
    """A WebVid-layout CSV over 8 mp4 files of 12..19 level-coded frames (frame k has grey 20 + 10 k)."""
    tmp = tmp_path_factory.mktemp("webvid")
    rows = []
    for i in range(8):
        write_video(tmp / "videos" / f"{1000 + i}.mp4", level_frames(12 + i), fps=8)
        rows.append({"videoid": str(1000 + i), "name": f" caption {i} "})
    with open(tmp / "webvid.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["videoid", "name"])
        writer.writeheader()
        writer.writerows(rows)
    return tmp / "videos", tmp / "webvid.csv"


def _copies(tmp_path: Path, n: int, pattern: str, per_shard: int) -> str:
    """Shards of ``n`` samples (keys 0..n-1) that all hold one 6-frame video; returns the brace pattern."""
    video = write_video(tmp_path / "v.mp4", level_frames(6, 16, 32), fps=8)
    written = write_shards([video] * n, str(tmp_path / pattern), samples_per_shard=per_shard)
    return str(tmp_path / pattern.replace("%05d", f"{{00000..{len(written) - 1:05d}}}"))


def _indices(batches) -> list[int]:
    return [int(i) for b in batches for i in b["index"]]


def test_shards_give_the_map_style_items(webvid, tmp_path):
    ds = CsvCaptionVideos(*webvid, **CLIP, size=(8, 12))
    written = write_shards(ds, str(tmp_path / "shards" / "%05d.tar"), samples_per_shard=3)
    assert [Path(p).name for p in written] == ["00000.tar", "00001.tar", "00002.tar"]
    assert json.loads((tmp_path / "shards" / "00002_stats.json").read_text())["successes"] == 2
    assert not list((tmp_path / "shards").glob("*.partial"))
    with tarfile.open(written[0]) as tar:  # the video2dataset layout: key.mp4 (the file as is), .txt, .json
        assert sorted(tar.getnames()[:3]) == ["000000000.json", "000000000.mp4", "000000000.txt"]
        assert tar.extractfile("000000001.mp4").read() == (webvid[0] / "1001.mp4").read_bytes()
        assert json.loads(tar.extractfile("000000001.json").read())["caption"] == "caption 1"

    shards = WebVideoShards(str(tmp_path / "shards" / "{00000..00002}.tar"), **CLIP, size=(8, 12))
    for epoch in (0, 1):  # the map-style dataset's draw `epoch` of each index: the same random start
        shards.set_epoch(epoch)
        items = list(shards)
        assert sorted(int(it["index"]) for it in items) == list(range(8))
        for it in items:
            ref = ds[int(it["index"])]
            assert set(it) == set(ref) == {"video", "index", "caption"}
            assert it["caption"] == ref["caption"] == f"caption {int(it['index'])}"
            assert it["video"].dtype == ref["video"].dtype and torch.equal(it["video"], ref["video"])
    levels = frame_levels(items[0]["video"])
    assert np.allclose(np.diff(levels), 20, atol=3)  # stride 2 of the source frames
    # dtype="uint8": the map-style uint8 items too
    ds8 = CsvCaptionVideos(*webvid, **CLIP, size=(8, 12), dtype="uint8")
    for it in WebVideoShards(str(tmp_path / "shards" / "{00000..00002}.tar"), **CLIP, size=(8, 12),
                             dtype="uint8"):
        ref = ds8[int(it["index"])]
        assert it["video"].dtype == torch.uint8 and torch.equal(it["video"], ref["video"])


def test_shard_samples_read_by_position_give_the_map_style_items(webvid, tmp_path):
    """``ShardSamples`` (what ``videogen cache`` encodes for a shards recipe): item i is the i-th sample
    of the listed shards, the map-style item of epoch 0; counts from the stats files or, without them,
    the tar headers; a corrupt sample is skipped and counted."""
    from videogen.data import ShardSamples

    ds = CsvCaptionVideos(*webvid, **CLIP, size=(8, 12))
    write_shards(ds, str(tmp_path / "shards" / "%05d.tar"), samples_per_shard=3)
    pattern = str(tmp_path / "shards" / "{00000..00002}.tar")
    samples = ShardSamples(pattern, **CLIP, size=(8, 12))
    assert len(samples) == 8
    for i in (0, 4, 3, 7):  # across shards, out of order
        it, ref = samples[i], ds[i]
        assert int(it["index"]) == i and it["caption"] == ref["caption"]
        assert torch.equal(it["video"], ref["video"])
    for stats in (tmp_path / "shards").glob("*_stats.json"):
        stats.unlink()
    assert len(ShardSamples(pattern, **CLIP)) == 8  # counted from the tar headers
    # a sample whose video is garbage: skipped (the next one comes), counted
    (tmp_path / "bad").mkdir()
    _tar(tmp_path / "bad" / "00000.tar", [{"000000000.mp4": b"not a video", "000000000.txt": b"x"},
                                          {"000000001.mp4": (webvid[0] / "1001.mp4").read_bytes(),
                                           "000000001.txt": b"y"}])
    bad = ShardSamples(str(tmp_path / "bad" / "00000.tar"), **CLIP)
    with pytest.warns(UserWarning, match="skipping sample 0"):
        assert bad[0]["caption"] == "y"
    assert bad.num_skipped == 1
    with pytest.raises(ValueError, match="local shards only"):
        ShardSamples("https://example.com/{00000..00001}.tar")


def test_shuffling_is_seeded_and_epoch_aware(webvid, tmp_path):
    write_shards(CsvCaptionVideos(*webvid), str(tmp_path / "s" / "%05d.tar"), samples_per_shard=2)
    url = str(tmp_path / "s" / "{00000..00003}.tar")

    def order(epoch, **kw):
        ds = WebVideoShards(url, num_frames=2, shuffle_buffer=3, **kw)
        ds.set_epoch(epoch)
        return [int(it["index"]) for it in ds]

    assert order(0) == order(0) and sorted(order(0)) == list(range(8))
    assert order(0) != order(1) and order(0) != order(0, seed=1)
    assert order(3, shuffle=False) == list(range(8))


def test_pipe_and_fsspec_urls(tmp_path):
    url = _copies(tmp_path, 4, "%05d.tar", per_shard=2)
    opts = {"num_frames": 2, "shuffle": False, "require_caption": False}
    local = [int(it["index"]) for it in WebVideoShards(url, **opts)]
    piped = WebVideoShards(f"pipe:cat {url}", **opts)
    assert [int(it["index"]) for it in piped] == local == [0, 1, 2, 3]
    import fsspec

    memory = fsspec.filesystem("memory")
    for i in range(2):
        memory.pipe(f"/test-shards/{i}.tar", (tmp_path / f"{i:05d}.tar").read_bytes())
    remote = WebVideoShards("memory://test-shards/{0..1}.tar", **opts)  # fsspec: not a webdataset scheme
    assert [int(it["index"]) for it in remote] == local


def test_ranks_and_workers_read_every_sample_once(tmp_path):
    """2 ranks x 2 DataLoader workers over 8 shards of 2: every sample once per epoch, equal batch counts.

    (Exactly once needs each worker's share of ``epoch_size`` to be what its shards hold; otherwise a worker
    reads some samples again or leaves some out, as the next case shows.)"""
    url = _copies(tmp_path, 16, "%05d.tar", per_shard=2)
    seen = {}
    for epoch in (0, 1):
        per_rank = []
        for rank in (0, 1):
            shards = WebVideoShards(url, num_frames=2, epoch_size=16, require_caption=False)
            shards.set_distributed(rank, 2, batch_size=2)
            shards.set_epoch(epoch)
            loader = DataLoader(shards, batch_size=2, num_workers=2)
            batches = list(loader)
            assert len(batches) == len(loader) == 4
            per_rank.append(_indices(batches))
        assert sorted(per_rank[0] + per_rank[1]) == list(range(16))
        seen[epoch] = per_rank
    assert seen[0] != seen[1]
    # 7 shards: ranks still get equal counts (the DistributedSampler's padding, here by reading again)
    shards = WebVideoShards(str(tmp_path / "{00000..00006}.tar"), num_frames=2, epoch_size=14,
                            require_caption=False)
    counts = []
    for rank in (0, 1):
        shards.set_distributed(rank, 2, batch_size=3)
        loader = DataLoader(shards, batch_size=3, num_workers=2)
        batches = list(loader)
        assert len(batches) == len(loader) == 3  # ceil(7 / 3): two full batches, then one of 1
        assert [len(b["index"]) for b in batches] == [3, 3, 1]
        counts.append(len(_indices(batches)))
    assert counts == [7, 7]
    with pytest.raises(ValueError, match="needs epoch_size"):
        WebVideoShards(url, num_frames=2).set_distributed(0, 2)


def _tar(path: Path, samples: list[dict], truncate: bool = False) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for sample in samples:
            for name, data in sample.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2 + 100] if truncate else data)


def test_broken_samples_are_skipped_and_counted(tmp_path, make_video):
    good = make_video(tmp_path / "good.mp4").read_bytes()
    _tar(tmp_path / "a.tar", [
        {"000000001.mp4": good, "000000001.txt": b"fine"},
        {"000000002.mp4": b"not a video", "000000002.txt": b"undecodable"},
        {"000000003.mp4": good},  # no caption
        {"000000004.txt": b"no video"},
        {"000000005.mp4": good, "000000005.json": b'{"caption": "from json", "label": 4}'},
    ])
    _tar(tmp_path / "b.tar", [{f"00000001{i}.mp4": good, f"00000001{i}.txt": b"x"} for i in range(4)],
         truncate=True)
    url = str(tmp_path / "{a,b}.tar")
    shards = WebVideoShards(url, num_frames=4, shuffle=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = list(shards)
    keys = [int(it["index"]) for it in items]
    assert keys[:2] == [1, 5] and items[1]["caption"] == "from json" and int(items[1]["label"]) == 4
    assert 0 < len(keys) - 2 < 4  # b.tar: the samples before the cut
    assert shards.num_skipped == 4  # 3 broken samples + the truncated shard
    assert sum("skipping" in str(w.message) for w in caught) == 4
    # counted in DataLoader workers, seen by the main process; without captions required: one fewer skip
    loose = WebVideoShards(url, num_frames=4, shuffle=False, require_caption=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = _indices(DataLoader(loose, batch_size=1, num_workers=2))
    assert 3 in got and loose.num_skipped == 3
    with pytest.raises(FileNotFoundError, match="shards not found"):
        WebVideoShards(str(tmp_path / "{a,c}.tar"))


def test_resume_mid_epoch_continues_with_the_same_batches(tmp_path):
    url = _copies(tmp_path, 20, "%05d.tar", per_shard=3)  # 7 shards

    def loader(consumed=None):
        shards = WebVideoShards(url, num_frames=2, shuffle_buffer=4, epoch_size=20, require_caption=False)
        shards.set_distributed(0, 1, batch_size=3)
        dl = ResumableDataLoader(shards, batch_size=3, num_workers=2, consumed=consumed, epoch=lambda: 1)
        if consumed is not None:
            dl.load_state_dict(dl.state_dict())  # what Lightning does with a mid-epoch checkpoint
        return dl

    full = [b["index"].tolist() for b in loader()]
    assert len(full) == 7 and sorted(sum(full, [])) == list(range(20))
    resumed = [b["index"].tolist() for b in loader(consumed=lambda: 3)]
    assert resumed == full[3:]
    resumed_loader = loader(consumed=lambda: 3)
    list(resumed_loader)
    assert [b["index"].tolist() for b in resumed_loader] == full  # the next pass: whole again


def test_write_shards_command_and_errors(webvid, tmp_path, capsys):
    root, table = webvid
    assert shards_main([str(tmp_path / "cli" / "%03d.tar"), "--samples-per-shard", "5", "csv", str(root),
                        str(table)]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").glob("*.tar")) == ["000.tar", "001.tar"]
    assert "wrote 2 shards" in capsys.readouterr().out
    with pytest.raises(ValueError, match="printf integer field"):
        write_shards([root / "1000.mp4"], str(tmp_path / "x.tar"))
    with pytest.warns(UserWarning, match="leaving out entry"), pytest.raises(ValueError, match="none of"):
        write_shards([root / "missing.mp4", root / "missing2.mp4"], str(tmp_path / "y" / "%d.tar"))
    assert not list((tmp_path / "y").iterdir())  # no empty or partial shard left behind


def _synthetic_shards(workdir: Path, n: int = 32) -> None:
    """``workdir/shards/0000{0..3}.tar``: ``n`` synthetic 8x32x32 clips (the tiny recipes' data)."""
    from videogen.data import SyntheticVideoDataset

    write_shards(SyntheticVideoDataset(num_videos=n, num_frames=8, size=32, seed=0),
                 str(workdir / "shards" / "%05d.tar"), samples_per_shard=n // 4)


SHARDS_RECIPE = "lvdm_tiny_autoencoder_shards.yaml"
SMALL = ["--data.init_args.dataset.init_args.epoch_size=32", "--trainer.limit_val_batches=1",
         "--trainer.check_val_every_n_epoch=1"]


def test_tiny_recipe_trains_from_shards(tmp_path):
    from tests._recipes import QUIET, fit

    _synthetic_shards(tmp_path)
    fit(tmp_path, SHARDS_RECIPE, [*QUIET, *SMALL], epochs=1)  # 32 clips / 8 = 4 steps
    run = tmp_path / "outputs" / "lvdm_tiny_autoencoder_shards" / "checkpoints" / "last.ckpt"
    assert torch.load(run, map_location="cpu", weights_only=True)["global_step"] == 4


def test_tiny_recipe_resumed_mid_epoch_from_shards_gives_the_same_weights(tmp_path):
    from tests._recipes import QUIET, assert_same_checkpoints, fit

    _synthetic_shards(tmp_path)
    every = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             "--trainer.callbacks.dirpath=steps", "--trainer.callbacks.every_n_train_steps=2",
             "--trainer.callbacks.save_top_k=-1"]
    fit(tmp_path, SHARDS_RECIPE, [*QUIET, *SMALL, *every], epochs=1)
    run = tmp_path / "outputs" / "lvdm_tiny_autoencoder_shards" / "checkpoints" / "last.ckpt"
    (mid,) = (tmp_path / "steps").glob("*step=2.ckpt")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "shards").symlink_to(tmp_path / "shards", target_is_directory=True)
    fit(resumed, SHARDS_RECIPE, [*QUIET, *SMALL], epochs=1, ckpt=mid)
    # the resumed run saw the same last 2 batches, in the same order: identical weights
    assert_same_checkpoints(run, resumed / "outputs" / "lvdm_tiny_autoencoder_shards" / "checkpoints" /
                            "last.ckpt", optimizer=True)


@pytest.mark.ddp
def test_tiny_recipe_trains_from_shards_with_two_ddp_processes(tmp_path):
    from tests._recipes import fit_ddp

    _synthetic_shards(tmp_path)
    # 32 clips / (8 x 2 ranks) = 2 steps per epoch, each rank reads 2 of the 4 shards
    # (the discriminator takes no part before disc_start: the LVDM autoencoder recipes' strategy)
    ckpt = fit_ddp(tmp_path, SHARDS_RECIPE, "ddp_find_unused_parameters_true",
                   [*SMALL, "--trainer.max_epochs=2"])
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1
