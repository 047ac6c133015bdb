"""The Indexer: following the chain into the index (as a ``node.scanner.BlockScanner``
follower), rollbacks and rebuilds; its file is ``node.indexer.storage``'s, its metadata cache
``node.indexer.metadata``'s."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from node.config import Config
from node.deploy import STABLECOIN
from node.errors import ChainError, ModexError
from node.indexer.decode import EventDecoder, as_bytes, as_int
from node.indexer.documents import DocumentReader, ReviewReader, load_documents, store_documents
from node.indexer.events import STAMPED_EVENTS, apply_event, replay
from node.indexer.metadata import MetadataLoader, load_missing, store_metadata
from node.indexer.queries import IndexReader
from node.indexer.storage import EVENT_COLUMNS, SCHEMA_VERSION, IndexDatabase, append_events
from node.indexer.versions import VersionReader
from node.scanner import RECENT_BLOCKS, Batch, BlockScanner, Checkpoint

__all__ = ["SCHEMA_VERSION", "Indexer", "store_metadata", "wait_until_synced"]

log = logging.getLogger(__name__)


class Indexer(IndexReader, ReviewReader, VersionReader):
    """Follows the chain into SQLite; the read API serves the UI and ``modex models``."""

    def __init__(
        self,
        chain,
        db_path: str | Path,
        *,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        metadata_loader: MetadataLoader | None = None,
        metadata_per_sync: int = 50,
        start_block: int | None = None,
        document_reader: DocumentReader | None = None,
    ):
        self.chain = chain
        self.db_path = Path(db_path)
        self.metadata_loader = metadata_loader
        self.document_reader = document_reader  # review and report documents (node.reviews)
        self.metadata_per_sync = metadata_per_sync
        # The Modex contracts' events; a token the deployment names is not followed (its every
        # transfer would fill the log).
        self._decoder = EventDecoder(
            {name: c for name, c in chain.contracts.items() if name != STABLECOIN}
        )
        self.scanner = BlockScanner(
            chain,
            self._fetch_logs,
            start_block=start_block,
            confirmations=confirmations,
            batch_blocks=batch_blocks,
        )
        self.start_block = self.scanner.start_block
        self._applied = 0  # events applied by the current sync()
        self._write_lock = threading.Lock()
        self.database = IndexDatabase(self.db_path, chain.chain_id, chain.addresses)

    @classmethod
    def from_config(cls, config: Config, chain, *, store=None) -> Indexer:
        """The index ``config`` describes (``index_db``, ``confirmations``); with a ``store``,
        listings get their names from their metadata JSON read from it (``store_metadata``) and
        reviews their texts (``store_documents``)."""
        assert config.index_db is not None  # set by Config.__post_init__
        return cls(
            chain,
            config.index_db,
            confirmations=config.confirmations,
            metadata_loader=None if store is None else store_metadata(store),
            document_reader=None if store is None else store_documents(store),
        )

    # -- storage (node.indexer.storage) ------------------------------------------------------

    def _db(self):
        return self.database.connection()

    def _transaction(self):
        return self.database.transaction()

    def close(self) -> None:
        """Close this thread's connection to the index."""
        self.database.close()

    def checkpoint(self) -> tuple[int, str] | None:
        """(last block processed, its hash), or None before the first sync."""
        return self.database.checkpoint()

    # -- following ----------------------------------------------------------------------------

    def sync(self, until: int | None = None) -> int:
        """Process every block up to head − confirmations (or ``until`` if lower); return the
        number of events applied."""
        with self._write_lock:
            self._applied = 0
            self.scanner.scan(self, until)
        self.describe_tokens()
        if self.metadata_loader is not None:
            self.load_metadata()
        if self.document_reader is not None:
            self.load_documents()
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
            append_events(tx, (tuple(r[k] for k in EVENT_COLUMNS) for r in rows))
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
            append_events(tx, events)
            replay(tx)

    def rebuild(self) -> None:
        """Rebuild the derived tables from the stored log (same result as the incremental path)."""
        with self._transaction() as tx:
            replay(tx)

    # -- tokens -------------------------------------------------------------------------------

    def describe_tokens(self) -> int:
        """Read the symbol and decimals of every payment token the index names but has not
        described yet (``Chain.token``) into the ``tokens`` table; return how many."""
        missing = [
            row[0]
            for row in self._db().execute(
                "SELECT payment_token FROM listings UNION SELECT token FROM purchases "
                "UNION SELECT token FROM subscriptions UNION SELECT token FROM withdrawals "
                "EXCEPT SELECT address FROM tokens"
            )
            if int(row[0], 16) != 0
        ]
        described = [self.chain.token(address) for address in missing]
        if described:
            with self._transaction() as tx:
                tx.executemany(
                    "INSERT OR REPLACE INTO tokens (address, symbol, decimals, described) "
                    "VALUES (?, ?, ?, ?)",
                    [(t.address, t.symbol, t.decimals, int(t.described)) for t in described],
                )
        return len(described)

    # -- metadata (node.indexer.metadata) ----------------------------------------------------

    def load_metadata(self, limit: int | None = None) -> int:
        """Fetch metadata JSON for listings that lack it (bounded attempts); return how many loaded."""
        if self.metadata_loader is None:
            return 0
        return load_missing(self.database, self.metadata_loader, limit or self.metadata_per_sync)

    def load_documents(self, limit: int | None = None) -> int:
        """Read the review and report documents the index names but has not read yet (bounded
        attempts, node.indexer.documents); return how many were read."""
        if self.document_reader is None:
            return 0
        return load_documents(
            self.database,
            self.document_reader,
            self.chain.chain_id,
            self.chain.votes.address,
            limit or self.metadata_per_sync,
        )


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
