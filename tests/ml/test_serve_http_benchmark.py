"""benchmarks/serve_http.py keeps working: its own anvil, a bought licence, `modex serve` with one
process and with two, clients in their own process, and the JSON line BENCHMARKS.md quotes.
(A short run: the figures are the benchmark's business, only their sanity is checked here.)"""

from __future__ import annotations

import pytest

from tests.scripts import run_benchmark

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_serve_http_benchmark_prints_its_runs_and_a_json_line():
    lines, figures = run_benchmark("serve_http", "--requests", "64", "--clients", "4", timeout=400)
    assert figures["benchmark"] == "serve_http" and figures["processes"] == 2
    assert figures["throughput"] > 0 and figures["one_process_throughput"] > 0
    assert figures["throughput_vs_one_process"] == pytest.approx(
        figures["throughput"] / figures["one_process_throughput"], rel=0.01
    )
    assert figures["p99_over_p50"] >= 1
    for label in (
        "one process, before: int8, 2 workers;",
        "2 processes: int8, 2 processes x 1 workers;",
        "one process, after:",
    ):
        assert any(line.startswith(label) for line in lines), label
