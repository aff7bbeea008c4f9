"""``convert_cmd``: checkpoints in the official CMD training scripts' layout -> videogen networks / pipeline.

The oracle is the official code itself: tests/fixtures/cmd/ holds tiny official networks (random weights,
saved as the official scripts save them) with inputs and the official modules' outputs (README.md there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import videogen
from videogen.cmd import CMD, CMDAutoencoder, ContentDiT, MotionDiT, convert_cmd
from videogen.core.persistence import read_foreign_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cmd"
AE, CONTENT, MOTION = (FIXTURES / f"{n}.pt" for n in ("autoenc", "content", "motion"))


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "io.safetensors"))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def ae_outputs(ae: CMDAutoencoder, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        content, motion = ae.encode(io["ae.video"])
        return {"content": content, "motion": motion, "recon": ae.decode(io["ae.content"], io["ae.motion"])}


def dit_output(net: torch.nn.Module, io: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(net, ContentDiT):
            return net(io["content.x"], io["content.t"], io["content.y"])
        return net(io["motion.z"], io["motion.t"], io["motion.content"])


def official_eps(io: dict[str, torch.Tensor], kind: str, ema: bool) -> torch.Tensor:
    out = io[f"{kind}.out_{'ema' if ema else 'raw'}"]  # (B, 2C, ...): [eps ; learned variance]
    return out[:, : out.shape[1] // 2]


def test_autoencoder_official_mode_matches_the_official_module(io):
    ae = convert_cmd(AE)
    assert isinstance(ae, CMDAutoencoder) and ae.config["rotary"] is False
    got = ae_outputs(ae, io)
    for name in ("content", "motion", "recon"):
        assert rel(got[name], io[f"ae.{name}"]) < 1e-5, name


@pytest.mark.parametrize("path, kind", [(CONTENT, "content"), (MOTION, "motion")])
def test_dits_official_mode_match_the_official_modules_ema_and_raw(io, path, kind):
    assert rel(io[f"{kind}.out_ema"], io[f"{kind}.out_raw"]) > 0.01  # the two weight sets really differ
    for ema in (True, False):
        net = convert_cmd(path, ema=ema)
        assert isinstance(net, ContentDiT if kind == "content" else MotionDiT)
        assert rel(dit_output(net, io), official_eps(io, kind, ema)) < 1e-5, (kind, ema)
    if kind == "motion":
        assert net.config["position_grid"] == "square"


def test_corrected_mode_same_weights_other_function(io):
    """official=False: rotary positions and true-grid tables on the same weights.  Measured at the fixture
    size: the autoencoder's outputs move by 10-60%, the motion DiT's by ~34%, the content DiT's not at all
    (its square grid is the true grid)."""
    ae = convert_cmd(AE, official=False)
    assert ae.config["rotary"] is True
    official = convert_cmd(AE).state_dict()
    assert all(torch.equal(v, official[k]) for k, v in ae.state_dict().items())
    got = ae_outputs(ae, io)
    assert rel(got["motion"], io["ae.motion"]) > 0.05 and rel(got["recon"], io["ae.recon"]) > 0.05
    motion = convert_cmd(MOTION, official=False)
    assert motion.config["position_grid"] == "true"
    assert rel(dit_output(motion, io), official_eps(io, "motion", True)) > 0.05
    content = convert_cmd(CONTENT, official=False)
    assert rel(dit_output(content, io), official_eps(io, "content", True)) < 1e-5


def test_three_files_make_a_pipeline_that_saves_loads_and_samples(io, tmp_path):
    pipe = convert_cmd(MOTION, AE, CONTENT)
    assert isinstance(pipe, CMD)
    pipe.save_pretrained(tmp_path / "cmd")
    loaded = videogen.load_pretrained(tmp_path / "cmd")
    assert isinstance(loaded, CMD) and loaded.autoencoder.config["rotary"] is False
    assert loaded.motion_model.config["position_grid"] == "square"
    assert rel(ae_outputs(loaded.autoencoder, io)["recon"], io["ae.recon"]) < 1e-5
    assert rel(dit_output(loaded.motion_model, io), official_eps(io, "motion", True)) < 1e-5
    assert rel(dit_output(loaded.content_model, io), official_eps(io, "content", True)) < 1e-5
    video = loaded.generate(label=[1, 4], num_steps=2, content_steps=2, progress=False,
                            generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 4, 16, 16) and video.abs().max() <= 1
    # one network saves and loads on its own too
    convert_cmd(MOTION).save_pretrained(tmp_path / "motion")
    single = MotionDiT.from_pretrained(tmp_path / "motion")
    assert rel(dit_output(single, io), official_eps(io, "motion", True)) < 1e-5


def _rewrite(tmp_path: Path, src: Path, edit) -> Path:
    ckpt = read_foreign_checkpoint(src)
    edit(ckpt)
    out = tmp_path / f"edited_{src.name}"
    torch.save(ckpt, out)
    return out


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_errors_are_one_line_and_name_the_problem(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(AE.read_bytes()[:5000])
    with pytest.raises(ValueError, match="corrupt.pt is not a readable") as exc:
        convert_cmd(corrupt)
    _one_line(exc)

    lvdm_like = tmp_path / "lvdm.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, lvdm_like)
    with pytest.raises(ValueError, match="not a checkpoint of the official CMD training.*'state_dict'"):
        convert_cmd(lvdm_like)

    def drop_key(ckpt):
        del ckpt["autoenc"]["decoder.layers.1.1.fn.qkv.weight"]
        ckpt["autoenc"]["encoder.extra.weight"] = torch.zeros(1)

    with pytest.raises(ValueError, match=r"edited_autoenc.pt: the autoencoder weights do not match the "
                                         r"official layout \(missing: decoder.1.attn_s.qkv.weight; "
                                         r"unexpected: encoder.extra.weight\)") as exc:
        convert_cmd(_rewrite(tmp_path, AE, drop_key))
    _one_line(exc)

    def no_args(ckpt):
        del ckpt["args"]

    with pytest.raises(ValueError, match="no argparse 'args'"):
        convert_cmd(_rewrite(tmp_path, CONTENT, no_args))

    def bad_config(ckpt):
        ckpt["args"].motion_model_config = "DiT-B/2"  # the motion script's default, a KeyError officially

    with pytest.raises(ValueError, match="'DiT-B/2' is not an official MotionDiT"):
        convert_cmd(_rewrite(tmp_path, MOTION, bad_config))

    def get_models_width(ckpt):  # the file get_models' literal (16, H + W) input would give
        ckpt["args"].n_frames = 16
        ckpt["ema"]["pos_embed"] = torch.zeros(1, 8 * 16, 24)

    with pytest.raises(ValueError, match=r"literal \(16, H \+ W\)"):
        convert_cmd(_rewrite(tmp_path, MOTION, get_models_width))

    with pytest.raises(ValueError, match="both content checkpoints"):
        convert_cmd(CONTENT, CONTENT)
    with pytest.raises(ValueError, match="needs the autoencoder, content and motion.*lack the motion one"):
        convert_cmd(AE, CONTENT)
    with pytest.raises(FileNotFoundError):
        convert_cmd(tmp_path / "nothing.pt")


def test_fixture_args_are_the_official_namespace():
    args = read_foreign_checkpoint(MOTION)["args"]
    assert isinstance(args, argparse.Namespace) and args.motion_model_config == "MotionDiT-S/2"


def test_videogen_convert_cmd_command_writes_a_folder_that_samples(tmp_path, capsys):
    """The CLI front door: `videogen convert cmd --ckpt A B C --out DIR`, then `videogen sample --model DIR`;
    a wrong file ends in one `videogen: error:` line."""
    import json

    from videogen.cli import main

    out = tmp_path / "cmd_official"
    assert main(["convert", "cmd", "--ckpt", str(MOTION), str(AE), str(CONTENT), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "CMD"
    assert isinstance(videogen.load_pretrained(out), CMD)
    assert main(["sample", "--model", str(out), "--out", str(tmp_path / "s"), "--num-samples", "1",
                 "--num-steps", "2", "--label", "0"]) == 0
    assert list((tmp_path / "s").glob("*.mp4"))
    capsys.readouterr()
    bad = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, bad)
    assert main(["convert", "cmd", "--ckpt", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videogen: error:") and "other.pt" in err[0]
    assert not (tmp_path / "x").exists()
