"""Issue 15's loop, end to end, on the embedded stack and on anvil: a model that gets better after
it is sold.

The seller lists v1 (the ML tests' tiny model) with a one-day update window; the validator
re-evaluates it and the commit-reveal round verifies it. buyer2 buys on day 0 and buyer on day 2;
the seller's worker delivers both keys. Both send private feedback
(corrections) and a signed review. A stranger (the validator's wallet) cannot open any feedback
item, and the store holds no item's text in clear. `modex retrain` (the seller) reads the feedback,
retrains and publishes v2. The worker's next pass delivers v2's key to buyer (inside the window)
and not to buyer2 (outside it); buyer fetches v2, verified against v2's on-chain hash (the same
files `modex retrain --out` kept), and buyer2's `--version 2` is refused in words. The validator
comes back for v2: its key request opens v2's validation cycle, it re-evaluates v2 and v2 is
Verified in rounds of its own, while v1 stays Verified (contracts/README.md, validation cycles).
"""

from __future__ import annotations

import pytest

from ml import data
from node import feedback, reviews, versions
from node.content import keywrap
from node.protocol import ModelStatus
from tests.cli.test_retrain_cli import ACCEPTING, FAST
from tests.ml.conftest import TINY
from tests.node.cli_results import ok, refused
from tests.node.modex_stack import buy_raw, make_stack, publish_model, validate_to_the_end
from tests.node.worker_helpers import seller_worker

DAY = 86400
BUYERS = {"buyer": 100, "buyer2": 110}  # who sends feedback: the first training row of theirs


def corrections(start: int) -> list[tuple[str, int]]:
    """Five training rows past what the tiny model was trained on, as (text, label)."""
    return [(r.text, r.label) for r in data.split("train")[start : start + 5]]


def files_of(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(
    params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)],
)
def stack(request, tmp_path):
    if request.param == "embedded":
        return make_stack("embedded", tmp_path)
    anvil = request.getfixturevalue("anvil")
    return make_stack("anvil", tmp_path, anvil_url=anvil.url)


@pytest.mark.slow
def test_feedback_and_reviews_become_a_version_that_reaches_the_entitled_buyer(stack, tmp_path):
    from ml.train import train  # late (heavy): torch

    v1 = tmp_path / "v1"
    train({"output_dir": str(v1), **TINY})
    model_id = publish_model(stack, v1)
    ok(stack.cli("seller", "versions", str(model_id), "--update-window", "1d"))
    said = validate_to_the_end(stack, model_id)
    assert f"model {model_id}: settled verified" in said
    worker_state = tmp_path / "worker.json"
    outside = buy_raw(stack, "buyer2", model_id)
    assert seller_worker(stack, worker_state).poll().delivered == [outside]
    stack.time_travel(2 * DAY)
    inside = buy_raw(stack, "buyer", model_id)
    assert seller_worker(stack, worker_state).poll().delivered == [inside]

    # Both buyers send corrections and a review.
    sent: dict[str, str] = {}  # item CID -> its text
    for role, start in BUYERS.items():
        signer, store = stack.signers[role], stack.store(role)
        for text, label in corrections(start):
            cid = feedback.send_feedback(
                stack.chain, store, signer, model_id, text=text, label=label
            ).cid
            sent[cid] = text
        reviews.review(stack.chain, signer, store, model_id, 4, f"{role}: right most of the time")
    reviewed = stack.chain.events("Reviewed", from_block=stack.chain.deployment["block"])
    texts = sorted(
        reviews.read(stack.store(), ev["args"]["reviewCid"], "review").fields["text"]
        for ev in reviewed
    )
    assert texts == ["buyer2: right most of the time", "buyer: right most of the time"]

    # Nobody but the seller reads the feedback: not a stranger's key, not the store's bytes.
    stranger = stack.signers["validator"]
    secret, _public = keywrap.derive_x25519(stranger, stack.chain.chain_id)
    anchored = feedback.anchors(stack.chain, model_id)
    assert sorted(cid for cid, _sender, _withdrawn in anchored) == sorted(sent)
    for cid, sender, _withdrawn in anchored:
        with pytest.raises(feedback.FeedbackError):
            feedback.read_item(stack.chain, stack.store(), secret, model_id, cid, sender)
        stored = stack.store().get(cid).read()
        assert sent[cid].encode() not in stored
    with pytest.raises(feedback.FeedbackError, match="only its seller reads its feedback"):
        feedback.read_feedback(stack.chain, stack.store(), stranger, model_id)

    # The seller retrains on the ten items and publishes version 2.
    v2 = tmp_path / "v2"
    out = ok(stack.cli("seller", "retrain", str(model_id), "--out", str(v2), *ACCEPTING, *FAST))
    assert "retrained version 1 on 10 feedback item(s)" in out
    assert f"published as version 2 of model {model_id}" in out
    assert versions.version_count(stack.chain, model_id) == 2

    # v2's key reaches the buyer inside the window only; each fetches what it is entitled to.
    report = seller_worker(stack, worker_state).poll()
    assert report.version_keys == [(model_id, 2, stack.signers["buyer"].address)]
    fetched = tmp_path / "fetched-v2"
    out = ok(stack.cli("buyer", "fetch", str(model_id), "--out", str(fetched), "--version", "2"))
    assert "version 2 verified" in out
    assert files_of(fetched) == files_of(v2)
    refused(
        stack.cli(
            "buyer2", "fetch", str(model_id), "--out", str(tmp_path / "b2"), "--version", "2"
        ),
        "not entitled to version 2",
        "opens version 1",
    )
    assert not (tmp_path / "b2").exists()

    # The validator validates v2 in a cycle of its own; v1's verdict stands.
    said = validate_to_the_end(stack, model_id)
    assert f"model {model_id} version 2: asked for its key" in said
    assert f"model {model_id} version 2: settled verified" in said
    validators = stack.chain.validators.functions
    assert stack.chain.call(validators.attestedVersion(model_id)) == 2
    assert stack.chain.call(validators.statusAt(model_id, 2)) == ModelStatus.VERIFIED
    assert stack.chain.call(validators.statusAt(model_id, 1)) == ModelStatus.VERIFIED
    opened = stack.chain.events("ValidationOpened", modelId=model_id)
    assert [ev["args"]["version"] for ev in opened] == [1, 2]
