"""The Indexer: the index's SQLite storage, following the chain into it (as a
``node.scanner.BlockScanner`` follower), rollbacks and rebuilds, and the metadata cache."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.config import Config
from node.errors import ChainError, ModexError
from node.fetch import load_metadata
from node.indexer.decode import EventDecoder, as_bytes, as_int
from node.indexer.events import DERIVED, STAMPED_EVENTS, apply_event, replay
from node.indexer.queries import IndexReader
from node.scanner import RECENT_BLOCKS, Batch, BlockScanner, Checkpoint

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
SCHEMA = (Path(__file__).parent / "schema.sql").read_text()
METADATA_ATTEMPTS = 3


def store_metadata(store) -> Callable[[str], dict]:
    """A ``metadata_loader`` reading a listing's metadata JSON from ``store``. What it raises
    (the CID unreachable, not JSON) ``Indexer.load_metadata`` logs, and tries the CID again on
    a later sync, up to METADATA_ATTEMPTS times."""
    return functools.partial(load_metadata, store)


class Indexer(IndexReader):
    """Follows the chain into SQLite; the read API serves the UI and ``modex models``."""

    def __init__(
        self,
        chain,
        db_path: str | Path,
        *,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        metadata_loader: Callable[[str], dict | None] | None = None,
        metadata_per_sync: int = 50,
        start_block: int | None = None,
    ):
        self.chain = chain
        self.db_path = Path(db_path)
        self.metadata_loader = metadata_loader
        self.metadata_per_sync = metadata_per_sync
        deployed = chain.deployment.get("block") if isinstance(chain.deployment, dict) else None
        self.start_block = start_block if start_block is not None else int(deployed or 0)
        self._decoder = EventDecoder(chain.contracts)
        self.scanner = BlockScanner(
            chain,
            self._fetch_logs,
            start_block=self.start_block,
            confirmations=confirmations,
            batch_blocks=batch_blocks,
        )
        self._applied = 0  # events applied by the current sync()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._open()

    @classmethod
    def from_config(cls, config: Config, chain, *, store=None) -> Indexer:
        """The index ``config`` describes (``index_db``, ``confirmations``); with a ``store``,
        listings get their names from their metadata JSON read from it (``store_metadata``)."""
        assert config.index_db is not None  # set by Config.__post_init__
        return cls(
            chain,
            config.index_db,
            confirmations=config.confirmations,
            metadata_loader=None if store is None else store_metadata(store),
        )

    # -- storage ------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # A page's rows lie wherever their ids are: keep the whole index in memory (the
            # default 2 MiB cache made a price-sorted page at 10,000 listings re-read pages).
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            self._local.conn = conn
        return conn

    def _open(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        stored_schema = (
            has_meta and db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        )
        if stored_schema and stored_schema[0] != str(SCHEMA_VERSION):
            # An index written by another version of this module: its tables are another shape.
            # Everything here is derived from the chain (and the metadata cache, refetched), so
            # drop it all and start over.
            log.warning(
                "index %s has schema %s, this node writes %s; rebuilding from scratch",
                self.db_path,
                stored_schema[0],
                SCHEMA_VERSION,
            )
            objects = db.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN "
                "('table', 'trigger') AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, name in objects:
                if kind == "trigger":
                    db.execute(f'DROP TRIGGER IF EXISTS "{name}"')
            for kind, name in objects:
                if kind == "table" and not name.startswith("listings_fts_"):
                    db.execute(f'DROP TABLE IF EXISTS "{name}"')
        db.executescript(SCHEMA)
        identity = {
            "schema": str(SCHEMA_VERSION),
            "chain_id": str(self.chain.chain_id),
            "contracts": json.dumps(self.chain.addresses, sort_keys=True),
        }
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if stored and any(stored.get(k) != v for k, v in identity.items()):
            # Another chain or deployment: this database describes something else; start over.
            log.warning(
                "index %s was built for another chain/deployment; rebuilding from scratch",
                self.db_path,
            )
            with self._transaction() as tx:
                for table in ("meta", "checkpoint", "blocks", "events", *DERIVED):
                    tx.execute(f"DELETE FROM {table}")
            stored = {}
        if not stored:
            with self._transaction() as tx:
                tx.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", identity.items())

    def _transaction(self):
        db = self._db()

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")
                return db

            def __exit__(self_inner, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def checkpoint(self) -> tuple[int, str] | None:
        """(last block processed, its hash), or None before the first sync."""
        row = self._db().execute("SELECT block_number, block_hash FROM checkpoint").fetchone()
        return (row[0], row[1]) if row else None

    # -- following ----------------------------------------------------------------------------

    def sync(self, until: int | None = None) -> int:
        """Process every block up to head − confirmations (or ``until`` if lower); return the
        number of events applied."""
        with self._write_lock:
            self._applied = 0
            self.scanner.scan(self, until)
        if self.metadata_loader is not None:
            self.load_metadata()
        return self._applied

    # The BlockScanner's follower: the checkpoint row, and the blocks table as its memory.

    def load_checkpoint(self) -> Checkpoint:
        checkpoint = self.checkpoint()
        if checkpoint is None:
            return Checkpoint(self.start_block - 1)
        earlier = (
            self._db()
            .execute(
                "SELECT number, hash FROM blocks WHERE number < ? ORDER BY number DESC LIMIT ?",
                (checkpoint[0], RECENT_BLOCKS - 1),
            )
            .fetchall()
        )
        return Checkpoint(checkpoint[0], (*((n, h) for n, h in reversed(earlier)), checkpoint))

    def apply_batch(self, batch: Batch) -> bool:
        applied = self._ingest(batch.logs, batch.first, batch.last, batch.checkpoint.hashes[-1][1])
        if applied is None:
            return False
        self._applied += applied
        return True

    def rewind(self, checkpoint: Checkpoint) -> None:
        self.rollback(checkpoint.block)

    def _fetch_logs(self, first: int, last: int) -> list:
        return self.chain.get_logs(
            {"fromBlock": first, "toBlock": last, "address": self._decoder.addresses}, raw=True
        )

    def _ingest(self, logs: list, start: int, end: int, end_hash: str) -> int | None:
        """Apply blocks ``start..end``; None (nothing applied) when the checkpoint is no longer
        at ``start - 1``."""
        rows: list[dict[str, Any]] = []
        blocks: dict[int, str] = {}
        for raw in logs:
            decoded = self._decoder.decode(raw)
            if decoded is None:
                continue
            contract, event, args = decoded
            if raw.get("removed"):
                continue  # a log the node already knows was reorged away
            number = as_int(raw["blockNumber"])
            blocks[number] = "0x" + as_bytes(raw["blockHash"]).hex()
            rows.append(
                {
                    "block_number": number,
                    "log_index": as_int(raw["logIndex"]),
                    "tx_hash": "0x" + as_bytes(raw["transactionHash"]).hex(),
                    "contract": contract,
                    "event": event,
                    "args": args,
                }
            )
        rows.sort(key=lambda r: (r["block_number"], r["log_index"]))
        # Only the blocks whose time a derived table keeps: fetch just those headers.
        stamps = {}
        for number in {r["block_number"] for r in rows if r["event"] in STAMPED_EVENTS}:
            stamps[number] = self.chain.get_block(number)["timestamp"]
        with self._transaction() as tx:
            row = tx.execute("SELECT block_number FROM checkpoint").fetchone()
            if (row[0] + 1 if row else self.start_block) != start:
                return None
            block_rows = {n: (n, h, stamps.get(n)) for n, h in blocks.items()}
            block_rows.setdefault(end, (end, end_hash, None))
            tx.executemany(
                "INSERT OR REPLACE INTO blocks (number, hash, timestamp) VALUES (?, ?, ?)",
                block_rows.values(),
            )
            tx.executemany(
                "INSERT INTO events (block_number, log_index, tx_hash, contract, event, args) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["block_number"],
                        r["log_index"],
                        r["tx_hash"],
                        r["contract"],
                        r["event"],
                        json.dumps(r["args"], sort_keys=True),
                    )
                    for r in rows
                ],
            )
            for r in rows:
                apply_event(tx, r, stamps.get(r["block_number"]))
            tx.execute(
                "INSERT OR REPLACE INTO checkpoint (id, block_number, block_hash) VALUES (1, ?, ?)",
                (end, end_hash),
            )
        if rows:
            log.debug("indexed %d events up to block %d", len(rows), end)
        return len(rows)

    def follow(
        self,
        stop_event: threading.Event,
        *,
        poll_interval: float = 2.0,
        on_error_backoff: float = 5.0,
    ) -> None:
        """Sync until ``stop_event`` is set; a failing round is logged and retried, never fatal."""
        while not stop_event.is_set():
            try:
                self.sync()
                wait = poll_interval
            except ModexError as exc:
                log.warning("indexer: %s; retrying in %.0f s", exc, on_error_backoff)
                wait = on_error_backoff
            except Exception:
                log.exception("indexer round failed; retrying in %.0f s", on_error_backoff)
                wait = on_error_backoff
            stop_event.wait(wait)

    def rollback(self, to_block: int) -> None:
        """Forget everything above ``to_block`` and rebuild the derived tables from the log."""
        with self._transaction() as tx:
            tx.execute("DELETE FROM events WHERE block_number > ?", (to_block,))
            tx.execute("DELETE FROM blocks WHERE number > ?", (to_block,))
            if to_block < self.start_block:
                tx.execute("DELETE FROM checkpoint")
            else:
                known = tx.execute(
                    "SELECT hash FROM blocks WHERE number = ?", (to_block,)
                ).fetchone()
                block_hash = known[0] if known else self.scanner.hash_at(to_block)
                if block_hash is None:
                    tx.execute("DELETE FROM checkpoint")
                else:
                    tx.execute(
                        "INSERT OR IGNORE INTO blocks (number, hash) VALUES (?, ?)",
                        (to_block, block_hash),
                    )
                    tx.execute(
                        "INSERT OR REPLACE INTO checkpoint (id, block_number, block_hash) "
                        "VALUES (1, ?, ?)",
                        (to_block, block_hash),
                    )
            replay(tx)

    def import_events(self, events) -> None:
        """Append ``(block_number, log_index, tx_hash, contract, event, args_dict)`` rows to the
        log and rebuild the derived tables from it: synthetic histories for tests and benchmarks
        (the chain's events come through ``sync()``)."""
        with self._transaction() as tx:
            tx.executemany(
                "INSERT INTO events (block_number, log_index, tx_hash, contract, event, args) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*e[:5], json.dumps(e[5], sort_keys=True)) for e in events],
            )
            replay(tx)

    def rebuild(self) -> None:
        """Rebuild the derived tables from the stored log (same result as the incremental path)."""
        with self._transaction() as tx:
            replay(tx)

    # -- metadata -----------------------------------------------------------------------------

    def load_metadata(self, limit: int | None = None) -> int:
        """Fetch metadata JSON for listings that lack it (bounded attempts); return how many loaded."""
        if self.metadata_loader is None:
            return 0
        limit = limit or self.metadata_per_sync
        cids = [
            r[0]
            for r in self._db().execute(
                "SELECT DISTINCT l.metadata_cid FROM listings l LEFT JOIN metadata m ON m.cid = l.metadata_cid "
                "WHERE m.cid IS NULL OR (m.status = 'unavailable' AND m.attempts < ?) LIMIT ?",
                (METADATA_ATTEMPTS, limit),
            )
        ]
        loaded = 0
        for cid in cids:
            try:
                data = self.metadata_loader(cid)
            except Exception as exc:  # noqa: BLE001 - a bad CID is logged, never fatal to indexing
                log.warning("metadata %s could not be loaded: %s", cid, exc)
                data = None
            with self._transaction() as tx:
                if isinstance(data, dict):
                    tx.execute(
                        "INSERT OR REPLACE INTO metadata (cid, status, attempts, name, task, description, "
                        "license, model_hash, json) VALUES (?, 'ok', 0, ?, ?, ?, ?, ?, ?)",
                        (
                            cid,
                            _text(data.get("name")),
                            _text(data.get("task")),
                            _text(data.get("description")),
                            _text(data.get("license")),
                            _text(data.get("model_hash")),
                            json.dumps(data, sort_keys=True),
                        ),
                    )
                    # The listings naming this CID get its task and their search text now.
                    tx.execute(
                        "UPDATE listings SET task = ? WHERE metadata_cid = ?",
                        (_text(data.get("task")), cid),
                    )
                    tx.execute(
                        "DELETE FROM listings_fts WHERE rowid IN "
                        "(SELECT model_id FROM listings WHERE metadata_cid = ?)",
                        (cid,),
                    )
                    tx.execute(
                        "INSERT INTO listings_fts (rowid, name, description, task) "
                        "SELECT model_id, ?, ?, ? FROM listings WHERE metadata_cid = ?",
                        (
                            _text(data.get("name")),
                            _text(data.get("description")),
                            _text(data.get("task")),
                            cid,
                        ),
                    )
                    loaded += 1
                else:
                    tx.execute(
                        "INSERT INTO metadata (cid, status, attempts) VALUES (?, 'unavailable', 1) "
                        "ON CONFLICT (cid) DO UPDATE SET attempts = attempts + 1",
                        (cid,),
                    )
        if loaded >= 100:  # one transaction per CID left many small FTS segments: merge them
            with self._transaction() as tx:
                tx.execute("INSERT INTO listings_fts (listings_fts) VALUES ('optimize')")
        return loaded


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def wait_until_synced(indexer: Indexer, block: int, timeout: float = 30.0) -> None:
    """Sync until the checkpoint reaches ``block`` (helper for tests and one-shot commands)."""
    deadline = time.monotonic() + timeout
    while True:
        indexer.sync()
        checkpoint = indexer.checkpoint()
        if checkpoint and checkpoint[0] >= block:
            return
        if time.monotonic() > deadline:
            raise ChainError(f"the index did not reach block {block} within {timeout:g} s")
        time.sleep(0.05)
