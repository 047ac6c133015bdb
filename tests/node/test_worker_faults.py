"""The key-delivery worker killed at every point still delivers each purchase exactly once.

On anvil, `modex worker` runs as a real subprocess and SIGKILLs itself at the injected point
($MODEX_WORKER_CRASH): before wrapping, after signing and recording the transaction but before
sending it, after sending it but before its receipt, and after the receipt but before its state
is updated. After the kills a clean run finishes the queue. Then: every purchase has exactly
one KeyDelivered, no deliverKey transaction ever reverted, nothing is delivered after its
window, and the Marketplace's books add up to the wei.

Reorgs: after a reorg a purchase id can be another buyer's purchase. On anvil (``anvil_reorg``)
a delivery already mined is mined again on the new chain, where the id is the other buyer's:
the Marketplace refuses it (``MarketplaceWrongBuyer``) and the worker delivers to the buyers the
new chain names.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from eth_utils import keccak
from modex_stack import buy_raw, make_stack, publish_model, write_model
from web3.logs import DISCARD
from worker_helpers import can_open, deliveries, seller_worker

from node.content.keywrap import derive_x25519
from node.devchain import start_anvil
from node.protocol import Purchase, PurchaseStatus
from node.replacement import unsigned_transaction
from node.revert import as_revert
from node.worker import DELIVERY_CRASH_POINTS

PRICE = 10**16
FEE_BPS = 250
LOW_ORDER_KEY = b"\x01" + b"\x00" * 31  # X25519 point of order 1: no key can be wrapped to it


def run_worker(
    stack, crash: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    env = stack.env()
    env.pop("MODEX_WORKER_CRASH", None)
    if crash:
        env["MODEX_WORKER_CRASH"] = crash
    return subprocess.run(
        stack.modex_cmd("seller", "worker", "--once"),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
    stack = make_stack(
        "anvil", tmp_path, anvil_url=anvil.url, fee_bps=FEE_BPS, delivery_window=3600
    )
    chain = stack.chain
    models = [
        publish_model(stack, write_model(tmp_path / f"m{i}", seed=i), price=PRICE) for i in range(2)
    ]
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
    # Books: each sale is held for the challenge period, then released: the seller is owed
    # price − fee per sale, the fee recipient the fee; the escrow became their credits.
    mkt = chain.marketplace.functions
    fee = PRICE * FEE_BPS // 10_000
    fee_recipient = chain.call(mkt.feeRecipient())
    assert chain.call(mkt.credited(stack.signers["seller"].address)) == 0  # held
    stack.time_travel(chain.call(mkt.challengePeriod()) + 1)
    for pid in purchases:
        chain.transact(mkt.releaseRevenue(pid), stack.signers["buyer"])  # anyone may release
    assert chain.call(mkt.credited(stack.signers["seller"].address)) == 4 * (PRICE - fee)
    assert chain.call(mkt.credited(fee_recipient)) == 4 * fee
    assert chain.balance(chain.marketplace.address) == escrow_before

    # A purchase whose window closes while the worker is down is never delivered: refundable.
    late = buy_raw(stack, "validator", models[0])
    stack.time_travel(3700)
    assert run_worker(stack).returncode == 0
    assert late not in deliveries(stack)
    stack.chain.transact(chain.marketplace.functions.refund(late), stack.signers["validator"])
    assert Purchase.from_call(chain.call(mkt.purchase(late))).status == PurchaseStatus.REFUNDED


def test_undeliverable_purchases_are_skipped_without_blocking_the_queue(tmp_path, caplog):
    stack = make_stack("embedded", tmp_path, fee_bps=FEE_BPS, delivery_window=3600)
    chain = stack.chain
    good = publish_model(stack, write_model(tmp_path / "good"), price=PRICE)
    # A listing whose content key is not in this seller's vault (e.g. listed from another node).
    receipt = chain.transact(
        chain.registry.functions.list(
            b"\x11" * 32, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", PRICE
        ),
        stack.signers["seller"],
    )
    keyless = chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["modelId"]

    bad_key = buy_raw(stack, "buyer", good, buyer_key=LOW_ORDER_KEY)
    no_key = buy_raw(stack, "buyer2", keyless)
    fine = buy_raw(stack, "validator", good)

    worker = seller_worker(stack, tmp_path / "w.json")
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
    assert seller_worker(stack, state).poll().delivered == [pid]
    state.unlink()
    again = seller_worker(stack, state).poll()
    assert again.delivered == [] and pid in again.closed
    assert deliveries(stack) == {pid: 1}


class _Interrupt(Exception):
    pass


def _stop_before_wrap(point: str, purchase_id: int) -> None:
    if point == "before_wrap":
        raise _Interrupt(purchase_id)  # poll() logs it: the purchase stays open, undelivered


def test_a_reorg_that_gives_a_purchase_id_to_another_buyer_delivers_to_that_buyer(tmp_path):
    """Purchase ids are a counter: after a reorg the same id can be another buyer's purchase,
    with another buyer key. The worker must wrap to the key of the purchase now on-chain."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    w3, state = stack.chain.w3, tmp_path / "w.json"
    snapshot = w3.testing.snapshot()
    first = buy_raw(stack, "buyer", model)
    w3.testing.mine(3)
    seen = seller_worker(stack, state, crash=_stop_before_wrap).poll()
    assert first in seen.skipped and seen.delivered == []  # discovered, not delivered
    # The reorg: a shorter chain where buyer2's purchase takes the id, and buyer's purchase
    # comes after it in a block the worker had already scanned on the old chain.
    w3.testing.revert(snapshot)
    second = buy_raw(stack, "buyer2", model)
    third = buy_raw(stack, "buyer", model)
    assert second == first and w3.eth.block_number < seen.scanned_to
    report = seller_worker(stack, state).poll()
    assert report.delivered == [second, third]
    assert can_open(stack, "buyer2", second) and can_open(stack, "buyer", third)


def test_a_stale_open_entry_is_reread_from_the_chain_before_delivery(tmp_path):
    """A state entry naming another buyer than the chain's purchase (a reorg deeper than the
    worker rescans, or a state file from before reorg checks) is re-read from its event."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    state = tmp_path / "w.json"
    pid = buy_raw(stack, "buyer", model)
    seller_worker(stack, state, crash=_stop_before_wrap).poll()
    doc = json.loads(state.read_text())
    doc["open"][str(pid)] = {
        "model_id": model,
        "buyer_key": (b"\x09" * 32).hex(),
        "account": stack.signers["buyer2"].address,
    }
    doc.pop("tip_hash", None)
    state.write_text(json.dumps(doc))
    report = seller_worker(stack, state).poll()
    assert report.delivered == [pid]
    assert can_open(stack, "buyer", pid)


def test_an_unusable_state_file_path_is_one_sentence(tmp_path):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    buy_raw(stack, "buyer", model)
    (tmp_path / "afile").write_text("not a folder")
    code, _, err = stack.cli(
        "seller", "worker", "--once", "--state", str(tmp_path / "afile" / "w.json")
    )
    assert code == 1 and "worker state file" in err and "--state" in err, err
    assert len(err.strip().splitlines()) == 1 and deliveries(stack) == {}


@pytest.mark.parametrize("text", ["[]", '{"chain_id": 1}', '"x"'])
def test_a_state_file_of_another_shape_is_rescanned_not_a_crash(tmp_path, text):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    pid = buy_raw(stack, "buyer", model)
    state = tmp_path / "w.json"
    doc = (
        {"chain_id": stack.chain.chain_id, "marketplace": stack.chain.marketplace.address.lower()}
        if "chain_id" in text
        else None
    )
    state.write_text(json.dumps(doc) if doc else text)  # ours but lacking next_block, or not a dict
    report = seller_worker(stack, state).poll()
    assert report.delivered == [pid]


def test_an_entry_from_an_older_state_file_survives_a_reorg_rescan(tmp_path):
    """Entries written before the worker recorded their block must not be dropped by a reorg
    rescan that starts after their block: nothing would find them again."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"))
    state = tmp_path / "w.json"
    pid = buy_raw(stack, "buyer", model)
    for _ in range(2):  # two scans: the first one's last block is remembered below the second's
        stack.chain.w3.testing.mine(10)
        seller_worker(stack, state, crash=_stop_before_wrap).poll()
    doc = json.loads(state.read_text())
    entry = doc["open"][str(pid)]
    # the rescan will start after the purchase's block: from the first scan's last block on
    assert any(entry["block"] < n < doc["next_block"] - 1 for n, _ in doc["recent_blocks"])
    doc["open"][str(pid)] = {"model_id": entry["model_id"], "buyer_key": entry["buyer_key"]}
    doc["tip_hash"] = "0x" + "00" * 32  # the last scanned block was reorganised away
    state.write_text(json.dumps(doc))
    report = seller_worker(stack, state).poll()
    assert report.delivered == [pid] and can_open(stack, "buyer", pid)


def _signed_buy(stack, role: str, model_id: int) -> bytes:
    """``role``'s buy of ``model_id`` with its wallet-derived key, signed, not sent."""
    chain, signer = stack.chain, stack.signers[role]
    price = chain.call(chain.registry.functions.price(model_id))
    public = derive_x25519(signer, chain.chain_id)[1]
    tx = chain.build_transaction(
        chain.marketplace.functions.buy(model_id, public, price), signer.address, value=price
    )
    return signer.sign_transaction(tx)


@pytest.mark.anvil
def test_a_delivery_mined_again_after_a_reorg_is_refused_and_the_new_buyer_is_served(tmp_path):
    """Issue 13: buyer's purchase P is delivered; a reorg replaces both blocks by a chain where
    buyer2's purchase took the id P (buyer's came after it, as P + 1) and the old deliverKey is
    mined again. It names the buyer it was wrapped for, so the Marketplace refuses it
    (MarketplaceWrongBuyer): buyer2's escrow is untouched and holds no licence. The worker sees
    the reorg, reads the purchases again and delivers to each buyer the key wrapped for it."""
    anvil = start_anvil()  # its own node: the test reorganises its chain
    try:
        stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
        chain, rpc = stack.chain, stack.chain.w3.provider.make_request
        model = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
        state, sent = tmp_path / "w.json", {}
        buyer_buy = _signed_buy(stack, "buyer", model)
        buyer2_buy = _signed_buy(stack, "buyer2", model)  # signed now, mined only on the new chain
        chain.send_raw(buyer_buy)
        pid = chain.call(chain.marketplace.functions.nextPurchaseId()) - 1

        def keep_raw(point: str, purchase_id: int) -> None:
            if point == "after_send":
                sent[purchase_id] = bytes.fromhex(
                    worker.state.inflight[purchase_id]["txs"][-1]["raw"]
                )

        worker = seller_worker(stack, state, crash=keep_raw)
        assert worker.poll().delivered == [pid]
        assert (
            chain.block_number() == worker.state.next_block
        )  # bought in one block, delivered in the next
        escrow = chain.balance(chain.marketplace.address)
        seller = stack.signers["seller"].address
        credited = chain.call(chain.marketplace.functions.credited(seller))

        # The reorg: both blocks replaced; buyer2's purchase first (it takes id P), then buyer's
        # (P + 1), and in the next block the old delivery, mined again from a pool.
        rpc(
            "anvil_reorg",
            [
                2,
                [
                    ["0x" + buyer2_buy.hex(), 0],
                    ["0x" + buyer_buy.hex(), 0],
                    ["0x" + sent[pid].hex(), 1],
                ],
            ],
        )
        assert chain.block_number() == worker.state.next_block
        old = chain.find_receipt(keccak(sent[pid]))
        assert old is not None and old["status"] == 0  # mined on the new chain, and refused: why
        tx = unsigned_transaction(sent[pid])
        with pytest.raises(Exception) as refused:
            chain.w3.eth.call(
                {"from": seller, "to": tx["to"], "data": tx["data"]}, old["blockNumber"] - 1
            )
        revert = as_revert(refused.value)
        assert revert is not None and revert.context["error"] == "MarketplaceWrongBuyer"
        assert revert.context["args"] == {
            "purchaseId": pid,
            "expected": stack.signers["buyer2"].address,
            "given": stack.signers["buyer"].address,
        }
        new = Purchase.from_call(chain.call(chain.marketplace.functions.purchase(pid)))
        assert new.account == stack.signers["buyer2"].address
        assert (new.status, new.price, new.delivered_at) == (PurchaseStatus.PENDING, PRICE, 0)
        assert not chain.call(chain.marketplace.functions.hasLicense(model, new.account))
        assert deliveries(stack) == {}  # nothing delivered on the new chain
        assert chain.balance(chain.marketplace.address) == escrow + PRICE  # both buyers' escrow
        assert chain.call(chain.marketplace.functions.credited(seller)) == credited

        report = seller_worker(stack, state).poll()
        assert report.delivered == [pid, pid + 1]
        assert deliveries(stack) == {pid: 1, pid + 1: 1}
        assert can_open(stack, "buyer2", pid) and can_open(stack, "buyer", pid + 1)
        assert not can_open(stack, "buyer", pid)
    finally:
        anvil.stop()


@pytest.mark.anvil
def test_a_recorded_delivery_is_not_resent_once_a_reorg_gives_its_purchase_to_another_buyer(
    tmp_path,
):
    """The worker's delivery of P to buyer is in flight, then lost (the node dropped it), and a
    reorg makes P buyer2's purchase. Resending those bytes would only revert
    (MarketplaceWrongBuyer) and cost a pass: the worker drops them and, in the same pass,
    delivers P to buyer2 and buyer's purchase, now P + 1, to buyer. No transaction of the seller
    reverts."""
    anvil = start_anvil()  # its own node: automine off, and a reorg
    try:
        stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
        chain, rpc = stack.chain, stack.chain.w3.provider.make_request
        model = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
        state = tmp_path / "w.json"
        buyer_buy, buyer2_buy = (
            _signed_buy(stack, "buyer", model),
            _signed_buy(stack, "buyer2", model),
        )
        chain.send_raw(buyer_buy)
        pid = chain.call(chain.marketplace.functions.nextPurchaseId()) - 1
        rpc("evm_setAutomine", [False])
        chain.receipt_timeout = 0.5
        first = seller_worker(stack, state).poll()
        assert list(first.pending) == [pid]  # sent, in the pool, not mined
        rpc("anvil_dropTransaction", [first.pending[pid]])
        assert int(rpc("txpool_status", [])["result"]["pending"], 16) == 0  # lost
        rpc("anvil_reorg", [1, [["0x" + buyer2_buy.hex(), 0], ["0x" + buyer_buy.hex(), 0]]])
        assert (
            Purchase.from_call(chain.call(chain.marketplace.functions.purchase(pid))).account
            == stack.signers["buyer2"].address
        )
        rpc("evm_setAutomine", [True])
        chain.receipt_timeout = 30

        report = seller_worker(stack, state).poll()
        assert report.delivered == [pid, pid + 1] and report.skipped == {}
        assert deliveries(stack) == {pid: 1, pid + 1: 1}
        assert can_open(stack, "buyer2", pid) and can_open(stack, "buyer", pid + 1)
        assert all(status == 1 for status in seller_tx_statuses(stack))  # nothing resent to revert
    finally:
        anvil.stop()
