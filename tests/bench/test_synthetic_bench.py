"""The synthetic benchmark (``videogen bench --only synthetic``): the three models get the same data and the
same number of optimiser steps, and the quick table runs end to end through the one generate protocol."""

from __future__ import annotations

import dataclasses

from videogen.bench import synthetic
from videogen.bench.harness import registered_tables


def test_full_configs_share_data_and_budget():
    configs = synthetic.model_configs(quick=False)
    assert set(configs) == {"lamd", "cmd", "lvdm", "lvdm_t2v"}
    for name, cfg in configs.items():
        fields = dataclasses.asdict(cfg)
        for key in ("size", "object_size"):
            assert fields[key] == synthetic.DATA[key], (name, key)
        assert tuple(fields["speed"]) == synthetic.DATA["speed"], name
        assert fields.get("motion", "bounce") == "bounce", name
        assert synthetic._steps(name, cfg)[0] == synthetic.BUDGET_STEPS, name
    assert configs["lvdm"].long_frames == synthetic.LONG_FRAMES == 256
    assert (configs["lamd"].num_frames == configs["cmd"].num_frames == configs["lvdm_t2v"].num_frames
            == synthetic.SHORT_FRAMES)


def test_quick_table_runs(tmp_path):
    assert "synthetic" in registered_tables()
    rows = synthetic.build_synthetic_table(tmp_path, quick=True)
    keys = set(rows[0])
    assert all(set(r) == keys for r in rows)
    tasks = [(r["task"], r["model"]) for r in rows]
    assert tasks[0][0] == "(real held-out videos)"
    for model in ("LaMD", "CMD", "LVDM"):
        assert ("image-to-video", model) in tasks and ("text-to-video", model) in tasks
    assert sum(t.startswith("long video") for t, _ in tasks) == 4  # LaMD, CMD, LVDM x 2 modes
    real = rows[0]
    assert real["bounce-rule acc"] == 1.0 and real["long motion acc"] == 1.0  # the rule holds on the data
    by = {(r["task"], r["model"]): r for r in rows}
    assert "not supported" in by[("text-to-video", "LaMD")]["note"]
    for model in ("CMD", "LVDM"):  # LVDM: its text-to-video model, SD-style networks trained from scratch
        assert isinstance(by[("text-to-video", model)]["caption acc"], float)
        assert by[("text-to-video", model)]["GFLOPs / video"] > 0
    assert by[("image-to-video", "LVDM")]["GFLOPs / video"] > 0
    # a second build reuses the trained models
    again = synthetic.build_synthetic_table(tmp_path, quick=True)
    assert [r["train s"] for r in again] == [r["train s"] for r in rows]
