"""The key-delivery worker's transactions between signing and mining (``node.worker``).

Every ``deliverKey`` is recorded in the worker's state file before it is sent (write-ahead: a
crash from there resends the same bytes, never a second delivery). Per purchase the record
holds every transaction signed for it, oldest first, all at one nonce, so at most one of them
can be mined. ``InFlight`` records and sends them, finds the one mined, sends the latest again
when the node has lost it, and replaces it at the same nonce with higher fees
(``node.replacement``) when it is stuck, never offering more than the worker's fee cap. Whether
a purchase should still be delivered at all is the worker's decision, not this class's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from eth_utils import keccak
from web3.exceptions import TransactionNotFound

from node.errors import ChainError
from node.replacement import UNDERPRICED, gwei, max_fee, replacement_fees, unsigned_transaction

log = logging.getLogger("node.worker")  # one logger for the whole worker, as before the split


class InFlight:
    """The signed, unmined ``deliverKey`` transactions of one worker, kept in its state file."""

    def __init__(
        self,
        chain,
        signer,
        state,
        *,
        replace_after_s: float,
        max_fee_per_gas: int,
        crash: Callable[[str, int], None],
        subject: str = "purchase",
    ):
        self.chain = chain
        self.subject = subject  # what the log lines call an id: "purchase", "version-key batch"
        self.signer = signer
        self.state = state  # the worker's WorkerState: ``inflight`` is this class's record
        self.replace_after_s = replace_after_s  # an unmined deliverKey older than this is replaced
        self.max_fee_per_gas = max_fee_per_gas  # no transaction of ours ever offers more (wei)
        self.crash = crash
        self._capped: set[int] = set()  # purchases whose "fees at the cap" line was logged

    def latest(self, pid: int) -> dict:
        """The purchase's last signed transaction: ``{"tx_hash", "raw"}``."""
        return self.state.inflight[pid]["txs"][-1]

    def buyer(self, pid: int) -> str:
        """The account the purchase's recorded transactions deliver to (older state files did
        not record it: the open entry's account, which they were wrapped for)."""
        entry = self.state.inflight[pid]
        return entry.get("buyer") or self.state.open[pid].get("account") or ""

    # -- a new transaction ----------------------------------------------------------------------

    def cap(self, pid: int, tx: dict) -> None:
        """Hold a new transaction's fees to the cap (logged: it may wait for lower fees)."""
        key = "maxFeePerGas" if "maxFeePerGas" in tx else "gasPrice"
        if tx[key] <= self.max_fee_per_gas:
            return
        log.warning(
            "%s %d: the node asks %s gwei per gas, over the cap of %s gwei "
            "(worker_max_fee_gwei); offering the cap, the transaction may wait for "
            "lower fees",
            self.subject,
            pid,
            gwei(tx[key]),
            gwei(self.max_fee_per_gas),
        )
        tx[key] = self.max_fee_per_gas
        if "maxPriorityFeePerGas" in tx:
            tx["maxPriorityFeePerGas"] = min(tx["maxPriorityFeePerGas"], self.max_fee_per_gas)

    def record(self, pid: int, raw: bytes, buyer: str) -> str:
        """Add a signed transaction to the purchase's record, on disk before it is sent."""
        tx_hash = "0x" + keccak(raw).hex()
        entry = self.state.inflight.setdefault(pid, {"txs": []})
        entry["txs"].append({"tx_hash": tx_hash, "raw": raw.hex()})
        entry["buyer"] = buyer
        entry["signed_at"] = time.time()
        self.state.save()
        return tx_hash

    def send(self, pid: int, raw: bytes, tx_hash: str) -> bool:
        """Send a recorded transaction; False when the node refuses it (it stays in flight: the
        next pass resends or replaces it, and the purchases after it are served meanwhile)."""
        try:
            self.chain.send_raw(raw, sender=self.signer.address)
        except ChainError as exc:
            if "tx_hash" not in exc.context:
                raise  # the node is unreachable (or the account empty): the pass ends
            log.warning(
                "%s %d: the node refused transaction %s: %s; the next pass resends or replaces it",
                self.subject,
                pid,
                tx_hash,
                exc,
            )
            return False
        return True

    # -- after it was sent ----------------------------------------------------------------------

    def receipt(self, pid: int) -> tuple[str, dict] | None:
        """The hash and receipt of the purchase's recorded transaction that was mined (one nonce,
        so at most one is), or None while none is."""
        for sent in reversed(self.state.inflight[pid]["txs"]):
            receipt = self.chain.find_receipt(sent["tx_hash"])
            if receipt is not None:
                self.crash("after_receipt", pid)
                return sent["tx_hash"], receipt
        return None

    def known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (in its pool or mined)."""
        try:
            self.chain._rpc(
                "eth_getTransactionByHash", lambda: self.chain.w3.eth.get_transaction(tx_hash)
            )
        except TransactionNotFound:
            return False
        return True

    def resend(self, pid: int) -> bool:
        """Send the latest recorded transaction again (the node lost it); replaced at once when
        the node refuses its fees now. False when its nonce is taken ("nonce too low"): one of
        the recorded transactions was mined since, or none of them ever can be."""
        latest = self.latest(pid)
        log.info("%s %d: resending recorded transaction %s", self.subject, pid, latest["tx_hash"])
        try:
            self.chain.send_raw(bytes.fromhex(latest["raw"]), sender=self.signer.address)
        except ChainError as exc:
            message = str(exc).lower()
            if "tx_hash" not in exc.context:
                raise  # the node is unreachable (or the account empty): the pass ends
            if "nonce too low" in message:
                return False
            if any(words in message for words in UNDERPRICED):
                self.replace(pid, "the node refuses its fees now")
            else:
                log.warning(
                    "%s %d: the node refused transaction %s again: %s; trying again next pass",
                    self.subject,
                    pid,
                    latest["tx_hash"],
                    exc,
                )
        return True

    def replace_if_due(self, pid: int) -> None:
        """Replace the latest transaction once it is ``replace_after_s`` old and still unmined."""
        age = time.time() - self.state.inflight[pid]["signed_at"]
        if age >= self.replace_after_s:
            self.replace(pid, f"not mined {age:.0f} s after it was signed")

    def replace(self, pid: int, why: str) -> None:
        """Sign the latest transaction again at its nonce with higher fees, record, send."""
        old = self.latest(pid)
        tx = unsigned_transaction(bytes.fromhex(old["raw"]))
        fees = replacement_fees(tx, self.chain.fees(), self.max_fee_per_gas)
        if fees is None:
            self._at_cap(pid, old["tx_hash"], tx)
            return
        new = {**tx, **fees}
        raw = self.signer.sign_transaction(new)
        tx_hash = self.record(pid, raw, self.buyer(pid))
        self.crash("before_replace_send", pid)
        if not self.send(pid, raw, tx_hash):
            return
        log.warning(
            "%s %d: replaced transaction %s (%s) by %s at nonce %d, max fee %s gwei, tip %s gwei",
            self.subject,
            pid,
            old["tx_hash"],
            why,
            tx_hash,
            new["nonce"],
            gwei(max_fee(new)),
            gwei(new.get("maxPriorityFeePerGas", 0)),
        )
        if replacement_fees(new, {}, self.max_fee_per_gas) is None:
            self._at_cap(pid, tx_hash, new)

    def _at_cap(self, pid: int, tx_hash: str, tx: dict) -> None:
        """Say once per purchase that its fees can rise no further: it waits to be mined."""
        if pid in self._capped:
            return
        self._capped.add(pid)
        log.warning(
            "%s %d: transaction %s (nonce %d) offers %s gwei per gas, and the cap "
            "is %s gwei (worker_max_fee_gwei): it will not be replaced again; waiting "
            "for it to be mined (raise the cap to pay more)",
            self.subject,
            pid,
            tx_hash,
            tx["nonce"],
            gwei(max_fee(tx)),
            gwei(self.max_fee_per_gas),
        )

    def wait_until(self, pids: list[int]) -> float:
        """The ``time.monotonic()`` until which a pass waits for these purchases' receipts: the
        first of them due for replacement, or ``chain.receipt_timeout`` from now."""
        due = min(self.state.inflight[p]["signed_at"] for p in pids) + self.replace_after_s
        return time.monotonic() + max(0.0, min(self.chain.receipt_timeout, due - time.time()))

    def wait_for(self, ids: list[int], mined: Callable[[int], bool | None]) -> list[int]:
        """Poll ``mined(id)`` (None: not mined yet) for these records until each is mined, or the
        first is due for replacement (``wait_until``); the ids still unmined."""
        deadline = self.wait_until(ids)
        delay = self.chain.poll_latency
        while True:
            ids = [i for i in ids if mined(i) is None]
            if not ids or time.monotonic() >= deadline:
                return ids
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    # -- leaving the record ---------------------------------------------------------------------

    def drop(self, pid: int) -> None:
        """None of the purchase's recorded transactions will deliver: forget them (saved)."""
        self.state.inflight.pop(pid)
        self.state.save()

    def forget(self, pid: int) -> None:
        """The purchase is done with: its record and cap note go (the caller saves the state)."""
        self.state.inflight.pop(pid, None)
        self._capped.discard(pid)
