"""videogen.bench: the paper tables behind ``make bench`` (see :mod:`videogen.bench.harness`)."""

from __future__ import annotations

from videogen.bench.harness import (
    count_flops,
    count_params,
    register_table,
    rows_to_markdown,
    run_bench,
    time_callable,
)

__all__ = ["count_flops", "count_params", "register_table", "rows_to_markdown", "run_bench", "time_callable"]
