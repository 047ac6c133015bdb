"""Paths the crash tests do not reach.

- The worker's delivery transaction is known to the node but not mined yet (anvil with
  automine off): the pass leaves it in flight, a restarted worker waits for it — it sends no
  second deliverKey before the replacement time — and records the delivery once it is mined.
- A validator whose key request expired undelivered asks again and gets the key for the new
  request (its seat may then commit); the expired request is never delivered.
- A purchase of a model that validators disputed (or whose metrics they disputed) is closed by
  the worker, never delivered.
"""

from __future__ import annotations

import pytest
from modex_stack import buy_raw, make_stack, publish_model, settle_validation, write_model
from worker_helpers import seller_worker

from node.devchain import start_anvil
from node.fetch import book
from node.protocol import ModelStatus, Purchase, PurchaseStatus, Seat, SeatState


def ok(result):
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def delivered_ids(stack) -> list[int]:
    return [
        int(ev["args"]["purchaseId"])
        for ev in stack.chain.events("KeyDelivered", from_block=stack.chain.deployment["block"])
    ]


@pytest.mark.anvil
def test_a_sent_but_unmined_delivery_is_awaited_never_sent_twice(tmp_path):
    anvil = start_anvil()  # its own node: automine is switched off here
    try:
        stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
        model_id = publish_model(stack, write_model(tmp_path / "m"))
        pid = buy_raw(stack, "buyer", model_id)
        rpc = stack.chain.w3.provider.make_request
        rpc("evm_setAutomine", [False])
        stack.chain.receipt_timeout = 1.0
        state = tmp_path / "worker.json"

        def pending_txs() -> int:
            return int(rpc("txpool_status", [])["result"]["pending"], 16)

        # The pass waits at most receipt_timeout, then leaves the delivery in flight.
        first = seller_worker(stack, state).poll()
        assert list(first.pending) == [pid] and first.delivered == []
        assert pending_txs() == 1 and delivered_ids(stack) == []
        # A restarted worker finds the recorded transaction in the node's pool: it waits again
        # (it is not due for replacement before worker_replace_after, 30 s by default).
        again = seller_worker(stack, state).poll()
        assert again.pending == first.pending
        assert pending_txs() == 1  # still the one transaction: no second deliverKey
        rpc("evm_mine", [])
        report = seller_worker(stack, state).poll()
        assert report.delivered == [pid] and delivered_ids(stack) == [pid]
        rpc("evm_setAutomine", [True])
        report = seller_worker(stack, state).poll()
        assert report.delivered == [] and delivered_ids(stack) == [pid]
        assert pending_txs() == 0
    finally:
        anvil.stop()


def test_a_validator_asks_again_after_its_request_expired(tmp_path):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    chain, validator = stack.chain, stack.signers["validator"]
    model_id = publish_model(stack, write_model(tmp_path / "m"))
    validators, market = chain.validators.functions, chain.marketplace.functions
    chain.transact(validators.stake(), validator, value=chain.call(validators.minStake()))
    chain.transact(market.requestValidatorKey(model_id, b"\x0b" * 32), validator)
    stack.time_travel(3700)  # nobody delivered within the window: the request expired
    chain.transact(market.requestValidatorKey(model_id, b"\x0b" * 32), validator)
    requests = chain.events("ValidatorKeyRequested", from_block=chain.deployment["block"])
    old, new = (int(ev["args"]["purchaseId"]) for ev in requests)
    assert "delivered 1 key(s)" in ok(stack.cli("seller", "worker", "--once"))
    assert delivered_ids(stack) == [new]  # the expired request is never delivered
    old_record = Purchase.from_call(chain.call(market.purchase(old)))
    assert old_record.status == PurchaseStatus.EXPIRED and old != new
    # The new request's key reached the validator's seat: it may now commit to an attestation.
    seat = Seat.from_call(chain.call(validators.attestationOf(model_id, validator.address)))
    assert seat.state == SeatState.KEYED


@pytest.mark.parametrize("outcome", [ModelStatus.DISPUTED, ModelStatus.METRICS_DISPUTED])
def test_a_disputed_models_pending_purchase_is_closed_not_retried(tmp_path, caplog, outcome):
    """Validators dispute a model (other files, or the listed files with other evaluation results)
    while a purchase waits for its key: the worker closes the purchase with the reason (the
    contract would refuse deliverKey; the buyer can refund now) instead of dry-running a
    reverting delivery on every pass until the window closes."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600, quorum=1)
    chain, seller, validator = stack.chain, stack.signers["seller"], stack.signers["validator"]
    model_id = publish_model(stack, write_model(tmp_path / "m"))
    pid = buy_raw(stack, "buyer", model_id)
    settled = settle_validation(chain, model_id, owner=seller, validator=validator, outcome=outcome)
    assert settled == outcome
    assert book(chain, model_id).disputed
    (request,) = (
        int(ev["args"]["purchaseId"])
        for ev in chain.events("ValidatorKeyRequested", from_block=chain.deployment["block"])
    )
    state = tmp_path / "worker.json"
    caplog.set_level("INFO", logger="node.worker")
    report = seller_worker(stack, state).poll()
    # The buyer's purchase closed for the dispute (the validator's request was delivered already).
    assert sorted(report.closed) == sorted([request, pid])
    assert report.skipped == {} and report.delivered == []
    assert f"purchase {pid}: model {model_id} is disputed by validators" in caplog.text
    assert "dry run reverted" not in caplog.text
    again = seller_worker(stack, state).poll()
    assert again.closed == [] and again.skipped == {} and again.delivered == []
    assert delivered_ids(stack) == [request]
    purchase = Purchase.from_call(chain.call(chain.marketplace.functions.purchase(pid)))
    assert purchase.status == PurchaseStatus.PENDING  # refundable at once


def test_a_validators_request_for_a_model_settled_meanwhile_is_closed_not_delivered(
    tmp_path, caplog
):
    """A validator asked for the key, and the model settled (Verified by another validator)
    before the seller's worker answered: no round can use that key any more, so it is not
    delivered (it would be the model's key for a refundable request bond)."""
    stack = make_stack("embedded", tmp_path, delivery_window=3600, quorum=1)
    chain, late = stack.chain, stack.signers["buyer2"]  # the late validator
    validators, market = chain.validators.functions, chain.marketplace.functions
    model_id = publish_model(stack, write_model(tmp_path / "m"))
    chain.transact(validators.stake(), late, value=chain.call(validators.minStake()))
    receipt = chain.transact(market.requestValidatorKey(model_id, b"\x0e" * 32), late)
    (late_request,) = (
        int(ev["args"]["purchaseId"])
        for ev in chain.events(
            "ValidatorKeyRequested",
            from_block=receipt["blockNumber"],
            to_block=receipt["blockNumber"],
        )
    )
    assert (
        settle_validation(
            chain, model_id, owner=stack.signers["seller"], validator=stack.signers["validator"]
        )
        == ModelStatus.VERIFIED
    )
    caplog.set_level("INFO", logger="node.worker")
    report = seller_worker(stack, tmp_path / "w.json").poll()
    assert late_request in report.closed and report.delivered == [] and report.skipped == {}
    assert f"purchase {late_request}: model {model_id} is settled" in caplog.text
    assert late_request not in delivered_ids(stack)
    assert (
        Purchase.from_call(chain.call(market.purchase(late_request))).status
        == PurchaseStatus.PENDING
    )
