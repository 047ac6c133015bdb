"""benchmarks/gas.py keeps working: it runs end to end against its own anvil and ends with the JSON
line BENCHMARKS.md quotes. (The figures are a benchmark's business, not asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node import paths

KEYS = {
    "list",
    "buy",
    "deliverKey",
    "vote",
    "commit",
    "reveal",
    "settle",
    "withdraw",
}  # issue 13, section 4
BASELINE = "baseline_erc721_mint"  # the in-run anchor (an OpenZeppelin ERC-721 mint)


@pytest.mark.anvil
def test_gas_benchmark_prints_a_table_and_a_json_line():
    run = subprocess.run(
        [sys.executable, str(paths.ROOT / "benchmarks" / "gas.py")],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert set(figures) == KEYS | {BASELINE}
    # Every operation costs at least the 21,000 intrinsic gas plus some execution; less means a
    # measurement of the wrong transaction.
    assert all(isinstance(v, int) and 21_000 < v < 1_000_000 for v in figures.values()), figures
    for key in KEYS:
        assert any(line.startswith(key + " ") for line in lines), key
    assert "OpenZeppelin ERC-721 mint" in run.stdout
