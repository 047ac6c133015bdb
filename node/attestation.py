"""What a validator finds for a listed model: its key unwrapped, the content fetched, unsealed,
extracted and re-hashed, and the model evaluated on the eval set its listing declares
(``ModelCheck.verify`` → ``Attestation``; ``node.validator`` commits and reveals it).

What is revealed (docs/formats.md sections 7–8): the hash of the bytes actually extracted, and the
work digest of the injected evaluator's report on the eval set the listing declares. Content that
is not what any honest seller could deliver (a key that does not unwrap, an archive that does not
authenticate or parse, metadata that is not Modex metadata) is revealed with the all-zero observed
hash ``UNREADABLE`` (never a listed hash: the registry refuses zero). ``FAILED_WORK_DIGEST`` is
revealed when there is no evaluation to reproduce: the hash differs from the listing, the listing
declares no eval set, the evaluation cannot run (``EVALUATION_FAILURES`` from the evaluator:
weights that do not load, an unknown eval set), or the listing declares metrics its evaluation
does not reproduce (``node.protocol.declared_metrics_differences``). Such a model is never Verified.

This node's own disk is never held against a seller. Before content that fails to unseal, parse
or verify is attested, the store checks its own copy (``store.repair``); blocks it held corrupt are
dropped and fetched again, and the fetch runs once more: only what fails then is attested. A store
failure (StoreError: content not found in the store's time, a daemon or gateway unreachable, and
LocalStoreError: a corrupt local block with no other copy to fetch, a store the disk will not read
or write) and an OSError (a full disk or unwritable work folder while extracting or evaluating)
are logged with the reason and retried next pass, never committed. Per store:

- embedded (the default; ``modex up`` and every command sharing the data folder read ONE block
  folder, so the validator's copy is the seller's): blocks are verified when written, so one
  failing its CID is this disk's. It is set aside under ``<store>/corrupt/``; with
  ``store_source`` set (a peer's or public IPFS gateway) it is fetched again from there and the
  check goes on; without one there is no other copy to ask: no commitment, a log line saying to
  re-import the content, and the next pass tries again (a re-import heals it);
- kubo: the daemon verifies what it fetches from the network, so a block it serves corrupt is
  its own repository's; ``repair`` removes it (``block/rm``), the daemon fetches it again, and
  the fetch is retried. A pinned corrupt block the daemon will not remove: no commitment.

``evaluator(model_dir, metadata) -> report`` is injected (the CLI and the UI pass
``ml.evaluate.evaluate_listing``; node/ never imports ml/).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node import market, versions
from node.content import keywrap
from node.errors import (
    ChainError,
    IntegrityError,
    KeyWrapError,
    ManifestError,
    ModexError,
    SealError,
)
from node.fetch import load_metadata, retrieve
from node.protocol import FAILED_WORK_DIGEST, ZERO32, declared_metrics_differences, work_digest

log = logging.getLogger(__name__)

UNREADABLE = ZERO32
# What the content itself can be guilty of (after this node's own copy was checked).
CONTENT_ERRORS = (SealError, IntegrityError, ManifestError)
# What an evaluator raises when the model's declared evaluation cannot run (ml.evaluate wraps
# weights that do not load and unknown eval sets in ConfigError, a ModexError; torch raises
# RuntimeError on a model it cannot run). An OSError is this machine's and is retried.
EVALUATION_FAILURES = (ModexError, ValueError, RuntimeError)

Evaluator = Callable[[Path, dict], dict]


@dataclass
class Attestation:
    """What this validator found for a model: the observed hash and the work digest it reveals."""

    model_id: int
    observed_hash: bytes
    work_digest: bytes
    matches: bool  # the observed hash is the listed one
    metrics: dict | None = None  # the reproduced metrics (None when no evaluation ran)
    reason: str = ""  # why the hash or the evaluation failed

    def to_json(self) -> dict:
        return {
            "observed_hash": self.observed_hash.hex(),
            "work_digest": self.work_digest.hex(),
            "matches": self.matches,
            "metrics": self.metrics,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, model_id: int, doc: dict) -> Attestation:
        return cls(
            model_id,
            bytes.fromhex(doc["observed_hash"]),
            bytes.fromhex(doc["work_digest"]),
            bool(doc["matches"]),
            doc.get("metrics"),
            doc.get("reason", ""),
        )


@dataclass
class ModelCheck:
    """One validator's means to check a model: its chain, its store (with ``repair`` to check its
    own copy), the injected evaluator and a work folder for the extracted model."""

    chain: Any
    store: Any
    evaluator: Evaluator
    work_dir: Path

    def verify(self, model_id: int, purchase_id: int, x25519_private: bytes) -> Attestation:
        """Fetch, unseal, extract and re-hash the version of the model its rounds attest (the
        one whose key validators are delivered); evaluate it on its declared eval set."""
        attested = self.chain.call(self.chain.validators.functions.attestedVersion(model_id))
        listed, cid = versions.content_of(self.chain, model_id, max(int(attested), 1))
        wrapped = market.delivered_key(self.chain, purchase_id)
        if wrapped is None:
            raise ChainError(
                f"purchase {purchase_id} is marked delivered but its KeyDelivered "
                "event was not found; is the node's log history pruned?"
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            key = keywrap.unwrap_key(
                wrapped,
                x25519_private,
                chain_id=self.chain.chain_id,
                marketplace=self.chain.marketplace.address,
                purchase_id=purchase_id,
            )
            meta, tmp, manifest = self._fetch_checked(model_id, cid, key)
        except (KeyWrapError, *CONTENT_ERRORS) as exc:
            return Attestation(model_id, UNREADABLE, FAILED_WORK_DIGEST, False, reason=str(exc))
        try:
            observed = manifest.model_hash
            if observed != listed:
                return Attestation(
                    model_id, observed, FAILED_WORK_DIGEST, False, reason="model hash differs"
                )
            return self._evaluate(model_id, tmp, meta, observed)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _evaluate(self, model_id: int, model_dir: Path, meta: dict, observed: bytes) -> Attestation:
        """The listed bytes, evaluated: the report's work digest, or the failure digest (and why)
        when the evaluation cannot run or does not reproduce what the listing declares."""
        declared = meta.get("metrics")
        eval_set = declared.get("eval_set") if isinstance(declared, dict) else None
        if not eval_set:
            return Attestation(
                model_id,
                observed,
                FAILED_WORK_DIGEST,
                True,
                reason="the listing declares no eval set: nothing to reproduce",
            )
        try:
            report = self.evaluator(model_dir, meta)
        except EVALUATION_FAILURES as exc:
            log.warning("model %d: declared evaluation %r failed: %s", model_id, eval_set, exc)
            return Attestation(
                model_id,
                observed,
                FAILED_WORK_DIGEST,
                True,
                reason=f"evaluation {eval_set!r} failed: {exc}",
            )
        differences = declared_metrics_differences(declared, report)
        if differences:
            return Attestation(
                model_id,
                observed,
                FAILED_WORK_DIGEST,
                True,
                report["metrics"],
                reason="the listing declares metrics its evaluation does not "
                f"reproduce: {'; '.join(differences)}",
            )
        return Attestation(model_id, observed, work_digest(report), True, report["metrics"])

    def _fetch(self, model_id: int, cid: str, key: bytes, cids: list[str]):
        """(metadata, temp folder, manifest); the CIDs read are appended to ``cids``."""
        cids.append(cid)
        meta = load_metadata(self.store, cid)
        content_cid = meta.get("content_cid")
        if not isinstance(content_cid, str) or not content_cid:
            raise IntegrityError(f"the metadata at {cid} names no content_cid")
        cids.append(content_cid)
        tmp, manifest = retrieve(
            self.store, content_cid, key, self.work_dir, prefix=f"model-{model_id}-"
        )
        return meta, tmp, manifest

    def _fetch_checked(self, model_id: int, cid: str, key: bytes):
        """``_fetch``; content that fails is fetched once more after the store checked (and
        repaired) its own copy of it, and only a failure then is the content's."""
        cids: list[str] = []
        try:
            return self._fetch(model_id, cid, key, cids)
        except CONTENT_ERRORS as exc:
            first = exc
        repair = getattr(self.store, "repair", None)
        replaced = [c for root in cids for c in repair(root)] if repair else []
        if not replaced:
            raise first  # our copy is sound: the content is what failed
        log.warning(
            "model %d: %d block(s) of this node's own copy were corrupt (%s) and were "
            "fetched again; checking the model again",
            model_id,
            len(replaced),
            ", ".join(replaced[:3]) + (" ..." if len(replaced) > 3 else ""),
        )
        return self._fetch(model_id, cid, key, [])
