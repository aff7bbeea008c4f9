"""The benchmark harness behind ``videogen bench`` / ``make bench``.

Model packages contribute tables: a module ``videogen/bench/<model>.py`` calls :func:`register_table`
at import time with a builder ``build(out_dir, quick) -> list[dict]`` (one dict per row, same keys).
:func:`run_bench` imports those modules, builds the requested tables, merges the rows into
``<out_dir>/results.json`` and regenerates the markdown report (``docs/bench.md`` in a source checkout,
and ``<out_dir>/bench.md`` always).

Rows describe their own setting: a row whose ``setting`` value starts with ``"toy"`` was measured on a
tiny configuration (CPU-sized), not on the paper's, and the report says so next to the table.

Measurement helpers for the builders: :func:`count_params` (on the ``meta`` device: no memory, no
time), :func:`count_flops` (``torch.utils.flop_counter`` on meta tensors) and :func:`time_callable`.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.util
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videogen.core.files import atomic_write_text

__all__ = [
    "TABLE_MODULES",
    "Table",
    "count_flops",
    "count_params",
    "register_table",
    "registered_tables",
    "render_markdown",
    "rows_to_markdown",
    "run_bench",
    "time_callable",
]

#: Modules under ``videogen.bench`` that register tables; each is imported if it exists.
TABLE_MODULES: tuple[str, ...] = ("lamd", "cmd", "lvdm", "evaluation", "samplers", "synthetic", "gpu", "data",
                                  "cache")

Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A registered benchmark table.

    Attributes:
        name: key in results.json and ``--only`` (e.g. ``"lamd_params"``).
        build: ``build(out_dir, quick) -> list of row dicts``; ``quick`` asks for the cheapest version.
        title: heading in the report.
        description: a paragraph under the heading (what is measured and how).
        render: ``render(rows) -> markdown``; defaults to :func:`rows_to_markdown`.
        requires_cuda: built only when named (``--only``) and a CUDA GPU is present (``make bench-gpu``);
            elsewhere it is skipped with a message and its last results are kept.
    """

    name: str
    build: Callable[[Path, bool], list[Row]]
    title: str
    description: str = ""
    render: Callable[[list[Row]], str] | None = None
    requires_cuda: bool = False


_REGISTRY: dict[str, Table] = {}


def register_table(
    name: str,
    build: Callable[[Path, bool], list[Row]],
    *,
    title: str | None = None,
    description: str = "",
    render: Callable[[list[Row]], str] | None = None,
    requires_cuda: bool = False,
) -> Table:
    """Register (or replace) a table builder under ``name``; returns the :class:`Table`."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"table name must be a non-empty identifier (letters, digits, _), got {name!r}")
    table = Table(name=name, build=build, title=title or name, description=description, render=render,
                  requires_cuda=requires_cuda)
    _REGISTRY[name] = table
    return table


def registered_tables() -> dict[str, Table]:
    """Import the table modules that exist (``videogen.bench.<m>`` for m in TABLE_MODULES) and
    return the registry."""
    for mod in TABLE_MODULES:
        full = f"{__package__}.{mod}"
        if importlib.util.find_spec(full) is not None:
            importlib.import_module(full)
    return dict(_REGISTRY)


# ----------------------------------------------------------------------------- measurement helpers


def count_params(module_factory: Callable[[], torch.nn.Module], *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module_factory()``, built on the ``meta`` device (no memory used).

    Shared (tied) parameters are counted once.
    """
    with torch.device("meta"):
        module = module_factory()
    params = {id(p): p for p in module.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in params.values())


def _math_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False):
    """``F.scaled_dot_product_attention`` as two explicit matmuls, for counting only.

    The fused kernels that SDPA dispatches to differ by device and torch version (a CPU kernel with a
    mask had no FLOP formula in torch 2.14, so the same network counted fewer FLOPs on CPU than on
    ``meta``).  Counting the math form gives one formula everywhere: ``4 * B * heads * L * S * d``
    (``Q K^T`` and ``A V``, a multiply-add = 2), the same as PyTorch's formula for the fused kernels.
    """
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, S)
    if is_causal:
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return scores.softmax(-1) @ value  # (..., L, d)


class _explicit_attention:
    """Context manager: ``F.scaled_dot_product_attention`` runs as :func:`_math_attention` inside."""

    def __enter__(self):
        import torch.nn.functional as F

        self._original = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = _math_attention
        return self

    def __exit__(self, *exc):
        import torch.nn.functional as F

        F.scaled_dot_product_attention = self._original
        return False


def count_flops(fn: Callable[..., Any], *inputs: Any, unit: str = "flops", **kwargs: Any) -> int:
    """FLOPs of one call ``fn(*inputs, **kwargs)``, counted by ``torch.utils.flop_counter``.

    Pass meta tensors (and a module built on ``meta``) to count without memory or time.  Only
    matmuls, convolutions and attention are counted (the ops that dominate), as in the papers.
    ``unit="flops"`` counts a multiply-add as 2 (PyTorch's convention); ``unit="macs"`` as 1, the
    convention of fvcore and of the "GFLOPs" that DiT-style papers report.  Attention is counted
    with one device-independent formula (:func:`_math_attention`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if unit not in ("flops", "macs"):
        raise ValueError(f"unit must be 'flops' or 'macs', got {unit!r}")
    with torch.no_grad(), _explicit_attention(), FlopCounterMode(display=False) as counter:
        fn(*inputs, **kwargs)
    total = counter.get_total_flops()
    return total if unit == "flops" else total // 2


def time_callable(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Wall-clock seconds of ``fn()``: ``warmup`` untimed calls then ``repeats`` timed ones.

    CUDA work is synchronised around each call.  Returns ``{"mean_s", "std_s", "min_s", "repeats"}``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    std = statistics.stdev(times) if repeats > 1 else 0.0
    return {"mean_s": statistics.fmean(times), "std_s": std, "min_s": min(times), "repeats": repeats}


# ----------------------------------------------------------------------------- rendering


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def rows_to_markdown(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``rows``; columns default to the keys in first-seen order."""
    if not rows:
        return "_(no rows)_\n"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _environment() -> dict[str, str]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.system()}, {device}",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def render_markdown(results: dict[str, Any], tables: dict[str, Table]) -> str:
    """The report: an environment header, then one section per table present in ``results``."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `videogen bench` (`make bench`); do not edit by hand.",
        "",
    ]
    if not results["tables"]:
        out += ["_No tables yet: model packages register them in `videogen/bench/<model>.py`._", ""]
    for name, entry in results["tables"].items():
        table = tables.get(name)
        env = entry["environment"]
        rows = entry["rows"]
        out += [f"## {table.title if table else name}", ""]
        if table and table.description:
            out += [table.description, ""]
        out += [
            f"_Measured {env['date']} on {env['machine']}, torch {env['torch']}, python {env['python']}"
            f"{' (quick mode)' if entry.get('quick') else ''}._",
            "",
        ]
        if any(str(r.get("setting", "")).startswith("toy") for r in rows):
            out += [
                "Rows whose setting is _toy_ were measured on tiny configurations that run on a CPU; "
                "they check the pipeline and relative costs, not the papers' numbers.",
                "",
            ]
        render = (table.render if table else None) or rows_to_markdown
        out += [render(rows)]
    return "\n".join(out)


def _sections(markdown: str) -> tuple[str, list[list[str]]]:
    """``markdown`` -> (text before the first ``## `` heading, [[heading, section text], ...])."""
    head, sections = [], []
    for line in markdown.splitlines(keepends=True):
        if line.startswith("## "):
            sections.append([line.strip(), line])
        elif sections:
            sections[-1][1] += line
        else:
            head.append(line)
    return "".join(head), sections


def merge_report(existing: str, new: str) -> str:
    """``existing`` with each ``## `` section of ``new`` put in place of the section of the same heading
    (or appended): rebuilding some tables into a fresh output folder keeps the others' sections of
    docs/bench.md."""
    _, old_sections = _sections(existing)
    head, new_sections = _sections(new)
    fresh = dict(new_sections)
    merged = [(h, fresh.pop(h, t)) for h, t in old_sections]
    merged += [(h, t) for h, t in new_sections if h in fresh]
    return head + "\n\n".join(t.rstrip("\n") for _, t in merged) + "\n"  # sections apart by a blank line


# ----------------------------------------------------------------------------- driver


def _default_docs_path() -> Path | None:
    """``docs/bench.md`` of the source checkout this package runs from, if there is one."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    return docs / "bench.md" if docs.is_dir() else None


def run_bench(
    out_dir: str | Path,
    only: Iterable[str] | None = None,
    *,
    quick: bool = False,
    docs_path: str | Path | None = "auto",
) -> dict[str, Any]:
    """Build the registered tables (all that run on a CPU, or those named in ``only``) and write the report.

    A ``requires_cuda`` table named in ``only`` on a machine without CUDA is skipped with a message
    (its last results stay in the report).

    Rows are merged into ``<out_dir>/results.json`` (tables not rebuilt keep their last results), the
    markdown goes to ``<out_dir>/bench.md`` and to ``docs_path`` (``"auto"``: the checkout's
    docs/bench.md; ``None``: nowhere else), where it replaces the sections of the rebuilt tables and keeps
    the others (:func:`merge_report`).  Returns the merged results.
    """
    out_dir = Path(out_dir)
    tables = registered_tables()
    names = [n for n, t in tables.items() if not t.requires_cuda] if only is None else list(only)
    unknown = [n for n in names if n not in tables]
    if unknown:
        raise ValueError(f"unknown bench table(s) {unknown}; registered: {sorted(tables)}")
    if not torch.cuda.is_available():
        for name in [n for n in names if tables[n].requires_cuda]:
            print(f"bench: {name} needs a CUDA GPU and this machine has none: not measured", flush=True)
            names.remove(name)
        if not names:
            return {"tables": {}}  # nothing built: leave every report as it is
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results: dict[str, Any] = {"tables": {}}
    if results_path.is_file():
        results = json.loads(results_path.read_text())
    for name in names:
        table_dir = out_dir / name
        table_dir.mkdir(exist_ok=True)
        start = time.perf_counter()
        rows = tables[name].build(table_dir, quick)
        results["tables"][name] = {
            "environment": _environment(),
            "quick": quick,
            "wall_seconds": round(time.perf_counter() - start, 3),
            "rows": rows,
        }
        print(f"bench: {name}: {len(rows)} rows in {results['tables'][name]['wall_seconds']} s", flush=True)
    atomic_write_text(results_path, json.dumps(results, indent=2, default=str) + "\n")
    markdown = render_markdown(results, tables)
    atomic_write_text(out_dir / "bench.md", markdown)
    if docs_path == "auto":
        docs_path = _default_docs_path()
    if docs_path is not None:
        docs_file = Path(docs_path)
        atomic_write_text(docs_file, merge_report(docs_file.read_text(), markdown) if docs_file.is_file()
                             else markdown)
    return results
