"""The index's read API for a listing's versions (issue 15 §1): the rows ``node.indexer.events``
derives from ``VersionPublished`` and from the first validator key request, with each version's
validation status (the listing's status belongs to the version its rounds attest)."""

from __future__ import annotations

from node.protocol import ModelStatus


class VersionReader:
    """Mixed into ``Indexer`` (``_db()`` is its connection)."""

    def versions_of(self, model_id: int) -> list[dict]:
        """Every version of the model, oldest first: ``version``, ``model_hash``,
        ``metadata_cid``, ``published_block``, ``published_at`` (None for version 1: the index
        keeps the listing's block, not its time), ``attested`` (whether the model's rounds attest
        this version: version 1 until the first validator key request fixes one) and ``status``
        (the status word; Unverified for every version but the attested one). Empty for a model
        the index does not list."""
        db = self._db()  # type: ignore[attr-defined]
        listing = db.execute(
            "SELECT model_hash, metadata_cid, listed_block, status FROM listings WHERE model_id = ?",
            (model_id,),
        ).fetchone()
        if listing is None:
            return []
        attested = db.execute(
            "SELECT version FROM attested_versions WHERE model_id = ?", (model_id,)
        ).fetchone()
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
        status = listing["status"] or ModelStatus.UNVERIFIED.word
        attested_version = attested[0] if attested is not None else 1
        for row in rows:
            row["attested"] = row["version"] == attested_version
            row["status"] = (
                status if attested is not None and row["attested"] else ModelStatus.UNVERIFIED.word
            )
        return rows
