"""The index's read API for money: purchases (and validator key requests), subscriptions, and
the tokens amounts are counted in. ``IndexReader`` (node.indexer.queries) builds on it."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

from eth_utils import to_checksum_address

from node.amounts import ETH, Token, fmt_amount, undescribed_token
from node.indexer.decode import u256

# A purchase with the description of the token it was paid in.
PURCHASES = (
    "SELECT p.*, t.symbol AS token_symbol, t.decimals AS token_decimals, "
    "t.described AS token_described FROM purchases p LEFT JOIN tokens t ON t.address = p.token"
)


def token_fields(token: Token) -> dict:
    """A Token as the read API's rows carry it (plain JSON): address (the zero address for
    ETH), symbol, decimals and described (False: the token did not say its symbol or decimals,
    and its short address and 18 decimals stand in)."""
    return dataclasses.asdict(token)


def listing_token(address: str, symbol: str | None, decimals: int | None, described) -> Token:
    """The Token of a row that names ``address`` joined with the ``tokens`` table: ETH for the
    zero address, the token as described there, or, before the index has described it, its
    short address with 18 decimals (``undescribed_token``)."""
    if int(address, 16) == 0:
        return ETH
    if symbol is None or decimals is None:
        return undescribed_token(address)
    return Token(address, symbol, int(decimals), described=bool(described))


class PaymentReader:
    """Purchases, subscriptions and tokens in the index. A mixin: the class that uses it
    (``Indexer``, through ``IndexReader``) supplies ``_db()``, its SQLite connection."""

    _db: Callable[[], sqlite3.Connection]

    def _rows(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self._db().execute(sql, params).fetchall()

    @staticmethod
    def _purchase(row: sqlite3.Row) -> dict:
        """A purchase; amounts are integers in ``token`` (``token_fields``: what it was paid in),
        ``price_text`` its price in that token."""
        d = dict(row)
        d["price"] = int(d["price"])
        d["released"] = bool(d["released"])
        for key in ("refund_amount", "revenue", "fee"):
            if d.get(key) is not None:
                d[key] = int(d[key])
        token = listing_token(
            d.pop("token"), d.pop("token_symbol"), d.pop("token_decimals"), d.pop("token_described")
        )
        d["token"] = token_fields(token)
        d["price_text"] = fmt_amount(d["price"], token)
        return d

    def purchases_of(self, address: str) -> list[dict]:
        rows = self._rows(
            f"{PURCHASES} WHERE p.buyer = ? ORDER BY p.purchase_id", (to_checksum_address(address),)
        )
        return [self._purchase(r) for r in rows]

    def get_purchase(self, purchase_id: int) -> dict | None:
        rows = self._rows(f"{PURCHASES} WHERE p.purchase_id = ?", (purchase_id,))
        return self._purchase(rows[0]) if rows else None

    def pending_purchases(self, model_ids=None) -> list[dict]:
        """Purchases (and validator key requests) still waiting for a key, oldest first."""
        sql, params = f"{PURCHASES} WHERE p.state = 'pending'", []
        if model_ids is not None:
            ids = [int(m) for m in model_ids]
            if not ids:
                return []
            sql += f" AND p.model_id IN ({','.join('?' * len(ids))})"
            params = ids
        return [self._purchase(r) for r in self._rows(sql + " ORDER BY p.purchase_id", params)]

    def unreleased_sales(self, owner: str) -> list[dict]:
        """Delivered, paid purchases of the models ``owner`` owns now whose revenue is not
        released yet, oldest first: what ``node.market.earnings`` asks the chain about (held in
        their challenge period, releasable after it, or the buyers' to refund after a dispute);
        each in the token it was paid in."""
        rows = self._rows(
            f"{PURCHASES} JOIN listings l ON l.model_id = p.model_id "
            "WHERE l.owner = ? AND p.kind = 'buyer' AND p.state = 'delivered' AND p.released = 0 "
            "AND p.price != ? ORDER BY p.purchase_id",
            (to_checksum_address(owner), u256(0)),
        )
        return [self._purchase(r) for r in rows]

    def token(self, address: str | None) -> Token:
        """What amounts in ``address`` are counted in, as the index described it (ETH for the
        zero address or None)."""
        if address is None or int(address, 16) == 0:
            return ETH
        address = to_checksum_address(address)
        rows = self._rows(
            "SELECT symbol, decimals, described FROM tokens WHERE address = ?", (address,)
        )
        return listing_token(address, *(rows[0] if rows else (None, None, None)))

    def payment_tokens(self) -> list[Token]:
        """ETH and every ERC-20 the index has described: each token a model was priced in or a
        payment made in (what an account may have been credited in), ETH first, then by
        symbol."""
        tokens = [listing_token(*r) for r in self._rows("SELECT * FROM tokens")]
        return [ETH, *sorted(tokens, key=lambda t: (t.symbol.lower(), t.address))]

    def subscriptions_of(self, account: str) -> list[dict]:
        """``account``'s subscriptions, latest expiry first: model_id, expires_at (a timestamp),
        subscribed_block, the model's name and ``token`` (what it was paid in,
        ``token_fields``)."""
        rows = self._rows(
            "SELECT s.model_id, s.expires_at, s.token, s.subscribed_block, m.name "
            "FROM subscriptions s LEFT JOIN listings l ON l.model_id = s.model_id "
            "LEFT JOIN metadata m ON m.cid = l.metadata_cid "
            "WHERE s.account = ? ORDER BY s.expires_at DESC, s.model_id",
            (to_checksum_address(account),),
        )
        return [{**dict(r), "token": token_fields(self.token(r["token"]))} for r in rows]
