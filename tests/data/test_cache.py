"""videogen.data.cache: ``videogen cache`` writes shards atomically and resumably (a killed writer leaves
no shard a reader takes for whole; two ranks write the same cache as one), ``LatentCache`` serves the
modules' pre-encoded keys, the stage-2 loss from a cached batch equals the loss from the raw batch (CMD
motion with text, LVDM text-to-video with the empty-caption dropout), a tiny recipe trains and resumes
from a cache through ``videogen fit``, and bad caches stop with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import default_collate

from tests._recipes import QUIET, RECIPES, ROOT, assert_same_checkpoints
from videogen.cli import main
from videogen.data import LatentCache, SyntheticVideoDataset

NUM_VIDEOS = 10  # 3 shards of 4


def _items(cache: LatentCache) -> list[dict]:
    return [cache[i] for i in range(len(cache))]


def _assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k], k


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A workdir with an (untrained, seeded) tiny CMD autoencoder of recipes/cmd_tiny_autoencoder.yaml as a
    save_pretrained directory, recipes/cmd_tiny_motion.yaml on it with 10 videos, and its cache written by
    one process (the reference)."""
    from videogen.cmd import CMDAutoencoder

    work = tmp_path_factory.mktemp("cache")
    ae_cfg = yaml.safe_load((RECIPES / "cmd_tiny_autoencoder.yaml").read_text())
    torch.manual_seed(0)
    CMDAutoencoder(**ae_cfg["model"]["init_args"]["autoencoder"]["init_args"]).save_pretrained(work / "ae")
    recipe = yaml.safe_load((RECIPES / "cmd_tiny_motion.yaml").read_text())
    recipe["model"]["init_args"]["autoencoder"] = str(work / "ae")
    recipe["data"]["init_args"]["dataset"]["init_args"]["num_videos"] = NUM_VIDEOS
    (work / "motion.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["cache", "--recipe", str(work / "motion.yaml"), "--out", str(work / "ref"),
                 "--shard-size", "4", "--no-progress"]) == 0
    return work


def _cache_cmd(work: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "videogen", "cache", "--recipe", str(work / "motion.yaml"), "--out",
            str(out), "--shard-size", "4", "--no-progress", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_reference_cache_holds_the_autoencoder_encodings_of_the_dataset(tiny):
    from videogen.cmd import load_cmd_autoencoder

    cache = LatentCache(tiny / "ref")
    index = json.loads((tiny / "ref" / "index.json").read_text())
    assert len(cache) == NUM_VIDEOS and [s["count"] for s in index["shards"]] == [4, 4, 2]
    assert index["settings"]["clips_per_video"] == 1 and not index["settings"]["flip"]
    ae = load_cmd_autoencoder(tiny / "ae").eval()
    data = SyntheticVideoDataset(NUM_VIDEOS, num_frames=8, size=32, seed=0)
    for i in (0, 6, 9):
        content, motion = ae.encode(data[i]["video"][None])
        item = cache[i]
        torch.testing.assert_close(item["content_frame"], content[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(item["motion_latent"], motion[0], rtol=1e-5, atol=1e-6)
        assert item["label"] == data[i]["label"] and item["caption"] == data[i]["caption"]
        assert item["index"] == i and "video" not in item


def test_a_recipe_that_streams_shards_is_cached_sample_by_sample(tiny, tmp_path):
    """WebVid's path: shards (video2dataset layout) -> `videogen cache` -> LatentCache. The recipe's
    WebVideoShards block is read by position (ShardSamples, same clip options): every sample once."""
    from videogen.cmd import load_cmd_autoencoder
    from videogen.data import ShardSamples, write_shards

    write_shards(SyntheticVideoDataset(NUM_VIDEOS, num_frames=8, size=32, seed=0),
                 str(tmp_path / "shards" / "%05d.tar"), samples_per_shard=3)  # 4 shards: 3 3 3 1
    clip = {"num_frames": 8, "size": 32, "start": "first"}
    overlay = {"data": {"init_args": {"dataset": {  # merged over the recipe as `fit --config A --config B`
        "class_path": "videogen.data.WebVideoShards",
        "init_args": {"urls": str(tmp_path / "shards" / "{00000..00003}.tar"), "epoch_size": NUM_VIDEOS,
                      "shuffle_buffer": 4, **clip}}}}}
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump(overlay))
    assert main(["cache", "--recipe", str(tiny / "motion.yaml"), str(tmp_path / "shards.yaml"), "--out",
                 str(tmp_path / "c"), "--shard-size", "4", "--no-progress"]) == 0
    cache = LatentCache(tmp_path / "c")
    samples = ShardSamples(str(tmp_path / "shards" / "{00000..00003}.tar"), **clip)
    assert len(cache) == len(samples) == NUM_VIDEOS
    ae = load_cmd_autoencoder(tiny / "ae").eval()
    for i in (0, 4, 9):
        content, motion = ae.encode(samples[i]["video"][None])
        torch.testing.assert_close(cache[i]["motion_latent"], motion[0], rtol=1e-5, atol=1e-6)
        assert cache[i]["caption"] == samples[i]["caption"] and int(cache[i]["index"]) == i


def test_killed_writer_leaves_no_shard_that_is_read_and_a_rerun_finishes_it(tiny, tmp_path, capsys):
    """SIGKILL while shard 1 sits under its temporary name: no index, no shard-000001, the reader refuses
    the unfinished cache; a rerun skips shard 0, drops the temporary file and equals the reference."""
    out = tmp_path / "killed"
    script = ("import sys, time\nimport videogen.data.cache as c\nreal = c.save_file\n"
              "def slow(tensors, path, metadata=None):\n    real(tensors, path, metadata=metadata)\n"
              "    if 'shard-000001' in path:\n        time.sleep(120)\nc.save_file = slow\n"
              "from videogen.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, *_cache_cmd(tiny, out)[3:]], env=ENV,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.glob(".shard-000001.tmp-*")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "shard-000000.safetensors").is_file() and not (out / "shard-000001.safetensors").exists()
    assert not (out / "index.json").exists() and list(out.glob(".shard-000001.tmp-*"))
    with pytest.raises(FileNotFoundError, match="has not finished it"):
        LatentCache(out)
    capsys.readouterr()
    assert main(_cache_cmd(tiny, out)[3:]) == 0  # the rerun, in this process
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {
        "out": str(out), "rank": 0, "world_size": 1, "written": 2, "skipped": 1, "shards": 3,
        "complete": True}
    assert not list(out.glob(".*tmp-*"))
    _assert_same_items(_items(LatentCache(out)), _items(LatentCache(tiny / "ref")))


@pytest.mark.ddp
def test_two_ranks_write_the_single_process_cache(tiny, tmp_path):
    out = tmp_path / "ddp"
    procs = [subprocess.Popen(_cache_cmd(tiny, out, "--rank", str(r), "--world-size", "2"), env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    written = sorted(json.loads(r[0].splitlines()[-1])["written"] for r in results)
    assert written == [1, 2]  # rank 0: shards 0, 2; rank 1: shard 1
    assert (out / "index.json").read_text() == (tiny / "ref" / "index.json").read_text()
    _assert_same_items(_items(LatentCache(out)), _items(LatentCache(tiny / "ref")))


def test_failed_writer_resumes_and_ranks_split_the_shards_in_process(tiny, tmp_path, monkeypatch):
    """The fast counterparts of the two subprocess tests: a writer that fails while writing shard 1 leaves
    shard 0 and no index (its temporary file removed); the rerun writes the rest.  Ranks 0 and 1 of 2,
    run one after the other, write the reference cache; only the second to finish writes the index."""
    import videogen.data.cache as cache_mod

    real = cache_mod.save_file

    def failing(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        if "shard-000001" in path:
            raise OSError("disk full")

    out = tmp_path / "failed"
    monkeypatch.setattr(cache_mod, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        main(_cache_cmd(tiny, out)[3:])
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.safetensors"]
    monkeypatch.setattr(cache_mod, "save_file", real)
    assert main(_cache_cmd(tiny, out)[3:]) == 0
    _assert_same_items(_items(LatentCache(out)), _items(LatentCache(tiny / "ref")))
    out = tmp_path / "ranks"
    assert main(_cache_cmd(tiny, out, "--rank", "1", "--world-size", "2")[3:]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["shard-000001.safetensors"]  # index waits for rank 0
    assert main(_cache_cmd(tiny, out, "--rank", "0", "--world-size", "2")[3:]) == 0
    assert (out / "index.json").read_text() == (tiny / "ref" / "index.json").read_text()
    _assert_same_items(_items(LatentCache(out)), _items(LatentCache(tiny / "ref")))


def test_clips_and_flips_are_stored_and_drawn_seeded(tmp_path):
    """K = 2 clips + flips: 4 variants per video; LatentCache draws among them by (seed, index, draw)."""
    from tests.cmd._tiny import tiny_autoencoder, tiny_motion_dit
    from videogen.cmd import CMDMotionModule
    from videogen.data.cache import write_cache

    ae = tiny_autoencoder(height=16, width=16)
    module = CMDMotionModule(tiny_motion_dit(ae), ae)
    data = SyntheticVideoDataset(3, num_frames=4, size=16)
    summary = write_cache(module, data, tmp_path, clips_per_video=2, flip=True, shard_size=2)
    assert summary == {"written": 2, "skipped": 0, "shards": 2, "complete": True}
    content, _ = ae.encode(data[1]["video"][None])
    flipped, _ = ae.encode(data[1]["video"][None].flip(-1))
    seen = {tuple(LatentCache(tmp_path, seed=s)[1]["content_frame"].flatten()[:4].tolist())
            for s in range(12)}
    assert len(seen) == 2  # the synthetic clips are fixed: the two clips equal, their flips differ
    first = LatentCache(tmp_path, clip="first")[1]["content_frame"]
    torch.testing.assert_close(first, content[0], rtol=1e-5, atol=1e-6)
    assert any(torch.allclose(LatentCache(tmp_path, seed=s)[1]["content_frame"], flipped[0], atol=1e-5)
               for s in range(12))
    assert _draws(tmp_path, 3, 8) == _draws(tmp_path, 3, 8)  # the draws repeat run to run
    assert len(set(_draws(tmp_path, 3, 8))) == 2  # and differ draw to draw


def _draws(root: Path, seed: int, n: int) -> list[float]:
    cache = LatentCache(root, seed=seed)
    return [float(cache[1]["content_frame"].sum()) for _ in range(n)]


# ---- the loss from the cache equals the loss from raw video ----------------------------------------------
def _cached_batch(module, raw: dict, tmp: Path) -> dict:
    from videogen.data.cache import write_cache

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(raw["caption"])

        def __getitem__(self, i):
            return {k: v[i] for k, v in raw.items()}

    write_cache(module, Items(), tmp, shard_size=3)
    return default_collate(_items(LatentCache(tmp)))


def _loss(module, batch: dict) -> torch.Tensor:
    torch.manual_seed(0)  # the condition-dropout draw
    x0, cond = module.encode_batch(batch, drop=True, sample=False)
    return module.diffusion_loss(x0, cond, generator=torch.Generator().manual_seed(1))


def test_cmd_motion_loss_from_the_cache_equals_the_loss_from_raw_video(tmp_path):
    from tests.cmd._tiny import tiny_autoencoder, tiny_motion_dit
    from tests.lamd._dmg_tiny import tiny_clip_dir
    from videogen.cmd import CMDMotionModule
    from videogen.core.stages import drop_mask
    from videogen.core.text import HFTextEncoder

    ae = tiny_autoencoder(height=16, width=16)
    text = HFTextEncoder(str(tiny_clip_dir(tmp_path / "clip")), max_length=12)
    module = CMDMotionModule(tiny_motion_dit(ae, text_dim=16), ae, text_encoder=text,
                             cond_drop_prob=0.5, pool_masked=True)
    data = SyntheticVideoDataset(5, num_frames=4, size=16, seed=2)
    raw = default_collate([{k: data[i][k] for k in ("video", "caption")} for i in range(5)])
    torch.manual_seed(0)
    assert 0 < int(drop_mask(5, 0.5).sum()) < 5  # some conditions dropped, some kept
    cached = _cached_batch(module, raw, tmp_path / "cache")
    assert "video" not in cached and cached["text_states"].shape == (5, 12, 16)
    torch.testing.assert_close(_loss(module, cached), _loss(module, raw), rtol=1e-5, atol=1e-6)
    # the condition itself (the DiT's zero-initialised modulation hides it from the loss at init): the
    # pooled text feature, zero for the dropped samples
    conds = []
    for batch in (cached, raw):
        torch.manual_seed(0)
        conds.append(module.encode_batch(batch, drop=True, sample=False)[1]["text"])
    torch.testing.assert_close(conds[0], conds[1], rtol=1e-5, atol=1e-6)
    dropped = conds[1].abs().sum(1) == 0
    assert 0 < int(dropped.sum()) < 5


def test_lvdm_text_to_video_loss_from_the_cache_equals_the_loss_from_raw_video(tmp_path):
    from tests.cmd._tiny import tiny_sd_dir
    from videogen.core.sd import FrameVAE, sd_text_encoder
    from videogen.core.stages import drop_mask
    from videogen.lvdm import LVDMTextToVideoModule, VideoUNetFromSD

    sd = tiny_sd_dir(tmp_path / "sd")
    module = LVDMTextToVideoModule(VideoUNetFromSD.from_sd(str(sd), heads=2), FrameVAE(str(sd)),
                                   sd_text_encoder(sd, max_length=12), cond_drop_prob=0.5)
    data = SyntheticVideoDataset(4, num_frames=3, size=16, seed=1)
    raw = default_collate([{k: data[i][k] for k in ("video", "caption")} for i in range(4)])
    torch.manual_seed(0)
    assert 0 < int(drop_mask(4, 0.5).sum()) < 4
    cached = _cached_batch(module, raw, tmp_path / "cache")
    assert cached["latent"].shape == (4, 4, 3, 8, 8)
    torch.testing.assert_close(_loss(module, cached), _loss(module, raw), rtol=1e-5, atol=1e-6)


# ---- training from a cache through `videogen fit`, and bad caches ----------------------------------------
def _fit_cached(work: Path, cache: Path, ae: Path, epochs: int, ckpt: Path | None = None) -> Path:
    """recipes/cmd_tiny_motion_cached.yaml on the 10-video cache: batch 5, 2 steps an epoch."""
    argv = ["fit", "--config", str(RECIPES / "cmd_tiny_motion_cached.yaml"), *QUIET,
            "--trainer.enable_model_summary=false", f"--model.init_args.autoencoder={ae}",
            f"--data.init_args.dataset.init_args.root={cache}",
            f"--data.init_args.val_dataset.init_args.root={cache}", "--data.init_args.batch_size=5",
            f"--trainer.max_epochs={epochs}", "--trainer.limit_val_batches=1",
            "--trainer.check_val_every_n_epoch=1"]
    if ckpt is not None:
        argv.append(f"--ckpt_path={ckpt}")
    with pytest.MonkeyPatch.context() as mp:
        work.mkdir(parents=True, exist_ok=True)
        mp.chdir(work)
        assert main(argv) == 0
    return work / "outputs" / "cmd_tiny_motion_cached" / "checkpoints" / "last.ckpt"


def test_tiny_recipe_trains_and_resumes_from_a_cache(tiny, tmp_path):
    straight = _fit_cached(tmp_path / "straight", tiny / "ref", tiny / "ae", epochs=2)
    half = _fit_cached(tmp_path / "resumed", tiny / "ref", tiny / "ae", epochs=1)
    assert torch.load(half, weights_only=True)["global_step"] == 2
    assert_same_checkpoints(straight, _fit_cached(tmp_path / "resumed", tiny / "ref", tiny / "ae", 2, half),
                            optimizer=True)


@pytest.mark.ddp
def test_tiny_recipe_trains_from_a_cache_with_two_ddp_processes(tiny, tmp_path):
    """The cached recipe under DDP (2 gloo processes): each rank reads its share of the cache through
    the sampler (map-style), 10 videos / (2 ranks x batch 5) = 1 step an epoch."""
    from tests._recipes import fit_ddp

    ckpt = fit_ddp(tmp_path, "cmd_tiny_motion_cached.yaml", "ddp",
                   ["--trainer.enable_model_summary=false", f"--model.init_args.autoencoder={tiny / 'ae'}",
                    f"--data.init_args.dataset.init_args.root={tiny / 'ref'}",
                    f"--data.init_args.val_dataset.init_args.root={tiny / 'ref'}",
                    "--data.init_args.batch_size=5", "--trainer.max_epochs=2",
                    "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1"])
    assert ckpt["global_step"] == 2 and ckpt["epoch"] == 1


def test_bad_caches_stop_with_one_line(tiny, tmp_path, capsys):
    import shutil

    from tests.cmd._tiny import tiny_autoencoder, tiny_motion_dit
    from videogen.cmd import CMDMotionModule
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatentCache(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="index.json not found: not a latent cache"):
        LatentCache(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(tiny / "ref", bad)
    shard = bad / "shard-000001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="shard-000001.safetensors is corrupt: .* bytes, the index says"):
        LatentCache(bad)
    shard.write_bytes(b"\xff" * len(data))  # same size, unreadable header
    cache = LatentCache(bad)
    cache[0]  # the intact shard still reads
    with pytest.raises(ValueError, match="shard-000001.safetensors is unreadable"):
        cache[4]
    # a cache of other frozen stages (another autoencoder) / of another stage
    batch = default_collate([LatentCache(tiny / "ref")[i] for i in range(2)])
    other = CMDMotionModule(tiny_motion_dit(tiny_autoencoder()), tiny_autoencoder())
    with pytest.raises(ValueError, match="written with other frozen stages than CMDMotionModule's"):
        other.encode_batch(batch, drop=False)
    from videogen.cmd import load_cmd_autoencoder

    ae = load_cmd_autoencoder(tiny / "ae")
    right = CMDMotionModule(tiny_motion_dit(ae, num_frames=8, content_patch_size=8, num_classes=4), ae)
    right.encode_batch(batch, drop=False)  # the cache's own frozen stages read it
    with pytest.raises(ValueError, match=r"needs \['motion_latent'\] from its latent cache, which holds"):
        right.encode_batch({k: v for k, v in batch.items() if k != "motion_latent"}, drop=False)
    lvdm_batch = {"latent": torch.zeros(2, 4, 2, 4, 4), "cache_id": batch["cache_id"]}
    with pytest.raises(ValueError, match="written with other frozen stages than LVDMShortModule's"):
        _tiny_lvdm_short().encode_batch(lvdm_batch, drop=False)
    # through the CLI: one line, exit code 2
    wrong = tmp_path / "wrong_ae"
    tiny_ae = yaml.safe_load((RECIPES / "cmd_tiny_autoencoder.yaml").read_text())
    from videogen.cmd import CMDAutoencoder

    torch.manual_seed(1)  # same shapes, other weights
    CMDAutoencoder(**tiny_ae["model"]["init_args"]["autoencoder"]["init_args"]).save_pretrained(wrong)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(["fit", "--config", str(RECIPES / "cmd_tiny_motion_cached.yaml"), *QUIET,
                     f"--model.init_args.autoencoder={wrong}",
                     f"--data.init_args.dataset.init_args.root={tiny / 'ref'}",
                     f"--data.init_args.val_dataset.init_args.root={tiny / 'ref'}",
                     "--trainer.max_steps=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "written with other frozen stages" in err[0]
        assert main(["fit", "--config", str(RECIPES / "cmd_tiny_motion_cached.yaml"), *QUIET,
                     f"--model.init_args.autoencoder={tiny / 'ae'}",
                     f"--data.init_args.dataset.init_args.root={tmp_path / 'empty'}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a latent cache" in err[0]
    # writing into a folder of another cache is refused
    with pytest.raises(ValueError, match="already holds a latent cache of other settings"):
        from videogen.data.cache import write_cache

        write_cache(other, SyntheticVideoDataset(2, num_frames=8, size=32), tiny / "ref")


def _tiny_lvdm_short():
    from videogen.lvdm import LVDMShortModule, UNet3D, VideoAutoencoder3D

    torch.manual_seed(0)
    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2)), z_channels=4)
    unet = UNet3D(model_channels=32, channel_mult=(1,), num_res_blocks=1, attention_resolutions=())
    return LVDMShortModule(unet, ae, calibrate_latents=0)
