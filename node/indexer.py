"""The indexer: the Modex contracts' events, followed into SQLite for the UI and the CLI.

``sync()`` reads ``eth_getLogs`` in block ranges over all four contract addresses at
once, decodes each log by (address, topic0), appends it to the ``events`` table (the log), and
applies it to the derived tables (listings, purchases, votes, rounds, attestations, validators,
transfers, withdrawals) in the same SQLite transaction as the checkpoint (last block processed +
its hash). It stays ``confirmations`` blocks behind the head.

What the derived tables hold beyond the events' own fields:
- a listing's validation: its status (``ModelStatus.word``), the seller's claimed work digest
  and when it was claimed, its current (or deciding) round with its deadlines, and when the
  Marketplace recorded the verdict (a dispute within a sale's challenge period refunds it);
- per validator and round an attestation row from its commit (``AttestationCommitted``) to its
  reveal (``Attested``): the observed hash and work digest, whether the hash is the listed one,
  whether the digest is the seller's claim, and the status the reveal counts for, decided as
  ``Validators.revealAttestation`` decides it (a claim counts only if made no later than the
  round's opening);
- votes weighted by price: each ``Voted`` weighs the price of the voter's licence (only a paid
  licence bought from someone else can vote), the listing's score is the weighted mean and
  ``vote_count`` the number of voters; a refunded licence's vote is dropped (the ``Refunded``
  event names the buyer; the ``VoteDropped`` just before it in the same transaction does not);
- a purchase's delivery time (its challenge period runs from there) and whether its revenue was
  released to the seller, with the amount and fee (``RevenueReleased``).

Following the chain (batches, confirmations, reorgs) is ``node.scanner.BlockScanner``'s; the
indexer is its follower. The hash of every block that produced an event and of every checkpoint is
kept in ``blocks``, and the newest of them are the scanner's memory for finding a fork point. On
a reorg the indexer deletes the log above the fork point and rebuilds the derived tables by
replaying the log. The derived tables are a pure function of the log, so rebuilding from any
checkpoint (or block 0) gives identical tables — ``dump()`` exists so tests can compare.

Metadata JSON (name, task, description...) lives in its own table keyed by CID (content
addressed, hence immutable) and is fetched by an injected ``metadata_loader(cid) -> dict | None``;
without one, listings simply have no names. The chain stays the source of truth.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from node.errors import ChainError, ModexError
from node.protocol import ModelStatus
from node.scanner import RECENT_BLOCKS, Batch, BlockScanner, Checkpoint

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
PRICE_DIGITS = 78  # uint256 as zero-padded decimal text: sorts like the number, exact
# sort → (ORDER BY, "comes after the cursor's key" condition, how the key's values fill it).
# Every ORDER BY is one of the listings_* indexes read in order, so a page never sorts.
SORTS = {
    "newest": ("l.model_id DESC", "l.model_id < ?", lambda k: [k[0]]),
    "price": ("l.price ASC, l.model_id DESC",
              # The redundant "price >= ?" lets SQLite seek the index instead of walking it.
              "l.price >= ? AND (l.price > ? OR l.model_id < ?)", lambda k: [k[0], k[0], k[1]]),
    "score": ("l.score_key DESC, l.vote_count DESC, l.model_id DESC",
              "(l.score_key, l.vote_count, l.model_id) < (?, ?, ?)", list),
}
# A text search counts its matches up to this many; the total then says "200+" (an exact count
# walks every match, which is what made search grow with the market).
SEARCH_COUNT_CAP = 200
METADATA_ATTEMPTS = 3
# Events whose block's timestamp the derived tables keep (when a purchase was made or delivered,
# a claim made, a round opened, a verdict recorded); other blocks' headers are never fetched.
STAMPED_EVENTS = {"Purchased", "KeyDelivered", "MetricsClaimed", "RoundOpened", "VerdictRecorded"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1), block_number INTEGER NOT NULL, block_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER);
CREATE TABLE IF NOT EXISTS events (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL, event TEXT NOT NULL, args TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index));
CREATE TABLE IF NOT EXISTS metadata (
    cid TEXT PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    name TEXT, task TEXT, description TEXT, license TEXT, model_hash TEXT, json TEXT);

CREATE TABLE IF NOT EXISTS listings (
    model_id INTEGER PRIMARY KEY, seller TEXT NOT NULL, owner TEXT NOT NULL, model_hash TEXT NOT NULL,
    metadata_cid TEXT NOT NULL, price TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1,
    operator TEXT, status TEXT NOT NULL DEFAULT 'unverified',
    -- votes: weighted sum (score x wei paid) and weight as uint256 text; vote_count = voters;
    -- score = weighted sum / weight
    vote_weighted_sum TEXT NOT NULL DEFAULT '0', vote_weight TEXT NOT NULL DEFAULT '0',
    vote_count INTEGER NOT NULL DEFAULT 0, score REAL,
    listed_block INTEGER NOT NULL,
    -- validation: the seller's claim, the current (or deciding) round, the Marketplace's verdict
    claimed_digest TEXT, claimed_at INTEGER, round INTEGER NOT NULL DEFAULT 0,
    commit_end INTEGER, reveal_end INTEGER, verdict_at INTEGER, verifier_weight INTEGER,
    -- task: copied from the (immutable, content-addressed) metadata so one index serves a filter
    -- with a sort; score_key: score with "no votes" as 0 (below every 1..5 score), never NULL,
    -- so keyset pagination compares plain values.
    task TEXT, score_key REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS listings_cid ON listings (metadata_cid);
CREATE INDEX IF NOT EXISTS listings_owner ON listings (owner, active, model_id);
CREATE INDEX IF NOT EXISTS listings_new ON listings (active, model_id);
CREATE INDEX IF NOT EXISTS listings_price ON listings (active, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_score ON listings (active, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_status_new ON listings (active, status, model_id);
CREATE INDEX IF NOT EXISTS listings_status_price ON listings (active, status, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_status_score ON listings (active, status, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_task_new ON listings (active, task, model_id);
CREATE INDEX IF NOT EXISTS listings_task_price ON listings (active, task, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_task_score ON listings (active, task, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_task_status_new ON listings (active, task, status, model_id);
CREATE INDEX IF NOT EXISTS listings_task_status_price ON listings (active, task, status, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_task_status_score ON listings (active, task, status, score_key, vote_count, model_id);
-- Exact totals without a scan: listings per (active, task, status), kept by triggers.
CREATE TABLE IF NOT EXISTS listing_counts (
    active INTEGER NOT NULL, task TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (active, task, status)) WITHOUT ROWID;
-- Full-text search over the metadata; rowid = model_id, so "newest" reads it in rowid order.
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(
    name, description, task, tokenize = 'porter unicode61 remove_diacritics 2', prefix = '2 3');
CREATE TRIGGER IF NOT EXISTS listings_ai AFTER INSERT ON listings BEGIN
    INSERT INTO listing_counts VALUES (NEW.active, COALESCE(NEW.task, ''), NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO listings_fts (rowid, name, description, task)
        SELECT NEW.model_id, m.name, m.description, m.task FROM metadata m
        WHERE m.cid = NEW.metadata_cid AND m.status = 'ok';
END;
CREATE TRIGGER IF NOT EXISTS listings_ad AFTER DELETE ON listings BEGIN
    UPDATE listing_counts SET n = n - 1
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status;
    DELETE FROM listing_counts
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status AND n = 0;
    DELETE FROM listings_fts WHERE rowid = OLD.model_id;
END;
CREATE TRIGGER IF NOT EXISTS listings_au AFTER UPDATE OF active, task, status ON listings BEGIN
    INSERT INTO listing_counts VALUES (NEW.active, COALESCE(NEW.task, ''), NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    UPDATE listing_counts SET n = n - 1
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status;
    DELETE FROM listing_counts
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status AND n = 0;
END;
CREATE TABLE IF NOT EXISTS purchases (
    purchase_id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL, buyer TEXT NOT NULL,
    price TEXT NOT NULL, buyer_key TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'buyer',
    state TEXT NOT NULL DEFAULT 'pending', wrapped_key TEXT, refund_amount TEXT,
    purchased_block INTEGER NOT NULL, purchased_at INTEGER, delivered_block INTEGER,
    delivered_at INTEGER, refunded_block INTEGER,
    -- the seller's revenue paid out after the challenge period (RevenueReleased)
    released INTEGER NOT NULL DEFAULT 0, released_block INTEGER, revenue TEXT, fee TEXT);
CREATE INDEX IF NOT EXISTS purchases_buyer ON purchases (buyer);
CREATE INDEX IF NOT EXISTS purchases_state ON purchases (state, model_id);
CREATE TABLE IF NOT EXISTS votes (
    model_id INTEGER NOT NULL, voter TEXT NOT NULL, score INTEGER NOT NULL, weight TEXT NOT NULL,
    block_number INTEGER NOT NULL, PRIMARY KEY (model_id, voter));
CREATE TABLE IF NOT EXISTS rounds (
    model_id INTEGER NOT NULL, round INTEGER NOT NULL, opened_at INTEGER, commit_end INTEGER NOT NULL,
    reveal_end INTEGER NOT NULL, opened_block INTEGER NOT NULL,
    -- NULL while open; 'undecided' (RoundUndecided) or the status it settled (StatusChanged)
    outcome TEXT, revealed_weight INTEGER, PRIMARY KEY (model_id, round));
CREATE TABLE IF NOT EXISTS attestations (
    model_id INTEGER NOT NULL, validator TEXT NOT NULL, round INTEGER NOT NULL,
    commitment TEXT NOT NULL, committed_block INTEGER NOT NULL,
    -- from the reveal (NULL until then); says: the status it counts for (ModelStatus.word)
    observed_hash TEXT, work_digest TEXT, matches INTEGER, digest_matches_claim INTEGER, says TEXT,
    revealed_block INTEGER, PRIMARY KEY (model_id, validator, round));
CREATE TABLE IF NOT EXISTS validators (
    address TEXT PRIMARY KEY, stake TEXT NOT NULL, unlock_at INTEGER NOT NULL DEFAULT 0,
    updated_block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, model_id INTEGER NOT NULL,
    from_address TEXT NOT NULL, to_address TEXT NOT NULL, PRIMARY KEY (block_number, log_index));
CREATE TABLE IF NOT EXISTS withdrawals (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, contract TEXT NOT NULL,
    account TEXT NOT NULL, amount TEXT NOT NULL, PRIMARY KEY (block_number, log_index));
"""
DERIVED = ("listings", "purchases", "votes", "rounds", "attestations", "validators", "transfers",
           "withdrawals", "listing_counts", "listings_fts")
ZERO_ADDRESS = "0x" + "00" * 20


def _bytes(value) -> bytes:
    """Raw JSON-RPC logs carry 0x-hex strings; web3-formatted ones HexBytes."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _int(value) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _u256(value: int) -> str:
    return str(int(value)).zfill(PRICE_DIGITS)


def _plain(abi_type: str, value):
    """Decoded ABI value → JSON-friendly: addresses checksummed, bytes as 0x-hex."""
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


class _EventDecoder:
    """Decodes raw logs by (contract address, topic0) without web3's per-event machinery."""

    def __init__(self, contracts: dict):
        self.table = {}
        for name, contract in contracts.items():
            for item in contract.abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                types = ",".join(i["type"] for i in item["inputs"])
                topic = keccak(text=f"{item['name']}({types})")
                indexed = [(i["name"], i["type"]) for i in item["inputs"] if i["indexed"]]
                data = [(i["name"], i["type"]) for i in item["inputs"] if not i["indexed"]]
                self.table[(contract.address.lower(), topic)] = (name, item["name"], indexed, data)
        self.addresses = [c.address for c in contracts.values()]

    def decode(self, raw_log) -> tuple[str, str, dict] | None:
        topics = [_bytes(t) for t in raw_log["topics"]]
        if not topics:
            return None
        key = (raw_log["address"].lower(), topics[0])
        entry = self.table.get(key)
        if entry is None:
            return None
        contract, event, indexed, data = entry
        args = {}
        for (name, abi_type), topic in zip(indexed, topics[1:]):
            # Indexed dynamic types are stored as their hash; ours are all static.
            args[name] = _plain(abi_type, abi_decode([abi_type], topic)[0])
        if data:
            values = abi_decode([t for _, t in data], _bytes(raw_log["data"]))
            for (name, abi_type), value in zip(data, values):
                args[name] = _plain(abi_type, value)
        return contract, event, args


class Indexer:
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
        self._decoder = _EventDecoder(chain.contracts)
        self.scanner = BlockScanner(chain, self._fetch_logs, start_block=self.start_block,
                                    confirmations=confirmations, batch_blocks=batch_blocks)
        self._applied = 0  # events applied by the current sync()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._handlers = {
            ("ModelRegistry", "ModelListed"): self._on_listed,
            ("ModelRegistry", "PriceChanged"): self._on_price,
            ("ModelRegistry", "ActiveChanged"): self._on_active,
            ("ModelRegistry", "OperatorChanged"): self._on_operator,
            ("ModelRegistry", "MetricsClaimed"): self._on_claimed,
            ("ModelRegistry", "Transfer"): self._on_transfer,
            ("Marketplace", "Purchased"): self._on_purchased,
            ("Marketplace", "ValidatorKeyRequested"): self._on_validator_request,
            ("Marketplace", "KeyDelivered"): self._on_delivered,
            ("Marketplace", "Refunded"): self._on_refunded,
            ("Marketplace", "RevenueReleased"): self._on_released,
            ("Marketplace", "VerdictRecorded"): self._on_verdict,
            ("Marketplace", "Withdrawn"): self._on_withdrawn,
            ("Validators", "Withdrawn"): self._on_withdrawn,
            ("Votes", "Voted"): self._on_voted,
            ("Validators", "Staked"): self._on_staked,
            ("Validators", "UnstakeRequested"): self._on_unstake_requested,
            ("Validators", "Unstaked"): self._on_unstaked,
            ("Validators", "RoundOpened"): self._on_round_opened,
            ("Validators", "AttestationCommitted"): self._on_committed,
            ("Validators", "Attested"): self._on_attested,
            ("Validators", "StatusChanged"): self._on_status,
            ("Validators", "RoundUndecided"): self._on_undecided,
            ("Validators", "SeatReleased"): self._on_seat_released,
        }
        self._open()

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
        stored_schema = has_meta and db.execute(
            "SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if stored_schema and stored_schema[0] != str(SCHEMA_VERSION):
            # An index written by another version of this module: its tables are another shape.
            # Everything here is derived from the chain (and the metadata cache, refetched), so
            # drop it all and start over.
            log.warning("index %s has schema %s, this node writes %s; rebuilding from scratch",
                        self.db_path, stored_schema[0], SCHEMA_VERSION)
            objects = db.execute("SELECT type, name FROM sqlite_master WHERE type IN "
                                 "('table', 'trigger') AND name NOT LIKE 'sqlite_%'").fetchall()
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
            log.warning("index %s was built for another chain/deployment; rebuilding from scratch",
                        self.db_path)
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
        earlier = self._db().execute(
            "SELECT number, hash FROM blocks WHERE number < ? ORDER BY number DESC LIMIT ?",
            (checkpoint[0], RECENT_BLOCKS - 1)).fetchall()
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
            {"fromBlock": first, "toBlock": last, "address": self._decoder.addresses}, raw=True)

    def _ingest(self, logs: list, start: int, end: int, end_hash: str) -> int | None:
        """Apply blocks ``start..end``; None (nothing applied) when the checkpoint is no longer
        at ``start - 1``."""
        rows, blocks = [], {}
        for raw in logs:
            decoded = self._decoder.decode(raw)
            if decoded is None:
                continue
            contract, event, args = decoded
            if raw.get("removed"):
                continue  # a log the node already knows was reorged away
            number = _int(raw["blockNumber"])
            blocks[number] = "0x" + _bytes(raw["blockHash"]).hex()
            rows.append({
                "block_number": number, "log_index": _int(raw["logIndex"]),
                "tx_hash": "0x" + _bytes(raw["transactionHash"]).hex(),
                "contract": contract, "event": event, "args": args,
            })
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
            tx.executemany("INSERT OR REPLACE INTO blocks (number, hash, timestamp) VALUES (?, ?, ?)",
                           block_rows.values())
            tx.executemany(
                "INSERT INTO events (block_number, log_index, tx_hash, contract, event, args) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r["block_number"], r["log_index"], r["tx_hash"], r["contract"], r["event"],
                  json.dumps(r["args"], sort_keys=True)) for r in rows],
            )
            for r in rows:
                self._apply(tx, r, stamps.get(r["block_number"]))
            tx.execute(
                "INSERT OR REPLACE INTO checkpoint (id, block_number, block_hash) VALUES (1, ?, ?)",
                (end, end_hash),
            )
        if rows:
            log.debug("indexed %d events up to block %d", len(rows), end)
        return len(rows)

    def follow(self, stop_event: threading.Event, *, poll_interval: float = 2.0,
               on_error_backoff: float = 5.0) -> None:
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
                known = tx.execute("SELECT hash FROM blocks WHERE number = ?", (to_block,)).fetchone()
                block_hash = known[0] if known else self.scanner.hash_at(to_block)
                if block_hash is None:
                    tx.execute("DELETE FROM checkpoint")
                else:
                    tx.execute("INSERT OR IGNORE INTO blocks (number, hash) VALUES (?, ?)",
                               (to_block, block_hash))
                    tx.execute("INSERT OR REPLACE INTO checkpoint (id, block_number, block_hash) "
                               "VALUES (1, ?, ?)", (to_block, block_hash))
            self._replay(tx)

    def import_events(self, events) -> None:
        """Append ``(block_number, log_index, tx_hash, contract, event, args_dict)`` rows to the
        log and rebuild the derived tables from it: synthetic histories for tests and benchmarks
        (the chain's events come through ``sync()``)."""
        with self._transaction() as tx:
            tx.executemany(
                "INSERT INTO events (block_number, log_index, tx_hash, contract, event, args) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*e[:5], json.dumps(e[5], sort_keys=True)) for e in events])
            self._replay(tx)

    def rebuild(self) -> None:
        """Rebuild the derived tables from the stored log (same result as the incremental path)."""
        with self._transaction() as tx:
            self._replay(tx)

    def _replay(self, tx: sqlite3.Connection) -> None:
        for table in DERIVED:
            tx.execute(f"DELETE FROM {table}")
        stamps = dict(tx.execute("SELECT number, timestamp FROM blocks").fetchall())
        cursor = tx.execute(
            "SELECT block_number, log_index, tx_hash, contract, event, args FROM events "
            "ORDER BY block_number, log_index"
        )
        for row in cursor.fetchall():
            event = {"block_number": row[0], "log_index": row[1], "tx_hash": row[2],
                     "contract": row[3], "event": row[4], "args": json.loads(row[5])}
            self._apply(tx, event, stamps.get(row[0]))
        tx.execute("INSERT INTO listings_fts (listings_fts) VALUES ('optimize')")

    # -- applying events (pure functions of the log) ------------------------------------------

    def _apply(self, tx, event: dict, timestamp: int | None) -> None:
        handler = self._handlers.get((event["contract"], event["event"]))
        if handler is not None:
            handler(tx, event["args"], event, timestamp)

    def _on_listed(self, tx, a, ev, _ts):
        # DELETE + INSERT, not INSERT OR REPLACE: REPLACE's implicit delete fires no trigger, and
        # the triggers keep listing_counts and listings_fts.
        tx.execute("DELETE FROM listings WHERE model_id = ?", (a["modelId"],))
        tx.execute(
            "INSERT INTO listings (model_id, seller, owner, model_hash, metadata_cid, price, "
            "listed_block, task) VALUES (?, ?, ?, ?, ?, ?, ?, "
            "(SELECT task FROM metadata WHERE cid = ? AND status = 'ok'))",
            (a["modelId"], a["seller"], a["seller"], a["modelHash"], a["metadataCid"],
             _u256(a["price"]), ev["block_number"], a["metadataCid"]),
        )

    def _on_price(self, tx, a, _ev, _ts):
        tx.execute("UPDATE listings SET price = ? WHERE model_id = ?", (_u256(a["price"]), a["modelId"]))

    def _on_active(self, tx, a, _ev, _ts):
        tx.execute("UPDATE listings SET active = ? WHERE model_id = ?", (int(a["active"]), a["modelId"]))

    def _on_operator(self, tx, a, _ev, _ts):
        operator = None if a["operator"] == to_checksum_address(ZERO_ADDRESS) else a["operator"]
        tx.execute("UPDATE listings SET operator = ? WHERE model_id = ?", (operator, a["modelId"]))

    def _on_transfer(self, tx, a, ev, _ts):
        tx.execute(
            "INSERT INTO transfers (block_number, log_index, model_id, from_address, to_address) "
            "VALUES (?, ?, ?, ?, ?)",
            (ev["block_number"], ev["log_index"], a["tokenId"], a["from"], a["to"]),
        )
        tx.execute("UPDATE listings SET owner = ? WHERE model_id = ?", (a["to"], a["tokenId"]))

    def _on_purchased(self, tx, a, ev, ts):
        tx.execute(
            "INSERT OR REPLACE INTO purchases (purchase_id, model_id, buyer, price, buyer_key, "
            "purchased_block, purchased_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (a["purchaseId"], a["modelId"], a["buyer"], _u256(a["price"]), a["buyerKey"],
             ev["block_number"], ts),
        )

    def _on_validator_request(self, tx, a, _ev, _ts):
        # A new request supersedes the validator's earlier undelivered one for the model.
        tx.execute(
            "UPDATE purchases SET state = 'expired' WHERE model_id = ? AND buyer = ? AND "
            "kind = 'validator' AND state = 'pending' AND purchase_id != ?",
            (a["modelId"], a["validator"], a["purchaseId"]),
        )
        tx.execute("UPDATE purchases SET kind = 'validator' WHERE purchase_id = ?", (a["purchaseId"],))

    def _on_delivered(self, tx, a, ev, ts):
        tx.execute(
            "UPDATE purchases SET state = 'delivered', wrapped_key = ?, delivered_block = ?, "
            "delivered_at = ? WHERE purchase_id = ?",
            (a["wrappedKey"], ev["block_number"], ts, a["purchaseId"]),
        )

    def _on_refunded(self, tx, a, ev, _ts):
        row = tx.execute("SELECT model_id, state FROM purchases WHERE purchase_id = ?",
                         (a["purchaseId"],)).fetchone()
        tx.execute(
            "UPDATE purchases SET state = 'refunded', refund_amount = ?, refunded_block = ? "
            "WHERE purchase_id = ?",
            (_u256(a["amount"]), ev["block_number"], a["purchaseId"]),
        )
        if row is not None and row["state"] == "delivered":
            # A licence refunded because its model was disputed in time: its vote no longer
            # counts (the contract's VoteDropped, just before, names no voter; this event does).
            tx.execute("DELETE FROM votes WHERE model_id = ? AND voter = ?",
                       (row["model_id"], a["buyer"]))
            self._score(tx, row["model_id"])

    def _on_released(self, tx, a, ev, _ts):
        tx.execute(
            "UPDATE purchases SET released = 1, released_block = ?, revenue = ?, fee = ? "
            "WHERE purchase_id = ?",
            (ev["block_number"], _u256(a["amount"]), _u256(a["fee"]), a["purchaseId"]),
        )

    def _on_verdict(self, tx, a, _ev, ts):
        tx.execute("UPDATE listings SET verdict_at = ?, verifier_weight = ? WHERE model_id = ?",
                   (ts, a["verifierWeight"], a["modelId"]))

    def _on_withdrawn(self, tx, a, ev, _ts):
        tx.execute(
            "INSERT INTO withdrawals (block_number, log_index, contract, account, amount) "
            "VALUES (?, ?, ?, ?, ?)",
            (ev["block_number"], ev["log_index"], ev["contract"], a["account"], _u256(a["amount"])),
        )

    def _on_voted(self, tx, a, ev, _ts):
        # The vote weighs what the voter paid for its licence (Marketplace.recordVote): the
        # price of its latest delivered purchase of the model.
        licence = tx.execute(
            "SELECT price FROM purchases WHERE model_id = ? AND buyer = ? AND kind = 'buyer' "
            "AND state = 'delivered' ORDER BY purchase_id DESC LIMIT 1",
            (a["modelId"], a["voter"])).fetchone()
        tx.execute(
            "INSERT INTO votes (model_id, voter, score, weight, block_number) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (model_id, voter) DO UPDATE SET score = excluded.score, "
            "weight = excluded.weight, block_number = excluded.block_number",
            (a["modelId"], a["voter"], a["score"], licence["price"] if licence else _u256(0),
             ev["block_number"]),
        )
        self._score(tx, a["modelId"])

    @staticmethod
    def _score(tx, model_id: int) -> None:
        """The listing's vote columns from its live votes, as Votes.scoreOf keeps them (sums in
        Python: score x wei overflows SQLite's 64-bit integers)."""
        votes = tx.execute("SELECT score, weight FROM votes WHERE model_id = ?", (model_id,)).fetchall()
        weighted = sum(v["score"] * int(v["weight"]) for v in votes)
        weight = sum(int(v["weight"]) for v in votes)
        score = weighted / weight if weight else None
        tx.execute(
            "UPDATE listings SET vote_weighted_sum = ?, vote_weight = ?, vote_count = ?, score = ?, "
            "score_key = ? WHERE model_id = ?",
            (str(weighted), str(weight), len(votes), score, score or 0.0, model_id),
        )

    def _on_staked(self, tx, a, ev, _ts):
        tx.execute(
            "INSERT INTO validators (address, stake, unlock_at, updated_block) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (address) DO UPDATE SET stake = excluded.stake, unlock_at = 0, "
            "updated_block = excluded.updated_block",
            (a["validator"], _u256(a["total"]), ev["block_number"]),
        )

    def _on_unstake_requested(self, tx, a, ev, _ts):
        tx.execute("UPDATE validators SET unlock_at = ?, updated_block = ? WHERE address = ?",
                   (a["unlockAt"], ev["block_number"], a["validator"]))

    def _on_unstaked(self, tx, a, _ev, _ts):
        tx.execute("DELETE FROM validators WHERE address = ?", (a["validator"],))

    def _on_claimed(self, tx, a, _ev, ts):
        tx.execute("UPDATE listings SET claimed_digest = ?, claimed_at = ? WHERE model_id = ?",
                   (a["workDigest"], ts, a["modelId"]))

    def _on_round_opened(self, tx, a, ev, ts):
        tx.execute(
            "INSERT OR REPLACE INTO rounds (model_id, round, opened_at, commit_end, reveal_end, "
            "opened_block) VALUES (?, ?, ?, ?, ?, ?)",
            (a["modelId"], a["round"], ts, a["commitEnd"], a["revealEnd"], ev["block_number"]),
        )
        tx.execute("UPDATE listings SET round = ?, commit_end = ?, reveal_end = ? WHERE model_id = ?",
                   (a["round"], a["commitEnd"], a["revealEnd"], a["modelId"]))

    def _on_committed(self, tx, a, ev, _ts):
        # A commit belongs to the model's open round: the first commit opened it (RoundOpened
        # comes just before it in the same transaction).
        tx.execute(
            "INSERT OR REPLACE INTO attestations (model_id, validator, round, commitment, "
            "committed_block) SELECT ?, ?, round, ?, ? FROM listings WHERE model_id = ?",
            (a["modelId"], a["validator"], a["commitment"], ev["block_number"], a["modelId"]),
        )

    def _on_attested(self, tx, a, ev, _ts):
        listing = tx.execute(
            "SELECT l.round, l.claimed_digest, l.claimed_at, r.opened_at FROM listings l "
            "LEFT JOIN rounds r ON r.model_id = l.model_id AND r.round = l.round "
            "WHERE l.model_id = ?", (a["modelId"],)).fetchone()
        if listing is None:
            return
        claimed = listing["claimed_digest"]
        digest_is_claim = claimed is not None and a["workDigest"].lower() == claimed.lower()
        # As Validators.revealAttestation counts it: a claim made after the round opened does not.
        claim_counts = digest_is_claim and (listing["opened_at"] is None or listing["claimed_at"] is None
                                            or listing["claimed_at"] <= listing["opened_at"])
        says = (ModelStatus.DISPUTED if not a["matches"]
                else ModelStatus.VERIFIED if claim_counts else ModelStatus.METRICS_DISPUTED)
        tx.execute(
            "UPDATE attestations SET observed_hash = ?, work_digest = ?, matches = ?, "
            "digest_matches_claim = ?, says = ?, revealed_block = ? "
            "WHERE model_id = ? AND validator = ? AND round = ?",
            (a["observedHash"], a["workDigest"], int(a["matches"]), int(digest_is_claim), says.word,
             ev["block_number"], a["modelId"], a["validator"], listing["round"]),
        )

    def _on_status(self, tx, a, _ev, _ts):
        status = ModelStatus(a["status"]).word
        tx.execute("UPDATE listings SET status = ? WHERE model_id = ?", (status, a["modelId"]))
        tx.execute("UPDATE rounds SET outcome = ? WHERE model_id = ? AND round = "
                   "(SELECT round FROM listings WHERE model_id = ?)",
                   (status, a["modelId"], a["modelId"]))

    def _on_undecided(self, tx, a, _ev, _ts):
        tx.execute("UPDATE rounds SET outcome = 'undecided', revealed_weight = ? "
                   "WHERE model_id = ? AND round = ?",
                   (a["revealedWeight"], a["modelId"], a["round"]))
        # The next commit opens the next round; until then no round is open.
        tx.execute("UPDATE listings SET commit_end = NULL, reveal_end = NULL WHERE model_id = ?",
                   (a["modelId"],))

    def _on_seat_released(self, tx, a, ev, _ts):
        if not a["forfeited"]:
            return
        row = tx.execute("SELECT stake FROM validators WHERE address = ?", (a["validator"],)).fetchone()
        if row is not None:  # forfeited bonds leave the stake (to the treasury)
            tx.execute("UPDATE validators SET stake = ?, updated_block = ? WHERE address = ?",
                       (_u256(int(row[0]) - a["forfeited"]), ev["block_number"], a["validator"]))

    # -- metadata -----------------------------------------------------------------------------

    def load_metadata(self, limit: int | None = None) -> int:
        """Fetch metadata JSON for listings that lack it (bounded attempts); return how many loaded."""
        if self.metadata_loader is None:
            return 0
        limit = limit or self.metadata_per_sync
        cids = [r[0] for r in self._db().execute(
            "SELECT DISTINCT l.metadata_cid FROM listings l LEFT JOIN metadata m ON m.cid = l.metadata_cid "
            "WHERE m.cid IS NULL OR (m.status = 'unavailable' AND m.attempts < ?) LIMIT ?",
            (METADATA_ATTEMPTS, limit),
        )]
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
                        (cid, _text(data.get("name")), _text(data.get("task")),
                         _text(data.get("description")), _text(data.get("license")),
                         _text(data.get("model_hash")), json.dumps(data, sort_keys=True)),
                    )
                    # The listings naming this CID get its task and their search text now.
                    tx.execute("UPDATE listings SET task = ? WHERE metadata_cid = ?",
                               (_text(data.get("task")), cid))
                    tx.execute("DELETE FROM listings_fts WHERE rowid IN "
                               "(SELECT model_id FROM listings WHERE metadata_cid = ?)", (cid,))
                    tx.execute(
                        "INSERT INTO listings_fts (rowid, name, description, task) "
                        "SELECT model_id, ?, ?, ? FROM listings WHERE metadata_cid = ?",
                        (_text(data.get("name")), _text(data.get("description")),
                         _text(data.get("task")), cid),
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

    # -- read API -----------------------------------------------------------------------------

    _LISTING_COLUMNS = (
        "l.model_id, l.seller, l.owner, l.model_hash, l.metadata_cid, l.price, l.active, l.operator, "
        "l.status, l.vote_weighted_sum, l.vote_weight, l.vote_count, l.score, l.listed_block, "
        "l.claimed_digest, l.claimed_at, l.round, l.commit_end, l.reveal_end, l.verdict_at, "
        "l.verifier_weight, m.name, m.task, m.description, m.license, m.status AS metadata_status, "
        "m.model_hash AS metadata_model_hash"
    )

    @staticmethod
    def _listing(row: sqlite3.Row) -> dict:
        d = dict(row)
        for key in ("price", "vote_weighted_sum", "vote_weight"):
            d[key] = int(d[key])
        d["active"] = bool(d["active"])
        meta_hash = d.pop("metadata_model_hash")
        # Metadata that names another model hash than the chain's is not to be trusted.
        d["metadata_matches"] = None if meta_hash is None else meta_hash.lower() == d["model_hash"].lower()
        return d

    def list_models(self, query: str | None = None, task: str | None = None,
                    status: str | None = None, sort: str = "newest", page: int = 1,
                    per_page: int = 20, *, active: bool | None = True,
                    owner: str | None = None, after: str | None = None) -> tuple[Page, Total]:
        """A page of listings and the total matching; ``sort`` is newest, price or score.

        Pages: ``page`` (OFFSET over the sort's covering index, then the page's rows joined), or
        ``after=rows.next_cursor`` from the previous page (keyset: the index is entered at that
        key, so any depth costs the same and rows listed meanwhile are neither skipped nor
        repeated). ``query`` is full-text over name, description and task: every word must
        match a word of the listing (English stems: "reviews" finds "review"), ``word*`` matches
        words starting with it; punctuation and FTS operators in it are plain text. Totals come
        from maintained counters (exact); with ``query`` they are counted up to SEARCH_COUNT_CAP
        (``total.capped``, shown as "200+")."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        if page < 1 or not 1 <= per_page <= 500:
            raise ValueError("page must be >= 1 and per_page 1..500")
        if after is not None and page != 1:
            raise ValueError("give either page or after (a cursor from the previous page), not both")
        order, after_sql, after_params = SORTS[sort]
        where, params = [], []
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
            total = db.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {counted} "
                               f"LIMIT ?)", [*params, SEARCH_COUNT_CAP + 1]).fetchone()[0]
            total = Total(min(total, SEARCH_COUNT_CAP), capped=total > SEARCH_COUNT_CAP)
            if sort == "newest":  # FTS5 returns rowids (= model ids) in order: no sort at all
                order, after_sql = "f.rowid DESC", "f.rowid < ?"
            elif total.capped:
                # Many matches: sorting them all would grow with the market; walk the sort's
                # index instead and keep the matches (a page of them comes early).
                source = "listings l"
                # (the unary + keeps SQLite from driving the page by the ids instead).
                where[0] = "+l.model_id IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ?)"
        elif owner:
            total = Total(db.execute(f"SELECT COUNT(*) FROM listings l WHERE {' AND '.join(where)}",
                                     params).fetchone()[0])
        else:
            total = Total(self._count(active, task, status))
        if after is not None:
            where.append(after_sql)
            params += after_params(_decode_cursor(after, sort))
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        # The page's ids from the index alone (covering: skipping OFFSET rows reads no table
        # rows), then only those rows are joined with their metadata.
        ids = [r[0] for r in db.execute(
            f"SELECT l.model_id FROM {source} {clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, per_page + 1, 0 if after is not None else (page - 1) * per_page],
        )]
        more = len(ids) > per_page
        ids = ids[:per_page]
        if not ids:
            return Page([], None), total
        rows = db.execute(
            f"SELECT {self._LISTING_COLUMNS} FROM listings l LEFT JOIN metadata m "
            f"ON m.cid = l.metadata_cid WHERE l.model_id IN ({','.join('?' * len(ids))})", ids,
        ).fetchall()
        by_id = {r["model_id"]: self._listing(r) for r in rows}
        listings = [by_id[i] for i in ids]
        return Page(listings, _encode_cursor(sort, listings[-1]) if more else None), total

    def _count(self, active: bool | None, task: str | None, status: str | None) -> int:
        where, params = [], []
        for column, value in (("active", None if active is None else int(active)),
                              ("task", task or None), ("status", status or None)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._db().execute(f"SELECT COALESCE(SUM(n), 0) FROM listing_counts {clause}",
                                  params).fetchone()[0]

    def get_model(self, model_id: int) -> dict | None:
        row = self._db().execute(
            f"SELECT {self._LISTING_COLUMNS} FROM listings l LEFT JOIN metadata m "
            f"ON m.cid = l.metadata_cid WHERE l.model_id = ?", (model_id,),
        ).fetchone()
        return None if row is None else self._listing(row)

    def metadata(self, cid: str) -> dict | None:
        row = self._db().execute("SELECT json FROM metadata WHERE cid = ? AND status = 'ok'", (cid,)).fetchone()
        return None if row is None else json.loads(row[0])

    @staticmethod
    def _purchase(row: sqlite3.Row) -> dict:
        d = dict(row)
        d["price"] = int(d["price"])
        d["released"] = bool(d["released"])
        for key in ("refund_amount", "revenue", "fee"):
            if d.get(key) is not None:
                d[key] = int(d[key])
        return d

    def purchases_of(self, address: str) -> list[dict]:
        rows = self._db().execute(
            "SELECT * FROM purchases WHERE buyer = ? ORDER BY purchase_id",
            (to_checksum_address(address),),
        ).fetchall()
        return [self._purchase(r) for r in rows]

    def get_purchase(self, purchase_id: int) -> dict | None:
        row = self._db().execute("SELECT * FROM purchases WHERE purchase_id = ?", (purchase_id,)).fetchone()
        return None if row is None else self._purchase(row)

    def pending_purchases(self, model_ids=None) -> list[dict]:
        """Purchases (and validator key requests) still waiting for a key, oldest first."""
        sql, params = "SELECT * FROM purchases WHERE state = 'pending'", []
        if model_ids is not None:
            ids = [int(m) for m in model_ids]
            if not ids:
                return []
            sql += f" AND model_id IN ({','.join('?' * len(ids))})"
            params = ids
        rows = self._db().execute(sql + " ORDER BY purchase_id", params).fetchall()
        return [self._purchase(r) for r in rows]

    def unreleased_sales(self, owner: str) -> list[dict]:
        """Delivered, paid purchases of the models ``owner`` owns now whose revenue is not
        released yet, oldest first: what ``node.market.earnings`` asks the chain about (held in
        their challenge period, releasable after it, or the buyers' to refund after a dispute)."""
        rows = self._db().execute(
            "SELECT p.* FROM purchases p JOIN listings l ON l.model_id = p.model_id "
            "WHERE l.owner = ? AND p.kind = 'buyer' AND p.state = 'delivered' AND p.released = 0 "
            "AND p.price != ? ORDER BY p.purchase_id",
            (to_checksum_address(owner), _u256(0)),
        ).fetchall()
        return [self._purchase(r) for r in rows]

    def rounds_of(self, model_id: int) -> list[dict]:
        """The model's validation rounds, oldest first: deadlines and outcome (None while open,
        'undecided', or the status word it settled)."""
        rows = self._db().execute(
            "SELECT * FROM rounds WHERE model_id = ? ORDER BY round", (model_id,)).fetchall()
        return [dict(r) for r in rows]

    def attestations_of(self, model_id: int) -> list[dict]:
        """Every validator's attestation per round, newest round first: its commitment, and once
        revealed the observed hash and work digest, ``matches`` (the listed hash),
        ``digest_matches_claim`` (the seller's claimed digest) and ``says`` (the status it counts
        for); the reveal fields are None while only the commit is seen."""
        rows = self._db().execute(
            "SELECT * FROM attestations WHERE model_id = ? ORDER BY round DESC, committed_block, "
            "validator", (model_id,)
        ).fetchall()
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
        counts = dict(self._db().execute(
            "SELECT score, COUNT(*) FROM votes WHERE model_id = ? GROUP BY score", (model_id,)
        ).fetchall())
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
        return {t: [tuple(r) for r in db.execute(
                    f"SELECT {'rowid, ' if t == 'listings_fts' else ''}* FROM {t} ORDER BY 1, 2")]
                for t in DERIVED}


class Page(list):
    """A page of listings; ``next_cursor`` (or None on the last page) is ``after`` for the next."""

    def __init__(self, rows=(), next_cursor: str | None = None):
        super().__init__(rows)
        self.next_cursor = next_cursor


class Total(int):
    """A count of listings; ``capped`` when a search stopped counting at SEARCH_COUNT_CAP."""

    def __new__(cls, value: int, capped: bool = False):
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
        key = [row["price"], row["model_id"]]
    else:
        key = [row["score"] if row["score"] is not None else 0.0, row["vote_count"], row["model_id"]]
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> list:
    """The key values a cursor carries, as the SQL compares them."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, *key = json.loads(raw)
        shapes = {"newest": (int,), "price": (int, int), "score": ((int, float), int, int)}
        if made_for not in shapes or len(key) != len(shapes[made_for]) or not all(
                isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, shapes[made_for])):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"invalid page cursor {cursor[:40]!r}: start again from the first page "
                         "(omit after=)") from None
    if made_for != sort:
        raise ValueError(f"this page cursor is for sort={made_for}, not sort={sort}: start again "
                         "from the first page")
    if sort == "price":
        key[0] = _u256(key[0])
    elif sort == "score":
        key[0] = float(key[0])
    return key


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
