"""The key-delivery worker killed at every point still delivers each purchase exactly once.

On anvil, `modex worker` runs as a real subprocess and SIGKILLs itself at the injected point
($MODEX_WORKER_CRASH): before wrapping, after signing and recording the transaction but before
sending it, after sending it but before its receipt, and after the receipt but before its state
is updated. After the kills a clean run finishes the queue. Then: every purchase has exactly
one KeyDelivered, no deliverKey transaction ever reverted, nothing is delivered after its
window, and the Marketplace's books add up to the wei.
"""

from __future__ import annotations

import subprocess

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model
from web3.logs import DISCARD

from node.worker import CRASH_POINTS, KeyDelivery

PRICE = 10**16
FEE_BPS = 250
LOW_ORDER_KEY = b"\x01" + b"\x00" * 31  # X25519 point of order 1: no key can be wrapped to it


def run_worker(stack, crash: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = stack.env()
    env.pop("MODEX_WORKER_CRASH", None)
    if crash:
        env["MODEX_WORKER_CRASH"] = crash
    return subprocess.run(stack.modex_cmd("seller", "worker", "--once"), env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def deliveries(stack) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ev in stack.chain.events("KeyDelivered", from_block=stack.chain.deployment["block"]):
        pid = int(ev["args"]["purchaseId"])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def seller_tx_statuses(stack) -> list[int]:
    """Status of every transaction the seller sent (anvil: scan the blocks since deployment)."""
    w3, seller = stack.chain.w3, stack.signers["seller"].address
    statuses = []
    for n in range(stack.chain.deployment["block"], w3.eth.block_number + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            if tx["from"] == seller:
                statuses.append(w3.eth.get_transaction_receipt(tx["hash"])["status"])
    return statuses


@pytest.mark.anvil
@pytest.mark.slow
def test_worker_killed_at_each_point_delivers_every_purchase_exactly_once(tmp_path, anvil):
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, fee_bps=FEE_BPS,
                       delivery_window=3600)
    chain = stack.chain
    models = [publish_model(stack, write_model(tmp_path / f"m{i}", seed=i), price=PRICE)
              for i in range(2)]
    purchases = [buy_raw(stack, role, m) for m in models for role in ("buyer", "buyer2")]
    escrow_before = chain.balance(chain.marketplace.address)
    assert escrow_before == len(purchases) * PRICE

    for point in CRASH_POINTS:
        result = run_worker(stack, crash=point)
        assert result.returncode == -9, (point, result.stdout, result.stderr)  # SIGKILLed there
    result = run_worker(stack)
    assert result.returncode == 0, result.stderr

    assert deliveries(stack) == {pid: 1 for pid in purchases}
    assert all(status == 1 for status in seller_tx_statuses(stack))  # never a doomed resend
    # Books: the seller is owed price − fee per sale, the fee recipient the fee; escrow is gone.
    mkt = chain.marketplace.functions
    fee = PRICE * FEE_BPS // 10_000
    assert chain.call(mkt.credited(stack.signers["seller"].address)) == 4 * (PRICE - fee)
    fee_recipient = chain.call(mkt.feeRecipient())
    assert chain.call(mkt.credited(fee_recipient)) == 4 * fee
    assert chain.balance(chain.marketplace.address) == escrow_before

    # A purchase whose window closes while the worker is down is never delivered: refundable.
    late = buy_raw(stack, "validator", models[0])
    stack.time_travel(3700)
    assert run_worker(stack).returncode == 0
    assert late not in deliveries(stack)
    stack.chain.transact(chain.marketplace.functions.refund(late), stack.signers["validator"])
    assert chain.call(mkt.purchase(late))[4] == 3  # refunded


def test_undeliverable_purchases_are_skipped_without_blocking_the_queue(tmp_path, caplog):
    stack = make_stack("embedded", tmp_path, fee_bps=FEE_BPS, delivery_window=3600)
    chain = stack.chain
    good = publish_model(stack, write_model(tmp_path / "good"), price=PRICE)
    # A listing whose content key is not in this seller's vault (e.g. listed from another node).
    receipt = chain.transact(chain.registry.functions.list(
        b"\x11" * 32, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", PRICE),
        stack.signers["seller"])
    keyless = chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]

    bad_key = buy_raw(stack, "buyer", good, buyer_key=LOW_ORDER_KEY)
    no_key = buy_raw(stack, "buyer2", keyless)
    fine = buy_raw(stack, "validator", good)

    worker = KeyDelivery(chain, stack.signers["seller"], stack.vault(), tmp_path / "w.json")
    report = worker.poll()
    assert report.delivered == [fine]
    assert "cannot wrap the key" in report.skipped[bad_key]
    assert "no content key for model" in report.skipped[no_key]
    assert "left refundable" in caplog.text
    # Still open (and refundable after the window), reported again but logged once.
    caplog.clear()
    assert set(worker.poll().skipped) == {bad_key, no_key}
    assert "left refundable" not in caplog.text
    assert deliveries(stack) == {fine: 1}


def test_state_file_loss_never_causes_a_second_delivery(tmp_path):
    """The state file only says where to look: deleting it costs a rescan, not a double send."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    pid = buy_raw(stack, "buyer", model)
    state = tmp_path / "w.json"
    assert KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll().delivered == [pid]
    state.unlink()
    again = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll()
    assert again.delivered == [] and pid in again.closed
    assert deliveries(stack) == {pid: 1}
