"""benchmarks/serve_http.py keeps working: its own anvil, a bought licence and payment channels,
`modex serve` (two processes), the naive pipeline before and after, the in-process ceiling of the
same model and batcher, clients in their own process, the licence and voucher runs with the CPU
per request, and the JSON line BENCHMARKS.md quotes. (A short run: the figures
are the benchmark's business, only their sanity is checked here.)"""

from __future__ import annotations

import pytest

from tests.scripts import run_benchmark

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def test_serve_http_benchmark_prints_its_runs_and_a_json_line():
    lines, figures = run_benchmark(
        "serve_http",
        *("--requests", "64", "--clients", "4", "--naive-requests", "16"),
        timeout=400,
    )
    assert figures["benchmark"] == "serve_http" and figures["processes"] == 2
    assert figures["naive_throughput"] > 0 and figures["http_throughput_4"] > 0
    assert figures["http_vs_naive_4"] == pytest.approx(
        figures["http_throughput_4"] / figures["naive_throughput"], rel=0.01
    )
    assert figures["voucher_over_licence"] == pytest.approx(
        figures["voucher_throughput_4"] / figures["http_throughput_4"], rel=0.01
    )
    assert figures["http_p99_over_p50_4"] >= 1 and figures["voucher_p99_over_p50_4"] >= 1
    assert figures["in_process_throughput_4"] > 0
    assert figures["http_vs_in_process_4"] == pytest.approx(
        figures["http_throughput_4"] / figures["in_process_throughput_4"], rel=0.01
    )
    assert figures["in_process_vs_naive_4"] == pytest.approx(
        figures["in_process_throughput_4"] / figures["naive_throughput"], rel=0.01
    )
    core_ms = figures["core_ms_per_request"]
    assert set(core_ms) == {"model_in_process", "server_licence", "server_voucher", "clients"}
    assert all(ms > 0 for ms in core_ms.values())
    for label in (
        "naive pipeline (1 at a time, fp32), before:",
        "in process (batcher, no HTTP), mean batch",
        "server: int8, 2 processes x 1 workers",
        "HTTP, licence, 4 clients:",
        "HTTP, voucher, 4 clients:",
        "HTTP, licence, again, 4 clients:",
        "naive pipeline (1 at a time, fp32), after:",
    ):
        assert any(line.startswith(label) for line in lines), label
