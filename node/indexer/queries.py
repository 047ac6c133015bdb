"""The indexer's read API: listings (filtered, sorted, paged, searched), purchases, rounds,
attestations, votes and validators, as the UI and ``modex models`` ask for them."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from typing import NamedTuple

from eth_utils import to_checksum_address

from node.amounts import fmt_amount, fmt_subscription
from node.errors import InvalidQuery
from node.indexer.decode import u256
from node.indexer.events import CURRENT_CYCLE, DERIVED
from node.indexer.payments import PaymentReader, listing_token, token_fields

# sort → (ORDER BY, "comes after the cursor's key" condition, how the key's values fill it).
# Every ORDER BY is one of the listings_* indexes read in order, so a page never sorts.
# Price sorts within a payment token only: listings are grouped by token, ETH (the zero address,
# the smallest) first, then each ERC-20 by address, and by amount within a group. Amounts in
# different tokens are not compared: 5 mUSD is 5,000,000 base units and 0.1 ETH 10^17, and no
# conversion is made between them because the index has no exchange rate it could trust (a rate
# would be an oracle's claim, stale the moment it was read, and would reorder the market with it).
SORTS = {
    "newest": ("l.model_id DESC", "l.model_id < ?", lambda k: [k[0]]),
    "price": (
        "l.payment_token ASC, l.price ASC, l.model_id DESC",
        # The redundant "payment_token >= ?" lets SQLite seek the index instead of walking it.
        "l.payment_token >= ? AND (l.payment_token > ? OR l.price > ? "
        "OR (l.price = ? AND l.model_id < ?))",
        lambda k: [k[0], k[0], k[1], k[1], k[2]],
    ),
    "score": (
        "l.score_key DESC, l.vote_count DESC, l.model_id DESC",
        "(l.score_key, l.vote_count, l.model_id) < (?, ?, ?)",
        list,
    ),
}
# A text search counts its matches up to this many; the total then says "200+" (an exact count
# walks every match, which is what made search grow with the market).
SEARCH_COUNT_CAP = 200


class IndexReader(PaymentReader):
    """The read API over the index's tables (``Indexer`` is one; ``_db()`` is its connection):
    listings and their validation here, purchases, subscriptions and tokens in its base class."""

    _LISTING_COLUMNS = (
        "l.model_id, l.seller, l.owner, l.model_hash, l.metadata_cid, l.price, l.active, l.operator, "
        "l.status, l.vote_weighted_sum, l.vote_weight, l.vote_count, l.score, l.listed_block, "
        "l.claimed_digest, l.claimed_at, l.round, l.commit_end, l.reveal_end, l.verdict_at, "
        "l.verifier_weight, m.name, m.task, m.description, m.license, m.status AS metadata_status, "
        "m.model_hash AS metadata_model_hash, l.payment_token, l.subscription_price, "
        "l.subscription_period, l.call_price, t.symbol AS token_symbol, t.decimals AS token_decimals, "
        "t.described AS token_described"
    )
    # A listing with its metadata and its payment token's description.
    _LISTING_SOURCE = (
        "listings l LEFT JOIN metadata m ON m.cid = l.metadata_cid "
        "LEFT JOIN tokens t ON t.address = l.payment_token"
    )

    @staticmethod
    def _listing(row: sqlite3.Row) -> dict:
        """A listing as the UI and ``modex models`` read it; amounts are integers, ``token`` what
        they are counted in (``token_fields``), ``price_text`` the price in it, and
        ``subscription`` the offer ({price, period (seconds), text}) or None, ``call_price_text``
        the price of one call to the seller's service in it, or None when none is set."""
        d = dict(row)
        for key in ("price", "vote_weighted_sum", "vote_weight"):
            d[key] = int(d[key])
        token = listing_token(
            d.pop("payment_token"),
            d.pop("token_symbol"),
            d.pop("token_decimals"),
            d.pop("token_described"),
        )
        d["token"] = token_fields(token)
        d["price_text"] = fmt_amount(d["price"], token)
        call_price = d.pop("call_price")
        d["call_price_text"] = None if call_price is None else fmt_amount(int(call_price), token)
        sub_price, period = d.pop("subscription_price"), d.pop("subscription_period")
        d["subscription"] = (
            None
            if sub_price is None
            else {
                "price": int(sub_price),
                "period": period,
                "text": fmt_subscription(int(sub_price), period, token),
            }
        )
        d["active"] = bool(d["active"])
        meta_hash = d.pop("metadata_model_hash")
        # Metadata that names another model hash than the chain's is not to be trusted.
        d["metadata_matches"] = (
            None if meta_hash is None else meta_hash.lower() == d["model_hash"].lower()
        )
        return d

    def list_models(
        self,
        query: str | None = None,
        task: str | None = None,
        status: str | None = None,
        sort: str = "newest",
        page: int = 1,
        per_page: int = 20,
        *,
        active: bool | None = True,
        owner: str | None = None,
        after: str | None = None,
    ) -> tuple[Page, Total]:
        """A page of listings and the total matching; ``sort`` is newest, price (ETH listings
        first, then each token's, cheapest first within a token: SORTS says why amounts in
        different tokens are never compared) or score.

        Pages: ``page`` (OFFSET over the sort's covering index, then the page's rows joined), or
        ``after=rows.next_cursor`` from the previous page (keyset: the index is entered at that
        key, so any depth costs the same and rows listed meanwhile are neither skipped nor
        repeated). ``query`` is full-text over name, description and task: every word must
        match a word of the listing (English stems: "reviews" finds "review"), ``word*`` matches
        words starting with it; punctuation and FTS operators in it are plain text. Totals come
        from maintained counters (exact); with ``query`` they are counted up to SEARCH_COUNT_CAP
        (``total.capped``, shown as "200+")."""
        _check_paging(sort, page, per_page, after)
        order, after_sql, after_params = SORTS[sort]
        where: list[str] = []
        params: list[object] = []
        if active is not None:
            where.append("l.active = ?")
            params.append(int(active))
        if task:
            where.append("l.task = ?")
            params.append(task)
        if status:
            where.append("l.status = ?")
            params.append(status)
        if owner:
            where.append("l.owner = ?")
            params.append(to_checksum_address(owner))
        db = self._db()
        source = "listings l"
        if query is not None and query.strip():
            match = fts_query(query)
            if match is None:  # nothing searchable in it (only punctuation): nothing matches
                return Page([], None), Total(0)
            # FTS first (CROSS JOIN fixes the order): the matches drive, listings filter them.
            source = "listings_fts f CROSS JOIN listings l ON l.model_id = f.rowid"
            where.insert(0, "listings_fts MATCH ?")
            params.insert(0, match)
            counted = " AND ".join(where)
            counted_up_to_cap = db.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {counted} LIMIT ?)",
                [*params, SEARCH_COUNT_CAP + 1],
            ).fetchone()[0]
            total = Total(
                min(counted_up_to_cap, SEARCH_COUNT_CAP),
                capped=counted_up_to_cap > SEARCH_COUNT_CAP,
            )
            if sort == "newest":  # FTS5 returns rowids (= model ids) in order: no sort at all
                order, after_sql = "f.rowid DESC", "f.rowid < ?"
            elif total.capped:
                # Many matches: sorting them all would grow with the market; walk the sort's
                # index instead and keep the matches (a page of them comes early).
                source = "listings l"
                # (the unary + keeps SQLite from driving the page by the ids instead).
                where[0] = (
                    "+l.model_id IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ?)"
                )
        elif owner:
            total = Total(
                db.execute(
                    f"SELECT COUNT(*) FROM listings l WHERE {' AND '.join(where)}", params
                ).fetchone()[0]
            )
        else:
            total = Total(self._count(active, task, status))
        if after is not None:
            where.append(after_sql)
            params += after_params(_decode_cursor(after, sort))
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        # The page's ids from the index alone (covering: skipping OFFSET rows reads no table
        # rows), then only those rows are joined with their metadata.
        ids = [
            r[0]
            for r in db.execute(
                f"SELECT l.model_id FROM {source} {clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, per_page + 1, 0 if after is not None else (page - 1) * per_page],
            )
        ]
        more = len(ids) > per_page
        ids = ids[:per_page]
        if not ids:
            return Page([], None), total
        rows = db.execute(
            f"SELECT {self._LISTING_COLUMNS} FROM {self._LISTING_SOURCE} "
            f"WHERE l.model_id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        by_id = {r["model_id"]: self._listing(r) for r in rows}
        listings = [by_id[i] for i in ids]
        return Page(listings, _encode_cursor(sort, listings[-1]) if more else None), total

    def _count(self, active: bool | None, task: str | None, status: str | None) -> int:
        where, params = [], []
        for column, value in (
            ("active", None if active is None else int(active)),
            ("task", task or None),
            ("status", status or None),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return (
            self._db()
            .execute(f"SELECT COALESCE(SUM(n), 0) FROM listing_counts {clause}", params)
            .fetchone()[0]
        )

    def get_model(self, model_id: int) -> dict | None:
        row = (
            self._db()
            .execute(
                f"SELECT {self._LISTING_COLUMNS} FROM {self._LISTING_SOURCE} WHERE l.model_id = ?",
                (model_id,),
            )
            .fetchone()
        )
        return None if row is None else self._listing(row)

    def sale_terms(self, model_id: int) -> ListingTerms | None:
        """The model's terms as of the indexed block (None for a model the index does not
        hold): what ModelRegistry.saleTerms, paymentToken and subscriptionTerms and
        Channels.callPrice answered at that block, one row instead of four calls."""
        row = (
            self._db()
            .execute(
                "SELECT price, payment_token, subscription_price, subscription_period, "
                "call_price FROM listings WHERE model_id = ?",
                (model_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        price, token, sub_price, period, call_price = row
        return ListingTerms(
            int(price), token, int(sub_price or 0), int(period or 0), int(call_price or 0)
        )

    def latest_block_time(self) -> int | None:
        """The time of the latest indexed block whose time the index keeps (the blocks of
        STAMPED_EVENTS), None before any: a lower bound of the chain's time at the checkpoint."""
        row = (
            self._db()
            .execute(
                "SELECT timestamp FROM blocks WHERE timestamp IS NOT NULL "
                "ORDER BY number DESC LIMIT 1"
            )
            .fetchone()
        )
        return None if row is None else int(row[0])

    def metadata(self, cid: str) -> dict | None:
        row = (
            self._db()
            .execute("SELECT json FROM metadata WHERE cid = ? AND status = 'ok'", (cid,))
            .fetchone()
        )
        return None if row is None else json.loads(row[0])

    def rounds_of(self, model_id: int) -> list[dict]:
        """The rounds of the model's current validation cycle (``version``: the version it
        attests), oldest first: deadlines and outcome (None while open, 'undecided', or the
        status word it settled)."""
        rows = (
            self._db()
            .execute(
                f"SELECT * FROM rounds WHERE model_id = ? AND version = {CURRENT_CYCLE} "
                "ORDER BY round",
                (model_id, model_id),
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def attestations_of(self, model_id: int) -> list[dict]:
        """Every validator's attestation per round of the model's current validation cycle
        (``version``: the version it attests), newest round first: its commitment, and once
        revealed the observed hash and work digest, ``matches`` (the listed hash),
        ``digest_matches_claim`` (the seller's claimed digest) and ``says`` (the status it counts
        for); the reveal fields are None while only the commit is seen."""
        rows = (
            self._db()
            .execute(
                f"SELECT * FROM attestations WHERE model_id = ? AND version = {CURRENT_CYCLE} "
                "ORDER BY round DESC, committed_block, validator",
                (model_id, model_id),
            )
            .fetchall()
        )
        result = []
        for r in rows:
            d = dict(r)
            d["revealed"] = d["revealed_block"] is not None
            for key in ("matches", "digest_matches_claim"):
                d[key] = None if d[key] is None else bool(d[key])
            result.append(d)
        return result

    def vote_histogram(self, model_id: int) -> dict[int, int]:
        """{score: number of live votes (voters)} for scores 1..5."""
        counts = dict(
            self._db()
            .execute(
                "SELECT score, COUNT(*) FROM votes WHERE model_id = ? GROUP BY score", (model_id,)
            )
            .fetchall()
        )
        return {score: counts.get(score, 0) for score in range(1, 6)}

    def validators(self) -> list[dict]:
        rows = self._db().execute("SELECT * FROM validators ORDER BY address").fetchall()
        return [{**dict(r), "stake": int(r["stake"])} for r in rows]

    def event_count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def dump(self) -> dict[str, list[tuple]]:
        """Every derived table's rows in a fixed order (for rebuild-equality checks)."""
        db = self._db()
        # The FTS table's rowid is the model id: select it, or two listings' texts could swap.
        return {
            t: [
                tuple(r)
                for r in db.execute(
                    f"SELECT {'rowid, ' if t == 'listings_fts' else ''}* FROM {t} ORDER BY 1, 2"
                )
            ]
            for t in DERIVED
        }


class ListingTerms(NamedTuple):
    """A listing's sale terms in the index: amounts in its payment token's smallest unit (the
    token's address; the zero address: ETH); 0 for a subscription or call price not offered."""

    price: int
    payment_token: str
    subscription_price: int
    subscription_period: int  # seconds; 0 when no subscription is offered
    call_price: int


class Page(list):
    """A page of listings; ``next_cursor`` (or None on the last page) is ``after`` for the next."""

    def __init__(self, rows=(), next_cursor: str | None = None):
        super().__init__(rows)
        self.next_cursor = next_cursor


class Total(int):
    """A count of listings; ``capped`` when a search stopped counting at SEARCH_COUNT_CAP."""

    capped: bool

    def __new__(cls, value: int, capped: bool = False) -> Total:
        total = super().__new__(cls, value)
        total.capped = capped
        return total

    def __str__(self) -> str:
        return f"{int(self)}+" if self.capped else str(int(self))


_WORD = re.compile(r"(\w+)(\*?)")


def fts_query(text: str) -> str | None:
    """User text → an FTS5 query that cannot be a syntax error: each word quoted, all of them
    required, ``word*`` a prefix term; operators (OR, NOT, NEAR, ", column:, a lone *) are just
    words or ignored. None when the text has no word at all.

    Words match whole (stemmed) words unless starred: an exact term is read from the index as
    a stream and stops at the page's last row, a prefix term merges every matching word's list
    first, so it costs more the more listings carry such words."""
    words = _WORD.findall(text)[:32]
    return " ".join(f'"{w}"{star}' for w, star in words) if words else None


def _encode_cursor(sort: str, row: dict) -> str:
    if sort == "newest":
        key = [row["model_id"]]
    elif sort == "price":
        key = [row["token"]["address"], row["price"], row["model_id"]]
    else:
        key = [
            row["score"] if row["score"] is not None else 0.0,
            row["vote_count"],
            row["model_id"],
        ]
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _check_paging(sort: str, page: int, per_page: int, after: str | None) -> None:
    """InvalidQuery for an unknown sort, a page or page size out of range, or page with after."""
    if sort not in SORTS:
        raise InvalidQuery(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if page < 1 or not 1 <= per_page <= 500:
        raise InvalidQuery("page must be >= 1 and per_page 1..500")
    if after is not None and page != 1:
        raise InvalidQuery("give either page or after (a cursor from the previous page), not both")


def _decode_cursor(cursor: str, sort: str) -> list:
    """The key values a cursor carries, as the SQL compares them."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, *key = json.loads(raw)
        shapes = {"newest": (int,), "price": (str, int, int), "score": ((int, float), int, int)}
        if (
            made_for not in shapes
            or len(key) != len(shapes[made_for])
            or not all(
                isinstance(v, t) and not isinstance(v, bool)
                for v, t in zip(key, shapes[made_for], strict=True)
            )
        ):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery(
            f"invalid page cursor {cursor[:40]!r}: start again from the first page (omit after=)"
        ) from None
    if made_for != sort:
        raise InvalidQuery(
            f"this page cursor is for sort={made_for}, not sort={sort}: start again "
            "from the first page"
        )
    if sort == "price":
        key[1] = u256(key[1])
    elif sort == "score":
        key[0] = float(key[0])
    return key
