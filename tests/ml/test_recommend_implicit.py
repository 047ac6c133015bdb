"""ml.implicit: co-occurrence learnt online from the index's events, and its blend into
ml.recommend (a fake embedder: no model is loaded here)."""

from __future__ import annotations

import pytest

from ml.implicit import ImplicitModel
from ml.recommend import Recommender
from node.errors import InputError

BUYER, ALICE, BOB, CAROL = "0xB0", "0xA1", "0xB1", "0xC1"


class Log:
    """An event log as node.indexer.feedback.FeedbackLog serves it, kept in a list."""

    def __init__(self):
        self.events: list[dict] = []
        self.block = 0
        self.purchase_id = 0
        self.fork: str | None = None  # the block hash of what is added (None: none kept)

    def add(self, event: str, **args) -> None:
        self.block += 1
        self.events.append(
            {
                "block_number": self.block,
                "log_index": 0,
                "tx_hash": f"0x{self.block:064x}",
                "contract": "Votes" if event in ("Voted", "Reviewed") else "Marketplace",
                "event": event,
                "args": args,
                "block_hash": self.fork,
            }
        )

    def buy(self, account: str, model_id: int) -> int:
        self.purchase_id += 1
        self.add("Purchased", purchaseId=self.purchase_id, modelId=model_id, buyer=account)
        return self.purchase_id

    def events_after(self, position, names):
        wanted = set(names)
        return [
            e
            for e in self.events
            if (position is None or (e["block_number"], e["log_index"]) > position)
            and (e["contract"], e["event"]) in wanted
        ]

    def marker(self, position):
        for e in self.events:
            if (e["block_number"], e["log_index"]) == position:
                return (e["tx_hash"], e["block_hash"])
        return None


class Flat:
    """A fake embedder: every text the same vector, so similarity never decides."""

    name = "flat"

    def embed(self, texts):
        import numpy as np

        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)


def listing(id, name):
    return {"id": id, "name": name, "card": "", "vote_sum": 0, "vote_count": 0}


LISTINGS = [listing(1, "Moody"), listing(2, "Pet finder"), listing(3, "Guard")]


def history_log() -> Log:
    """Alice and Bob bought Moody (1) and Guard (3); Carol bought Moody and Pet finder (2)."""
    log = Log()
    for account in (ALICE, BOB):
        log.buy(account, 1)
        log.buy(account, 3)
    log.buy(CAROL, 1)
    log.buy(CAROL, 2)
    log.add("Subscribed", modelId=3, account=CAROL, expiresAt=10**9)
    log.add("Voted", modelId=3, voter=ALICE, score=5)
    log.add("Reviewed", modelId=2, reviewer=CAROL, score=4, reviewCid="cid")
    log.buy(BUYER, 1)
    return log


def ranked(model: ImplicitModel):
    return Recommender(Flat()).recommend(LISTINGS, history=[1], implicit=model)


def test_co_buyers_lift_a_listing_and_the_explanation_names_them():
    model = ImplicitModel()
    assert model.update(history_log()) == 10
    first, second = ranked(model)
    assert first.id == 3  # Alice (5 stars) and Bob bought it, Carol subscribed: with Moody
    assert "bought together with Moody by 3 buyers" in first.explanation
    assert second.id == 2 and "bought together with Moody by 1 buyer;" in second.explanation
    assert first.score > second.score
    assert model.pair(1, 3) == (2 + 2 + 1, 3)  # min affinities: Alice 2, Bob 2, Carol 1
    # the buyer's own purchase is left out, and without implicit feedback the order is the ids'
    assert [r.id for r in Recommender(Flat()).recommend(LISTINGS, history=[1])] == [2, 3]


def test_same_events_same_state_and_ranking_and_incremental_equals_full():
    log = history_log()
    full = ImplicitModel()
    full.update(log)
    again = ImplicitModel()
    again.fold(log.events)
    assert full.digest() == again.digest() and ranked(full) == ranked(again)

    stepwise, seen = ImplicitModel(), Log()
    for event in log.events:  # the index grows one event at a time
        seen.events.append(event)
        assert stepwise.update(seen) == 1
    assert stepwise.update(seen) == 0  # only new events are folded in
    assert stepwise.digest() == full.digest() and ranked(stepwise) == ranked(full)
    with pytest.raises(InputError, match="not after the cursor"):
        stepwise.fold(log.events[-1:])


def test_a_low_vote_or_review_does_not_lift_and_a_refund_takes_a_purchase_back():
    log = Log()
    for account in (ALICE, BOB):
        log.buy(account, 1)
        log.buy(account, 2)
    log.add("Voted", modelId=2, voter=ALICE, score=1)
    log.add("Reviewed", modelId=2, reviewer=BOB, score=2, reviewCid="cid")
    model = ImplicitModel()
    model.update(log)
    assert model.pair(1, 2) == (0, 0) and model.lifts([1]) == {}
    assert all("bought together" not in r.explanation for r in ranked(model))

    log.add("Voted", modelId=2, voter=ALICE, score=4)  # Alice changed her mind: it counts again
    model.update(log)
    assert model.pair(1, 2) == (2, 1)
    refund = log.buy(CAROL, 2)
    log.buy(CAROL, 1)
    model.update(log)
    assert model.pair(1, 2) == (4, 2)
    log.add("Refunded", purchaseId=refund, buyer=CAROL, amount=1)
    model.update(log)
    assert model.pair(1, 2) == (2, 1)


def test_a_reorg_under_the_cursor_ends_in_a_fresh_folds_state():
    log = history_log()
    model = ImplicitModel()
    model.update(log)
    # the last two blocks are reorged away and another history takes their place
    log.events = log.events[:-2]
    log.block -= 2
    log.fork = "0xother"  # same block numbers and positions, other blocks
    log.add("Voted", modelId=2, voter=CAROL, score=1)
    log.buy(BUYER, 1)
    assert model.update(log) == len(log.events)  # the cursor's event changed: folded again
    fresh = ImplicitModel()
    fresh.update(log)
    assert model.digest() == fresh.digest()
    assert model.lifts([1]).keys() == {"3"}  # Carol's 1-star vote took Pet finder's lift away
