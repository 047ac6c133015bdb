"""Reviews and reports (issue 15 §2) on the embedded stack: node.reviews signs, pins and anchors
the documents, reads them back checked, and the index lists a model's reviews newest first with
their texts and versions, believed only where the signer, model and score are the event's."""

from __future__ import annotations

from io import BytesIO

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model

from node import reviews
from node.errors import ContractRevert, InputError, IntegrityError


def deliver(stack, role: str, model_id: int) -> None:
    """``role`` holds a licence of ``model_id`` (the seller delivered a key)."""
    purchase_id = buy_raw(stack, role, model_id)
    deliver_key = stack.chain.marketplace.functions.deliverKey
    buyer = stack.signers[role].address
    stack.chain.transact(deliver_key(purchase_id, buyer, b"\1" * 80), stack.signers["seller"])


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("reviews")
    stack = make_stack("embedded", root, delivery_window=3600)
    model_id = publish_model(stack, write_model(root / "a", seed=1), name="reviewed")
    other = publish_model(stack, write_model(root / "b", seed=2), name="other")
    deliver(stack, "buyer", model_id)
    deliver(stack, "buyer2", model_id)
    return stack, model_id, other


def review(stack, role, model_id, score, text):
    return reviews.review(
        stack.chain, stack.signers[role], stack.store(role), model_id, score, text
    )


def synced(stack):
    indexer = stack.node("validator").indexer()
    indexer.sync()
    return indexer


def test_a_review_is_signed_pinned_anchored_and_indexed(market):
    stack, model_id, _ = market
    first = review(stack, "buyer", model_id, 4, "Good on short reviews.")
    second = review(stack, "buyer2", model_id, 2, "<b>Misses</b> sarcasm <script>x()</script>")
    document = reviews.read(stack.store("validator"), first.cid, "review")
    assert document.signer == stack.signers["buyer"].address
    assert document.fields == {
        "modelId": model_id,
        "version": 1,
        "score": 4,
        "text": "Good on short reviews.",
        "reviewer": stack.signers["buyer"].address,
        "chainId": stack.chain.chain_id,
        "votes": stack.chain.votes.address,
    }
    # The score counts as a vote.
    assert stack.chain.call(stack.chain.votes.functions.voteOf(model_id, document.signer)) == 4
    indexer = synced(stack)
    try:
        listed = indexer.reviews_of(model_id)
        assert [(r["reviewer"], r["score"], r["version"], r["document"]) for r in listed] == [
            (stack.signers["buyer2"].address, 2, 1, "verified"),
            (stack.signers["buyer"].address, 4, 1, "verified"),
        ]
        assert (
            listed[0]["text"] == "<b>Misses</b> sarcasm <script>x()</script>"
        )  # raw: the page sanitises
        assert listed[0]["review_cid"] == second.cid
        assert indexer.vote_histogram(model_id)[4] == 1 and indexer.vote_histogram(model_id)[2] == 1
        assert indexer.get_model(model_id)["vote_count"] == 2
    finally:
        indexer.close()


def test_a_copied_cid_is_not_believed(market):
    """Anyone can put another's review CID in an event of their own: the index shows no text
    for it (the signer is not the event's reviewer)."""
    stack, model_id, _ = market
    original = review(stack, "buyer", model_id, 5, "Mine.")
    chain = stack.chain
    chain.transact(chain.votes.functions.review(model_id, 5, original.cid), stack.signers["buyer2"])
    indexer = synced(stack)
    try:
        newest = indexer.reviews_of(model_id)[0]
        assert newest["reviewer"] == stack.signers["buyer2"].address
        assert (newest["document"], newest["text"], newest["version"]) == ("invalid", None, None)
        assert indexer.reviews_of(model_id)[1]["text"] == "Mine."
        # The reviewer's own document anchored again with another score: not believed either.
        chain.transact(
            chain.votes.functions.review(model_id, 1, original.cid), stack.signers["buyer"]
        )
        indexer.sync()
        assert indexer.reviews_of(model_id)[0]["document"] == "invalid"
    finally:
        indexer.close()


def test_review_refusals_send_and_pin_nothing(market):
    stack, model_id, other = market
    chain = stack.chain
    before = chain.w3.eth.block_number
    with pytest.raises(InputError, match="from 1 to 5"):
        review(stack, "buyer", model_id, 6, "Too high.")
    with pytest.raises(InputError, match="cannot be empty"):
        review(stack, "buyer", model_id, 3, "   ")
    with pytest.raises(InputError, match="keep it to"):
        review(stack, "buyer", model_id, 3, "x" * (reviews.MAX_TEXT_CHARS + 1))
    with pytest.raises(ContractRevert, match="holds no voting licence"):
        review(stack, "buyer", other, 3, "Never bought it.")  # no licence of this one
    with pytest.raises(ContractRevert, match="has no access"):
        reviews.report(
            chain, stack.signers["validator"], stack.store("validator"), model_id, "Spam."
        )
    assert chain.w3.eth.block_number == before


def test_reports_are_counted_per_account(market):
    stack, model_id, _ = market
    chain = stack.chain
    for reason in ("Copies another listing.", "Still a copy."):
        done = reviews.report(
            chain, stack.signers["buyer2"], stack.store("buyer2"), model_id, reason
        )
    document = reviews.read(stack.store("seller"), done.cid, "report")
    assert (document.kind, document.text, document.signer) == (
        "report",
        "Still a copy.",
        stack.signers["buyer2"].address,
    )
    indexer = synced(stack)
    try:
        assert indexer.report_count(model_id) == 1
        reviews.report(chain, stack.signers["buyer"], stack.store("buyer"), model_id, "Copy.")
        indexer.sync()
        assert indexer.report_count(model_id) == 2
    finally:
        indexer.close()


def test_a_document_that_is_not_one_is_refused(market):
    stack, model_id, _ = market
    store = stack.store("buyer")
    fields = reviews.review_fields(
        stack.chain.chain_id,
        stack.chain.votes.address,
        model_id,
        1,
        3,
        "ok",
        stack.signers["buyer"].address,
    )
    signature = stack.signers["buyer2"].sign_typed_data(reviews.typed_data("review", fields))
    with pytest.raises(InputError, match="is not signed by"):
        reviews.prepare(stack.chain, store, "review", fields, signature)
    for junk in (b"[1]", b"{}", b'{"signature": "0x00"}', b"not json"):
        cid = store.put(BytesIO(junk))
        with pytest.raises(IntegrityError, match="is not a Modex review"):
            reviews.read(store, cid, "review")


def test_the_cli_reviews_and_reports(market):
    stack, model_id, other = market
    code, out, err = stack.cli(
        "buyer2", "review", str(model_id), "--score", "3", "--text", "From the command line."
    )
    assert code == 0, err
    assert f"reviewed model {model_id} (3★, review " in out and "voter(s)" in out
    code, out, err = stack.cli("buyer2", "report", str(model_id), "--reason", "Looks copied.")
    assert code == 0 and f"reported model {model_id} (reason " in out, err
    code, out, err = stack.cli("buyer2", "review", str(other), "--score", "3", "--text", "No.")
    assert code != 0 and "holds no voting licence" in err
    code, out, err = stack.cli("buyer2", "report", str(other), "--reason", "No access.")
    assert code != 0 and "has no access" in err
    indexer = synced(stack)
    try:
        assert indexer.reviews_of(model_id)[0]["text"] == "From the command line."
    finally:
        indexer.close()
