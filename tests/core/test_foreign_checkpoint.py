"""``read_foreign_checkpoint``: official-code checkpoints (Lightning 1.4 + OmegaConf, argparse) are read
without running code from them; any other object is refused by name and its code never runs."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from videogen.core.persistence import ForeignObject, read_foreign_checkpoint

# Writes a checkpoint in the official LVDM layout: classes of omegaconf / pytorch_lightning (not
# installed here) are faked in sys.modules only while it is written.
_WRITE_OFFICIAL = textwrap.dedent("""
    import argparse, sys, types, torch
    def fake(modname, clsname):
        parts = modname.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        cls = type(clsname, (), {"__module__": modname})
        setattr(sys.modules[modname], clsname, cls)
        return cls
    DictConfig = fake("omegaconf.dictconfig", "DictConfig")
    ModelCheckpoint = fake("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    cfg = DictConfig(); cfg._content = {"linear_start": 0.0015}
    torch.save({"state_dict": {"model.w": torch.arange(3.0)}, "epoch": 7, "hyper_parameters": {"cfg": cfg},
                "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}},
                "args": argparse.Namespace(model="DiT-L/2", lr=1e-4)}, sys.argv[1])
""")


def test_official_layout_reads_with_inert_stand_ins(tmp_path):
    path = tmp_path / "official.ckpt"
    subprocess.run([sys.executable, "-c", _WRITE_OFFICIAL, str(path)], check=True)
    ckpt = read_foreign_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["model.w"], torch.arange(3.0))
    assert ckpt["epoch"] == 7
    cfg = ckpt["hyper_parameters"]["cfg"]
    assert isinstance(cfg, ForeignObject) and cfg.foreign_name == "omegaconf.dictconfig.DictConfig"
    (key,) = ckpt["callbacks"]
    assert issubclass(key, ForeignObject)
    assert ckpt["args"] == argparse.Namespace(model="DiT-L/2", lr=1e-4)


class _WritesAFile:
    """A pickle payload that would create a file when unpickled (``os.system`` via ``__reduce__``)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("as_torch", [True, False])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, as_torch):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": _WritesAFile(target)}
    if as_torch:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError) as err:
        read_foreign_checkpoint(path)
    assert not target.exists()
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    if as_torch:
        assert "system" in message  # the refused global is named (posix.system / os.system)


def test_missing_and_corrupt_files_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_foreign_checkpoint(tmp_path / "none.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        read_foreign_checkpoint(bad)
