"""The ServiceStore on PostgreSQL (psycopg 3), for several machines serving one model.

Tables ``modex_used_nonces``, ``modex_vouchers`` and ``modex_trials`` (created on first use,
under an advisory lock so that servers starting together do not race). Each change is one
INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING statement, its own transaction
(autocommit): Postgres locks the row, so exactly one of two concurrent writers wins the
compare-and-set. synchronous_commit is on: a voucher is in the WAL on disk before
accept_voucher returns True. uint256 values are NUMERIC(78, 0).

One connection per store, shared by its threads in turn; a broken one is replaced on the next
call.
"""

from __future__ import annotations

import threading
import time

import psycopg

from node.servicestore.base import ServiceStore, ServiceStoreError, redacted

PRUNE_EVERY = 60.0  # seconds between deletions of expired nonces (an expired one is reusable)
CONNECT_TIMEOUT = 5  # seconds
SCHEMA_LOCK = 0x6D6F646578  # pg_advisory_xact_lock key ("modex") while the tables are created
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS modex_used_nonces (signer TEXT NOT NULL,"
    " nonce NUMERIC(78, 0) NOT NULL, deadline BIGINT NOT NULL, PRIMARY KEY (signer, nonce))",
    "CREATE INDEX IF NOT EXISTS modex_used_nonces_deadline ON modex_used_nonces (deadline)",
    "CREATE TABLE IF NOT EXISTS modex_vouchers (channel_id NUMERIC(78, 0) PRIMARY KEY,"
    " cumulative NUMERIC(78, 0) NOT NULL, signature BYTEA NOT NULL,"
    " claimed NUMERIC(78, 0) NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS modex_trials (model_id NUMERIC(78, 0) NOT NULL,"
    " address TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (model_id, address))",
)


class PostgresServiceStore(ServiceStore):
    def __init__(self, url: str, *, clock=time.time):
        self.url = redacted(url)
        self._conninfo = url
        self._clock = clock
        self._next_prune = 0.0
        self._db: psycopg.Connection | None = None
        self._lock = threading.Lock()
        with self._lock:
            db = self._connection()
            try:
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for statement in SCHEMA:
                        db.execute(statement)
            except psycopg.Error as exc:
                raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> ServiceStoreError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ServiceStoreError(
            f"the state store {self.url} cannot be used: {reason}; check that Postgres runs "
            f"there, accepts this user and database, and that the URL (--state) is right",
            url=self.url,
        )

    def _connection(self) -> psycopg.Connection:
        """The open connection (a new one after a failure); the caller holds the lock."""
        if self._db is None or self._db.closed or self._db.broken:
            try:
                self._db = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
                self._db.execute("SET synchronous_commit = on")
            except psycopg.Error as exc:
                raise self._failure(exc) from exc
        return self._db

    def _rows(self, sql: str, params: tuple = ()) -> list:
        with self._lock:
            db = self._connection()
            try:
                cursor = db.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                raise self._failure(exc) from exc

    def use_nonce(self, signer: str, nonce: int, deadline: int) -> bool:
        now = int(self._clock())
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            self._rows("DELETE FROM modex_used_nonces WHERE deadline < %s", (now,))
        return bool(
            self._rows(
                "INSERT INTO modex_used_nonces (signer, nonce, deadline) VALUES (%s, %s, %s)"
                " ON CONFLICT (signer, nonce) DO UPDATE SET deadline = EXCLUDED.deadline"
                " WHERE modex_used_nonces.deadline < %s RETURNING 1",
                (signer.lower(), int(nonce), int(deadline), now),
            )
        )

    def release_nonce(self, signer: str, nonce: int) -> None:
        self._rows(
            "DELETE FROM modex_used_nonces WHERE signer = %s AND nonce = %s",
            (signer.lower(), int(nonce)),
        )

    def nonces_held(self) -> int:
        return self._rows("SELECT COUNT(*) FROM modex_used_nonces")[0][0]

    def _raise_voucher(self, channel_id, cumulative_amount, signature, previous_at_most) -> bool:
        return bool(
            self._rows(
                "INSERT INTO modex_vouchers (channel_id, cumulative, signature)"
                " VALUES (%s, %s, %s) ON CONFLICT (channel_id) DO UPDATE"
                " SET cumulative = EXCLUDED.cumulative, signature = EXCLUDED.signature"
                " WHERE modex_vouchers.cumulative <= %s RETURNING 1",
                (channel_id, cumulative_amount, signature, previous_at_most),
            )
        )

    def highest_voucher(self, channel_id: int) -> tuple[int, bytes] | None:
        rows = self._rows(
            "SELECT cumulative, signature FROM modex_vouchers WHERE channel_id = %s",
            (int(channel_id),),
        )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def vouchers_to_claim(self) -> list[tuple[int, int, bytes, int]]:
        rows = self._rows(
            "SELECT channel_id, cumulative, signature, claimed FROM modex_vouchers"
            " WHERE cumulative > claimed ORDER BY channel_id"
        )
        return [(int(c), int(amount), bytes(sig), int(claimed)) for c, amount, sig, claimed in rows]

    def mark_claimed(self, channel_id: int, cumulative_amount: int) -> None:
        self._rows(
            "UPDATE modex_vouchers SET claimed = %s WHERE channel_id = %s AND claimed < %s",
            (int(cumulative_amount), int(channel_id), int(cumulative_amount)),
        )

    def _count_trial(self, model_id: int, address: str, limit: int) -> bool:
        return bool(
            self._rows(
                "INSERT INTO modex_trials (model_id, address, used) VALUES (%s, %s, 1)"
                " ON CONFLICT (model_id, address) DO UPDATE SET used = modex_trials.used + 1"
                " WHERE modex_trials.used < %s RETURNING 1",
                (model_id, address, limit),
            )
        )

    def release_trial(self, model_id: int, address: str) -> None:
        self._rows(
            "UPDATE modex_trials SET used = used - 1"
            " WHERE model_id = %s AND address = %s AND used > 0",
            (int(model_id), address.lower()),
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
