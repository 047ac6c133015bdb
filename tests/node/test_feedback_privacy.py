"""Private feedback (issue 15 §3) on the embedded stack: a licence holder's correction is sealed to
the seller, pinned and anchored with Votes.sendFeedback; only the seller reads it.

The privacy claim is tested on the bytes themselves: another account's key does not open an
item, and the store's folder, the index database, the chain's logs and every log record of the
journey hold the item's text nowhere. A withdrawn item is skipped; an item sealed for another
model, or anchored by an account that did not write it, is refused.
"""

from __future__ import annotations

import logging
import uuid
from io import BytesIO
from pathlib import Path

import pytest
from modex_stack import licence, make_stack, publish_model, write_model

from node import feedback
from node.content import keywrap
from node.errors import ContractRevert, InputError
from node.feedback import FeedbackError
from node.publish import ListingInfo, list_prepared, prepare


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    stack = make_stack("embedded", root, delivery_window=3600)
    first, second = (
        publish_model(stack, write_model(root / name, seed=seed), name=name)
        for seed, name in enumerate(("first", "second"), start=1)
    )
    for model_id in (first, second):
        licence(stack, "buyer", model_id)
    licence(stack, "buyer2", first)
    return stack, first, second


def send(stack, role: str, model_id: int, **item):
    return feedback.send_feedback(
        stack.chain, stack.store(role), stack.signers[role], model_id, **item
    )


def read(stack, model_id: int):
    return feedback.read_feedback(
        stack.chain, stack.store("seller"), stack.signers["seller"], model_id
    )


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_seller_reads_a_label_and_a_note_nobody_else_can(market, caplog):
    stack, first, _second = market
    secret_text = f"the film was dull {uuid.uuid4()}"
    secret_note = f"sarcasm, not praise {uuid.uuid4()}"
    caplog.set_level(logging.DEBUG)
    labelled = send(stack, "buyer", first, text=secret_text, output="positive", label=0)
    noted = send(stack, "buyer2", first, text=secret_text, output="positive", note=secret_note)
    items = {item.cid: item for item in read(stack, first)}
    assert items[labelled.cid].label == 0 and items[labelled.cid].note is None
    assert items[labelled.cid].input == secret_text and items[labelled.cid].output == "positive"
    assert items[labelled.cid].sender == stack.signers["buyer"].address
    assert items[labelled.cid].version == 1 and items[labelled.cid].model_id == first
    assert items[noted.cid].note == secret_note and items[noted.cid].label is None
    assert items[noted.cid].sender == stack.signers["buyer2"].address

    # Another account's key (a buyer's, the sender's own) does not open the item.
    blob = feedback._fetch(stack.store("buyer2"), labelled.cid)
    for role in ("buyer", "buyer2", "validator"):
        stranger, _ = keywrap.derive_x25519(stack.signers[role], stack.chain.chain_id)
        with pytest.raises(FeedbackError, match="does not open"):
            feedback.open_item(
                blob,
                stranger,
                chain_id=stack.chain.chain_id,
                votes=stack.chain.votes.address,
                model_id=first,
            )
    with pytest.raises(FeedbackError, match="only its seller reads"):
        feedback.read_feedback(stack.chain, stack.store("buyer"), stack.signers["buyer"], first)

    # Ciphertext only: the store (the network's stand-in), the index, the chain's logs, the logs.
    indexer = stack.node("buyer").indexer()
    try:
        indexer.sync()
    finally:
        indexer.close()
    for plain in (secret_text, secret_note):
        needle = plain.encode()
        assert files_holding(stack.store_dir, needle) == []
        assert files_holding(stack.data_dir("buyer"), needle) == []
        assert files_holding(stack.data_dir("seller"), needle) == []
        logs = stack.chain.w3.eth.get_logs({"fromBlock": 0, "address": stack.chain.votes.address})
        assert logs and all(needle not in bytes(log["data"]) for log in logs)
        assert plain not in caplog.text
    assert labelled.cid in caplog.text  # the log names the item, never its content


def test_a_withdrawn_item_is_skipped_and_only_its_sender_withdraws(market):
    stack, first, _second = market
    sent = send(stack, "buyer", first, text="ok then", output="negative", label=1)
    assert sent.cid in {item.cid for item in read(stack, first)}
    with pytest.raises(FeedbackError, match="only its sender"):
        feedback.withdraw_feedback(stack.chain, stack.signers["buyer2"], first, sent.cid)
    feedback.withdraw_feedback(stack.chain, stack.signers["buyer"], first, sent.cid)
    assert sent.cid not in {item.cid for item in read(stack, first)}
    assert (sent.cid, stack.signers["buyer"].address, True) in feedback.anchors(
        stack.chain, first, sender=stack.signers["buyer"].address
    )


def test_an_item_of_another_model_or_a_forged_anchor_is_refused(market):
    stack, first, second = market
    chain, seller_store = stack.chain, stack.store("seller")
    secret, public = keywrap.derive_x25519(stack.signers["seller"], chain.chain_id)
    # An item sealed for the first model, anchored on the second: the info binds the model.
    item = feedback.build_item(
        first, 1, text="moved", output="x", sender=stack.signers["buyer"].address, label=1
    )
    blob = feedback.seal_item(
        item, public, chain_id=chain.chain_id, votes=chain.votes.address, model_id=first
    )
    moved = seller_store.put(BytesIO(blob))
    chain.transact(chain.votes.functions.sendFeedback(second, moved), stack.signers["buyer"])
    # buyer2 writes an item in buyer's name and anchors it from its own account.
    forged_item = dict(item, input="forged")
    forged = seller_store.put(
        BytesIO(
            feedback.seal_item(
                forged_item,
                public,
                chain_id=chain.chain_id,
                votes=chain.votes.address,
                model_id=first,
            )
        )
    )
    chain.transact(chain.votes.functions.sendFeedback(first, forged), stack.signers["buyer2"])
    buyer2 = stack.signers["buyer2"].address
    with pytest.raises(FeedbackError, match="does not open"):
        feedback.read_item(
            chain, seller_store, secret, second, moved, stack.signers["buyer"].address
        )
    with pytest.raises(FeedbackError, match="anchored by"):
        feedback.read_item(chain, seller_store, secret, first, forged, buyer2)
    assert moved not in {i.cid for i in read(stack, second)}
    assert forged not in {i.cid for i in read(stack, first)}


def test_only_users_send_and_the_seller_key_must_be_the_owners(market, tmp_path):
    stack, first, _second = market
    with pytest.raises(FeedbackError, match="no licence or live subscription"):
        send(stack, "validator", first, text="hi", label=1)
    with pytest.raises(ContractRevert):  # the contract refuses it too
        stack.chain.transact(
            stack.chain.votes.functions.sendFeedback(first, "bafyfake"), stack.signers["validator"]
        )
    with pytest.raises(InputError, match="not both"):
        send(stack, "buyer", first, text="hi", label=1, note="also")
    with pytest.raises(InputError, match="label id"):
        send(stack, "buyer", first, text="hi", label=-1)
    # A listing whose metadata names another account's key, and one that names none.
    chain = stack.chain
    wrong = feedback.feedback_key_entry(stack.signers["buyer2"], chain.chain_id)
    for name, key in (("wrong-key", wrong), ("no-key", None)):
        prepared = prepare(
            write_model(tmp_path / name, seed=3 if key else 4),
            stack.store("seller"),
            stack.vault("seller"),
            ListingInfo(name=name, feedback_key=key),
        )
        listed = list_prepared(
            chain, stack.signers["seller"], prepared, stack.vault("seller"), price_wei=10**15
        )
        licence(stack, "buyer", listed.model_id)
        refusal = "belongs to" if key else "publishes no feedback key"
        with pytest.raises(FeedbackError, match=refusal):
            send(stack, "buyer", listed.model_id, text="hi", label=1)
