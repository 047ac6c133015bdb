"""The indexer: the Modex contracts' events, followed into SQLite for the UI and the CLI.

The package: ``core`` (``Indexer``: following the chain, rollbacks and rebuilds), ``storage``
(the SQLite file: connections, schema, identity, the event log's insert), ``schema.sql`` (the
tables), ``decode`` (raw logs → events), ``events`` (applying an event to the derived tables),
``metadata`` (the metadata cache), ``documents`` (the review and report documents' cache and
their read API) and ``queries`` (the read API).

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
- reviews and reports (``Reviewed``, ``Reported``): a review's score is also a vote; the review
  and report documents (node.reviews) are cached by CID in ``documents`` (``documents`` module,
  its ``ReviewReader``), and a review's text and version are shown only where its document is
  signed by the event's reviewer for the event's model and score.

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

from node.indexer.core import SCHEMA_VERSION, Indexer, store_metadata, wait_until_synced
from node.indexer.queries import SEARCH_COUNT_CAP, SORTS, Page, Total, fts_query

__all__ = [
    "SCHEMA_VERSION",
    "SEARCH_COUNT_CAP",
    "SORTS",
    "Indexer",
    "Page",
    "Total",
    "fts_query",
    "store_metadata",
    "wait_until_synced",
]
