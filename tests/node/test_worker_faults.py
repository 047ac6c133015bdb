"""The key-delivery worker killed at every point still delivers each purchase exactly once.

On anvil, `modex worker` runs as a real subprocess and SIGKILLs itself at the injected point
($MODEX_WORKER_CRASH): before wrapping, after signing and recording the transaction but before
sending it, after sending it but before its receipt, and after the receipt but before its state
is updated. After the kills a clean run finishes the queue. Then: every purchase has exactly
one KeyDelivered, no deliverKey transaction ever reverted, nothing is delivered after its
window, and the Marketplace's books add up to the wei.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model
from web3.logs import DISCARD

from node.worker import DELIVERY_CRASH_POINTS, REORG_DEPTH, KeyDelivery

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

    for point in DELIVERY_CRASH_POINTS:  # before_replace_send: test_worker_replace.py
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


class _Interrupt(Exception):
    pass


def _stop_before_wrap(point: str, purchase_id: int) -> None:
    if point == "before_wrap":
        raise _Interrupt(purchase_id)  # poll() logs it: the purchase stays open, undelivered


def can_open(stack, role: str, pid: int) -> bool:
    """Whether ``role`` can unwrap the key delivered for purchase ``pid`` with its wallet key."""
    from node.errors import KeyWrapError
    from node.fetch import unwrap_for

    (ev,) = stack.chain.events("KeyDelivered", from_block=stack.chain.deployment["block"],
                               purchaseId=pid)
    try:
        unwrap_for(stack.chain, stack.signers[role], pid, bytes(ev["args"]["wrappedKey"]))
    except KeyWrapError:
        return False
    return True


def test_a_reorg_that_gives_a_purchase_id_to_another_buyer_delivers_to_that_buyer(tmp_path):
    """Purchase ids are a counter: after a reorg the same id can be another buyer's purchase,
    with another buyer key. The worker must wrap to the key of the purchase now on-chain."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    w3, state = stack.chain.w3, tmp_path / "w.json"
    snapshot = w3.testing.snapshot()
    first = buy_raw(stack, "buyer", model)
    w3.testing.mine(3)
    seen = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state,
                       crash=_stop_before_wrap).poll()
    assert first in seen.skipped and seen.delivered == []  # discovered, not delivered
    # The reorg: a shorter chain where buyer2's purchase takes the id, and buyer's purchase
    # comes after it in a block the worker had already scanned on the old chain.
    w3.testing.revert(snapshot)
    second = buy_raw(stack, "buyer2", model)
    third = buy_raw(stack, "buyer", model)
    assert second == first and w3.eth.block_number < seen.scanned_to
    report = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll()
    assert report.delivered == [second, third]
    assert can_open(stack, "buyer2", second) and can_open(stack, "buyer", third)


def test_a_stale_open_entry_is_reread_from_the_chain_before_delivery(tmp_path):
    """A state entry naming another buyer than the chain's purchase (a reorg deeper than the
    worker rescans, or a state file from before reorg checks) is re-read from its event."""
    import json

    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    state = tmp_path / "w.json"
    pid = buy_raw(stack, "buyer", model)
    KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state,
                crash=_stop_before_wrap).poll()
    doc = json.loads(state.read_text())
    doc["open"][str(pid)] = {"model_id": model, "buyer_key": (b"\x09" * 32).hex(),
                             "account": stack.signers["buyer2"].address}
    doc.pop("tip_hash", None)
    state.write_text(json.dumps(doc))
    report = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll()
    assert report.delivered == [pid]
    assert can_open(stack, "buyer", pid)


def test_an_unusable_state_file_path_is_one_sentence(tmp_path):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    buy_raw(stack, "buyer", model)
    (tmp_path / "afile").write_text("not a folder")
    code, _, err = stack.cli("seller", "worker", "--once", "--state",
                               str(tmp_path / "afile" / "w.json"))
    assert code == 1 and "worker state file" in err and "--state" in err, err
    assert len(err.strip().splitlines()) == 1 and deliveries(stack) == {}


@pytest.mark.parametrize("text", ["[]", "{\"chain_id\": 1}", "\"x\""])
def test_a_state_file_of_another_shape_is_rescanned_not_a_crash(tmp_path, text):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    pid = buy_raw(stack, "buyer", model)
    state = tmp_path / "w.json"
    doc = {"chain_id": stack.chain.chain_id,
           "marketplace": stack.chain.marketplace.address.lower()} if "chain_id" in text else None
    state.write_text(json.dumps(doc) if doc else text)  # ours but lacking next_block, or not a dict
    report = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll()
    assert report.delivered == [pid]


def test_an_entry_from_an_older_state_file_survives_a_reorg_rescan(tmp_path):
    """Entries written before the worker recorded their block must not be dropped by a reorg
    rescan that starts after their block: nothing would find them again."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    state = tmp_path / "w.json"
    pid = buy_raw(stack, "buyer", model)
    stack.chain.w3.testing.mine(REORG_DEPTH + 10)
    KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state,
                crash=_stop_before_wrap).poll()
    doc = json.loads(state.read_text())
    entry = doc["open"][str(pid)]
    doc["open"][str(pid)] = {"model_id": entry["model_id"], "buyer_key": entry["buyer_key"]}
    doc["tip_hash"] = "0x" + "00" * 32  # the last scanned block was reorganised away
    state.write_text(json.dumps(doc))
    report = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state).poll()
    assert report.delivered == [pid] and can_open(stack, "buyer", pid)
