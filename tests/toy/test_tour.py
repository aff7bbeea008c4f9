"""The three-model tour (``make demo`` = ``videogen demo --model all``): smoke versions of the three demos run
in turn and one summary page shows each model's pictures and numbers."""

from __future__ import annotations

import json

from videogen.cli import main
from videogen.toy.tour import HEADLINES


def test_tour_runs_the_three_demos_and_writes_one_page(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fast"]) == 0  # --model all is the default
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "smoke" and sorted(summary["models"]) == ["cmd", "lamd", "lvdm"]
    page = (out / "index.html").read_text()
    for name, (_, keys) in HEADLINES.items():
        assert (out / name / "contact_sheet.png").is_file() and (out / name / name).is_dir()
        assert f"<h2>{name.upper()}</h2>" in page and f"{name}/contact_sheet.png" in page
        for _, label in keys:
            assert label in page
    metrics = summary["models"]["lamd"]
    assert f"<td>{metrics['motion_accuracy']}</td>" in page
    assert "lvdm/hierarchical.mp4" in page and "cmd/samples.gif" in page
