"""Implicit feedback for the recommender: "buyers of X also bought Y", learnt online from the
index's purchases, subscriptions, refunds, votes and reviews.

    model = ImplicitModel()
    model.update(FeedbackLog(indexer))        # folds in only the events after its cursor
    model.lifts(history=[3])                  # {"7": Lift(value=0.4, via="3", buyers=2, ...)}

What it learns. Per (account, listing) it keeps the account's engagement: its live purchases
(a refund takes one away), whether it subscribed, and its latest rating (a vote or a review:
Votes.review counts as a vote, and a later one replaces the earlier, as on chain). Its
*affinity* for the listing is an integer:

    PURCHASE_WEIGHT (2) for a live purchase, else SUBSCRIPTION_WEIGHT (1) for a subscription,
    else 0 (a rating alone vouches for nothing: on chain only licence holders vote);
    then a latest rating <= NEGATIVE_MAX_SCORE (2) makes it 0 (the account does not vouch for
    it), a rating of 4 or 5 adds (score - 3): 1 or 2.

Item-item co-occurrence: for each pair of listings (a, b), the number of accounts with a
positive affinity for both and the *strength*, the sum over those accounts of
min(affinity a, affinity b): five-star buyers of both count more than a subscriber of one.

Online and deterministic. Events are folded in (block, log index) order; an event changes one
account's affinity for one listing, and only that account's pairs with that listing are
adjusted (incremental). The state is integers and sets, a function of the accounts' latest
engagements only, so the same events in the same order give the same state bit for bit
(``digest``), and a fold in several steps equals one fold over all of them. The cursor is the
last folded event's position with its transaction and block hashes: when the log no longer
holds that event there (a reorg rolled it back, a rebuild rewrote it), ``update`` forgets
everything and folds the log again from the start, so a reorg ends in a fresh fold's state.

Where the state lives: in memory, rebuilt from the index at start-up. The index's log is the
one source of truth (a file beside the embeddings cache would be a second copy to keep in step
through reorgs and schema migrations), and a fold is cheap: a few dict updates per event, well
under a second for the tens of thousands of events a busy index holds.

Scoring a buyer (``lifts``): for each candidate, the strength summed over the buyer's history
(``via``: the history listing contributing most, ties to the smaller id), squashed into [0, 1)
as ``strength / (strength + HALF_STRENGTH)`` (HALF_STRENGTH = 6: three plain co-buyers give
0.5). ml.recommend blends it with IMPLICIT_WEIGHT and names it in the explanation
(``Lift.explanation``: "bought together with Moody by 3 buyers"; a subscription counts as buying).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ml.recommend import id_order
from node.errors import InputError

log = logging.getLogger(__name__)

# The index's events this model reads: (contract, event).
FEEDBACK_EVENTS = (
    ("Marketplace", "Purchased"),
    ("Marketplace", "Refunded"),
    ("Marketplace", "Subscribed"),
    ("Votes", "Voted"),
    ("Votes", "Reviewed"),
)
PURCHASE_WEIGHT = 2
SUBSCRIPTION_WEIGHT = 1
NEUTRAL_SCORE = 3  # a rating above adds (score - 3); at or below NEGATIVE_MAX_SCORE it vetoes
NEGATIVE_MAX_SCORE = 2
HALF_STRENGTH = 6.0

Position = tuple[int, int]


class EventLog(Protocol):
    """Where events come from (node.indexer.feedback.FeedbackLog over the index)."""

    def events_after(
        self, position: Position | None, names: Iterable[tuple[str, str]]
    ) -> list[dict]: ...

    def marker(self, position: Position) -> tuple[str, str | None] | None: ...


@dataclass
class _Engagement:
    purchases: set[int] = field(default_factory=set)
    subscribed: bool = False
    rating: int | None = None

    def affinity(self) -> int:
        base = PURCHASE_WEIGHT if self.purchases else SUBSCRIPTION_WEIGHT if self.subscribed else 0
        if base == 0 or self.rating is None:
            return base
        if self.rating <= NEGATIVE_MAX_SCORE:
            return 0
        return base + max(self.rating - NEUTRAL_SCORE, 0)


@dataclass(frozen=True)
class Lift:
    """What co-buyers add to one candidate for one buyer."""

    value: float  # strength / (strength + HALF_STRENGTH), in [0, 1)
    strength: int  # summed over the buyer's history
    via: str  # the history listing that contributed most
    buyers: int  # accounts that chose both ``via`` and the candidate

    def explanation(self, via_name: str) -> str:
        return f"bought together with {via_name} by {self.buyers} buyer{'s' * (self.buyers != 1)}"


class ImplicitModel:
    """Co-occurrence of listings in accounts' positive engagements, folded from the event log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything (the next ``update`` folds the whole log)."""
        self._engagements: dict[str, dict[str, _Engagement]] = {}  # account -> listing -> ...
        self._purchases: dict[int, tuple[str, str]] = {}  # purchase id -> (buyer, listing)
        self._pairs: dict[str, dict[str, list[int]]] = {}  # a -> b -> [strength, accounts]
        self.position: Position | None = None
        self._marker: tuple[str, str | None] | None = None
        self.folded = 0  # events folded since the last reset

    # -- learning ----------------------------------------------------------------------------

    def update(self, source: EventLog) -> int:
        """Fold in the source's events after the cursor; refold from the start when the event at
        the cursor is gone or changed (reorg, rebuild). Returns the events folded."""
        with self._lock:
            if self.position is not None and source.marker(self.position) != self._marker:
                log.info(
                    "implicit feedback: the log changed at %s; folding it again", self.position
                )
                self.reset()
            events = source.events_after(self.position, FEEDBACK_EVENTS)
            self._fold(events)
            return len(events)

    def fold(self, events: Iterable[dict]) -> None:
        """Fold in events (the FeedbackLog's dicts), each after the cursor, in order."""
        with self._lock:
            self._fold(events)

    def _fold(self, events: Iterable[dict]) -> None:
        for event in events:
            position = (int(event["block_number"]), int(event["log_index"]))
            if self.position is not None and position <= self.position:
                raise InputError(
                    f"event at {position} is not after the cursor {self.position}: fold events "
                    "in log order, or reset() and fold the whole log again"
                )
            self._apply(event["event"], event["args"])
            self.position = position
            self._marker = (event["tx_hash"], event.get("block_hash"))
            self.folded += 1

    def _apply(self, name: str, args: dict) -> None:
        if name == "Purchased":
            owner = (str(args["buyer"]).lower(), str(args["modelId"]))
            self._purchases[int(args["purchaseId"])] = owner
            self._change(*owner, lambda e: e.purchases.add(int(args["purchaseId"])))
        elif name == "Refunded":
            refunded = self._purchases.get(int(args["purchaseId"]))
            if refunded is not None:
                self._change(*refunded, lambda e: e.purchases.discard(int(args["purchaseId"])))
        elif name == "Subscribed":
            self._change(str(args["account"]).lower(), str(args["modelId"]), _set(subscribed=True))
        elif name in ("Voted", "Reviewed"):
            voter = args["voter"] if name == "Voted" else args["reviewer"]
            self._change(str(voter).lower(), str(args["modelId"]), _set(rating=int(args["score"])))

    def _change(self, account: str, listing: str, mutate) -> None:
        """Apply ``mutate`` to one engagement and adjust that account's pairs with the listing."""
        mine = self._engagements.setdefault(account, {})
        engagement = mine.setdefault(listing, _Engagement())
        old = engagement.affinity()
        mutate(engagement)
        new = engagement.affinity()
        if old == new:
            return
        joined = (new > 0) - (old > 0)
        for other, theirs in mine.items():
            weight = theirs.affinity()
            if other == listing or weight == 0:
                continue
            delta = min(new, weight) - min(old, weight)
            for a, b in ((listing, other), (other, listing)):
                pair = self._pairs.setdefault(a, {}).setdefault(b, [0, 0])
                pair[0] += delta
                pair[1] += joined
                if pair[1] == 0:  # no account left with both: the strength is 0 too
                    del self._pairs[a][b]
                    if not self._pairs[a]:
                        del self._pairs[a]

    # -- reading -----------------------------------------------------------------------------

    def pair(self, a, b) -> tuple[int, int]:
        """(strength, accounts) of the pair of listings ``a`` and ``b``; (0, 0) when none."""
        strength, accounts = self._pairs.get(str(a), {}).get(str(b), (0, 0))
        return strength, accounts

    def lifts(self, history: Iterable) -> dict[str, Lift]:
        """Each listing that co-occurs with the buyer's history (listing ids) and is not in it ->
        its Lift (keys: listing ids as text)."""
        owned = sorted({str(h) for h in history}, key=id_order)
        totals: dict[str, int] = {}
        best: dict[str, tuple[int, int, str]] = {}  # candidate -> (strength, accounts, via)
        with self._lock:
            for via in owned:  # in id order: a tie keeps the smaller id
                for candidate, (strength, accounts) in self._pairs.get(via, {}).items():
                    if candidate in owned or strength <= 0:
                        continue
                    totals[candidate] = totals.get(candidate, 0) + strength
                    if candidate not in best or (strength, accounts) > best[candidate][:2]:
                        best[candidate] = (strength, accounts, via)
        return {
            candidate: Lift(
                round(total / (total + HALF_STRENGTH), 6),
                total,
                best[candidate][2],
                best[candidate][1],
            )
            for candidate, total in totals.items()
        }

    def digest(self) -> str:
        """SHA-256 of the whole state in a canonical form: equal digests, equal models."""
        with self._lock:
            state = {
                "engagements": {
                    account: {
                        listing: [sorted(e.purchases), e.subscribed, e.rating]
                        for listing, e in listings.items()
                    }
                    for account, listings in self._engagements.items()
                },
                "purchases": {str(pid): list(owner) for pid, owner in self._purchases.items()},
                "pairs": self._pairs,
                "cursor": [self.position, self._marker],
            }
            text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _set(**values):
    def mutate(engagement: _Engagement) -> None:
        for name, value in values.items():
            setattr(engagement, name, value)

    return mutate
