"""Applying the log to the derived tables: one function per (contract, event), each a pure
function of the event and the tables so far, so replaying the log from any point gives the same
tables (``replay``). What the derived tables hold is described in ``node.indexer``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from node.indexer.decode import u256
from node.protocol import ETH_TOKEN, ModelStatus

# The tables derived from the log (emptied and refilled by ``replay``).
DERIVED = (
    "listings",
    "purchases",
    "votes",
    "rounds",
    "attestations",
    "validators",
    "transfers",
    "withdrawals",
    "subscriptions",
    "listing_counts",
    "listings_fts",
    "versions",
    "validation_cycles",
    "reviews",
    "reports",
)
# Events whose block's timestamp the derived tables keep (when a purchase was made or delivered,
# a claim made, a round opened, a verdict recorded); other blocks' headers are never fetched.
STAMPED_EVENTS = {
    "Purchased",
    "KeyDelivered",
    "MetricsClaimed",
    "RoundOpened",
    "VerdictRecorded",
    "VersionPublished",
}


def current_cycle_sql(model_id: str = "?") -> str:
    """A scalar subquery: the version the current validation cycle of the model ``model_id``
    (an SQL expression) attests (Validators.attestedVersion; 1 before any cycle)."""
    return f"(SELECT COALESCE(MAX(version), 1) FROM validation_cycles WHERE model_id = {model_id})"


CURRENT_CYCLE = current_cycle_sql()  # of one parameter, the model id


def apply_event(tx: sqlite3.Connection, event: dict, timestamp: int | None) -> None:
    """Apply one logged event (``block_number``, ``log_index``, ``contract``, ``event``,
    ``args``); ``timestamp`` is its block's (None unless a STAMPED_EVENTS one)."""
    handler = HANDLERS.get((event["contract"], event["event"]))
    if handler is not None:
        handler(tx, event["args"], event, timestamp)


def replay(tx: sqlite3.Connection) -> None:
    """Rebuild every derived table from the stored log."""
    for table in DERIVED:
        tx.execute(f"DELETE FROM {table}")
    stamps = dict(tx.execute("SELECT number, timestamp FROM blocks").fetchall())
    cursor = tx.execute(
        "SELECT block_number, log_index, tx_hash, contract, event, args FROM events "
        "ORDER BY block_number, log_index"
    )
    for row in cursor.fetchall():
        event = {
            "block_number": row[0],
            "log_index": row[1],
            "tx_hash": row[2],
            "contract": row[3],
            "event": row[4],
            "args": json.loads(row[5]),
        }
        apply_event(tx, event, stamps.get(row[0]))
    tx.execute("INSERT INTO listings_fts (listings_fts) VALUES ('optimize')")


def _set_listing(tx, model_id: int, **columns) -> None:
    """Set columns of one listing (the column names are this module's, never the chain's)."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    tx.execute(
        f"UPDATE listings SET {assignments} WHERE model_id = ?", (*columns.values(), model_id)
    )


def _on_listed(tx, a, ev, _ts):
    # DELETE + INSERT, not INSERT OR REPLACE: REPLACE's implicit delete fires no trigger, and
    # the triggers keep listing_counts and listings_fts.
    tx.execute("DELETE FROM listings WHERE model_id = ?", (a["modelId"],))
    tx.execute(
        "INSERT INTO listings (model_id, seller, owner, model_hash, metadata_cid, price, "
        "listed_block, task) VALUES (?, ?, ?, ?, ?, ?, ?, "
        "(SELECT task FROM metadata WHERE cid = ? AND status = 'ok'))",
        (
            a["modelId"],
            a["seller"],
            a["seller"],
            a["modelHash"],
            a["metadataCid"],
            u256(a["price"]),
            ev["block_number"],
            a["metadataCid"],
        ),
    )


def _on_price(tx, a, _ev, _ts):
    _set_listing(tx, a["modelId"], price=u256(a["price"]))


def _on_active(tx, a, _ev, _ts):
    _set_listing(tx, a["modelId"], active=int(a["active"]))


def _on_operator(tx, a, _ev, _ts):
    operator = None if a["operator"] == ETH_TOKEN else a["operator"]
    _set_listing(tx, a["modelId"], operator=operator)


def _on_transfer(tx, a, ev, _ts):
    tx.execute(
        "INSERT INTO transfers (block_number, log_index, model_id, from_address, to_address) "
        "VALUES (?, ?, ?, ?, ?)",
        (ev["block_number"], ev["log_index"], a["tokenId"], a["from"], a["to"]),
    )
    _set_listing(tx, a["tokenId"], owner=a["to"])


def _on_payment_token(tx, a, _ev, _ts):
    _set_listing(tx, a["modelId"], payment_token=a["token"])


def _on_subscription_terms(tx, a, _ev, _ts):
    offered = int(a["pricePerPeriod"]) != 0
    _set_listing(
        tx,
        a["modelId"],
        subscription_price=u256(a["pricePerPeriod"]) if offered else None,
        subscription_period=a["periodSeconds"] if offered else None,
    )


def _payment_token(tx, model_id: int) -> str:
    """The listing's payment token now (what a sale or subscription in this event is paid in:
    the token can only change by an earlier event)."""
    row = tx.execute(
        "SELECT payment_token FROM listings WHERE model_id = ?", (model_id,)
    ).fetchone()
    return row[0] if row else ETH_TOKEN


def _on_call_price(tx, a, _ev, _ts):
    price = int(a["price"])
    _set_listing(tx, a["modelId"], call_price=u256(price) if price else None)


def _on_purchased(tx, a, ev, ts):
    tx.execute(
        "INSERT OR REPLACE INTO purchases (purchase_id, model_id, buyer, price, buyer_key, "
        "purchased_block, purchased_at, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a["purchaseId"],
            a["modelId"],
            a["buyer"],
            u256(a["price"]),
            a["buyerKey"],
            ev["block_number"],
            ts,
            a.get("token") or _payment_token(tx, a["modelId"]),
        ),
    )


def _on_subscribed(tx, a, ev, _ts):
    tx.execute(
        "INSERT INTO subscriptions (model_id, account, expires_at, token, subscribed_block) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model_id, account) DO UPDATE SET "
        "expires_at = excluded.expires_at, token = excluded.token, "
        "subscribed_block = excluded.subscribed_block",
        (
            a["modelId"],
            a["account"],
            a["expiresAt"],
            a.get("token") or _payment_token(tx, a["modelId"]),
            ev["block_number"],
        ),
    )


def _on_validator_request(tx, a, _ev, _ts):
    # A new request supersedes the validator's earlier undelivered one for the model.
    tx.execute(
        "UPDATE purchases SET state = 'expired' WHERE model_id = ? AND buyer = ? AND "
        "kind = 'validator' AND state = 'pending' AND purchase_id != ?",
        (a["modelId"], a["validator"], a["purchaseId"]),
    )
    tx.execute("UPDATE purchases SET kind = 'validator' WHERE purchase_id = ?", (a["purchaseId"],))
    # A model's first key request opens its first cycle, for the latest version: ValidationOpened
    # says so too, but a log written before that event existed has only this.
    tx.execute(
        "INSERT INTO validation_cycles (model_id, version) SELECT ?, "
        "COALESCE((SELECT MAX(version) FROM versions WHERE model_id = ?), 1) "
        "WHERE NOT EXISTS (SELECT 1 FROM validation_cycles WHERE model_id = ?)",
        (a["modelId"], a["modelId"], a["modelId"]),
    )


# -- versions (issue 15 §1): version 1 is the listing's row; later ones and the cycles here --


def _on_version_published(tx, a, ev, ts):
    tx.execute(
        "INSERT OR REPLACE INTO versions (model_id, version, model_hash, metadata_cid, "
        "published_block, published_at) VALUES (?, ?, ?, ?, ?, ?)",
        (a["modelId"], a["version"], a["modelHash"], a["metadataCid"], ev["block_number"], ts),
    )


def _on_validation_opened(tx, a, _ev, _ts):
    """A new cycle attests ``version``: the listing's validation is now that cycle's, with no
    round yet (Validators.status and roundOf read the current cycle)."""
    tx.execute(
        "INSERT OR IGNORE INTO validation_cycles (model_id, version) VALUES (?, ?)",
        (a["modelId"], a["version"]),
    )
    _set_listing(
        tx,
        a["modelId"],
        status=ModelStatus.UNVERIFIED.word,
        round=0,
        commit_end=None,
        reveal_end=None,
    )


def _on_delivered(tx, a, ev, ts):
    tx.execute(
        "UPDATE purchases SET state = 'delivered', wrapped_key = ?, delivered_block = ?, "
        "delivered_at = ? WHERE purchase_id = ?",
        (a["wrappedKey"], ev["block_number"], ts, a["purchaseId"]),
    )


def _on_refunded(tx, a, ev, _ts):
    row = tx.execute(
        "SELECT model_id, state FROM purchases WHERE purchase_id = ?", (a["purchaseId"],)
    ).fetchone()
    tx.execute(
        "UPDATE purchases SET state = 'refunded', refund_amount = ?, refunded_block = ? "
        "WHERE purchase_id = ?",
        (u256(a["amount"]), ev["block_number"], a["purchaseId"]),
    )
    if row is not None and row["state"] == "delivered":
        # A licence refunded because its model was disputed in time: its vote no longer
        # counts (the contract's VoteDropped, just before, names no voter; this event does).
        tx.execute(
            "DELETE FROM votes WHERE model_id = ? AND voter = ?", (row["model_id"], a["buyer"])
        )
        _score(tx, row["model_id"])


def _on_released(tx, a, ev, _ts):
    tx.execute(
        "UPDATE purchases SET released = 1, released_block = ?, revenue = ?, fee = ? "
        "WHERE purchase_id = ?",
        (ev["block_number"], u256(a["amount"]), u256(a["fee"]), a["purchaseId"]),
    )


def _on_verdict(tx, a, _ev, ts):
    _set_listing(tx, a["modelId"], verdict_at=ts, verifier_weight=a["verifierWeight"])


def _on_withdrawn(tx, a, ev, _ts):
    tx.execute(
        "INSERT INTO withdrawals (block_number, log_index, contract, account, amount, token) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            ev["block_number"],
            ev["log_index"],
            ev["contract"],
            a["account"],
            u256(a["amount"]),
            a.get("token") or ETH_TOKEN,
        ),
    )


def _on_voted(tx, a, ev, _ts):
    _count_vote(tx, a["modelId"], a["voter"], a["score"], ev["block_number"])


def _on_reviewed(tx, a, ev, _ts):
    # A review's score is a vote (Votes.review counts it as Votes.vote does).
    _count_vote(tx, a["modelId"], a["reviewer"], a["score"], ev["block_number"])
    tx.execute(
        "INSERT INTO reviews (block_number, log_index, model_id, reviewer, score, review_cid) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            ev["block_number"],
            ev["log_index"],
            a["modelId"],
            a["reviewer"],
            a["score"],
            a["reviewCid"],
        ),
    )


def _on_reported(tx, a, ev, _ts):
    tx.execute(
        "INSERT INTO reports (block_number, log_index, model_id, reporter, reason_cid) "
        "VALUES (?, ?, ?, ?, ?)",
        (ev["block_number"], ev["log_index"], a["modelId"], a["reporter"], a["reasonCid"]),
    )


def _count_vote(tx, model_id: int, voter: str, score: int, block_number: int) -> None:
    # The vote weighs what the voter paid for its licence (Marketplace.recordVote): the
    # price of its latest delivered purchase of the model, in wei (a licence paid in a token
    # weighs nothing: its price has no common unit with wei).
    licence = tx.execute(
        "SELECT CASE WHEN token = ? THEN price ELSE ? END AS price FROM purchases "
        "WHERE model_id = ? AND buyer = ? AND kind = 'buyer' "
        "AND state = 'delivered' ORDER BY purchase_id DESC LIMIT 1",
        (ETH_TOKEN, u256(0), model_id, voter),
    ).fetchone()
    tx.execute(
        "INSERT INTO votes (model_id, voter, score, weight, block_number) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (model_id, voter) DO UPDATE SET score = excluded.score, "
        "weight = excluded.weight, block_number = excluded.block_number",
        (model_id, voter, score, licence["price"] if licence else u256(0), block_number),
    )
    _score(tx, model_id)


def _score(tx, model_id: int) -> None:
    """The listing's vote columns from its live votes, as Votes.scoreOf keeps them (sums in
    Python: score x wei overflows SQLite's 64-bit integers)."""
    votes = tx.execute("SELECT score, weight FROM votes WHERE model_id = ?", (model_id,)).fetchall()
    weighted = sum(v["score"] * int(v["weight"]) for v in votes)
    weight = sum(int(v["weight"]) for v in votes)
    score = weighted / weight if weight else None
    _set_listing(
        tx,
        model_id,
        vote_weighted_sum=str(weighted),
        vote_weight=str(weight),
        vote_count=len(votes),
        score=score,
        score_key=score or 0.0,
    )


def _on_staked(tx, a, ev, _ts):
    tx.execute(
        "INSERT INTO validators (address, stake, unlock_at, updated_block) VALUES (?, ?, 0, ?) "
        "ON CONFLICT (address) DO UPDATE SET stake = excluded.stake, unlock_at = 0, "
        "updated_block = excluded.updated_block",
        (a["validator"], u256(a["total"]), ev["block_number"]),
    )


def _on_unstake_requested(tx, a, ev, _ts):
    tx.execute(
        "UPDATE validators SET unlock_at = ?, updated_block = ? WHERE address = ?",
        (a["unlockAt"], ev["block_number"], a["validator"]),
    )


def _on_unstaked(tx, a, _ev, _ts):
    tx.execute("DELETE FROM validators WHERE address = ?", (a["validator"],))


def _on_claimed(tx, a, _ev, ts):
    _set_listing(tx, a["modelId"], claimed_digest=a["workDigest"], claimed_at=ts)


def _on_round_opened(tx, a, ev, ts):
    tx.execute(
        "INSERT OR REPLACE INTO rounds (model_id, version, round, opened_at, commit_end, "
        f"reveal_end, opened_block) VALUES (?, {CURRENT_CYCLE}, ?, ?, ?, ?, ?)",
        (
            a["modelId"],
            a["modelId"],
            a["round"],
            ts,
            a["commitEnd"],
            a["revealEnd"],
            ev["block_number"],
        ),
    )
    _set_listing(
        tx, a["modelId"], round=a["round"], commit_end=a["commitEnd"], reveal_end=a["revealEnd"]
    )


def _on_committed(tx, a, ev, _ts):
    # A commit belongs to the current cycle's open round: the first commit opened it
    # (RoundOpened comes just before it in the same transaction).
    tx.execute(
        "INSERT OR REPLACE INTO attestations (model_id, version, validator, round, commitment, "
        f"committed_block) SELECT ?, {CURRENT_CYCLE}, ?, round, ?, ? FROM listings "
        "WHERE model_id = ?",
        (
            a["modelId"],
            a["modelId"],
            a["validator"],
            a["commitment"],
            ev["block_number"],
            a["modelId"],
        ),
    )


def _on_attested(tx, a, ev, _ts):
    listing = tx.execute(
        f"SELECT l.round, {CURRENT_CYCLE} AS version, l.claimed_digest, l.claimed_at, "
        "r.opened_at FROM listings l LEFT JOIN rounds r ON r.model_id = l.model_id "
        f"AND r.version = {CURRENT_CYCLE} AND r.round = l.round WHERE l.model_id = ?",
        (a["modelId"], a["modelId"], a["modelId"]),
    ).fetchone()
    if listing is None:
        return
    claimed = listing["claimed_digest"]
    digest_is_claim = claimed is not None and a["workDigest"].lower() == claimed.lower()
    # As Validators.revealAttestation counts it: a claim made after the round opened does not.
    claim_counts = digest_is_claim and (
        listing["opened_at"] is None
        or listing["claimed_at"] is None
        or listing["claimed_at"] <= listing["opened_at"]
    )
    says = (
        ModelStatus.DISPUTED
        if not a["matches"]
        else ModelStatus.VERIFIED
        if claim_counts
        else ModelStatus.METRICS_DISPUTED
    )
    tx.execute(
        "UPDATE attestations SET observed_hash = ?, work_digest = ?, matches = ?, "
        "digest_matches_claim = ?, says = ?, revealed_block = ? "
        "WHERE model_id = ? AND version = ? AND validator = ? AND round = ?",
        (
            a["observedHash"],
            a["workDigest"],
            int(a["matches"]),
            int(digest_is_claim),
            says.word,
            ev["block_number"],
            a["modelId"],
            listing["version"],
            a["validator"],
            listing["round"],
        ),
    )


def _on_status(tx, a, _ev, _ts):
    """The cycle attesting ``version`` settled (a log from before cycles names no version: its
    model's only cycle, the current one); the listing's status is the current cycle's."""
    model_id, status = a["modelId"], ModelStatus(a["status"]).word
    version = a.get("version") or tx.execute(f"SELECT {CURRENT_CYCLE}", (model_id,)).fetchone()[0]
    tx.execute(
        "INSERT INTO validation_cycles (model_id, version, status) VALUES (?, ?, ?) "
        "ON CONFLICT (model_id, version) DO UPDATE SET status = excluded.status",
        (model_id, version, status),
    )
    _set_listing(tx, model_id, status=status)
    tx.execute(
        "UPDATE rounds SET outcome = ? WHERE model_id = ? AND version = ? AND round = "
        "(SELECT round FROM listings WHERE model_id = ?)",
        (status, model_id, version, model_id),
    )


def _on_undecided(tx, a, _ev, _ts):
    tx.execute(
        "UPDATE rounds SET outcome = 'undecided', revealed_weight = ? "
        f"WHERE model_id = ? AND version = {CURRENT_CYCLE} AND round = ?",
        (a["revealedWeight"], a["modelId"], a["modelId"], a["round"]),
    )
    # The next commit opens the next round; until then no round is open.
    _set_listing(tx, a["modelId"], commit_end=None, reveal_end=None)


def _on_seat_released(tx, a, ev, _ts):
    if not a["forfeited"]:
        return
    row = tx.execute("SELECT stake FROM validators WHERE address = ?", (a["validator"],)).fetchone()
    if row is not None:  # forfeited bonds leave the stake (to the treasury)
        tx.execute(
            "UPDATE validators SET stake = ?, updated_block = ? WHERE address = ?",
            (u256(int(row[0]) - a["forfeited"]), ev["block_number"], a["validator"]),
        )


HANDLERS: dict[tuple[str, str], Callable[[sqlite3.Connection, dict, dict, int | None], None]] = {
    ("ModelRegistry", "ModelListed"): _on_listed,
    ("ModelRegistry", "PriceChanged"): _on_price,
    ("ModelRegistry", "ActiveChanged"): _on_active,
    ("ModelRegistry", "OperatorChanged"): _on_operator,
    ("ModelRegistry", "MetricsClaimed"): _on_claimed,
    ("ModelRegistry", "Transfer"): _on_transfer,
    ("ModelRegistry", "PaymentTokenChanged"): _on_payment_token,
    ("ModelRegistry", "SubscriptionTermsChanged"): _on_subscription_terms,
    ("ModelRegistry", "VersionPublished"): _on_version_published,
    ("Channels", "CallPriceChanged"): _on_call_price,
    ("Marketplace", "Purchased"): _on_purchased,
    ("Marketplace", "ValidatorKeyRequested"): _on_validator_request,
    ("Marketplace", "KeyDelivered"): _on_delivered,
    ("Marketplace", "Refunded"): _on_refunded,
    ("Marketplace", "RevenueReleased"): _on_released,
    ("Marketplace", "VerdictRecorded"): _on_verdict,
    ("Marketplace", "Withdrawn"): _on_withdrawn,
    ("Marketplace", "Subscribed"): _on_subscribed,
    ("Validators", "Withdrawn"): _on_withdrawn,
    ("Votes", "Voted"): _on_voted,
    ("Votes", "Reviewed"): _on_reviewed,
    ("Votes", "Reported"): _on_reported,
    ("Validators", "Staked"): _on_staked,
    ("Validators", "UnstakeRequested"): _on_unstake_requested,
    ("Validators", "Unstaked"): _on_unstaked,
    ("Validators", "RoundOpened"): _on_round_opened,
    ("Validators", "AttestationCommitted"): _on_committed,
    ("Validators", "Attested"): _on_attested,
    ("Validators", "StatusChanged"): _on_status,
    ("Validators", "ValidationOpened"): _on_validation_opened,
    ("Validators", "RoundUndecided"): _on_undecided,
    ("Validators", "SeatReleased"): _on_seat_released,
}
