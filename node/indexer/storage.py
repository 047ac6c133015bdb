"""The index's SQLite file: a connection per thread, the schema and the identity (chain id and
contract addresses) it was written for, transactions, and the event log's one insert."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from node.indexer.events import DERIVED, replay

log = logging.getLogger("node.indexer.core")  # the indexer's logger, as before the split

SCHEMA_VERSION = 9
SCHEMA = (Path(__file__).parent / "schema.sql").read_text()
# Earlier versions whose log (events, blocks, checkpoint) and metadata cache this one reads as
# they are: opening such an index keeps them and rebuilds only the derived tables from the log,
# in the new shape (4 → 5 added payment tokens and subscriptions, 5 → 6 the price per call,
# 6 → 7 the price indexes grouped by payment token, 7 → 8 reviews and reports, 8 → 9 validation
# cycles: node.indexer.events reads a log from before them as one cycle per model), instead of
# reading the whole chain again.
LOG_COMPATIBLE_VERSIONS = ("4", "5", "6", "7", "8")
# The tables that are neither derived from the log nor its checkpoint: kept by a migration.
KEPT_TABLES = ("meta", "checkpoint", "blocks", "events", "metadata", "documents")


class IndexDatabase:
    """One index file. Opening it creates the tables; a file written by another schema version,
    or for another chain or deployment, is emptied first (all of it derives from the chain)."""

    def __init__(self, path: str | Path, chain_id: int, addresses: dict):
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        migrating = self._drop_other_schema()
        self.connection().executescript(SCHEMA)
        if migrating:
            with self.transaction() as tx:
                replay(tx)
                tx.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        self._check_identity(
            {
                "schema": str(SCHEMA_VERSION),
                "chain_id": str(chain_id),
                "contracts": json.dumps(addresses, sort_keys=True),
            }
        )

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # A page's rows lie wherever their ids are: keep the whole index in memory (the
            # default 2 MiB cache made a price-sorted page at 10,000 listings re-read pages).
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` when the block raises)."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def checkpoint(self) -> tuple[int, str] | None:
        """(last block processed, its hash), or None before the first sync."""
        row = (
            self.connection().execute("SELECT block_number, block_hash FROM checkpoint").fetchone()
        )
        return (row[0], row[1]) if row else None

    def _drop_other_schema(self) -> bool:
        """Drop the tables of an index written by another schema version; True when its log is
        kept (LOG_COMPATIBLE_VERSIONS) and the derived tables are to be replayed from it."""
        db = self.connection()
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        stored_schema = (
            has_meta and db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        )
        if not stored_schema or stored_schema[0] == str(SCHEMA_VERSION):
            return False
        # An index written by another version of this module: its tables are another shape.
        # Everything here is derived from the chain (and the metadata cache, refetched), so
        # drop it and start over; a log this version reads as it is stays, and only the tables
        # derived from it are rebuilt.
        keep_log = stored_schema[0] in LOG_COMPATIBLE_VERSIONS
        log.warning(
            "index %s has schema %s, this node writes %s; %s",
            self.path,
            stored_schema[0],
            SCHEMA_VERSION,
            "rebuilding its tables from its log" if keep_log else "rebuilding from scratch",
        )
        objects = db.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN "
            "('table', 'trigger') AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for kind, name in objects:
            if kind == "trigger":
                db.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        for kind, name in objects:
            if kind != "table" or name.startswith("listings_fts_"):
                continue
            if not (keep_log and name in KEPT_TABLES):
                db.execute(f'DROP TABLE IF EXISTS "{name}"')
        return keep_log

    def _check_identity(self, identity: dict[str, str]) -> None:
        stored = dict(self.connection().execute("SELECT key, value FROM meta").fetchall())
        if stored and any(stored.get(k) != v for k, v in identity.items()):
            # Another chain or deployment: this database describes something else; start over.
            log.warning(
                "index %s was built for another chain/deployment; rebuilding from scratch",
                self.path,
            )
            with self.transaction() as tx:
                for table in (
                    "meta",
                    "checkpoint",
                    "blocks",
                    "events",
                    "tokens",
                    "documents",
                    *DERIVED,
                ):
                    tx.execute(f"DELETE FROM {table}")
            stored = {}
        if not stored:
            with self.transaction() as tx:
                tx.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", identity.items())


EVENT_COLUMNS = ("block_number", "log_index", "tx_hash", "contract", "event", "args")


def append_events(tx: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """Append rows of EVENT_COLUMNS (``args`` a dict) to the event log (``tx``: an open
    transaction)."""
    tx.executemany(
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
        [(*row[:5], json.dumps(row[5], sort_keys=True)) for row in rows],
    )
