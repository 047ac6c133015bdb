"""The seller's key-delivery worker: every purchase delivered exactly once, crash or not.

``KeyDelivery.poll()`` is one pass; ``run(stop)`` loops it. One pass:

1. **Discover**: read ``Purchased`` events (buyers and validator key requests alike) from the
   last scanned block to head − confirmations (``node.scanner.BlockScanner``), and add them to
   the open set. When the last scanned block is no longer on the chain (a reorg), the scan goes
   back to the fork point: entries found above it are dropped (unless a transaction is in
   flight) and read again from the new chain.
2. **Resume** (purchases with a transaction in flight first: theirs hold the lowest nonces):
   look up EVERY transaction recorded for the purchase (all at one nonce, so at most one can be
   mined): one mined → done (reverted → decide again); the latest known to the node but unmined
   → wait, or replace it once it is ``replace_after_s`` old (below); the latest unknown → send
   those signed bytes again (same nonce: never a second delivery), and replace them at once when
   the node refuses their fees (a base-fee rise evicts them from anvil's pool).
3. **Decide on-chain** (this step and the next: ``node.delivery.PurchaseDelivery``):
   ``Marketplace.purchase(id)`` must say PENDING, the deadline must not have passed (with a
   safety margin for inclusion), the model must not be disputed by validators (the contract
   then refuses ``deliverKey`` and lets the buyer refund at once), a validator's key request
   must be for a model no round has settled yet (a key no round can use would be a key for a
   refundable deposit), and this worker's address must be the model's owner or operator.
   Anything else leaves the open set: delivered, refunded, expired, disputed, settled, or not
   ours. Local state only says where to look; the chain says what to do.
   Purchase ids are a counter, so after a reorg an id can be another buyer's purchase: when the
   account on-chain is not the one recorded, the buyer key is read again from the purchase's
   ``Purchased`` event before anything is wrapped.
4. **Deliver**: key from the seller's vault → HPKE-wrap to the buyer key (docs/formats.md §4) →
   build and sign ``deliverKey(id, buyer, wrapped)`` naming the account it was wrapped for
   (fees from the node, never over ``max_fee_per_gas``) → record (purchase → buyer, signed tx)
   in the state file (fsync'd) → send, and go on to the next purchase.
5. **Settle**: wait for the receipts of everything in flight, at most until the first of them
   is due for replacement (or ``chain.receipt_timeout``); mined → drop the purchase from the
   open set; still unmined → it stays in flight (``PassReport.pending``) for the next pass.

Stuck transactions (``node.inflight.InFlight``, which records, sends, resends and replaces the
transactions in flight). A ``deliverKey`` not mined ``replace_after_s`` seconds after it was signed
(config ``worker_replace_after``, default 30 s; 0 replaces on every pass) is signed again at the
same nonce with both fee fields raised by a quarter and to at least the node's current fees
(geth and anvil accept a replacement from +10%), recorded, then sent; the log line names the
purchase, the old and the new hash and the new fees. No transaction ever offers more than
``max_fee_per_gas`` (config ``worker_max_fee_gwei``, default 100 gwei): when the cap leaves no
room for a replacement, that is logged once per purchase and the worker keeps waiting. All of
a seller's deliveries share the account's nonce sequence, so one stuck transaction holds back
the ones sent after it (they sit in the node's pool at the next nonces); no pass waits on them
longer than above, and once the stuck one is replaced and mined they are mined after it (an
overdue one is replaced in turn: its fees may be too low as well). A replacement whose window
has closed meanwhile reverts when mined, which still frees its nonce for the ones behind it.

State file (JSON, atomic writes; by default ``Config.worker_state_path``, beside the index): the
next block to scan, the hash of the block before it (``tip_hash``) and of the last scanned
blocks before that (``recent_blocks``: [number, hash] pairs; older files without them are read
with the tip hash alone), the open purchases with their buyer keys, accounts and blocks, and
per purchase in flight every signed transaction (``txs``, oldest first) and when the latest
was signed. Older files holding one ``{tx_hash, raw}`` per purchase are read and migrated (age
unknown: due for replacement). Losing the file costs a rescan from the deployment block, never
a double delivery: the contract accepts one ``deliverKey`` per purchase and the worker checks
``purchase(id)`` before building one.

Reorgs. A ``deliverKey`` already sent when a reorg drops its block can be mined again from the
node's pool onto the new chain, where its purchase id may be another buyer's: it names the
buyer it was wrapped for, so the Marketplace refuses it there (``MarketplaceWrongBuyer``) and
the new buyer's escrow is untouched. The worker treats it as any reverted delivery: it decides
again from the chain, reads the new buyer's key from its ``Purchased`` event and delivers to
it. A recorded transaction the node no longer knows is resent only while the purchase is still
the same buyer's; otherwise it is dropped and the purchase decided again. A dry run refused as
``MarketplaceWrongBuyer`` (the chain moved between reading the purchase and the dry run) is
skipped like any refused dry run, and the next pass reads the purchase's buyer from the chain
again: no purchase is ever retried with a buyer the chain no longer names. ``confirmations`` as
deep as the chain's reorgs still avoids the wasted gas of a refused delivery.

A purchase that cannot be delivered (bad buyer key, no content key in the vault) is logged once
with the reason and skipped; it stays open (refundable by the buyer after the window, or at once
if validators dispute the model) and the
purchases behind it are served. An unexpected error on one purchase is logged with its
traceback and never stops the loop.

Later versions' keys (``node.versiondelivery.VersionKeys``, after the purchases in each pass):
each version from 2 up reaches the licence holders its update window covers, in batches of
``deliverVersionKeys`` with the same write-ahead, resend and replacement rules, recorded in
``<state>.version-keys.json`` beside the state file.

Crash-injection for tests: ``crash(point, purchase_id)`` is called at ``before_wrap``,
``before_send`` (signed and recorded, not sent), ``after_send`` (sent, receipt not seen),
``after_receipt`` (mined, state not yet updated) and ``before_replace_send`` (a replacement
signed and recorded, not sent). ``modex worker`` maps
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

from node.config import Config
from node.delivery import PurchaseDelivery, open_entry
from node.errors import ChainError, ContractRevert, KeyDeliveryError, ModexError
from node.inflight import InFlight
from node.keyvault import KeyVault, atomic_write
from node.replacement import GWEI
from node.scanner import Batch, BlockScanner, Checkpoint, poll_loop
from node.versiondelivery import VersionKeys

log = logging.getLogger(__name__)

DELIVERY_CRASH_POINTS = ("before_wrap", "before_send", "after_send", "after_receipt")
CRASH_POINTS = (*DELIVERY_CRASH_POINTS, "before_replace_send")
CRASH_ENV = "MODEX_WORKER_CRASH"


@dataclass
class PassReport:
    """What one pass did (for logs, tests and the CLI)."""

    delivered: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    closed: list[int] = field(default_factory=list)  # left the open set without our delivery
    pending: dict[int, str] = field(default_factory=dict)  # sent, not mined yet: latest tx hash
    scanned_to: int = -1
    # later versions' keys delivered (node/versiondelivery.py): (model id, version, account)
    version_keys: list[tuple[int, int, str]] = field(default_factory=list)


class WorkerState:
    """The worker's small JSON state file; every ``save`` is atomic and fsync'd."""

    def __init__(self, path: Path, chain_id: int, marketplace: str, start_block: int):
        self.path = Path(path)
        self.checkpoint = Checkpoint(start_block - 1)  # the last block scanned
        self.open: dict[int, dict] = {}  # purchase id → {"model_id", "buyer_key", ...}
        # purchase id → {"txs": [{"tx_hash", "raw"}, ...] (every signed transaction, oldest
        # first, all at one nonce), "buyer": the account they deliver to, "signed_at": unix time
        # the latest one was signed}
        self.inflight: dict[int, dict] = {}
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
            log.warning(
                "worker state %s is unreadable; rescanning from block %d", self.path, start_block
            )
            return
        if {k: doc.get(k) for k in self._ident} != self._ident:
            log.warning("worker state %s belongs to another deployment; starting afresh", self.path)
            return
        self.checkpoint = Checkpoint.from_json(
            doc["next_block"], doc.get("recent_blocks"), doc.get("tip_hash")
        )
        self.open = {int(k): v for k, v in doc.get("open", {}).items()}
        self.inflight = {int(k): _migrated(v) for k, v in doc.get("inflight", {}).items()}

    @property
    def next_block(self) -> int:
        return self.checkpoint.next_block

    def save(self) -> None:
        doc = {
            **self._ident,
            "next_block": self.checkpoint.next_block,
            "tip_hash": self.checkpoint.tip_hash,
            "recent_blocks": self.checkpoint.hashes_json(),
            "open": {str(k): v for k, v in sorted(self.open.items())},
            "inflight": {str(k): v for k, v in sorted(self.inflight.items())},
        }
        try:
            atomic_write(self.path, json.dumps(doc, sort_keys=True, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: OSError) -> KeyDeliveryError:
        return KeyDeliveryError(
            f"cannot use the worker state file {self.path}: {exc.strerror}; "
            "pass --state FILE in a folder you can write to",
            path=str(self.path),
        )


def _migrated(entry: dict) -> dict:
    """An in-flight entry in the current shape; older files hold one {tx_hash, raw} per purchase.
    Its age is unknown, so it is due for replacement at once if it is still unmined."""
    if "txs" in entry:
        return entry
    return {"txs": [{"tx_hash": entry["tx_hash"], "raw": entry["raw"]}], "signed_at": 0.0}


def kill_self_hook(
    spec: str | None, points=CRASH_POINTS, env: str = CRASH_ENV, what: str = "purchase"
) -> Callable[[str, int], None] | None:
    """A crash hook from ``point[:id]`` (the value of ``$env``; ``point`` one of ``points``):
    SIGKILL this process there, for every ``what`` or the one with that id (tests only)."""
    if not spec:
        return None
    point, _, only = spec.partition(":")
    if point not in points:
        raise ModexError(f"{env}={spec!r}: the point must be one of {', '.join(points)}")

    def crash(at: str, item: int) -> None:
        if at == point and (not only or int(only) == item):
            log.warning("crash injection: SIGKILL at %s (%s %d)", at, what, item)
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


class KeyDelivery:
    """Deliver wrapped content keys for the models this signer owns or operates."""

    def __init__(
        self,
        chain,
        signer,
        vault: KeyVault,
        state_path: str | os.PathLike,
        *,
        store=None,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        margin_s: int = 30,
        replace_after_s: float = Config.worker_replace_after,
        max_fee_per_gas: int = int(Config.worker_max_fee_gwei * GWEI),
        version_key_batch: int = Config.version_key_batch,
        crash: Callable[[str, int], None] | None = None,
    ):
        if replace_after_s < 0:
            raise ModexError(f"replace_after_s must be 0 or more seconds, got {replace_after_s}")
        if max_fee_per_gas <= 0:
            raise ModexError(f"max_fee_per_gas must be more than 0 wei, got {max_fee_per_gas}")
        self.chain = chain
        self.signer = signer
        crash = crash or (lambda point, purchase_id: None)
        self.scanner = BlockScanner(
            chain, self._purchases_in, confirmations=confirmations, batch_blocks=batch_blocks
        )
        self.start_block = self.scanner.start_block
        self.state = WorkerState(
            Path(state_path), chain.chain_id, chain.marketplace.address, self.start_block
        )
        self.inflight = InFlight(
            chain,
            signer,
            self.state,
            replace_after_s=replace_after_s,
            max_fee_per_gas=max_fee_per_gas,
            crash=crash,
        )
        self.delivery = PurchaseDelivery(
            chain,
            signer,
            vault,
            self.state,
            self.inflight,
            store=store,
            margin_s=margin_s,
            start_block=self.start_block,
            crash=crash,
        )
        self.version_keys = VersionKeys(
            chain,
            signer,
            vault,
            VersionKeys.state_path_beside(state_path),
            store=store,
            start_block=self.start_block,
            batch_size=version_key_batch,
            replace_after_s=replace_after_s,
            max_fee_per_gas=max_fee_per_gas,
            crash=crash,
        )
        self._told: dict[int, str] = {}  # purchase id → last reason logged, to log it once

    @classmethod
    def from_config(
        cls,
        config: Config,
        chain,
        signer,
        vault: KeyVault,
        *,
        store=None,
        state: str | os.PathLike | None = None,
        crash: Callable[[str, int], None] | None = None,
    ) -> KeyDelivery:
        """The worker ``config`` describes: its confirmations, replacement delay and fee cap, and
        its state file (``state``, else ``config.worker_state_path``)."""
        return cls(
            chain,
            signer,
            vault,
            state or config.worker_state_path(chain.chain_id),
            store=store,
            confirmations=config.confirmations,
            replace_after_s=config.worker_replace_after,
            max_fee_per_gas=int(config.worker_max_fee_gwei * GWEI),
            version_key_batch=config.version_key_batch,
            crash=crash,
        )

    # -- one pass -----------------------------------------------------------------------------

    def poll(self) -> PassReport:
        report = PassReport()
        self._discover(report)
        # In-flight purchases first: their transactions hold the account's lowest nonces.
        for pid in sorted(self.state.open, key=lambda p: (p not in self.state.inflight, p)):
            try:
                self._handle(pid, report)
            except ChainError as exc:
                if not isinstance(exc, ContractRevert):
                    raise  # the node is unreachable: the pass ends, the next one resumes
                self._skip(pid, f"the dry run reverted: {exc}", report)
            except Exception:  # one bad purchase never stops the queue
                log.exception("purchase %d: unexpected error; will retry next pass", pid)
                report.skipped[pid] = "unexpected error (logged)"
        self._settle(report)
        # After the purchases (theirs are the lowest nonces): later versions' keys to holders.
        report.version_keys = self.version_keys.poll()
        return report

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Poll until ``stop`` is set; a failing pass is logged and retried after ``interval``."""
        log.info("key delivery worker for %s on chain %d", self.signer.address, self.chain.chain_id)
        poll_loop(self.poll, stop, interval)

    # -- steps --------------------------------------------------------------------------------

    def _discover(self, report: PassReport) -> None:
        report.scanned_to = self.scanner.scan(self)

    # The BlockScanner's follower: the open set grows by each batch's purchases.

    def _purchases_in(self, first: int, last: int) -> list:
        return self.chain.events("Purchased", from_block=first, to_block=last)

    def load_checkpoint(self) -> Checkpoint:
        return self.state.checkpoint

    def apply_batch(self, batch: Batch) -> bool:
        for ev in batch.logs:
            self.state.open.setdefault(int(ev["args"]["purchaseId"]), open_entry(ev))
        self.state.checkpoint = batch.checkpoint
        self.state.save()
        return True

    def rewind(self, checkpoint: Checkpoint) -> None:
        """A reorg: purchases discovered above the fork point are read again from the new chain
        (unless a transaction is in flight: the chain decides those)."""
        # An entry without its block (older state files) stays; the account check covers it.
        stale = [
            pid
            for pid, e in self.state.open.items()
            if e.get("block", -1) > checkpoint.block and pid not in self.state.inflight
        ]
        log.warning(
            "the chain reorganised above block %d: %d open purchase(s) read again",
            checkpoint.block,
            len(stale),
        )
        for pid in stale:
            del self.state.open[pid]
        self.state.checkpoint = checkpoint
        self.state.save()

    def _close(self, pid: int, report: PassReport, why: str) -> None:
        self._forget(pid)
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
        missed = self.delivery.deliver(pid)
        if missed is None:
            return
        if missed.closes:
            self._close(pid, report, missed.reason)
        else:
            self._skip(pid, missed.reason, report)

    def _forget(self, pid: int) -> None:
        self.state.open.pop(pid, None)
        self.inflight.forget(pid)
        self.state.save()
        self._told.pop(pid, None)

    def _delivered(self, pid: int, report: PassReport, tx_hash: str) -> None:
        self._forget(pid)
        report.delivered.append(pid)
        log.info("purchase %d: key delivered in %s", pid, tx_hash)

    def _mined(self, pid: int, report: PassReport) -> bool | None:
        """Whether an in-flight purchase's transaction was mined: True when it delivered, False
        when it reverted (decide again), None when none is mined yet."""
        mined = self.inflight.receipt(pid)
        if mined is None:
            return None
        tx_hash, receipt = mined
        if receipt["status"] == 1:
            self._delivered(pid, report, tx_hash)
            return True
        self.inflight.drop(pid)  # it reverted: decide again from on-chain state
        log.warning(
            "purchase %d: transaction %s reverted in block %d; deciding again from the chain",
            pid,
            tx_hash,
            receipt["blockNumber"],
        )
        report.skipped[pid] = f"transaction {tx_hash} reverted; deciding again"
        return False

    def _resume(self, pid: int, report: PassReport) -> bool:
        """Carry an in-flight delivery on; True when it settles the purchase for this pass
        (delivered, or still in flight), False when the purchase must be decided again."""
        settled = self._mined(pid, report)
        if settled is not None:
            return settled
        if self.inflight.known(self.inflight.latest(pid)["tx_hash"]):
            self.inflight.replace_if_due(pid)
            return True
        try:
            purchase = self.delivery.purchase(pid)
        except ContractRevert:
            return False  # reorged away: the on-chain decision closes it
        if self.delivery.why_closed(purchase) is not None:
            return False  # let the on-chain decision close it (a resend would revert)
        if purchase.account.lower() != self.inflight.buyer(pid).lower():
            # After a reorg the id is another buyer's: these bytes would revert
            # (MarketplaceWrongBuyer). None of them is known to the node, so a new delivery
            # at the account's next nonce takes their place.
            log.warning(
                "purchase %d now belongs to %s, not %s (a reorg): dropping its "
                "recorded delivery, deciding again",
                pid,
                purchase.account,
                self.inflight.buyer(pid),
            )
            self.inflight.drop(pid)
            return False
        if self.inflight.resend(pid):
            return True
        settled = self._mined(pid, report)  # its nonce is taken: one of ours may have been mined
        if settled is not None:
            return settled
        # Its nonce went to another transaction: none recorded can ever be mined.
        self.inflight.drop(pid)
        return False

    def _settle(self, report: PassReport) -> None:
        """Wait for the in-flight transactions' receipts, no longer than until the first one is
        due for replacement (or ``receipt_timeout``); what is still unmined stays in flight."""
        waiting = [pid for pid in sorted(self.state.inflight) if pid in self.state.open]
        if not waiting:
            return
        for pid in self.inflight.wait_for(waiting, lambda pid: self._mined(pid, report)):
            report.pending[pid] = self.inflight.latest(pid)["tx_hash"]
