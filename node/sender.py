"""Sending transactions through a ``node.chain.Chain``: build, sign, send, wait.

Build: a dry run (``Chain.call`` on the pending block, so a revert is decoded into
ContractRevert before anything is sent), then gas, the account's next nonce and the node's fees.
Sign: a Signer gives raw bytes, so the hash is known before sending. Send: the SAME bytes on
every retry (same nonce, same hash), so a transaction that reached the node before the
connection dropped is never signed twice; one lock per account keeps its nonces in order across
threads. Wait: poll for the receipt; a wait that gives up raises ChainError carrying
``tx_hash``, and a mined transaction that reverted is replayed on the state before its block to
say why.

``Sender`` is a base class of ``node.chain.Chain``: its methods (``transact``, ``send_raw``, ...)
are the Chain's. It goes through what ``ChainClient`` names, which the Chain provides: the
retrying RPC (``Chain._rpc``), dry runs (``Chain.call``), blocks, balances and the ABIs that
decode a revert; and it words what the node refuses with ``node.chainerrors``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxParams

from node.chainerrors import failed_receipt, insufficient, refusal, revert
from node.errors import ChainError
from node.signer import Signer

log = logging.getLogger("node.chain")  # one logger for the chain client, as before the split

GWEI = 10**9


class ChainClient(Protocol):
    """What the transaction path needs from the chain client it is part of (``node.chain.Chain``)."""

    w3: Web3
    endpoint: str  # "embedded" or the node's URL, for messages
    abis: dict  # contract name -> ABI: a revert is decoded over all of them
    poll_latency: float  # the first pause between receipt polls
    receipt_timeout: float  # how long wait_receipt waits by default
    call: Callable[..., Any]  # Chain.call: a view call or dry run, a revert as ContractRevert

    @property
    def chain_id(self) -> int: ...

    def _rpc(self, what: str, func: Callable[[], Any]) -> Any: ...

    def get_block(self, block_id="latest"): ...

    def balance(self, address: str) -> int: ...


class Sender(ChainClient):
    """The transaction path of a Chain (its base class): nonce locks, gas, fees, same-bytes
    retries, receipts."""

    def __init__(self):
        self._send_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, address: str) -> threading.Lock:
        with self._locks_guard:
            return self._send_locks.setdefault(address, threading.Lock())

    def fees(self) -> dict:
        """EIP-1559 fee fields when the chain has a base fee, else a legacy gasPrice."""
        latest = self.get_block("latest")
        base = latest.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": self._rpc("eth_gasPrice", lambda: self.w3.eth.gas_price)}
        try:
            tip = self._rpc("eth_maxPriorityFeePerGas", lambda: self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError, NotImplementedError):
            tip = GWEI  # a node without the method (eth-tester): any tip is accepted locally
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def build_transaction(self, fn, sender: str, *, value: int = 0, gas: int | None = None) -> dict:
        """Dry-run ``fn`` (reverts → ContractRevert, nothing sent), then fill gas, nonce, fees."""
        sender = to_checksum_address(sender)
        params = {"from": sender, "value": value}
        self.call(fn, sender=sender, value=value, gas=gas, block="pending")
        if gas is None:
            # Estimated on the pending block, as dry-run: a node that mines only on transactions
            # (anvil) estimates on the latest block by default, whose timestamp may be long past,
            # and a call that is due only after a deadline (a reveal, a settlement) would revert
            # there. (eth-tester has no block parameter here; it estimates on the pending block.)
            block = None if self.endpoint == "embedded" else "pending"
            try:
                estimate = self._rpc(
                    f"eth_estimateGas {fn.fn_name}",
                    lambda: fn.estimate_gas(params, block_identifier=block),
                )
            except ContractLogicError as exc:
                raise revert(self, exc, fn) from None
            except Web3RPCError as exc:
                raise refusal(self, exc, fn, sender, value) from None
            gas = int(estimate * 1.2) + 10_000  # state may move between estimate and inclusion
        nonce = self._rpc(
            "eth_getTransactionCount", lambda: self.w3.eth.get_transaction_count(sender, "pending")
        )
        tx = {**params, "gas": gas, "nonce": nonce, "chainId": self.chain_id, **self.fees()}
        return fn.build_transaction(tx)

    def send_raw(self, raw: bytes, *, sender: str | None = None, value: int = 0) -> bytes:
        """Send signed bytes, retrying the same bytes on connection errors; return the tx hash."""
        tx_hash = keccak(raw)
        try:
            self._rpc("eth_sendRawTransaction", lambda: self.w3.eth.send_raw_transaction(raw))
        except Web3RPCError as exc:
            message = str(exc).lower()
            if "already known" in message or "known transaction" in message:
                return tx_hash  # an earlier attempt reached the node
            if "nonce too low" in message and self.find_receipt(tx_hash) is not None:
                return tx_hash  # an earlier attempt was even mined
            if "insufficient funds" in message and sender:
                raise insufficient(self, sender, value) from None
            raise ChainError(
                f"the chain node at {self.endpoint} refused transaction 0x{tx_hash.hex()}: {exc}",
                tx_hash="0x" + tx_hash.hex(),
            ) from None
        return tx_hash

    def transact(
        self,
        fn,
        signer: Signer,
        *,
        value: int = 0,
        gas: int | None = None,
        on_sent: Callable[[bytes], None] | None = None,
    ):
        """Build → sign → send → wait; return the receipt. ``on_sent(tx_hash)`` runs before the wait
        (a crash-safe caller records the hash there and resumes with ``wait_receipt``)."""
        with self._lock_for(signer.address):
            tx = self.build_transaction(fn, signer.address, value=value, gas=gas)
            raw = signer.sign_transaction(tx)
            tx_hash = self.send_raw(raw, sender=signer.address, value=value)
        log.info("sent %s from %s: 0x%s", fn.fn_name, signer.address, tx_hash.hex())
        if on_sent:
            on_sent(tx_hash)
        return self.wait_receipt(tx_hash, fn=fn, tx=tx)

    def transact_unlocked(self, fn, address: str, *, value: int = 0, gas: int | None = None):
        """Like ``transact`` for an account the node itself holds (embedded / anvil dev accounts)."""
        address = to_checksum_address(address)
        with self._lock_for(address):
            tx = self.build_transaction(fn, address, value=value, gas=gas)
            try:
                # Fixed nonce and fees: a retried send is the same transaction, never a second one.
                tx_hash = bytes(
                    self._rpc(
                        "eth_sendTransaction",
                        lambda: self.w3.eth.send_transaction(cast(TxParams, tx)),
                    )
                )
            except Web3RPCError as exc:
                if "insufficient funds" in str(exc).lower():
                    raise insufficient(self, address, value) from None
                raise ChainError(
                    f"the chain node at {self.endpoint} refused the transaction: {exc}"
                ) from None
        return self.wait_receipt(tx_hash, fn=fn, tx=tx)

    def find_receipt(self, tx_hash: bytes | str):
        """The receipt of a mined transaction, or None when the node does not know it (yet)."""
        try:
            return self._rpc(
                "eth_getTransactionReceipt",
                lambda: self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)),
            )
        except TransactionNotFound:
            return None

    def wait_receipt(self, tx_hash: bytes | str, *, timeout: float | None = None, fn=None, tx=None):
        """Wait until ``tx_hash`` is mined; status 0 → ContractRevert; timeout → ChainError."""
        timeout = self.receipt_timeout if timeout is None else timeout
        hex_hash = tx_hash if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex()
        deadline = time.monotonic() + timeout
        delay = self.poll_latency
        while True:
            try:
                receipt = self.find_receipt(tx_hash)
            except ChainError as exc:
                exc.context["tx_hash"] = hex_hash
                message = (
                    f"{exc.args[0]}; transaction {hex_hash} was sent: look it up by hash "
                    f"before sending it again"
                )
                exc.args = (message,)
                raise
            if receipt is not None:
                if receipt["status"] != 1:
                    raise failed_receipt(self, receipt, hex_hash, fn, tx)
                return receipt
            if time.monotonic() >= deadline:
                raise ChainError(
                    f"transaction {hex_hash} was not mined within {timeout:g} s on {self.endpoint}; "
                    f"it may still be mined: look it up by hash before sending it again",
                    tx_hash=hex_hash,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
