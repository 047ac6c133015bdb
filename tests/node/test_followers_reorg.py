"""A reorg below each chain follower's checkpoint, on anvil: the indexer, the key-delivery
worker and the validator agent (all three follow the chain through node.scanner.BlockScanner)
each see the events of the new history exactly once.

The reorg: ``evm_snapshot``, a history the follower processes, ``evm_revert``, then another
history mined at the same heights (at or below the follower's checkpoint) before it looks again.
"""

from __future__ import annotations

import io
import json

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model
from web3.logs import DISCARD

from node.content.cid import cid_of_stream
from node.indexer import Indexer
from node.protocol import Purchase, PurchaseStatus
from node.validator import ValidatorAgent
from node.worker import KeyDelivery

PRICE = 10**16


def _rpc(stack, method: str, params: list):
    return stack.chain.w3.provider.make_request(method, params)["result"]


def _list(stack, n: int) -> int:
    """A listing by the seller (no content behind it: what followers read is the event)."""
    chain = stack.chain
    receipt = chain.transact(
        chain.registry.functions.list(
            n.to_bytes(32, "big"), cid_of_stream(io.BytesIO(f"meta {n}".encode())), PRICE
        ),
        stack.signers["seller"],
    )
    return int(
        chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0]["args"][
            "modelId"
        ]
    )


def _no_evaluation(model_dir, metadata):
    raise AssertionError("this test asks the validator for no evaluation")


def _validator(stack, tmp_path, **options) -> ValidatorAgent:
    """The stack's validator agent, its state in tmp_path/validator.json (a second one made the
    same way is the first restarted)."""
    return ValidatorAgent(
        stack.chain,
        stack.signers["validator"],
        stack.store("validator"),
        tmp_path / "validator.json",
        work_dir=tmp_path / "work",
        evaluator=_no_evaluation,
        **options,
    )


@pytest.mark.anvil
def test_the_validator_sees_a_listing_re_mined_below_its_checkpoint(anvil, tmp_path):
    """With confirmations = 0 the agent has scanned up to the head. A reorg re-mines the listing
    it saw and one more, both below its checkpoint: the agent finds the new one (the agent
    before node.scanner kept scanning from its next block and never saw it)."""
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
    agent = _validator(stack, tmp_path, confirmations=0)
    agent.poll([])  # stakes, scans up to the head
    snapshot = _rpc(stack, "evm_snapshot", [])
    first = _list(stack, 1)
    _rpc(stack, "anvil_mine", [5])
    agent.poll([])
    assert agent.todo == {first}
    checkpoint = stack.chain.block_number()

    assert _rpc(stack, "evm_revert", [snapshot]) is True
    assert _list(stack, 1) == first  # the same listing again, then another one
    second = _list(stack, 2)
    assert stack.chain.block_number() <= checkpoint  # both below what the agent scanned
    agent.poll([])
    assert agent.todo == {first, second}
    restarted = _validator(stack, tmp_path)  # the same state file, default confirmations
    assert restarted.todo == {first, second}

    # A listing reorganised away for good leaves the to-do set (it would be asked a key forever).
    snapshot = _rpc(stack, "evm_snapshot", [])
    third = _list(stack, 3)
    restarted.poll([])
    assert restarted.todo == {first, second, third}
    assert _rpc(stack, "evm_revert", [snapshot]) is True
    _rpc(stack, "anvil_mine", [2])
    report = restarted.poll()
    assert restarted.todo == {first, second} and third not in report.requested


@pytest.mark.anvil
def test_the_worker_delivers_purchases_re_mined_below_its_checkpoint_exactly_once(anvil, tmp_path):
    """The worker delivered a purchase and scanned past it; a reorg replaces that history by two
    purchases (the first taking the delivered one's id) mined below its checkpoint: each is
    delivered once, to the buyer the new chain names."""
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
    model = publish_model(stack, write_model(tmp_path / "m"), price=PRICE)
    worker = KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), tmp_path / "w.json")
    worker.poll()
    snapshot = _rpc(stack, "evm_snapshot", [])
    pid = buy_raw(stack, "buyer", model)
    assert worker.poll().delivered == [pid]
    _rpc(stack, "anvil_mine", [5])
    worker.poll()
    checkpoint = worker.state.next_block - 1

    assert _rpc(stack, "evm_revert", [snapshot]) is True
    assert buy_raw(stack, "buyer2", model) == pid
    assert buy_raw(stack, "buyer", model) == pid + 1
    assert stack.chain.block_number() <= checkpoint
    report = worker.poll()
    assert report.delivered == [pid, pid + 1]
    delivered = [
        int(e["args"]["purchaseId"])
        for e in stack.chain.events("KeyDelivered", from_block=stack.chain.deployment["block"])
    ]
    assert sorted(delivered) == [pid, pid + 1]
    purchases = {
        p: Purchase.from_call(stack.chain.call(stack.chain.marketplace.functions.purchase(p)))
        for p in (pid, pid + 1)
    }
    assert {p: (x.account, x.status) for p, x in purchases.items()} == {
        pid: (stack.signers["buyer2"].address, PurchaseStatus.DELIVERED),
        pid + 1: (stack.signers["buyer"].address, PurchaseStatus.DELIVERED),
    }
    assert worker.poll().delivered == [] and worker.state.open == {}


@pytest.mark.anvil
def test_the_indexer_holds_transactions_re_mined_below_its_checkpoint_once(anvil, tmp_path):
    """The same signed transactions mined again in other blocks after a reorg deeper than one
    block (and one batch): the index holds each of their events once, as a fresh index does."""
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
    chain, seller = stack.chain, stack.signers["seller"]
    index = Indexer(chain, tmp_path / "i.sqlite3", batch_blocks=2)
    _list(stack, 1)
    index.sync()
    snapshot = _rpc(stack, "evm_snapshot", [])
    raws = []
    for n in (2, 3, 4):
        fn = chain.registry.functions.list(
            n.to_bytes(32, "big"), cid_of_stream(io.BytesIO(f"m{n}".encode())), PRICE
        )
        # signed once: mined again as the same transaction after the reorg
        raws.append(seller.sign_transaction(chain.build_transaction(fn, seller.address)))
        chain.wait_receipt(chain.send_raw(raws[-1]))
    _rpc(stack, "anvil_mine", [3])
    index.sync()
    checkpoint = index.checkpoint()

    assert _rpc(stack, "evm_revert", [snapshot]) is True
    _rpc(stack, "anvil_mine", [1])  # the same transactions, one block later each
    for raw in raws:
        chain.wait_receipt(chain.send_raw(raw))
    assert chain.block_number() <= checkpoint[0]
    assert index.scanner.hash_at(checkpoint[0]) != checkpoint[1]  # reorganised away
    index.sync()
    listed = [
        json.loads(r[0])["modelHash"]
        for r in index._db().execute(
            "SELECT args FROM events WHERE event = 'ModelListed' ORDER BY block_number"
        )
    ]
    assert listed == ["0x" + n.to_bytes(32, "big").hex() for n in (1, 2, 3, 4)]
    fresh = Indexer(chain, tmp_path / "fresh.sqlite3")
    fresh.sync()
    assert index.dump() == fresh.dump()
    assert index.checkpoint() == fresh.checkpoint()
