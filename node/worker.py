"""The seller's key-delivery worker: every purchase delivered exactly once, crash or not.

``KeyDelivery.poll()`` is one pass; ``run(stop)`` loops it. One pass:

1. **Discover**: read ``Purchased`` events (buyers and validator key requests alike) from the
   last scanned block to head − confirmations, and add them to the open set. When the last
   scanned block's hash changed (a reorg), rescan the last ``REORG_DEPTH`` blocks: entries found
   there are dropped (unless a transaction is in flight) and read again from the new chain.
2. **Resume**: for a purchase with a transaction in flight (recorded before it was sent), look
   the transaction up by hash: mined → done; known but unmined → wait for it; unknown → send the
   same signed bytes again (same nonce, so it can never become a second delivery).
3. **Decide on-chain**: ``Marketplace.purchase(id)`` must say PENDING, the deadline must not
   have passed (with a safety margin for inclusion), and this worker's address must be the
   model's owner or operator. Anything else leaves the open set: delivered, refunded, expired,
   or not ours. Local state only says where to look; the chain says what to do. Purchase ids
   are a counter, so after a reorg an id can be another buyer's purchase: when the account
   on-chain is not the one recorded, the buyer key is read again from the purchase's
   ``Purchased`` event before anything is wrapped.
4. **Deliver**: key from the seller's vault → HPKE-wrap to the buyer key (DESIGN.md §4.3) →
   build and sign ``deliverKey`` → record (purchase → signed tx) in the state file (fsync'd) →
   send → wait for the receipt → drop the purchase from the open set.

State file (JSON, atomic writes): the next block to scan and the hash of the block before it,
the open purchases with their buyer keys, accounts and blocks, and in-flight signed
transactions. Losing it costs a rescan from the deployment block, never a double delivery:
the contract accepts one ``deliverKey`` per purchase and the worker checks ``purchase(id)``
before building one. A ``deliverKey`` already sent when a reorg drops its block can still be
mined again from the node's pool: on a chain that reorganises, run with ``confirmations`` at
least as deep as its reorgs.

A purchase that cannot be delivered (bad buyer key, no content key in the vault) is logged once
with the reason and skipped; it stays open (refundable by the buyer after the window) and the
purchases behind it are served. An unexpected error on one purchase is logged with its
traceback and never stops the loop.

Crash-injection for tests: ``crash(point, purchase_id)`` is called at ``before_wrap``,
``before_send`` (signed and recorded, not sent), ``after_send`` (sent, receipt not seen) and
``after_receipt`` (mined, state not yet updated). ``modex worker`` maps
``$MODEX_WORKER_CRASH=point[:purchase_id]`` to a SIGKILL of itself there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eth_utils import keccak
from web3.exceptions import BlockNotFound, TransactionNotFound

from node import keywrap
from node.errors import ChainError, ContractRevert, KeyDeliveryError, KeyWrapError, ModexError
from node.fetch import load_metadata
from node.keyvault import KeyVault, atomic_write

log = logging.getLogger(__name__)

STATUS_PENDING = 1
CRASH_POINTS = ("before_wrap", "before_send", "after_send", "after_receipt")
CRASH_ENV = "MODEX_WORKER_CRASH"
REORG_DEPTH = 256  # blocks rescanned when the last scanned block was reorganised away


@dataclass
class PassReport:
    """What one pass did (for logs, tests and the CLI)."""

    delivered: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    closed: list[int] = field(default_factory=list)  # left the open set without our delivery
    scanned_to: int = -1


class WorkerState:
    """The worker's small JSON state file; every ``save`` is atomic and fsync'd."""

    def __init__(self, path: Path, chain_id: int, marketplace: str, start_block: int):
        self.path = Path(path)
        self.next_block = start_block
        self.tip_hash: str | None = None      # hash of block next_block - 1 when scanned
        self.open: dict[int, dict] = {}       # purchase id → {"model_id", "buyer_key", ...}
        self.inflight: dict[int, dict] = {}   # purchase id → {"tx_hash", "raw"}
        self._ident = {"chain_id": chain_id, "marketplace": marketplace.lower()}
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._unusable(exc) from None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("next_block"), int):
            log.warning("worker state %s is unreadable; rescanning from block %d",
                        self.path, start_block)
            return
        if {k: doc.get(k) for k in self._ident} != self._ident:
            log.warning("worker state %s belongs to another deployment; starting afresh", self.path)
            return
        self.next_block = doc["next_block"]
        self.tip_hash = doc.get("tip_hash")
        self.open = {int(k): v for k, v in doc.get("open", {}).items()}
        self.inflight = {int(k): v for k, v in doc.get("inflight", {}).items()}

    def save(self) -> None:
        doc = {**self._ident, "next_block": self.next_block, "tip_hash": self.tip_hash,
               "open": {str(k): v for k, v in sorted(self.open.items())},
               "inflight": {str(k): v for k, v in sorted(self.inflight.items())}}
        try:
            atomic_write(self.path, json.dumps(doc, sort_keys=True, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: OSError) -> KeyDeliveryError:
        return KeyDeliveryError(f"cannot use the worker state file {self.path}: {exc.strerror}; "
                                "pass --state FILE in a folder you can write to", path=str(self.path))


def poll_loop(poll: Callable[[], object], stop: threading.Event, interval: float) -> None:
    """Call ``poll`` every ``interval`` seconds until ``stop``; a failing pass never ends it."""
    while not stop.is_set():
        try:
            poll()
        except ModexError as exc:
            log.error("pass failed: %s; retrying in %.1fs", exc, interval)
        except Exception:
            log.exception("pass failed unexpectedly; retrying in %.1fs", interval)
        stop.wait(interval)


def kill_self_hook(spec: str | None) -> Callable[[str, int], None] | None:
    """A crash hook from ``point[:purchase_id]``: SIGKILL this process there (tests only)."""
    if not spec:
        return None
    point, _, pid = spec.partition(":")
    if point not in CRASH_POINTS:
        raise ModexError(f"{CRASH_ENV}={spec!r}: the point must be one of {', '.join(CRASH_POINTS)}")

    def crash(at: str, purchase_id: int) -> None:
        if at == point and (not pid or int(pid) == purchase_id):
            log.warning("crash injection: SIGKILL at %s (purchase %d)", at, purchase_id)
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


class KeyDelivery:
    """Deliver wrapped content keys for the models this signer owns or operates."""

    def __init__(self, chain, signer, vault: KeyVault, state_path: str | os.PathLike, *,
                 store=None, confirmations: int = 0, batch_blocks: int = 2000,
                 margin_s: int = 30, crash: Callable[[str, int], None] | None = None):
        self.chain = chain
        self.signer = signer
        self.vault = vault
        self.store = store  # only to find a key by the listing's metadata when the vault lacks its id
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.margin_s = margin_s  # never send when fewer seconds than this remain in the window
        self.crash = crash or (lambda point, purchase_id: None)
        self.start_block = int(chain.deployment.get("block", 0) or 0)
        self.state = WorkerState(Path(state_path), chain.chain_id, chain.marketplace.address,
                                 self.start_block)
        self._keys: dict[int, bytes] = {}
        self._told: dict[int, str] = {}  # purchase id → last reason logged, to log it once

    # -- one pass -----------------------------------------------------------------------------

    def poll(self) -> PassReport:
        report = PassReport()
        self._discover(report)
        for pid in sorted(self.state.open):
            try:
                self._handle(pid, report)
            except ChainError as exc:
                if not isinstance(exc, ContractRevert):
                    raise  # the node is unreachable: the pass ends, the next one resumes
                self._skip(pid, f"the dry run reverted: {exc}", report)
            except Exception:  # one bad purchase never stops the queue
                log.exception("purchase %d: unexpected error; will retry next pass", pid)
                report.skipped[pid] = "unexpected error (logged)"
        return report

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Poll until ``stop`` is set; a failing pass is logged and retried after ``interval``."""
        log.info("key delivery worker for %s on chain %d", self.signer.address, self.chain.chain_id)
        poll_loop(self.poll, stop, interval)

    # -- steps --------------------------------------------------------------------------------

    def _block_hash(self, number: int) -> str:
        return "0x" + bytes(self.chain.get_block(number)["hash"]).hex()

    def _check_reorg(self) -> None:
        """Rewind the scan when the last scanned block is no longer on the chain."""
        last = self.state.next_block - 1
        if not self.state.tip_hash or last < self.start_block:
            return
        try:
            if self._block_hash(last) == self.state.tip_hash:
                return
        except BlockNotFound:  # the new chain is shorter
            pass
        rewind = max(self.start_block, self.state.next_block - REORG_DEPTH)
        # An entry without its block (older state files) stays; the account check covers it.
        stale = [pid for pid, e in self.state.open.items()
                 if e.get("block", -1) >= rewind and pid not in self.state.inflight]
        log.warning("the chain reorganised below block %d: rescanning from block %d "
                    "(%d open purchase(s) read again)", last, rewind, len(stale))
        for pid in stale:
            del self.state.open[pid]
        self.state.next_block, self.state.tip_hash = rewind, None
        self.state.save()

    @staticmethod
    def _entry(ev) -> dict:
        a = ev["args"]
        return {"model_id": int(a["modelId"]), "buyer_key": bytes(a["buyerKey"]).hex(),
                "account": a["buyer"], "block": int(ev["blockNumber"])}

    def _discover(self, report: PassReport) -> None:
        self._check_reorg()
        head = self.chain.block_number() - self.confirmations
        start = self.state.next_block
        while start <= head:
            end = min(head, start + self.batch_blocks - 1)
            events = self.chain.events("Purchased", from_block=start, to_block=end)
            for ev in events:
                self.state.open.setdefault(int(ev["args"]["purchaseId"]), self._entry(ev))
            self.state.next_block = end + 1
            self.state.tip_hash = self._block_hash(end)
            self.state.save()
            start = end + 1
        report.scanned_to = head

    def _reread(self, pid: int, account: str) -> bool:
        """Replace a stale open entry by the purchase's event on the chain now; False if none."""
        events = [ev for ev in self.chain.events("Purchased", from_block=self.start_block,
                                                 purchaseId=pid)
                  if ev["args"]["buyer"].lower() == account.lower()]
        if not events:
            return False
        log.warning("purchase %d: buyer key read again from its Purchased event in block %d "
                    "(the recorded one was missing or stale)", pid, events[-1]["blockNumber"])
        self.state.open[pid] = self._entry(events[-1])
        self.state.save()
        return True

    def _onchain(self, pid: int, with_account: bool = False):
        row = self.chain.call(self.chain.marketplace.functions.purchase(pid))
        account, model_id, _price, deadline, status, _for_validator = row
        if with_account:
            return int(model_id), int(deadline), int(status), account
        return int(model_id), int(deadline), int(status)

    def _close(self, pid: int, report: PassReport, why: str) -> None:
        self.state.open.pop(pid, None)
        self.state.inflight.pop(pid, None)
        self.state.save()
        self._told.pop(pid, None)
        report.closed.append(pid)
        log.info("purchase %d: %s", pid, why)

    def _skip(self, pid: int, reason: str, report: PassReport) -> None:
        report.skipped[pid] = reason
        if self._told.get(pid) != reason:
            self._told[pid] = reason
            log.warning("purchase %d not delivered (left refundable): %s", pid, reason)

    def _handle(self, pid: int, report: PassReport) -> None:
        if pid in self.state.inflight and self._resume(pid, report):
            return
        try:
            model_id, deadline, status, account = self._onchain(pid, with_account=True)
        except ContractRevert:
            self._close(pid, report, "no such purchase on-chain (reorged away?)")
            return
        if status != STATUS_PENDING:
            self._close(pid, report, f"not pending on-chain (status {status})")
            return
        now = int(self.chain.get_block("latest")["timestamp"])
        if now + self.margin_s > deadline:
            self._close(pid, report, f"delivery window closes at {deadline} (now {now}); "
                        "not delivering, the buyer can refund")
            return
        owner, operator = self.chain.call(self.chain.registry.functions.deliveryParties(model_id))
        me = self.signer.address.lower()
        if me not in (owner.lower(), operator.lower()):
            self._close(pid, report, f"model {model_id} is not operated by {self.signer.address}")
            return
        recorded = self.state.open[pid].get("account")
        if ((recorded is None or recorded.lower() != account.lower())
                and not self._reread(pid, account)):
            self._skip(pid, f"no Purchased event of {account} for this purchase on the chain "
                       "now; waiting for it", report)
            return
        self.crash("before_wrap", pid)
        key = self._content_key(model_id)
        if key is None:
            self._skip(pid, f"no content key for model {model_id} in the key vault "
                       f"{self.vault.path}", report)
            return
        try:
            wrapped = keywrap.wrap_key(bytes.fromhex(self.state.open[pid]["buyer_key"]), key,
                                       chain_id=self.chain.chain_id,
                                       marketplace=self.chain.marketplace.address,
                                       purchase_id=pid)
        except (KeyWrapError, ValueError) as exc:
            self._skip(pid, f"cannot wrap the key to the buyer's key: {exc}", report)
            return
        fn = self.chain.marketplace.functions.deliverKey(pid, wrapped)
        tx = self.chain.build_transaction(fn, self.signer.address)  # dry run first
        raw = self.signer.sign_transaction(tx)
        tx_hash = "0x" + keccak(raw).hex()
        self.state.inflight[pid] = {"tx_hash": tx_hash, "raw": raw.hex()}
        self.state.save()  # write-ahead: a crash from here on resumes with these exact bytes
        self.crash("before_send", pid)
        self.chain.send_raw(raw, sender=self.signer.address)
        self.crash("after_send", pid)
        self.chain.wait_receipt(tx_hash, fn=fn, tx=tx)
        self.crash("after_receipt", pid)
        self._delivered(pid, report, tx_hash)

    def _delivered(self, pid: int, report: PassReport, tx_hash: str) -> None:
        self.state.open.pop(pid, None)
        self.state.inflight.pop(pid, None)
        self.state.save()
        self._told.pop(pid, None)
        report.delivered.append(pid)
        log.info("purchase %d: key delivered in %s", pid, tx_hash)

    def _resume(self, pid: int, report: PassReport) -> bool:
        """Finish an in-flight delivery; True when the purchase is settled by it."""
        entry = self.state.inflight[pid]
        tx_hash = entry["tx_hash"]
        receipt = self.chain.find_receipt(tx_hash)
        if receipt is None:
            try:
                self.chain._rpc("eth_getTransactionByHash",
                                lambda: self.chain.w3.eth.get_transaction(tx_hash))
                known = True
            except TransactionNotFound:
                known = False
            if not known:
                _, deadline, status = self._onchain(pid)
                now = int(self.chain.get_block("latest")["timestamp"])
                if status != STATUS_PENDING or now + self.margin_s > deadline:
                    return False  # let the on-chain decision close it
                log.info("purchase %d: resending recorded transaction %s", pid, tx_hash)
                try:
                    self.chain.send_raw(bytes.fromhex(entry["raw"]), sender=self.signer.address)
                except ChainError as exc:
                    if "nonce too low" not in str(exc).lower():
                        raise
                    # Its nonce went to another transaction: the recorded one can never be mined.
                    self.state.inflight.pop(pid)
                    self.state.save()
                    return False
            try:
                receipt = self.chain.wait_receipt(tx_hash)
            except ContractRevert:
                receipt = {"status": 0}
        if receipt["status"] == 1:
            self._delivered(pid, report, tx_hash)
            return True
        self.state.inflight.pop(pid)  # it reverted: decide again from on-chain state
        self.state.save()
        return False

    def _content_key(self, model_id: int) -> bytes | None:
        if model_id in self._keys:
            return self._keys[model_id]
        chain_id, registry = self.chain.chain_id, self.chain.registry.address
        on_chain = "0x" + bytes(self.chain.call(
            self.chain.registry.functions.modelHash(model_id))).hex()
        entry = self.vault.for_model(chain_id, model_id, registry)
        if entry is None and self.store is not None:
            # The publisher crashed between list() and recording the id: the listing's
            # metadata names the content CID, which is what the vault is keyed by.
            cid = self.chain.call(self.chain.registry.functions.metadataCid(model_id))
            try:
                entry = self.vault.get(load_metadata(self.store, cid).get("content_cid", ""))
            except ModexError as exc:
                log.warning("model %d: cannot read its metadata %s: %s", model_id, cid, exc)
            if entry is not None and entry.model_hash.lower() == on_chain:
                self.vault.assign(entry.content_cid, chain_id=chain_id, model_id=model_id,
                                  registry=registry)
        if entry is None or entry.model_hash.lower() != on_chain:
            return None
        self._keys[model_id] = entry.key
        return entry.key
