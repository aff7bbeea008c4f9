"""Bench harness: table registry, results merging, markdown report, and the measurement helpers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from videogen.bench import harness


@pytest.fixture
def registry(monkeypatch):
    """An empty registry that imports no model table modules."""
    monkeypatch.setattr(harness, "_REGISTRY", {})
    monkeypatch.setattr(harness, "TABLE_MODULES", ())
    return harness._REGISTRY


def test_run_bench_writes_results_and_report_and_merges_reruns(registry, tmp_path):
    calls = []

    def params(out_dir, quick):
        calls.append(("params", quick, out_dir.is_dir()))
        return [{"model": "A", "setting": "paper", "params": 1234567}, {"model": "B", "setting": "paper",
                                                                        "params": 3}]

    def speed(out_dir, quick):
        calls.append(("speed", quick, out_dir.is_dir()))
        return [{"model": "A", "setting": "toy 16x32x32", "sec_per_video": 0.5}]

    harness.register_table("params", params, title="Parameters", description="Counted on meta.")
    harness.register_table("speed", speed, title="Sampling cost")
    docs = tmp_path / "bench.md"
    harness.run_bench(tmp_path / "out", docs_path=docs, quick=True)
    assert calls == [("params", True, True), ("speed", True, True)]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["tables"]["params"]["rows"][0]["params"] == 1234567
    assert results["tables"]["speed"]["environment"]["torch"] == torch.__version__
    md = docs.read_text()
    assert md == (tmp_path / "out" / "bench.md").read_text()
    assert "## Parameters" in md and "Counted on meta." in md and "| A | paper | 1,234,567 |" in md
    # the toy note appears once: only the speed table has toy rows
    assert md.count("tiny configurations") == 1 and md.index("## Sampling cost") < md.index("tiny "
                                                                                            "configurations")

    # rebuilding one table keeps the other's last results
    harness.register_table("params", lambda o, q: [{"model": "C", "params": 7}], title="Parameters")
    harness.run_bench(tmp_path / "out", only=["params"], docs_path=None)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["tables"]["params"]["rows"] == [{"model": "C", "params": 7}]
    assert results["tables"]["speed"]["rows"][0]["sec_per_video"] == 0.5
    assert docs.read_text() == md  # docs_path=None leaves the docs alone

    # one table rebuilt into a fresh output folder replaces its own section of the docs, keeps the other's
    harness.run_bench(tmp_path / "fresh", only=["params"], docs_path=docs)
    merged = docs.read_text()
    assert "| C | 7 |" in merged and "1,234,567" not in merged
    assert merged.index("## Parameters") < merged.index("## Sampling "
                                                        "cost") and "| A | toy 16x32x32 | 0.5 |" in merged
    assert "## Sampling cost" not in (tmp_path / "fresh" / "bench.md").read_text()


def test_merge_report_appends_new_sections_and_keeps_order():
    old = "# B\n\n## one\n\nx\n\n## two\n\ny\n"
    new = "# B\n\n## three\n\nz\n\n## one\n\nx2\n"
    assert harness.merge_report(old, new) == "# B\n\n## one\n\nx2\n\n## two\n\ny\n\n## three\n\nz\n"


def test_run_bench_rejects_unknown_table(registry, tmp_path):
    harness.register_table("a", lambda o, q: [])
    with pytest.raises(ValueError, match="unknown bench table.*'nope'"):
        harness.run_bench(tmp_path, only=["nope"], docs_path=None)


def test_rows_to_markdown_formats_values():
    md = harness.rows_to_markdown([{"a": 1000, "b": 0.123456, "c": "x|y"}, {"a": 2, "d": float("nan")}])
    assert md.splitlines() == [
        "| a | b | c | d |",
        "| --- | --- | --- | --- |",
        "| 1,000 | 0.1235 | x\\|y |  |",
        "| 2 |  |  | n/a |",
    ]


def test_count_params_on_meta_matches_a_real_build():
    def factory():
        lin = nn.Linear(10, 20)
        return nn.Sequential(nn.Conv3d(3, 8, 3), lin, nn.Linear(20, 5), lin)  # `lin` shared: counted once

    expected = sum(p.numel() for p in factory().parameters())
    assert harness.count_params(factory) == expected == (3 * 27 * 8 + 8) + (10 * 20 + 20) + (20 * 5 + 5)


def test_count_params_trainable_only():
    def factory():
        m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        m[0].requires_grad_(False)
        return m

    assert harness.count_params(factory, trainable_only=True) == 10
    assert harness.count_params(factory) == 30


def test_count_flops_matches_hand_count_on_meta_tensors():
    with torch.device("meta"):
        conv = nn.Conv3d(3, 8, 3, padding=1)
        x = torch.randn(2, 3, 4, 16, 16)
        q = torch.randn(2, 4, 64, 32)  # (B, heads, N, dim_head)
    conv_macs = 2 * 4 * 16 * 16 * 8 * 3 * 27  # every output element: C_in * k^3 multiply-adds
    attn_macs = 2 * 2 * 4 * 64 * 64 * 32  # Q K^T and A V

    def fn(x, q):
        conv(x)
        torch.nn.functional.scaled_dot_product_attention(q, q, q)

    assert harness.count_flops(fn, x, q) == 2 * (conv_macs + attn_macs)
    assert harness.count_flops(fn, x, q, unit="macs") == conv_macs + attn_macs
    with pytest.raises(ValueError, match="unit"):
        harness.count_flops(fn, x, q, unit="gflops")


def test_time_callable_counts_calls_and_measures_sleep():
    import time

    calls = []
    stats = harness.time_callable(lambda: (calls.append(1), time.sleep(0.01)), repeats=3, warmup=2)
    assert len(calls) == 5 and stats["repeats"] == 3
    assert 0.01 <= stats["min_s"] <= stats["mean_s"] < 1.0
    with pytest.raises(ValueError):
        harness.time_callable(lambda: None, repeats=0)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_attention_flops_use_one_formula_on_every_device(device):
    """SDPA with a key mask counts 4*B*h*L*S*d on meta and CPU alike (fused CPU kernels once counted 0)."""
    b, h, L, S, d = 2, 3, 5, 7, 8
    with torch.device(device):
        q, k, v = torch.randn(b, h, L, d), torch.randn(b, h, S, d), torch.randn(b, h, S, d)
        mask = torch.ones(b, 1, 1, S, dtype=torch.bool)
    flops = harness.count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                         attn_mask=mask))
    assert flops == 4 * b * h * L * S * d


def test_math_attention_equals_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    mask[..., 0] = True
    for kwargs in ({}, {"attn_mask": mask}, {"is_causal": True}, {"scale": 0.3}):
        torch.testing.assert_close(harness._math_attention(q, k, v, **kwargs),
                                   torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs))
