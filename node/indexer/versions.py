"""The index's read API for a listing's versions (issue 15 §1): the rows ``node.indexer.events``
derives from ``VersionPublished`` and from the validation cycles (``ValidationOpened``,
``StatusChanged``), with each version's own validation status (a status never carries over to
another version's weights)."""

from __future__ import annotations

from node.indexer.events import current_cycle_sql
from node.protocol import ModelStatus


class VersionReader:
    """Mixed into ``Indexer`` (``_db()`` is its connection)."""

    def versions_of(self, model_id: int) -> list[dict]:
        """Every version of the model, oldest first: ``version``, ``model_hash``,
        ``metadata_cid``, ``published_block``, ``published_at`` (None for version 1: the index
        keeps the listing's block, not its time), ``attested`` (whether the model's current
        validation cycle attests this version: version 1 until the first validator key request
        opens one), ``status`` (the status word its cycle settled; Unverified while it runs and
        for a version no cycle attested) and ``validating`` (a cycle attests it and has not
        settled). Empty for a model the index does not list."""
        db = self._db()  # type: ignore[attr-defined]
        listing = db.execute(
            "SELECT model_hash, metadata_cid, listed_block FROM listings WHERE model_id = ?",
            (model_id,),
        ).fetchone()
        if listing is None:
            return []
        cycles = dict(
            db.execute(
                "SELECT version, status FROM validation_cycles WHERE model_id = ?", (model_id,)
            ).fetchall()
        )
        rows = [
            {
                "version": 1,
                "model_hash": listing["model_hash"],
                "metadata_cid": listing["metadata_cid"],
                "published_block": listing["listed_block"],
                "published_at": None,
            },
            *(
                dict(r)
                for r in db.execute(
                    "SELECT version, model_hash, metadata_cid, published_block, published_at "
                    "FROM versions WHERE model_id = ? ORDER BY version",
                    (model_id,),
                )
            ),
        ]
        unverified = ModelStatus.UNVERIFIED.word
        attested_version = max(cycles, default=1)
        for row in rows:
            row["attested"] = row["version"] == attested_version
            row["status"] = cycles.get(row["version"], unverified)
            row["validating"] = row["version"] in cycles and row["status"] == unverified
        return rows

    def awaiting_new_cycle(self, limit: int) -> list[int]:
        """Active models (newest first, at most ``limit``) whose current cycle settled Verified
        and whose owner published a later version since: a validator's key request opens that
        version's cycle (Validators.opensNewCycle)."""
        db = self._db()  # type: ignore[attr-defined]
        rows = db.execute(
            "SELECT l.model_id FROM listings l WHERE l.active = 1 AND l.status = ? AND "
            "(SELECT MAX(v.version) FROM versions v WHERE v.model_id = l.model_id) > "
            f"{current_cycle_sql('l.model_id')} ORDER BY l.model_id DESC LIMIT ?",
            (ModelStatus.VERIFIED.word, limit),
        ).fetchall()
        return [int(r[0]) for r in rows]
