"""benchmarks/gas.py keeps working: it runs end to end against its own anvil and ends with the JSON
line BENCHMARKS.md quotes. (The figures are a benchmark's business, not asserted here.)"""

from __future__ import annotations

import pytest

from tests.scripts import run_benchmark

KEYS = {
    "list",
    "buy",
    "deliverKey",
    "vote",
    "commit",
    "reveal",
    "settle",
    "withdraw",
    "openChannel",  # issue 14: a payment channel's ERC-20 deposit
    "claim",  # issue 14: the seller's claim of a voucher
    "buy_erc20",  # issue 14: buy with the price pulled in an ERC-20
    "subscribe",  # issue 14: 30 days of a model's service, paid in an ERC-20
    "deliver_version_keys_per_holder",  # issue 15: a batch of 10 new-version keys, per holder
}  # issue 13, section 4 (and issue 14's benchmarks)
BASELINE = "baseline_erc721_mint"  # the in-run anchor (an OpenZeppelin ERC-721 mint)


@pytest.mark.anvil
def test_gas_benchmark_prints_a_table_and_a_json_line():
    lines, figures = run_benchmark("gas", timeout=300)
    assert set(figures) == KEYS | {BASELINE}
    # Every operation costs at least the 21,000 intrinsic gas plus some execution; less means a
    # measurement of the wrong transaction. A holder's share of a batch pays a tenth of it, and at
    # least its own fresh bit (an SSTORE of a zero slot is 20,000 gas, a tenth of it 2,000).
    per_holder = figures.pop("deliver_version_keys_per_holder")
    assert isinstance(per_holder, int) and 2_000 < per_holder < 100_000, per_holder
    assert all(isinstance(v, int) and 21_000 < v < 1_000_000 for v in figures.values()), figures
    for key in KEYS:
        assert any(line.startswith(key + " ") for line in lines), key
    assert any("OpenZeppelin ERC-721 mint" in line for line in lines)
