"""One purchase's key delivery: what the chain says to do with it, and doing it.

``PurchaseDelivery.deliver(purchase_id)`` is steps 3 and 4 of a key-delivery worker's pass
(``node.worker`` has the whole pass, the loop around it and the rules): decide from the chain
(pending, inside its window, model not disputed, a validator's request for a model no round has
settled, a model this signer owns or operates), find the content key in the vault, HPKE-wrap it
to the buyer's key, then build, sign, record (write-ahead, ``node.inflight.InFlight``) and send
``deliverKey``. What it does not deliver it returns as ``NotDelivered``, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from node import versions
from node.content import keywrap
from node.errors import ContractRevert, KeyWrapError, ModexError
from node.fetch import book, load_metadata
from node.inflight import InFlight
from node.keyvault import KeyVault
from node.protocol import ModelStatus, Purchase, PurchaseStatus
from node.replacement import gwei, max_fee

log = logging.getLogger("node.worker")  # one logger for the whole worker, as before the split


def open_entry(event) -> dict:
    """A purchase's entry in the worker's open set, from its ``Purchased`` event."""
    args = event["args"]
    return {
        "model_id": int(args["modelId"]),
        "buyer_key": bytes(args["buyerKey"]).hex(),
        "account": args["buyer"],
        "block": int(event["blockNumber"]),
    }


@dataclass(frozen=True)
class NotDelivered:
    """Why a purchase was not delivered. ``closes``: the chain says it never will be by this
    worker (it leaves the open set); otherwise it stays open and is tried again next pass."""

    reason: str
    closes: bool = False


class PurchaseDelivery:
    """Decide one purchase from the chain and deliver its key (the worker's ``state`` holds the
    open entries, ``inflight`` the transactions sent)."""

    def __init__(
        self,
        chain,
        signer,
        vault: KeyVault,
        state,
        inflight: InFlight,
        *,
        store=None,
        margin_s: int = 30,
        start_block: int = 0,
        crash: Callable[[str, int], None],
    ):
        self.chain = chain
        self.signer = signer
        self.vault = vault
        self.state = state
        self.inflight = inflight
        # Only to find a key by the listing's metadata when the vault lacks its model id.
        self.store = store
        self.margin_s = margin_s  # never send when fewer seconds than this remain in the window
        self.start_block = start_block
        self.crash = crash
        self._keys: dict[str, bytes] = {}  # content keys by the model hash they open

    # -- what the chain says ------------------------------------------------------------------

    def purchase(self, pid: int) -> Purchase:
        """The purchase on-chain now (ContractRevert when there is no such purchase)."""
        return Purchase.from_call(self.chain.call(self.chain.marketplace.functions.purchase(pid)))

    def why_closed(self, purchase: Purchase) -> str | None:
        """Why no delivery can be accepted for the purchase (not pending, its window closing,
        its model disputed), or None."""
        if purchase.status != PurchaseStatus.PENDING:
            return f"not pending on-chain ({purchase.status.word})"
        now = int(self.chain.get_block("latest")["timestamp"])
        if now + self.margin_s > purchase.deadline:
            return (
                f"delivery window closes at {purchase.deadline} (now {now}); "
                "not delivering, the buyer can refund"
            )
        if book(self.chain, purchase.model_id).disputed:  # the Marketplace refuses deliverKey
            return (
                f"model {purchase.model_id} is disputed by validators: not "
                "delivering (the contract refuses); the buyer can refund now"
            )
        return None

    def _why_not_ours(self, purchase: Purchase) -> str | None:
        """Why this worker must not deliver it (a validator's request no round can use, a model
        it neither owns nor operates), or None."""
        model_id = purchase.model_id
        if purchase.for_validator and self._settled(model_id):
            return (
                f"model {model_id} is settled: a validator's key would serve "
                "no round, so it is not delivered (it would be a key for a deposit)"
            )
        owner, operator = self.chain.call(self.chain.registry.functions.deliveryParties(model_id))
        if self.signer.address.lower() not in (owner.lower(), operator.lower()):
            return f"model {model_id} is not operated by {self.signer.address}"
        return None

    def _settled(self, model_id: int) -> bool:
        """Whether validators settled the model (no round will ever use a validator's key)."""
        status = self.chain.call(self.chain.validators.functions.status(model_id))
        return ModelStatus(status) != ModelStatus.UNVERIFIED

    def _reread(self, pid: int, account: str) -> bool:
        """Replace a stale open entry by the purchase's event on the chain now; False if none."""
        events = [
            ev
            for ev in self.chain.events("Purchased", from_block=self.start_block, purchaseId=pid)
            if ev["args"]["buyer"].lower() == account.lower()
        ]
        if not events:
            return False
        log.warning(
            "purchase %d: buyer key read again from its Purchased event in block %d "
            "(the recorded one was missing or stale)",
            pid,
            events[-1]["blockNumber"],
        )
        self.state.open[pid] = open_entry(events[-1])
        self.state.save()
        return True

    # -- delivering ---------------------------------------------------------------------------

    def deliver(self, pid: int) -> NotDelivered | None:
        """Decide the purchase from the chain and send its ``deliverKey``; None once it is sent
        (or the node refused it: ``InFlight.send`` logged why, and it is tried again)."""
        try:
            purchase = self.purchase(pid)
        except ContractRevert:
            return NotDelivered("no such purchase on-chain (reorged away?)", closes=True)
        why = self.why_closed(purchase) or self._why_not_ours(purchase)
        if why is not None:
            return NotDelivered(why, closes=True)
        account = purchase.account
        recorded = self.state.open[pid].get("account")
        if (recorded is None or recorded.lower() != account.lower()) and not self._reread(
            pid, account
        ):
            return NotDelivered(
                f"no Purchased event of {account} for this purchase on the chain "
                "now; waiting for it"
            )
        self.crash("before_wrap", pid)
        key = self._content_key(purchase)
        if key is None:
            return NotDelivered(
                f"no content key for model {purchase.model_id} in the key vault {self.vault.path}"
            )
        try:
            wrapped = keywrap.wrap_key(
                bytes.fromhex(self.state.open[pid]["buyer_key"]),
                key,
                chain_id=self.chain.chain_id,
                marketplace=self.chain.marketplace.address,
                purchase_id=pid,
            )
        except (KeyWrapError, ValueError) as exc:
            return NotDelivered(f"cannot wrap the key to the buyer's key: {exc}")
        self._send(pid, account, wrapped)
        return None

    def _send(self, pid: int, account: str, wrapped: bytes) -> None:
        # Named buyer: should the id be someone else's by the time it is mined (a reorg), the
        # contract refuses it (MarketplaceWrongBuyer) instead of selling them another's key.
        fn = self.chain.marketplace.functions.deliverKey(pid, account, wrapped)
        tx = self.chain.build_transaction(fn, self.signer.address)  # dry run first
        self.inflight.cap(pid, tx)
        raw = self.signer.sign_transaction(tx)
        # Write-ahead: a crash from here resends these bytes.
        tx_hash = self.inflight.record(pid, raw, account)
        self.crash("before_send", pid)
        if not self.inflight.send(pid, raw, tx_hash):
            return
        log.info(
            "purchase %d: sent deliverKey %s (nonce %d, max fee %s gwei)",
            pid,
            tx_hash,
            tx["nonce"],
            gwei(max_fee(tx)),
        )
        self.crash("after_send", pid)

    def _content_key(self, purchase: Purchase) -> bytes | None:
        """The content key of the version the purchase is for: the latest for a buyer, the one
        the model's rounds attest for a validator (Validators.attestedVersion); each version is
        sealed with its own key, found in the vault by the version's hash."""
        chain, model_id = self.chain, purchase.model_id
        if purchase.for_validator:
            version = int(chain.call(chain.validators.functions.attestedVersion(model_id)))
        else:
            version = int(chain.call(chain.registry.functions.versionCount(model_id)))
        model_hash, metadata_cid = versions.content_of(chain, model_id, max(version, 1))
        on_chain = "0x" + model_hash.hex()
        if on_chain in self._keys:
            return self._keys[on_chain]
        chain_id, registry = chain.chain_id, chain.registry.address
        entry = self.vault.for_model(chain_id, model_id, registry)
        if (entry is None or entry.model_hash.lower() != on_chain) and self.store is not None:
            # The publisher crashed between list() (or publishVersion) and recording the id, or
            # the key the listing names is another version's: the version's metadata names its
            # content CID, which is what the vault is keyed by.
            try:
                entry = self.vault.get(
                    load_metadata(self.store, metadata_cid).get("content_cid", "")
                )
            except ModexError as exc:
                log.warning(
                    "model %d: cannot read its metadata %s: %s", model_id, metadata_cid, exc
                )
            if (
                entry is not None
                and entry.model_hash.lower() == on_chain
                and not purchase.for_validator
            ):
                self.vault.assign(
                    entry.content_cid, chain_id=chain_id, model_id=model_id, registry=registry
                )
        if entry is None or entry.model_hash.lower() != on_chain:
            return None
        self._keys[on_chain] = entry.key
        return entry.key
