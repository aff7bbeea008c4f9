"""The one persistence format (videogen.core.persistence): networks, pipelines, checkpoints, the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from videogen.core.persistence import (
    CKPT_KEY,
    INDEX_NAME,
    SavableModule,
    UnknownClassError,
    checkpoint_record,
    load_component,
    load_pretrained,
    registered_name,
)
from videogen.core.pipeline import VideoPipeline


class Scale(nn.Module, SavableModule):
    """y = w * x + b over ``channels``; ``offset`` and ``sizes`` exercise defaults and lists."""

    def __init__(self, channels: int, offset: float = 0.5, sizes: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(channels))
        self.register_buffer("b", torch.full((channels,), offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w + self.b


class Shift(Scale):
    """Another network class with the same constructor: a directory of one must not load as the other."""


class Pair(VideoPipeline):
    """Two components and a setting; ``second`` is optional."""

    components = {"first": "first", "second": "second"}
    component_hints = {"first": "train it with recipes/pair_first.yaml"}
    conditions = ()
    variable_length = True

    def __init__(self, first: Scale, second: Scale | None = None, gain: float = 1.0) -> None:
        super().__init__()
        self.first, self.second, self.gain = first, second, gain

    def _generate(self, *, image, label, text, batch, num_frames, num_steps, sampler, guidance_scale,
                  generator, progress):
        x = torch.ones(batch, 3, num_frames or 2, 1, 1) * self.gain  # (B, C, T, H, W)
        x = self.first(x.transpose(1, -1)).transpose(1, -1)
        return x if self.second is None else self.second(x.transpose(1, -1)).transpose(1, -1)


def test_a_network_records_its_constructor_and_round_trips(tmp_path):
    net = Scale(3, sizes=(4, 5))
    assert net.config == {"channels": 3, "offset": 0.5, "sizes": [4, 5]}  # defaults too, as JSON reads them
    net.save_pretrained(tmp_path / "net")
    saved = json.loads((tmp_path / "net" / "config.json").read_text())
    assert saved == {"class": registered_name(Scale), "channels": 3, "offset": 0.5, "sizes": [4, 5]}
    again = Scale.from_pretrained(tmp_path / "net")
    x = torch.randn(2, 3)
    assert torch.equal(again(x), net(x)) and again.config == net.config
    with pytest.raises(ValueError, match="not a .*Shift"):
        Shift.from_pretrained(tmp_path / "net")
    (tmp_path / "net" / "model.safetensors").write_bytes(b"\x00" * 20)  # truncated / corrupt weights
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Scale.from_pretrained(tmp_path / "net")


def test_a_pipeline_saves_one_index_and_a_folder_per_component(tmp_path):
    pipe = Pair(Scale(3), Scale(3, offset=-1.0), gain=2.0)
    pipe.save_pretrained(tmp_path / "pair")
    index = json.loads((tmp_path / "pair" / INDEX_NAME).read_text())
    assert index == {"class": registered_name(Pair),
                     "components": {"first": registered_name(Scale), "second": registered_name(Scale)},
                     "config": {"gain": 2.0}}
    again = load_pretrained(tmp_path / "pair")
    assert type(again) is Pair and again.gain == 2.0 and not again.training
    assert torch.equal(again.generate(num_samples=2, progress=False),
                       pipe.generate(num_samples=2, progress=False))
    Pair(Scale(3)).save_pretrained(tmp_path / "pair")  # over the old folder: replaced as a whole
    assert sorted(p.name for p in (tmp_path / "pair").iterdir()) == ["README.md", "first", INDEX_NAME]
    assert load_pretrained(tmp_path / "pair").second is None


def test_an_interrupted_save_leaves_the_old_folder(tmp_path, monkeypatch):
    Pair(Scale(3), gain=3.0).save_pretrained(tmp_path / "pair")

    def fail(self, directory, **kwargs):
        raise KeyboardInterrupt  # as if killed while writing the second component

    new = Pair(Scale(3), Shift(3), gain=4.0)
    monkeypatch.setattr(Shift, "save_pretrained", fail)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(tmp_path / "pair")
    assert load_pretrained(tmp_path / "pair").gain == 3.0  # the old pipeline, complete
    assert [p.name for p in tmp_path.iterdir()] == ["pair"]  # no temporary folder left behind


def test_weights_outside_the_components_are_refused(tmp_path):
    pipe = Pair(Scale(3))
    pipe.extra = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weights outside its components"):
        pipe.save_pretrained(tmp_path / "pair")
    assert not (tmp_path / "pair").exists()


@pytest.mark.parametrize("name", ["os.system", "dl.payload.M", "videogen.lamd.nothing_here", 3])
def test_a_folder_naming_an_unregistered_class_is_refused(tmp_path, name):
    (tmp_path / INDEX_NAME).write_text(json.dumps({"class": name, "components": {}, "config": {}}))
    with pytest.raises(UnknownClassError, match="registered"):
        load_pretrained(tmp_path)


def test_no_code_runs_from_a_model_folder(tmp_path):
    """A folder naming a module beside it (``dl/payload.py``) is refused without importing it, under
    ``python -m videogen`` from that very directory."""
    marker = tmp_path / "pwned"
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "__init__.py").write_text("")
    (tmp_path / "dl" / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / INDEX_NAME).write_text(json.dumps({"class": "dl.payload.M", "components": {}}))
    run = subprocess.run([sys.executable, "-m", "videogen", "sample", "--model", "model", "--out", "out"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "videogen: error:" in run.stderr and "dl.payload.M" in run.stderr
    assert not marker.exists()


def _stage_checkpoint(path, parts, config, pipeline=registered_name(Pair)):
    state = {f"{prefix}{k}": v for _, (module, prefix) in parts.items() for k,
             v in module.state_dict().items()}
    torch.save({"state_dict": state, CKPT_KEY: checkpoint_record(pipeline, parts, config)}, path)


def test_checkpoints_of_several_stages_merge_into_one_pipeline(tmp_path):
    first, second = Scale(3), Scale(3, offset=2.0)
    _stage_checkpoint(tmp_path / "a.ckpt", {"first": (first, "net.")}, {"gain": 2.0})
    _stage_checkpoint(tmp_path / "b.ckpt", {"second": (second, "model.")}, {"gain": 2.0})
    pipe = load_pretrained(tmp_path / "a.ckpt", tmp_path / "b.ckpt")
    assert torch.equal(pipe.first.w, first.w) and torch.equal(pipe.second.b, second.b) and pipe.gain == 2.0
    assert torch.equal(load_component(tmp_path / "b.ckpt", "second", Scale).w, second.w)
    with pytest.raises(ValueError, match="has no first"):
        load_component(tmp_path / "b.ckpt", "first", Scale)
    with pytest.raises(ValueError,
                       match=r"Pair also needs first \(first: train it with recipes/pair_first.yaml\)"):
        load_pretrained(tmp_path / "b.ckpt")
    _stage_checkpoint(tmp_path / "c.ckpt", {"second": (second, "model.")}, {"gain": 5.0})
    with pytest.raises(ValueError, match="disagree on 'gain'"):
        load_pretrained(tmp_path / "a.ckpt", tmp_path / "c.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="not a videogen stage checkpoint"):
        load_pretrained(tmp_path / "plain.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable videogen checkpoint"):
        load_pretrained(tmp_path / "text.ckpt")


def test_a_save_killed_mid_write_leaves_a_complete_folder(tmp_path):
    """SIGKILL while ``save_pretrained`` rewrites a folder again and again: what is left loads, complete,
    as one of the two pipelines (never the new first component with the old second)."""
    import signal
    import time

    script = f"""
import sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tests.core.test_persistence import Pair, Scale
torch.manual_seed(0)
old, new = Pair(Scale(3), Scale(3), gain=1.0), Pair(Scale(4_000_000), Scale(4_000_000), gain=2.0)
old.save_pretrained({str(tmp_path / "pair")!r})
print("saved", flush=True)
while True:
    new.save_pretrained({str(tmp_path / "pair")!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saved"
    deadline = time.time() + 120
    while not any(".pair.tmp-" in p.name for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "the writer never started a new save"
        time.sleep(0.01)
    time.sleep(0.05)  # somewhere inside writing the components
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pipe = load_pretrained(tmp_path / "pair")
    sizes = {pipe.first.w.numel(), pipe.second.w.numel()}
    assert (pipe.gain, sizes) in ((1.0, {3}), (2.0, {4_000_000}))
    pipe.save_pretrained(tmp_path / "pair")  # the next save removes what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair"]
