"""The embedded ServiceStore: one SQLite file (WAL) shared by the processes of one machine.

Every change is one statement (an upsert whose WHERE decides), so SQLite's write lock makes it
atomic across threads and processes. Two connections: vouchers are written with
synchronous=FULL (the WAL is fsynced before accept_voucher returns True; the vouchers that
threads of one process offer at the same time share one transaction and one fsync), nonces
and trial counts with NORMAL (a power cut may forget the last few; the WAL keeps them
consistent), since a fsync per request would bound the service's throughput by the disk. ":memory:" keeps it all in this
process on one connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from node.servicestore.base import ServiceStore, ServiceStoreError, sortable
from node.sqlite_open import open_retrying

PRUNE_EVERY = 60.0  # seconds between deletions of expired nonces (an expired one is reusable)
BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS used_nonces (
    signer TEXT NOT NULL, nonce TEXT NOT NULL, deadline INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce));
CREATE INDEX IF NOT EXISTS used_nonces_deadline ON used_nonces (deadline);
CREATE TABLE IF NOT EXISTS vouchers (
    channel_id TEXT PRIMARY KEY, cumulative TEXT NOT NULL, signature BLOB NOT NULL,
    claimed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    model_id TEXT NOT NULL, address TEXT NOT NULL, used INTEGER NOT NULL,
    PRIMARY KEY (model_id, address));
"""


class _Connection:
    """One sqlite3 connection and the lock its threads take turns with."""

    def __init__(self, path: str, synchronous: str, lock: threading.Lock):
        self.db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.lock = lock

    def rows(self, sql: str, params: tuple = ()) -> list:
        with self.lock:
            return self.db.execute(sql, params).fetchall()


class _GroupCommit:
    """Durable writes from many threads committed together: the first writer to arrive leads,
    runs every statement waiting by then in one transaction and commits it (one fsync for all of
    them), then hands each its rows; a writer returns only after the commit that holds its
    statement, so each is as durable as if committed alone. A failed transaction is rolled
    back and its error raised to every writer in it."""

    def __init__(self, connection: _Connection):
        self.connection = connection
        self._pending: list[tuple[str, tuple, dict]] = []
        self._mutex = threading.Lock()
        self._leading = False

    def rows(self, sql: str, params: tuple = ()) -> list:
        slot: dict = {"done": threading.Event()}
        with self._mutex:
            self._pending.append((sql, params, slot))
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        slot["done"].wait()
        if "error" in slot:
            raise slot["error"]
        return slot["rows"]

    def _lead(self) -> None:
        while True:
            with self._mutex:
                batch, self._pending = self._pending, []
                if not batch:
                    self._leading = False
                    return
            self._commit(batch)

    def _commit(self, batch: list) -> None:
        db = self.connection.db
        try:
            with self.connection.lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params, slot in batch:
                        slot["rows"] = db.execute(sql, params).fetchall()
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except BaseException as exc:  # raised again in each writer's own thread, none left waiting
            for _, _, slot in batch:
                slot["error"] = exc
        for _, _, slot in batch:
            slot["done"].set()


class SqliteServiceStore(ServiceStore):
    def __init__(self, path: str | Path, *, clock=time.time):
        self.url = str(path)
        self._clock = clock
        self._next_prune = 0.0
        try:
            self._durable, self._fast = open_retrying(self._connect, BUSY_TIMEOUT)
        except (OSError, sqlite3.Error) as exc:
            raise self._cannot_open(exc) from exc
        self._vouchers = _GroupCommit(self._durable)

    def _connect(self) -> tuple[_Connection, _Connection]:
        """(durable, fast) connections to the file, its tables created; both closed if it fails."""
        # One lock for both connections: a thread waits for the other connection's write (a
        # voucher's fsync) on it, woken at once, rather than in SQLite's busy handler, which
        # sleeps 1, 2, 5, 10... ms between tries.
        lock = threading.Lock()
        if self.url == ":memory:":
            durable = fast = _Connection(":memory:", "OFF", lock)
        else:
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            durable = fast = _Connection(self.url, "FULL", lock)
        try:
            if self.url != ":memory:":
                durable.db.execute("PRAGMA journal_mode=WAL")
                fast = _Connection(self.url, "NORMAL", lock)
            with durable.lock:
                durable.db.executescript(SCHEMA)
        except BaseException:
            durable.db.close()
            if fast is not durable:
                fast.db.close()
            raise
        return durable, fast

    def _cannot_open(self, exc: Exception) -> ServiceStoreError:
        return ServiceStoreError(
            f"cannot open the service state file {self.url}: {exc}; give a writable path "
            f"(--state FILE) or a redis:// or postgresql:// URL",
            url=self.url,
        )

    # ---- nonces ------------------------------------------------------------------------------

    def use_nonce(self, signer: str, nonce: int, deadline: int) -> bool:
        now = int(self._clock())
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            self._fast.rows("DELETE FROM used_nonces WHERE deadline < ?", (now,))
        # an entry whose deadline has passed is taken again: the request it guarded is refused
        # as expired anyway, whether or not it was pruned yet
        return bool(
            self._fast.rows(
                "INSERT INTO used_nonces (signer, nonce, deadline) VALUES (?, ?, ?)"
                " ON CONFLICT (signer, nonce) DO UPDATE SET deadline = excluded.deadline"
                " WHERE used_nonces.deadline < ? RETURNING 1",
                (signer.lower(), sortable(int(nonce)), int(deadline), now),
            )
        )

    def release_nonce(self, signer: str, nonce: int) -> None:
        self._fast.rows(
            "DELETE FROM used_nonces WHERE signer = ? AND nonce = ?",
            (signer.lower(), sortable(int(nonce))),
        )

    def nonces_held(self) -> int:
        return self._fast.rows("SELECT COUNT(*) FROM used_nonces")[0][0]

    # ---- vouchers ----------------------------------------------------------------------------

    def _raise_voucher(self, channel_id, cumulative_amount, signature, previous_at_most) -> bool:
        return bool(
            self._vouchers.rows(
                "INSERT INTO vouchers (channel_id, cumulative, signature, claimed)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE"
                " SET cumulative = excluded.cumulative, signature = excluded.signature"
                " WHERE vouchers.cumulative <= ? RETURNING 1",
                (
                    sortable(channel_id),
                    sortable(cumulative_amount),
                    signature,
                    sortable(0),
                    sortable(previous_at_most),
                ),
            )
        )

    def highest_voucher(self, channel_id: int) -> tuple[int, bytes] | None:
        rows = self._durable.rows(
            "SELECT cumulative, signature FROM vouchers WHERE channel_id = ?",
            (sortable(int(channel_id)),),
        )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def vouchers_to_claim(self) -> list[tuple[int, int, bytes, int]]:
        rows = self._durable.rows(
            "SELECT channel_id, cumulative, signature, claimed FROM vouchers"
            " WHERE cumulative > claimed ORDER BY channel_id"
        )
        return [(int(c), int(amount), bytes(sig), int(claimed)) for c, amount, sig, claimed in rows]

    def mark_claimed(self, channel_id: int, cumulative_amount: int) -> None:
        amount = sortable(int(cumulative_amount))
        self._durable.rows(
            "UPDATE vouchers SET claimed = ? WHERE channel_id = ? AND claimed < ?",
            (amount, sortable(int(channel_id)), amount),
        )

    # ---- free trials -------------------------------------------------------------------------

    def _count_trial(self, model_id: int, address: str, limit: int) -> bool:
        return bool(
            self._fast.rows(
                "INSERT INTO trials (model_id, address, used) VALUES (?, ?, 1)"
                " ON CONFLICT (model_id, address) DO UPDATE SET used = trials.used + 1"
                " WHERE trials.used < ? RETURNING 1",
                (str(model_id), address, limit),
            )
        )

    def release_trial(self, model_id: int, address: str) -> None:
        self._fast.rows(
            "UPDATE trials SET used = used - 1 WHERE model_id = ? AND address = ? AND used > 0",
            (str(int(model_id)), address.lower()),
        )

    def close(self) -> None:
        with self._durable.lock:  # the lock both connections share
            for connection in {id(c): c for c in (self._fast, self._durable)}.values():
                connection.db.close()
