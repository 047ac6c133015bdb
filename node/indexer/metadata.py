"""The index's metadata cache: listings' metadata JSON (name, task, description…) by CID.

A CID is content addressed, hence its JSON immutable: it is fetched once, by an injected
``loader(cid) -> dict | None`` (``store_metadata`` reads it from a content store). One that fails
is tried again on later syncs, up to METADATA_ATTEMPTS times; without metadata a listing simply
has no name. The chain stays the source of truth.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable

from node.fetch import load_metadata
from node.indexer.storage import IndexDatabase

log = logging.getLogger("node.indexer.core")  # the indexer's logger, as before the split

METADATA_ATTEMPTS = 3

MetadataLoader = Callable[[str], dict | None]


def store_metadata(store) -> Callable[[str], dict]:
    """A metadata loader reading a listing's metadata JSON from ``store``. What it raises (the
    CID unreachable, not JSON) ``load_missing`` logs, and tries the CID again on a later sync."""
    return functools.partial(load_metadata, store)


def load_missing(database: IndexDatabase, loader: MetadataLoader, limit: int) -> int:
    """Fetch the metadata of up to ``limit`` listings that lack it; return how many loaded."""
    cids = [
        r[0]
        for r in database.connection().execute(
            "SELECT DISTINCT l.metadata_cid FROM listings l LEFT JOIN metadata m ON m.cid = l.metadata_cid "
            "WHERE m.cid IS NULL OR (m.status = 'unavailable' AND m.attempts < ?) LIMIT ?",
            (METADATA_ATTEMPTS, limit),
        )
    ]
    loaded = 0
    for cid in cids:
        try:
            data = loader(cid)
        except Exception as exc:  # noqa: BLE001 - a bad CID is logged, never fatal to indexing
            log.warning("metadata %s could not be loaded: %s", cid, exc)
            data = None
        with database.transaction() as tx:
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
        with database.transaction() as tx:
            tx.execute("INSERT INTO listings_fts (listings_fts) VALUES ('optimize')")
    return loaded


def _text(value) -> str | None:
    return value if isinstance(value, str) else None
