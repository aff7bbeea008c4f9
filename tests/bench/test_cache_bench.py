"""The latent-cache bench tables: registered for `make bench`, and the paper-size FLOP split is the one the
encoders' sizes imply (frozen share of the CMD WebVid stages above 80%, the motion stage's above the
content stage's because its trained network is smaller)."""

from __future__ import annotations

from pathlib import Path

from videogen.bench import harness
from videogen.bench.cache import build_flops_table


def test_data_tables_are_registered():
    assert {"data", "cache"} <= set(harness.TABLE_MODULES)
    assert {"data_index", "data_workers", "data_decode", "data_shards", "data_cache_flops",
            "data_cache_step"} <= set(harness.registered_tables())


def test_frozen_share_at_paper_size(tmp_path: Path):
    rows = {r["stage"][:10] + str(r["x forward"]): r for r in build_flops_table(tmp_path, quick=True)}
    content, motion = rows["CMD conten4"], rows["CMD motion3"]
    share = {k: float(r["frozen share"].rstrip("%")) for k, r in (("content", content), ("motion", motion))}
    assert 80 < share["content"] < share["motion"] < 99
    assert content["frozen encoders TFLOPs"] == motion["frozen encoders TFLOPs"]  # the same encoders
    assert 30 < content["frozen encoders TFLOPs"] < 50  # SD VAE on 16 x 512 x 1024 frames dominates
