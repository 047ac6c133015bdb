"""Later versions' keys to the licence holders entitled to them (issue 15 §1), by the seller's
key-delivery worker (``node.worker.KeyDelivery`` runs ``VersionKeys.poll`` after its purchases).

A purchase's ``deliverKey`` opens the version that was the latest when it was delivered
(``node.versions.delivered_version``); each later version has its own content key, which reaches
a holder only through ``Marketplace.deliverVersionKeys``, for holders whose licence was delivered
no more than the listing's update window before the version was published. One pass:

1. **Resume** the batches in flight, with the same machinery as ``deliverKey``'s
   (``node.inflight.InFlight``, write-ahead records in this worker's own state file, beside the
   worker's): one mined → done (reverted → dropped, decided again); the latest known to the node
   but unmined → replaced once due; unknown → the same signed bytes sent again (one nonce: never
   a second delivery); its nonce taken by another transaction → dropped, decided again.
2. **Decide from the chain**, for every model this signer owns or operates that has versions
   beyond 1 (its ``VersionPublished`` events): each delivered licence of it (``Purchased``
   events, ``purchase(id)`` DELIVERED, not a validator's key) and each version from 2 up is
   skipped when ``versionKeyDelivered`` says it has the key, when ``entitledTo`` says its window
   does not cover the version, when its purchase's key already opens that version or a later one
   (``delivered_version``), or when a batch in flight carries it. Local state only says what is
   in flight: the chain says what to send, so a restart (or a lost state file) sends nothing
   twice, and the contract refuses a second key per (model, version, holder) anyway.
3. **Deliver** in batches of up to ``batch_size`` holders (config ``version_key_batch``): each
   holder's key is the version's content key from the vault, HPKE-wrapped to the holder's
   purchase key with ``keywrap.version_key_info`` (docs/formats.md §4); the batch is dry-run,
   held to the fee cap, signed, recorded, then sent; the pass waits for the receipts as the
   purchases' does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node import versions
from node.content import keywrap
from node.errors import ContractRevert, KeyDeliveryError, KeyWrapError, ModexError
from node.fetch import load_metadata
from node.inflight import InFlight
from node.keyvault import KeyVault, atomic_write
from node.protocol import Purchase, PurchaseStatus

log = logging.getLogger("node.worker")  # one logger for the whole worker

# Batches get ids above any purchase id a log line could confuse them with.
FIRST_BATCH_ID = 1 << 48


@dataclass(frozen=True)
class Holder:
    """A delivered licence: its purchase, account and X25519 key (from its ``Purchased`` event),
    and the version its purchase's own key opens."""

    purchase_id: int
    account: str
    buyer_key: bytes
    opens: int


class VersionKeyState:
    """The in-flight batches (``InFlight``'s record: batch id → txs, model, version, accounts),
    kept in a JSON file of their own; every ``save`` is atomic and fsync'd."""

    def __init__(self, path: Path, chain_id: int, marketplace: str):
        self.path = Path(path)
        self.inflight: dict[int, dict] = {}
        self.open: dict[int, dict] = {}  # InFlight reads a buyer from here when none is recorded
        self.next_batch = FIRST_BATCH_ID
        self._ident = {"chain_id": chain_id, "marketplace": marketplace.lower()}
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("version-key state %s is unreadable (%s): starting afresh", path, exc)
            return
        if not isinstance(doc, dict) or {k: doc.get(k) for k in self._ident} != self._ident:
            log.warning("version-key state %s belongs to another deployment: starting afresh", path)
            return
        self.inflight = {int(k): v for k, v in doc.get("inflight", {}).items()}
        self.next_batch = max(int(doc.get("next_batch", FIRST_BATCH_ID)), FIRST_BATCH_ID)

    def save(self) -> None:
        doc = {
            **self._ident,
            "next_batch": self.next_batch,
            "inflight": {str(k): v for k, v in sorted(self.inflight.items())},
        }
        try:
            atomic_write(self.path, json.dumps(doc, sort_keys=True, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise KeyDeliveryError(
                f"cannot use the version-key state file {self.path}: {exc.strerror}; "
                "pass --state FILE in a folder you can write to",
                path=str(self.path),
            ) from None


class VersionKeys:
    """Deliver later versions' keys for the models this signer owns or operates."""

    def __init__(
        self,
        chain,
        signer,
        vault: KeyVault,
        state_path: str | os.PathLike,
        *,
        store=None,
        start_block: int,
        batch_size: int,
        replace_after_s: float,
        max_fee_per_gas: int,
        crash: Callable[[str, int], None],
    ):
        if batch_size < 1:
            raise ModexError(f"a version-key batch holds at least 1 holder, not {batch_size}")
        self.chain = chain
        self.signer = signer
        self.vault = vault
        self.store = store  # to find an older version's key by its metadata's content CID
        self.start_block = start_block
        self.batch_size = batch_size
        self.crash = crash
        self.state = VersionKeyState(Path(state_path), chain.chain_id, chain.marketplace.address)
        self.inflight = InFlight(
            chain,
            signer,
            self.state,
            replace_after_s=replace_after_s,
            max_fee_per_gas=max_fee_per_gas,
            crash=crash,
            subject="version-key batch",
        )
        self._done: set[tuple[int, int, int]] = set()  # (model, version, purchase): final
        self._holders: dict[int, Holder] = {}  # purchase id → delivered licence (final)
        self._keys: dict[tuple[int, int], bytes] = {}
        self._told: set[str] = set()

    @staticmethod
    def state_path_beside(worker_state: str | os.PathLike) -> Path:
        """The batches' state file beside the worker's: ``worker-1.json`` → ``worker-1.version-keys.json``."""
        path = Path(worker_state)
        return path.with_name(f"{path.stem}.version-keys.json")

    # -- one pass -------------------------------------------------------------------------------

    def poll(self) -> list[tuple[int, int, str]]:
        """One pass; the (model, version, account) whose keys were delivered in it."""
        delivered: list[tuple[int, int, str]] = []
        for batch in sorted(self.state.inflight):
            self._resume(batch, delivered)
        # Each event kind is read once a pass, for every model: on the embedded chain every read
        # of the logs walks the whole chain, whatever its filter.
        published = self.chain.events("VersionPublished", from_block=self.start_block)
        ours = self._our_models(published)
        if ours:
            purchased = self.chain.events("Purchased", from_block=self.start_block)
            keys = {  # purchase id → its last KeyDelivered
                int(ev["args"]["purchaseId"]): ev
                for ev in self.chain.events("KeyDelivered", from_block=self.start_block)
            }
        for model_id, version_count in ours.items():
            holders = self._holders_of(model_id, purchased, keys, published)
            for version in range(2, version_count + 1):
                self._deliver_version(model_id, version, holders)
        self._settle(delivered)
        return delivered

    def _our_models(self, published) -> dict[int, int]:
        """model id → version count, for the models with versions beyond 1 (``published``: the
        VersionPublished events) this signer delivers."""
        ours: dict[int, int] = {}
        me = self.signer.address.lower()
        for model_id in sorted({int(ev["args"]["modelId"]) for ev in published}):
            owner, operator = self.chain.call(
                self.chain.registry.functions.deliveryParties(model_id)
            )
            if me in (owner.lower(), operator.lower()):
                ours[model_id] = versions.version_count(self.chain, model_id)
        return ours

    def _holders_of(self, model_id: int, purchased, keys, published) -> list[Holder]:
        """The model's delivered licences (validators' keys are none), from this pass's
        Purchased, KeyDelivered (by purchase id) and VersionPublished events."""
        found = []
        for ev in purchased:
            if int(ev["args"]["modelId"]) != model_id:
                continue
            pid = int(ev["args"]["purchaseId"])
            if pid in self._holders:
                found.append(self._holders[pid])
                continue
            purchase = Purchase.from_call(
                self.chain.call(self.chain.marketplace.functions.purchase(pid))
            )
            if purchase.status != PurchaseStatus.DELIVERED or purchase.for_validator:
                continue
            if purchase.account.lower() != ev["args"]["buyer"].lower():
                continue  # a reorged id: its own event names its buyer
            key = keys.get(pid)
            if key is None:
                continue  # delivered before this worker's first block: not its to follow
            opens = versions.delivered_version(
                self.chain, model_id, key["blockNumber"], key["logIndex"], published=published
            )
            holder = Holder(pid, purchase.account, bytes(ev["args"]["buyerKey"]), opens)
            self._holders[pid] = holder  # a delivered licence's key never changes
            found.append(holder)
        return found

    def _due(self, model_id: int, version: int, holder: Holder, carried: set[str]) -> bool:
        """Whether ``holder`` is to receive the version's key now (decided from the chain)."""
        if (model_id, version, holder.purchase_id) in self._done:
            return False
        market = self.chain.marketplace.functions
        if holder.opens >= version or self.chain.call(
            market.versionKeyDelivered(model_id, version, holder.account)
        ):
            self._done.add((model_id, version, holder.purchase_id))
            return False
        if holder.account.lower() in carried:
            return False
        return bool(self.chain.call(market.entitledTo(model_id, version, holder.account)))

    def _deliver_version(self, model_id: int, version: int, holders: list[Holder]) -> None:
        carried = {
            account.lower()
            for entry in self.state.inflight.values()
            if (entry["model_id"], entry["version"]) == (model_id, version)
            for account in entry["accounts"]
        }
        due = [h for h in holders if self._due(model_id, version, h, carried)]
        if not due:
            return
        key = self._content_key(model_id, version)
        if key is None:
            self._tell(
                f"model {model_id} version {version}: no content key in the key vault "
                f"{self.vault.path}; {len(due)} holder(s) wait for it"
            )
            return
        for start in range(0, len(due), self.batch_size):
            self._send_batch(model_id, version, due[start : start + self.batch_size], key)

    def _send_batch(self, model_id: int, version: int, holders: list[Holder], key: bytes) -> None:
        chain = self.chain
        accounts, wrapped = [], []
        for holder in holders:
            info = keywrap.version_key_info(
                chain.chain_id, chain.marketplace.address, model_id, version, holder.account
            )
            try:
                wrapped.append(keywrap.wrap_with_info(holder.buyer_key, key, info=info))
            except KeyWrapError as exc:
                self._tell(f"purchase {holder.purchase_id}: cannot wrap version {version}: {exc}")
                continue
            accounts.append(holder.account)
        if not accounts:
            return
        fn = chain.marketplace.functions.deliverVersionKeys(model_id, version, accounts, wrapped)
        try:
            tx = chain.build_transaction(fn, self.signer.address)  # dry run first
        except ContractRevert as exc:
            self._tell(f"model {model_id} version {version}: the dry run reverted: {exc}")
            return
        batch = self.state.next_batch
        self.state.next_batch += 1
        self.inflight.cap(batch, tx)
        raw = self.signer.sign_transaction(tx)
        self.state.inflight[batch] = {
            "txs": [],
            "model_id": model_id,
            "version": version,
            "accounts": accounts,
        }
        # Write-ahead: a crash from here resends these bytes.
        tx_hash = self.inflight.record(batch, raw, f"model {model_id} version {version}")
        self.crash("before_send", batch)
        if self.inflight.send(batch, raw, tx_hash):
            log.info(
                "model %d: sent version %d's key to %d holder(s) in %s (batch %d)",
                model_id,
                version,
                len(accounts),
                tx_hash,
                batch,
            )
            self.crash("after_send", batch)

    def _content_key(self, model_id: int, version: int) -> bytes | None:
        """The version's content key: the vault entry whose model hash is the version's on-chain
        hash, found by the listing (the latest version's) or by the version's metadata's content
        CID (an older version's: the vault is keyed by content CID)."""
        if (model_id, version) in self._keys:
            return self._keys[(model_id, version)]
        model_hash, metadata_cid = versions.content_of(self.chain, model_id, version)
        on_chain = "0x" + model_hash.hex()
        entry = self.vault.for_model(self.chain.chain_id, model_id, self.chain.registry.address)
        if (entry is None or entry.model_hash.lower() != on_chain) and self.store is not None:
            try:
                content_cid = load_metadata(self.store, metadata_cid).get("content_cid", "")
                entry = self.vault.get(content_cid)
            except ModexError as exc:
                log.warning("model %d: cannot read metadata %s: %s", model_id, metadata_cid, exc)
        if entry is None or entry.model_hash.lower() != on_chain:
            return None
        self._keys[(model_id, version)] = entry.key
        return entry.key

    # -- in flight ------------------------------------------------------------------------------

    def _resume(self, batch: int, delivered: list) -> None:
        if self._mined(batch, delivered) is not None:
            return
        if self.inflight.known(self.inflight.latest(batch)["tx_hash"]):
            self.inflight.replace_if_due(batch)
            return
        if self.inflight.resend(batch):
            return
        if self._mined(batch, delivered) is None:  # its nonce went to another transaction
            self.inflight.drop(batch)

    def _mined(self, batch: int, delivered: list) -> bool | None:
        """True when the batch's transaction delivered, False when it reverted (dropped: the
        next decision is the chain's), None while none is mined."""
        mined = self.inflight.receipt(batch)
        if mined is None:
            return None
        tx_hash, receipt = mined
        entry = self.state.inflight[batch]
        if receipt["status"] == 1:
            model_id, version = entry["model_id"], entry["version"]
            delivered.extend((model_id, version, account) for account in entry["accounts"])
            log.info("model %d: version %d's key delivered in %s", model_id, version, tx_hash)
            self.inflight.forget(batch)
            self.state.save()
            return True
        log.warning("batch %d: %s reverted; deciding again from the chain", batch, tx_hash)
        self.inflight.drop(batch)
        return False

    def _settle(self, delivered: list) -> None:
        """Wait for the batches' receipts as the worker waits for its deliveries' (until the
        first is due for replacement, or ``receipt_timeout``); unmined ones stay in flight."""
        waiting = sorted(self.state.inflight)
        if waiting:
            self.inflight.wait_for(waiting, lambda batch: self._mined(batch, delivered))

    def _tell(self, reason: str) -> None:
        """Log a reason to wait once, not on every pass."""
        if reason not in self._told:
            self._told.add(reason)
            log.warning("%s", reason)
