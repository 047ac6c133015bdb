"""The inference service's shared state: used nonces, payment-channel vouchers, free-trial counts.

One interface, three backends, each operation atomic across threads, processes and machines::

    store = open_service_store("sqlite:///path/state.sqlite3")  # or a plain path; the default
    store = open_service_store("redis://127.0.0.1:6379/0")       # several machines, one model
    store = open_service_store("postgresql://user:pw@host/db")   # several machines, one model

- ``use_nonce(signer, nonce, deadline) -> bool``: True the first time (signer, nonce) is used
  before its deadline; an entry is forgotten once its deadline has passed (the endpoint refuses
  an expired request anyway). ``release_nonce(signer, nonce)`` gives one back when nothing was
  served, so the same signed request may retry.
- ``accept_voucher(channel_id, cumulative_amount, signature, *, previous_at_most, limit) ->
  bool``: stores the voucher, durably (committed and fsynced before it returns True), iff the
  channel's stored highest (0 when none) is at most ``previous_at_most`` and
  ``cumulative_amount <= limit``. A caller passes ``previous_at_most = cumulative_amount -
  call_price`` and ``limit`` = the channel's deposit. ``highest_voucher(channel_id) ->
  (cumulative_amount, signature) | None``; ``vouchers_to_claim()`` -> [(channel_id,
  cumulative_amount, signature, claimed_amount)] for the channels whose highest voucher is above
  what was claimed; ``mark_claimed(channel_id, cumulative_amount)`` after a claim was mined.
- ``use_trial(model_id, address, limit) -> bool`` counts one free call when fewer than ``limit``
  were used; ``release_trial(model_id, address)`` gives one back.

Amounts, channel ids and nonces are uint256: the backends keep them exactly (SQLite and Redis as
78-digit zero-padded decimal text, whose order is the numbers' order; Postgres as NUMERIC(78)).
A store that cannot be reached or opened raises ServiceStoreError naming its URL (never its
password).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from node.errors import ConfigError
from node.servicestore.base import ServiceStore, ServiceStoreError, redacted
from node.servicestore.pgstore import PostgresServiceStore
from node.servicestore.redisstore import RedisServiceStore
from node.servicestore.sqlitestore import SqliteServiceStore

__all__ = [
    "PostgresServiceStore",
    "RedisServiceStore",
    "ServiceStore",
    "ServiceStoreError",
    "SqliteServiceStore",
    "open_service_store",
]

SCHEMES: dict[str, Callable[..., ServiceStore]] = {
    "redis": RedisServiceStore,
    "rediss": RedisServiceStore,
    "postgresql": PostgresServiceStore,
    "postgres": PostgresServiceStore,
}


def open_service_store(url_or_path: str | Path, *, clock=time.time) -> ServiceStore:
    """The store at ``url_or_path``: a plain path or "sqlite:///PATH" (relative; four slashes
    for an absolute path, as SQLAlchemy writes it; ":memory:" or "sqlite://": this process only,
    forgotten on exit), "redis://HOST:PORT/DB" or "postgresql://USER@HOST:PORT/DB".
    ``clock`` (seconds) decides which nonces have expired."""
    text = str(url_or_path)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return SqliteServiceStore(text, clock=clock)
    if scheme == "sqlite":
        return SqliteServiceStore(
            rest[1:] if rest.startswith("/") else rest or ":memory:", clock=clock
        )
    if scheme in SCHEMES:
        return SCHEMES[scheme](text, clock=clock)
    raise ConfigError(
        f"unknown state store {redacted(text)!r}: give a file path, sqlite:///PATH, "
        f"redis://HOST:PORT/DB or postgresql://USER@HOST:PORT/DB",
        key="state",
    )
