"""Test-set generation (resumable, manifests) and streaming evaluation (batches, skipped files, pairing,
per-class FVD, cached real statistics), through the library and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from tests.lamd._dmg_tiny import FRAMES, RES, randomize, tiny_dmg, tiny_mcdvae
from videogen.cli import main
from videogen.core.video import read_video, write_video
from videogen.data import SyntheticVideoDataset
from videogen.evaluation import MANIFEST, evaluate_folders, generate_split, index_folder
from videogen.lamd import LaMD


class _Detector(nn.Module):
    """StyleGAN-V's TorchScript calling convention; 16 features (not 400: fast Frechet distances) = a
    fixed projection of frame statistics."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 16)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)  # (B, 6)
        return self.proj(stats)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.manual_seed(0)
    with pytest.warns(FutureWarning):
        torch.jit.script(_Detector()).save(str(path))
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """8 synthetic items x 2 samples from a tiny class-conditional LaMD: (out_dir, summary, model, data)."""
    model = LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=4))).eval()
    data = SyntheticVideoDataset(8, num_frames=FRAMES, size=RES, seed=33)  # 2 videos per class
    out = tmp_path_factory.mktemp("gen")
    summary = generate_split(model, data, out, samples_per_item=2, batch_size=5, num_steps=2, progress=False)
    return out, summary, model, data


def test_generate_writes_every_sample_with_manifests_and_resumes(generated):
    out, summary, model, data = generated
    assert summary == {"items": 8, "videos": 16, "written": 16, "skipped_existing": 0}
    assert model.conditions == ("image", "label")
    rows = [json.loads(line) for line in (out / "fake" / MANIFEST).read_text().splitlines()]
    assert len(rows) == 16 and rows[3] == {"file": "000001_s001.mp4", "source": "000001", "sample": 1,
                                           "label": int(data[1]["label"]), "caption": data[1]["caption"]}
    assert len(list((out / "real").glob("*.mp4"))) == 8
    (out / "fake" / "000005_s000.mp4").unlink()  # an interrupted run: one sample missing
    manifest = (out / "fake" / MANIFEST).read_text()
    read = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            read.append(i)
            return data[i]

    again = generate_split(model, Counting(), out, samples_per_item=2, batch_size=5, num_steps=2,
                           progress=False)
    assert again == {"items": 8, "videos": 16, "written": 1, "skipped_existing": 15}
    assert read == [5]  # the finished items are not read (decoded) again
    assert (out / "fake" / MANIFEST).read_text() == manifest


def test_evaluate_streams_paired_and_feature_metrics(generated, i3d_file, tmp_path):
    out, *_ = generated
    stats = tmp_path / "real_stats.safetensors"
    kw = dict(num_frames=FRAMES, batch_size=3, i3d=i3d_file, progress=False)
    first = evaluate_folders(out / "real", out / "fake", ["fvd", "kvd", "cfvd", "psnr", "ssim"],
                             real_stats=stats, **kw)
    assert first["num_real"] == 8 and first["num_fake"] == 16 and first["num_pairs"] == 16
    assert first["num_skipped"] == 0 and first["fvd"] > 0 and first["psnr"] > 0
    assert len(first["cfvd_per_group"]) == len({json.loads(r)["label"] for r
                                                in (out / "real" / MANIFEST).open()})
    assert stats.is_file()
    # real stats from file
    second = evaluate_folders(out / "real", out / "fake", ["fvd"], real_stats=stats, **kw)
    assert second["fvd"] == pytest.approx(first["fvd"])
    same = evaluate_folders(out / "real", out / "real", ["fvd", "psnr"], **kw)
    assert abs(same["fvd"]) < 1e-3 and same["psnr"] > 60


def test_evaluate_skips_and_counts_an_unreadable_video(generated, tmp_path):
    out, *_ = generated
    fake = tmp_path / "fake"
    fake.mkdir()
    for f in (out / "fake").glob("000000_s*.mp4"):
        (fake / f.name).write_bytes(f.read_bytes())
    (fake / "000000_s000.mp4").write_bytes(b"not a video")
    rows = [line for line in (out / "fake" / MANIFEST).read_text().splitlines() if '"000000_s' in line]
    (fake / MANIFEST).write_text("\n".join(rows) + "\n")
    res = evaluate_folders(out / "real", fake, ["psnr"], num_frames=FRAMES, progress=False)
    assert res["num_skipped"] == 1 and res["num_pairs"] == 1 and "000000_s000.mp4" in res["skipped"][0]


def test_evaluate_refuses_broken_pairing_naming_the_files(generated, tmp_path):
    out, *_ = generated
    fake = tmp_path / "fake"
    fake.mkdir()
    write_video(fake / "orphan.mp4", torch.zeros(3, FRAMES, RES, RES))
    with pytest.raises(ValueError, match="no real video for source orphan"):
        evaluate_folders(out / "real", fake, ["ssim"], num_frames=FRAMES, progress=False)


def test_index_folder_groups_by_subfolder(tmp_path):
    for cls in ("walk", "run"):
        write_video(tmp_path / cls / "a.mp4", torch.zeros(3, 2, 8, 8))
    entries = index_folder(tmp_path)
    assert [(e.key, e.group) for e in entries] == [("run/a", "run"), ("walk/a", "walk")]


def test_generate_and_evaluate_commands(tmp_path):
    """The CLI path: a save_pretrained LaMD, the tiny recipe's val split, then evaluate its output."""
    model = LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=4))).eval()
    model.save_pretrained(tmp_path / "model")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data:\n  class_path: videogen.data.VideoDataModule\n  init_args:\n"
        "    dataset: {class_path: videogen.data.SyntheticVideoDataset, init_args: {num_videos: 4, "
        "num_frames: 4, size: 16}}\n    val_dataset: {class_path: videogen.data.SyntheticVideoDataset, "
        "init_args: {num_videos: 3, num_frames: 4, size: 16, seed: 5}}\n")
    out = tmp_path / "samples"
    assert main(["generate", "--model", str(tmp_path / "model"), "--recipe", str(recipe), "--split", "test",
                 "--out", str(out), "--samples-per-item", "2", "--num-steps", "2", "--batch-size", "4"]) == 0
    assert len(list((out / "fake").glob("*.mp4"))) == 6
    res = tmp_path / "res.json"
    assert main(["evaluate", "--real", str(out / "real"), "--fake", str(out / "fake"), "--metric", "psnr",
                 "--metric", "ssim", "--num-frames", "4", "--no-progress", "--out", str(res)]) == 0
    assert json.loads(res.read_text())["num_pairs"] == 6


def test_a_resumed_run_regenerates_what_it_cannot_trust(generated, tmp_path):
    """A file that no run logged as finished, or that no longer decodes with its frames, is generated
    again."""
    import shutil

    src, _, model, data = generated
    out = tmp_path / "gen"
    shutil.copytree(src, out)
    (out / "fake" / "000002_s000.mp4").write_bytes(b"\x00" * 261)  # logged, but cut short / corrupt
    write_video(out / "fake" / "000003_s001.mp4", torch.zeros(3, 2, RES, RES))  # a valid 2-frame stranger
    log = [line for line in (out / "generate_done.jsonl").read_text().splitlines() if "000003_s001"
           not in line]
    (out / "generate_done.jsonl").write_text("\n".join(log) + "\n")
    again = generate_split(model, data, out, samples_per_item=2, batch_size=5, num_steps=2, progress=False)
    assert again["written"] == 2
    for name in ("000002_s000.mp4", "000003_s001.mp4"):
        assert read_video(out / "fake" / name).shape[0] == FRAMES


def test_two_runs_into_one_folder_are_refused(capsys, tmp_path):
    from videogen.core.files import FolderLock

    model = LaMD(tiny_mcdvae(), randomize(tiny_dmg(num_classes=4))).eval()
    model.save_pretrained(tmp_path / "model")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  init_args:\n    val_dataset: {class_path: "
                      "videogen.data.SyntheticVideoDataset, init_args: {num_videos: 2, num_frames: 4, size: "
                      "16}}\n")
    out = tmp_path / "samples"
    with FolderLock(out, "generate"):  # another run is writing there
        code = main(["generate", "--model", str(tmp_path / "model"), "--recipe", str(recipe), "--out",
                     str(out), "--num-steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "in use by another generate run" in err[0] \
        and f"pid {os.getpid()}" in err[0]
    assert not (out / "fake").exists()
    # a run that died: lock taken over
    (out / ".videogen.lock").write_text(f"{socket.gethostname()}:999999999")
    assert main(["generate", "--model", str(tmp_path / "model"), "--recipe", str(recipe), "--out", str(out),
                 "--num-steps", "2"]) == 0
    assert not (out / ".videogen.lock").exists() and len(list((out / "fake").glob("*.mp4"))) == 2


def test_a_video_killed_mid_write_never_replaces_the_finished_one(tmp_path):
    """SIGKILL while ``write_video`` encodes a long video over a finished one: the finished one stays."""
    path = tmp_path / "clip.mp4"
    write_video(path, torch.zeros(3, 4, 32, 32))
    script = ("import torch, sys\nfrom videogen.core.video import write_video\nprint('start', flush=True)\n"
              f"write_video({str(path)!r}, torch.rand(3, 4000, 64, 64) * 2 - 1)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 120
    while not any(p.name.startswith(".clip.tmp-") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "the writer never started writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_video(path).shape == (4, 32, 32, 3)  # the old, complete video
    # the leftover temp file is not a video
    assert [e.file.name for e in index_folder(tmp_path)] == ["clip.mp4"]


@pytest.mark.parametrize("name", ["../real/000000.mp4", "/etc/passwd", "sub/../../x.mp4"])
def test_a_manifest_cannot_name_files_outside_its_folder(generated, tmp_path, name):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MANIFEST).write_text(json.dumps({"file": name, "source": "000000"}) + "\n")
    with pytest.raises(ValueError, match="lies outside"):
        index_folder(fake)
