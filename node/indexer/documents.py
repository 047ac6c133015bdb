"""The index's cache of review and report documents (node.reviews), by CID and kind.

Like the metadata cache (node.indexer.metadata): a document is content addressed, hence
immutable, and fetched once by an injected ``reader(cid, kind) -> node.reviews.Document``
(``store_documents`` reads it from a content store); one the store cannot give is tried again on
later syncs, up to METADATA_ATTEMPTS times. One that is not a Modex document, or is signed for
another chain or Votes contract, is kept as 'invalid' and never fetched again. Whether a document
is the one its event anchored (signer, model, score) is the read side's test (node.indexer.queries),
since anyone can put another's CID in an event of their own.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable

from node import reviews
from node.errors import IntegrityError
from node.indexer.metadata import METADATA_ATTEMPTS
from node.indexer.storage import IndexDatabase

log = logging.getLogger("node.indexer.core")  # the indexer's logger

DocumentReader = Callable[[str, str], reviews.Document]


def store_documents(store) -> DocumentReader:
    """A document reader over ``store`` (``node.reviews.read``)."""
    return functools.partial(reviews.read, store)


def load_documents(
    database: IndexDatabase, reader: DocumentReader, chain_id: int, votes: str, limit: int
) -> int:
    """Fetch up to ``limit`` review and report documents the index names but has not read;
    return how many were read (valid or not)."""
    missing = database.connection().execute(
        "SELECT cid, kind FROM (SELECT review_cid AS cid, 'review' AS kind FROM reviews "
        "UNION SELECT reason_cid, 'report' FROM reports) AS named "
        "WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.cid = named.cid AND "
        "d.kind = named.kind AND (d.status != 'unavailable' OR d.attempts >= ?)) LIMIT ?",
        (METADATA_ATTEMPTS, limit),
    )
    read = 0
    for cid, kind in missing.fetchall():
        row: tuple = (cid, kind, "unavailable", None, None, None, None, None)
        try:
            document = reader(cid, kind)
            if document.fields["chainId"] != chain_id or document.fields["votes"] != votes:
                raise IntegrityError(f"the {kind} at {cid} is signed for another chain or Votes")
        except IntegrityError as exc:
            log.warning("%s %s is not valid: %s", kind, cid, exc)
            row = (cid, kind, "invalid", None, None, None, None, None)
        except Exception as exc:  # noqa: BLE001 - an unreachable CID is logged, never fatal
            log.warning("%s %s could not be loaded: %s", kind, cid, exc)
        else:
            f = document.fields
            row = (
                cid,
                kind,
                "ok",
                document.signer,
                str(f["modelId"]),
                f.get("score"),
                str(f["version"]) if "version" in f else None,
                document.text,
            )
        with database.transaction() as tx:
            tx.execute(
                "INSERT INTO documents (cid, kind, status, attempts, signer, model_id, score, "
                "version, text) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (cid, kind) DO "
                "UPDATE SET status = excluded.status, attempts = attempts + 1, "
                "signer = excluded.signer, model_id = excluded.model_id, score = excluded.score, "
                "version = excluded.version, text = excluded.text",
                row,
            )
        read += row[2] != "unavailable"
    return read


class ReviewReader:
    """Reviews and reports in the index. A mixin: the class that uses it (``Indexer``) supplies
    ``_db()``, its SQLite connection."""

    _db: Callable[[], sqlite3.Connection]

    def reviews_of(self, model_id: int, limit: int = 50) -> list[dict]:
        """The model's reviews, newest first: reviewer, score, block, CID, and from the review
        document ``text`` and ``version`` (None until it is read, or when it is not the
        reviewer's signed review of this score and model); ``document`` says which: 'verified',
        'pending' (not read yet, or the store did not give it yet) or 'invalid'."""
        rows = (
            self._db()
            .execute(
                "SELECT r.model_id, r.reviewer, r.score, r.block_number, r.review_cid, "
                "d.status, d.signer, d.model_id AS signed_model, d.score AS signed_score, "
                "d.version, d.text FROM reviews r LEFT JOIN documents d "
                "ON d.cid = r.review_cid AND d.kind = 'review' WHERE r.model_id = ? "
                "ORDER BY r.block_number DESC, r.log_index DESC LIMIT ?",
                (model_id, limit),
            )
            .fetchall()
        )
        return [_review(row) for row in rows]

    def report_count(self, model_id: int) -> int:
        """How many accounts reported the model (an account reporting twice counts once)."""
        row = (
            self._db()
            .execute("SELECT COUNT(DISTINCT reporter) FROM reports WHERE model_id = ?", (model_id,))
            .fetchone()
        )
        return int(row[0])


def _review(row: sqlite3.Row) -> dict:
    status = row["status"]
    anchored = (
        status == "ok"
        and row["signer"].lower() == row["reviewer"].lower()
        and row["signed_model"] == str(row["model_id"])
        and row["signed_score"] == row["score"]
    )
    document = "verified" if anchored else "invalid" if status in ("ok", "invalid") else "pending"
    return {
        "model_id": row["model_id"],
        "reviewer": row["reviewer"],
        "score": row["score"],
        "block_number": row["block_number"],
        "review_cid": row["review_cid"],
        "document": document,
        "version": int(row["version"]) if anchored else None,
        "text": row["text"] if anchored else None,
    }
