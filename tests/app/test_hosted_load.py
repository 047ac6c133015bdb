"""benchmarks/hosted_load.py in a tiny configuration (a few listings and visitors, seconds): it
seeds real listings, runs `modex up --hosted`, drives visitors that sign in, ramps, and prints
its JSON line. Not a timed test: the figures are BENCHMARKS.md's, from a full run."""

from __future__ import annotations

import os

from tests.scripts import run_benchmark

TINY = (
    "--listings", "6",
    "--visitors", "3",
    "--duration", "6",
    "--warmup", "2",
    "--pause", "0.2",
    "--step-duration", "4",
    "--max-steps", "1",
    "--baseline-clients", "2",
    "--baseline-duration", "5",
)  # fmt: skip
# Windows of a few seconds, not one or two: a cold server's first pages on a busy CI machine can
# take a second or more, and a window that closes before any page is served measures nothing.


def test_the_benchmark_runs_and_prints_its_figures(tmp_path):
    lines, figures = run_benchmark("hosted_load", *TINY, "--tmpdir", str(tmp_path), timeout=900)
    assert any(line.startswith("seeded 6 listings") for line in lines), lines
    for key in (
        "p50_ms",
        "p99_ms",
        "rss_growth_mb",
        "pss_growth_mb",
        "warmup_rss_mb",
        "max_rps_p99_300",
        "baseline_rps",
    ):
        assert isinstance(figures[key], (int, float)), (key, figures)
    assert figures["errors"] == 0, lines
    # `modex up --hosted` on its local anvil: one UI process per core (up to 8)
    assert figures["ui_processes"] == min(len(os.sched_getaffinity(0)), 8), figures
    assert set(figures["rss_growth_by_kind_mb"]) == {"anon", "file"}, figures
    assert figures["rps"] > 0 and figures["baseline_rps"] > 0
    assert len(figures["ramp"]) == 1 and figures["ramp"][0]["visitors"] == 4
    assert not list(tmp_path.iterdir())  # the scratch folder is removed
