"""Gas regression check: each everyday operation, the first of its kind by a fresh account on a freshly
deployed suite (the costly case, as benchmarks/gas.py measures it), stays within the issue's target.

Gas is deterministic for a given compiler and hardfork, so this is an exact regression check, not a
timing test. The flow is benchmarks/gas.py's own first round (`play_round`): list → claimMetrics →
two validators ask for the key and get it → commit ×2 → reveal ×2 → settle (Verified) → buy ×2 →
deliverKey by the seller's operator → vote → releaseRevenue → withdraw (seller) → claim → release.
"""

from __future__ import annotations

import pytest

from benchmarks.gas import (
    TARGETS,
    TOKEN_TARGETS,
    VERSION_KEY_ACCOUNTS,
    VERSION_KEY_TARGETS,
    per_holder,
    play_round,
    play_tokens,
    play_version_keys,
)


def first_call_gas(c, receipts: bool = False) -> dict:
    """{row: gasUsed} of benchmarks/gas.py's first round on chain ``c`` (or {row: receipt})."""

    def send(label, sender, call, value=0):
        return c.send(
            call, sender, value=value, gas=1_000_000
        )  # no estimate: the receipt's gasUsed counts

    contracts = {
        "ModelRegistry": c.registry,
        "Marketplace": c.market,
        "Validators": c.validators,
        "Votes": c.votes,
    }
    played = play_round(c.w3, contracts, c.accounts[1:8], 1, send, c.travel)
    return played if receipts else {label: receipt["gasUsed"] for label, receipt in played.items()}


def test_first_call_gas_within_targets(chain):
    gas = first_call_gas(chain)
    print(
        "\n" + "\n".join(f"{op:<32}{g:>9,}  target {TARGETS.get(op, '-')}" for op, g in gas.items())
    )
    over = {op: (gas[op], limit) for op, limit in TARGETS.items() if gas[op] > limit}
    assert not over, f"over target (gas, limit): {over}"
    # a validator's key costs its own delivery; it is held to the same target as a buyer's
    assert gas["deliverKey (validator's key)"] <= TARGETS["deliverKey"]


def test_token_buy_and_subscribe_gas_within_targets(chain):
    """buy_erc20 and subscribe (issue 14), as benchmarks/gas.py plays them: the first of their kind by
    never-used accounts, on a suite whose Marketplace has never held the token (its balance slot is
    fresh: the costly case)."""
    token = chain.deploy("MockStablecoin")

    def send(label, sender, call, value=0):
        return chain.send(call, sender, value=value, gas=1_000_000)

    contracts = {"ModelRegistry": chain.registry, "Marketplace": chain.market}
    fresh = [chain.new_account() for _ in range(4)]
    gas = {
        label: r["gasUsed"] for label, r in play_tokens(contracts, token, fresh, 1, send).items()
    }
    print("\n" + "\n".join(f"{op:<32}{g:>9,}" for op, g in gas.items()))
    over = {op: (gas[op], limit) for op, limit in TOKEN_TARGETS.items() if gas[op] > limit}
    assert not over, f"over target (gas, limit): {over}"
    # in the token it costs the token's transferFrom and the balance checks more (no target)
    assert gas["subscribe (ERC-20)"] > gas["subscribe"]


def test_version_keys_per_holder_within_target(chain):
    """deliverVersionKeys (issue 15 §1) as benchmarks/gas.py plays it: one batch of 10 never-used
    holders' first version keys, divided by 10."""

    def send(label, sender, call, value=0):
        return chain.send(call, sender, value=value, gas=2_000_000)

    contracts = {"ModelRegistry": chain.registry, "Marketplace": chain.market}
    fresh = [chain.new_account() for _ in range(VERSION_KEY_ACCOUNTS)]
    gas = {label: r["gasUsed"] for label, r in play_version_keys(contracts, fresh, 1, send).items()}
    gas["deliver_version_keys_per_holder"] = per_holder(gas)
    print("\n" + "\n".join(f"{op:<40}{g:>9,}" for op, g in gas.items()))
    over = {op: (gas[op], limit) for op, limit in VERSION_KEY_TARGETS.items() if gas[op] > limit}
    assert not over, f"over target (gas, limit): {over}"


def calldata_gas(data: bytes) -> int:
    """What a transaction's input costs (EIP-2028: 16 gas per non-zero byte, 4 per zero byte)."""
    zeros = data.count(0)
    return 16 * (len(data) - zeros) + 4 * zeros


@pytest.mark.anvil
def test_gas_is_the_same_on_both_chains(embedded_chain, anvil_chain):
    """py-evm and anvil charge the same (both prague): the embedded figures are the benchmark's. The
    two chains' accounts differ, so the calldata that holds an address (or a commitment to one) differs
    by a few zero bytes: execution is compared net of calldata, and the rest of the input exactly."""
    results = []
    for c in (embedded_chain, anvil_chain):
        snap = c.snapshot()
        try:
            gas = {}
            for label, receipt in first_call_gas(c, receipts=True).items():
                data = bytes(c.w3.eth.get_transaction(receipt["transactionHash"])["input"])
                gas[label] = receipt["gasUsed"] - calldata_gas(data)
            results.append(gas)
        finally:
            c.revert(snap)
    assert results[0] == results[1], results
