"""The index's event log read in order for implicit-feedback learners (ml.implicit): the events
after a position, and what marks a position so a learner can tell that a reorg or a rebuild
rewrote the log under it.

The log (the ``events`` table) is the one place that keeps every purchase, subscription, vote,
review and refund in chain order, with each account's earlier votes (the derived ``votes`` table
keeps only the latest). Nothing here interprets the events: the learner names the ones it reads.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

Position = tuple[int, int]  # (block number, log index)


class FeedbackLog:
    """The index's events of some kinds, in (block, log index) order, read through the
    indexer's connection for this thread (``Indexer._db``)."""

    def __init__(self, indexer):
        self._indexer = indexer

    def _db(self) -> sqlite3.Connection:
        return self._indexer._db()

    def events_after(
        self, position: Position | None, names: Iterable[tuple[str, str]]
    ) -> list[dict]:
        """The events named ``(contract, event)`` after ``position`` (all of them for None), oldest
        first: ``block_number``, ``log_index``, ``tx_hash``, ``contract``, ``event``, ``args``
        (decoded JSON) and ``block_hash`` (None where the index keeps no hash for the block: a
        history imported by ``Indexer.import_events``)."""
        wanted = sorted(set(names))
        if not wanted:
            return []
        match = " OR ".join("(e.contract = ? AND e.event = ?)" for _ in wanted)
        block, log_index = position if position is not None else (-1, -1)
        rows = (
            self._db()
            .execute(
                "SELECT e.block_number, e.log_index, e.tx_hash, e.contract, e.event, e.args, "
                "b.hash AS block_hash FROM events e LEFT JOIN blocks b ON b.number = e.block_number "
                f"WHERE (e.block_number, e.log_index) > (?, ?) AND ({match}) "
                "ORDER BY e.block_number, e.log_index",
                (block, log_index, *(part for pair in wanted for part in pair)),
            )
            .fetchall()
        )
        return [{**dict(row), "args": json.loads(row["args"])} for row in rows]

    def marker(self, position: Position) -> tuple[str, str | None] | None:
        """What the log holds at ``position``: (transaction hash, block hash or None), or None
        when no event is there any more (rolled back)."""
        row = (
            self._db()
            .execute(
                "SELECT e.tx_hash, b.hash FROM events e LEFT JOIN blocks b "
                "ON b.number = e.block_number WHERE e.block_number = ? AND e.log_index = ?",
                position,
            )
            .fetchone()
        )
        return None if row is None else (row[0], row[1])
