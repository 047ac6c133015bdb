"""The validator agent: stake, request keys to new listings, fetch, re-hash, evaluate, attest.

``ValidatorAgent.poll()`` is one pass; ``run(stop)`` loops it. One pass:

1. stake up to ``Validators.minStake`` if this account is not an active validator;
2. read new ``ModelListed`` events into the to-do set;
3. for each model to do, decided from on-chain state: already attested by us or already
   settled → done; no live key request → ``Marketplace.requestValidatorKey`` (the seller's
   worker answers it like a purchase); key delivered → unwrap, fetch, unseal, extract into a
   temporary folder, re-hash (DESIGN.md §4.1), run the injected evaluator when the listing
   declares an eval set, and ``attest(modelId, observedHash, metricsDigest)``.

What gets attested: the hash of the bytes we could actually extract. If the content is not
what any honest seller could deliver (a key that does not unwrap, an archive that does not
authenticate or does not parse, metadata that is not Modex metadata), the observed hash is
``UNREADABLE`` (all zero, which never matches a listing: the registry refuses a zero hash), so
the listing is disputed. Transient failures (chain unreachable) are retried next pass.

This node's own disk is never held against a seller. Before content that fails to unseal,
parse or verify is attested, the store checks its own copy (``store.repair``); blocks it held
corrupt are dropped and fetched again, and the fetch runs once more: only what fails then is
attested. A store failure (StoreError: content not found in the store's time, a daemon or
gateway unreachable, and LocalStoreError: a corrupt local block with no other copy to fetch,
a store the disk will not read or write) and an OSError (a full disk or unwritable work folder
while extracting) are logged with the reason and retried next pass, never attested. Per store:

- embedded (the default; ``modex up`` and every command sharing the data folder read ONE block
  folder, so the validator's copy is the seller's): blocks are verified when written, so one
  failing its CID is this disk's. It is set aside under ``<store>/corrupt/``; with
  ``store_source`` set (a peer's or public IPFS gateway) it is fetched again from there and the
  check goes on; without one there is no other copy to ask: no attestation, a log line saying to
  re-import the content, and the next pass tries again (a re-import heals it);
- kubo: the daemon verifies what it fetches from the network, so a block it serves corrupt is
  its own repository's; ``repair`` removes it (``block/rm``), the daemon fetches it again, and
  the fetch is retried. A pinned corrupt block the daemon will not remove: no attestation.

``evaluator(model_dir, metadata) -> metrics dict | None`` is injected (the CLI passes ml/'s
evaluation; node/ never imports ml/). ``metricsDigest`` = SHA-256 of the metrics' canonical
JSON (DESIGN.md §4.1), bytes32 zero when no evaluation ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from web3.logs import DISCARD

from node import keywrap, market
from node.errors import (
    ChainError,
    ContractRevert,
    IntegrityError,
    KeyWrapError,
    ManifestError,
    ModexError,
    SealError,
    StoreError,
)
from node.fetch import load_metadata, retrieve
from node.keyvault import atomic_write
from node.publish import canonical_json
from node.worker import poll_loop

log = logging.getLogger(__name__)

ZERO32 = b"\x00" * 32
UNREADABLE = ZERO32
# What the content itself can be guilty of (after this node's own copy was checked).
CONTENT_ERRORS = (SealError, IntegrityError, ManifestError)
STATUS_UNVERIFIED = 0
P_PENDING, P_DELIVERED = 1, 2

Evaluator = Callable[[Path, dict], "dict | None"]


def metrics_digest(metrics: dict | None) -> bytes:
    """SHA-256 of the canonical JSON of ``metrics`` (bytes32 zero for no metrics)."""
    return hashlib.sha256(canonical_json(metrics)).digest() if metrics else ZERO32


@dataclass
class Attestation:
    model_id: int
    observed_hash: bytes
    metrics_digest: bytes
    matches: bool
    metrics: dict | None = None
    reason: str = ""


@dataclass
class ValidatorReport:
    staked: int = 0
    requested: list[int] = field(default_factory=list)   # model ids we asked a key for
    attested: list[Attestation] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)     # model ids whose key is not delivered yet
    retry: dict[int, str] = field(default_factory=dict)  # not checked this pass (local/store), why
    done: list[int] = field(default_factory=list)        # settled or attested before


class ValidatorAgent:
    def __init__(self, chain, signer, store, state_path: str | os.PathLike, *,
                 work_dir: str | os.PathLike, evaluator: Evaluator | None = None,
                 stake_amount: int | None = None, confirmations: int = 0,
                 batch_blocks: int = 2000):
        self.chain = chain
        self.signer = signer
        self.store = store
        self.evaluator = evaluator
        self.stake_amount = stake_amount
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.work_dir = Path(work_dir)
        self.state_path = Path(state_path)
        self._x25519 = None
        start = int(chain.deployment.get("block", 0) or 0)
        self._ident = {"chain_id": chain.chain_id,
                       "validators": chain.validators.address.lower()}
        self.next_block, self.todo = start, set()
        try:
            doc = json.loads(self.state_path.read_text())
            if {k: doc.get(k) for k in self._ident} == self._ident:
                self.next_block, self.todo = int(doc["next_block"]), set(doc["todo"])
        except (FileNotFoundError, ValueError, KeyError):
            pass

    def _save(self) -> None:
        doc = {**self._ident, "next_block": self.next_block, "todo": sorted(self.todo)}
        atomic_write(self.state_path, json.dumps(doc).encode(), mode=0o600)

    @property
    def x25519(self) -> tuple[bytes, bytes]:
        if self._x25519 is None:
            self._x25519 = keywrap.derive_x25519(self.signer, self.chain.chain_id)
        return self._x25519

    # -- one pass -----------------------------------------------------------------------------

    def poll(self) -> ValidatorReport:
        report = ValidatorReport()
        self.ensure_staked(report)
        self._discover()
        for model_id in sorted(self.todo):
            try:
                self._handle(model_id, report)
            except (StoreError, OSError) as exc:
                # Our store or our disk, not the content: never attested (module docstring).
                reason = str(exc) if isinstance(exc, StoreError) else (
                    f"this machine's disk refused it: {exc}")
                log.warning("model %d not checked this pass, nothing attested: %s; will retry "
                            "next pass", model_id, reason)
                report.retry[model_id] = reason
            except (ChainError, ModexError) as exc:
                if isinstance(exc, ContractRevert):
                    log.warning("model %d: %s; will retry next pass", model_id, exc)
                    continue
                raise
        return report

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        log.info("validator agent for %s on chain %d", self.signer.address, self.chain.chain_id)
        poll_loop(self.poll, stop, interval)

    # -- steps --------------------------------------------------------------------------------

    def ensure_staked(self, report: ValidatorReport | None = None) -> int:
        """Stake up to the minimum (or ``stake_amount``) when not an active validator."""
        v = self.chain.validators.functions
        if self.chain.call(v.isActiveValidator(self.signer.address)):
            return 0
        amount, unlock_at = self.chain.call(v.stakeOf(self.signer.address))
        if unlock_at:
            raise ChainError(f"{self.signer.address} asked to unstake (unlocks at {unlock_at}); "
                             "it cannot validate until it has unstaked and staked again")
        need = max(int(self.chain.call(v.minStake())) - int(amount), self.stake_amount or 0)
        market.stake(self.chain, self.signer, need)
        log.info("staked %s as a validator", market.fmt_eth(need))
        if report:
            report.staked = need
        return need

    def _discover(self) -> None:
        head = self.chain.block_number() - self.confirmations
        start = self.next_block
        while start <= head:
            end = min(head, start + self.batch_blocks - 1)
            for ev in self.chain.events("ModelListed", from_block=start, to_block=end):
                self.todo.add(int(ev["args"]["modelId"]))
            self.next_block = end + 1
            self._save()
            start = end + 1

    def _finish(self, model_id: int, report: ValidatorReport) -> None:
        self.todo.discard(model_id)
        self._save()
        report.done.append(model_id)

    def _handle(self, model_id: int, report: ValidatorReport) -> None:
        v = self.chain.validators.functions
        attested, _matches, _slashed = self.chain.call(v.attestationOf(model_id, self.signer.address))
        if attested or self.chain.call(v.status(model_id)) != STATUS_UNVERIFIED:
            self._finish(model_id, report)
            return
        pid, status, deadline = self._latest_request(model_id)
        now = int(self.chain.get_block("latest")["timestamp"])
        if pid is None or (status == P_PENDING and now > deadline) or status not in (
                P_PENDING, P_DELIVERED):
            secret_pub = self.x25519[1]
            receipt = self.chain.transact(
                self.chain.marketplace.functions.requestValidatorKey(model_id, secret_pub),
                self.signer)
            ev = self.chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
            log.info("model %d: asked for its key (request %d)", model_id,
                     int(ev[0]["args"]["purchaseId"]))
            report.requested.append(model_id)
            return
        if status == P_PENDING:
            report.waiting.append(model_id)
            return
        result = self.verify(model_id, pid)
        self.chain.transact(v.attest(model_id, result.observed_hash, result.metrics_digest),
                            self.signer)
        log.info("model %d: attested %s (%s)%s", model_id, "0x" + result.observed_hash.hex(),
                 "matches" if result.matches else "DOES NOT MATCH",
                 f": {result.reason}" if result.reason else "")
        report.attested.append(result)
        self._finish(model_id, report)

    def _latest_request(self, model_id: int):
        start = int(self.chain.deployment.get("block", 0) or 0)
        events = self.chain.events("ValidatorKeyRequested", from_block=start, modelId=model_id,
                                   validator=self.signer.address)
        if not events:
            return None, None, None
        pid = int(events[-1]["args"]["purchaseId"])
        row = self.chain.call(self.chain.marketplace.functions.purchase(pid))
        return pid, int(row[4]), int(row[3])

    def verify(self, model_id: int, purchase_id: int) -> Attestation:
        """Fetch, unseal, extract and re-hash the model; evaluate it when it declares an eval set."""
        listed = bytes(self.chain.call(self.chain.registry.functions.modelHash(model_id)))
        wrapped = market.delivered_key(self.chain, purchase_id)
        if wrapped is None:
            raise ChainError(f"purchase {purchase_id} is marked delivered but its KeyDelivered "
                             "event was not found; is the node's log history pruned?")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            key = keywrap.unwrap_key(wrapped, self.x25519[0], chain_id=self.chain.chain_id,
                                     marketplace=self.chain.marketplace.address,
                                     purchase_id=purchase_id)
            cid = self.chain.call(self.chain.registry.functions.metadataCid(model_id))
            meta, tmp, manifest = self._fetch_checked(model_id, cid, key)
        except (KeyWrapError, *CONTENT_ERRORS) as exc:
            return Attestation(model_id, UNREADABLE, ZERO32, False, reason=str(exc))
        try:
            observed = manifest.model_hash
            metrics = None
            declared = meta.get("metrics") or {}
            reason = "" if observed == listed else "model hash differs"
            if self.evaluator and observed == listed and declared.get("eval_set"):
                try:
                    metrics = self.evaluator(tmp, meta)
                except (ModexError, OSError, ValueError) as exc:
                    # The bytes are what was listed, but the declared evaluation cannot run
                    # here (unknown eval set, labels of another task, weights that do not
                    # load): attest the hash with no metrics and say why, rather than retry
                    # it forever and hold up the listings behind it.
                    log.warning("model %d: declared evaluation %r failed: %s", model_id,
                                declared.get("eval_set"), exc)
                    reason = f"evaluation {declared.get('eval_set')!r} failed: {exc}"
            return Attestation(model_id, observed, metrics_digest(metrics), observed == listed,
                               metrics, reason)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _fetch(self, model_id: int, cid: str, key: bytes, cids: list[str]):
        """(metadata, temp folder, manifest); the CIDs read are appended to ``cids``."""
        cids.append(cid)
        meta = load_metadata(self.store, cid)
        content_cid = meta.get("content_cid")
        if not isinstance(content_cid, str) or not content_cid:
            raise IntegrityError(f"the metadata at {cid} names no content_cid")
        cids.append(content_cid)
        tmp, manifest = retrieve(self.store, content_cid, key, self.work_dir,
                                 prefix=f"model-{model_id}-")
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
        replaced = [c for root in (cids if repair else []) for c in repair(root)]
        if not replaced:
            raise first  # our copy is sound: the content is what failed
        log.warning("model %d: %d block(s) of this node's own copy were corrupt (%s) and were "
                    "fetched again; checking the model again", model_id, len(replaced),
                    ", ".join(replaced[:3]) + (" ..." if len(replaced) > 3 else ""))
        return self._fetch(model_id, cid, key, [])
