"""LaMD bench tables: Table 1-2 parameter counts within 10% for every recipe, the structure of the
sampling-FLOPs comparison (Table 11), meta-device FLOP counts equal to real ones, and the quick bench's
outputs (results.json and the markdown report)."""

from __future__ import annotations

import json

import pytest
import torch

from videogen.bench import harness, lamd
from videogen.lamd import MotionGenerator

TABLES = ("lamd_params", "lamd_flops", "lamd_time")


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One quick run of the three LaMD tables (no docs written): ``(out_dir, results)``."""
    out = tmp_path_factory.mktemp("bench")
    return out, harness.run_bench(out, only=TABLES, quick=True, docs_path=None)


def _rows(quick_bench, name: str) -> list[dict]:
    return quick_bench[1]["tables"][name]["rows"]


def test_tables_are_discovered_by_the_harness():
    """``videogen bench`` / ``make bench`` import videogen.bench.lamd through TABLE_MODULES."""
    assert "lamd" in harness.TABLE_MODULES
    assert set(TABLES) <= set(harness.registered_tables())


def test_parameter_counts_within_10_percent_of_tables_1_and_2(quick_bench):
    rows = {row["recipe"]: row for row in _rows(quick_bench, "lamd_params")}
    assert set(rows) == set(lamd.RECIPES)
    for name, row in rows.items():
        for net in ("MCD-VAE", "DMG"):
            assert abs(row[f"{net} diff %"]) < 10, \
                f"{name} {net}: {row[f'{net} M']:.1f}M vs {row[f'{net} paper M']}M"
            assert row[f"{net} M"] == pytest.approx(row[f"{net} paper M"] * (1 + row[f"{net} diff %"] / 100))
    assert rows["bair"]["z_m (hxwxd)"] == rows["bair"]["z_m paper"] == "16x16x3"
    assert rows["natops"]["z_m (hxwxd)"] == "32x32x3" and rows["mug256"]["z_m (hxwxd)"] == "32x32x3"


def test_dmg_flops_do_not_depend_on_frames_but_the_decoders_do(quick_bench):
    rows = {row["video (LxHxW)"]: row for row in _rows(quick_bench, "lamd_flops")}
    short, long = rows["16x128x128"], rows["128x128x128"]
    for row in (short, long):
        assert all(v > 0 for v in row.values() if isinstance(v, float))
        assert row["CFG"] == "no"  # the Landscape recipe samples without guidance
        lamd_gflops = (row["DMG condition GFLOPs (once)"] + lamd.K_STEPS * row["DMG GFLOPs/step"]
                       + row["E_I GFLOPs"] + row["D_V GFLOPs"])
        assert row["LaMD video TFLOPs"] * 1e3 == pytest.approx(lamd_gflops)
        ldm_gflops = lamd.K_STEPS * row["LDM UNet GFLOPs/step"] + row["LDM decoder GFLOPs"]
        assert row["LDM image TFLOPs"] * 1e3 == pytest.approx(ldm_gflops)
    assert short["DMG GFLOPs/step"] == long["DMG GFLOPs/step"]  # z_m has no temporal axis
    assert short["E_I GFLOPs"] == long["E_I GFLOPs"] and short["LDM image TFLOPs"] == long["LDM image TFLOPs"]
    assert long["D_V GFLOPs"] > 3 * short["D_V GFLOPs"]  # D_V decodes every frame


def test_meta_flop_counts_equal_real_tensor_counts():
    """The meta count of the DMG condition and step (text-conditioned: a key mask) and of D_V equals a
    count on real tensors."""
    recipe = lamd.load_recipe("tiny")
    dmg_args = dict(recipe.dmg, num_classes=None, text_dim=16)
    counts = []
    for device in ("meta", "cpu"):
        with torch.device(device), torch.no_grad():
            torch.manual_seed(0)
            ae, _ = lamd.build_lamd(recipe)
            dmg = MotionGenerator(**dmg_args)
            z_m, t = torch.randn(1, *ae.latent_shape), torch.full((1,), 3)
            content = ae.image_encoder(torch.rand(1, 3, ae.resolution, ae.resolution) * 2 - 1)
            text = torch.randn(1, 5, 16)
        counts.append((*lamd.dmg_step_flops(dmg, z_m, t, content[0], text),
                       harness.count_flops(ae.decode, z_m, content)))
    assert counts[0] == counts[1] and min(counts[0]) > 0


def test_quick_time_rows_extrapolate_with_cfg(quick_bench):
    rows = _rows(quick_bench, "lamd_time")
    assert [row["video (LxHxW)"] for row in rows] == ["16x32x32", "128x32x32"]
    for row in rows:
        assert row["setting"].startswith("toy") and row["CFG"] == "x2"  # lamd_tiny samples with guidance 2
        assert all(v > 0 for v in row.values() if isinstance(v, float))
        video = (2 * row["DMG condition s (once)"] + 2 * lamd.K_STEPS * row["DMG s/step"] + row["E_I s"]
                 + row["D_V s"])
        assert row["LaMD video s (extrap.)"] == pytest.approx(video)
        assert row["video / image"] == pytest.approx(video / row["LDM image s (extrap.)"])


def test_quick_bench_writes_results_and_markdown(quick_bench):
    out, _ = quick_bench
    results = json.loads((out / "results.json").read_text())
    assert set(TABLES) <= set(results["tables"]) and all(results["tables"][n]["quick"] for n in TABLES)
    md = (out / "bench.md").read_text()
    assert "## LaMD: parameters (Tables 1-2)" in md and "## LaMD: sampling FLOPs" in md
    assert "| recipe | setting | video (LxHxW) | z_m (hxwxd) |" in md and "| bair | paper | 16x64x64 |" in md
    assert "(quick mode)" in md and "tiny configurations" in md
