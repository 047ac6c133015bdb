"""Buyer, seller and validator money moves: buy, wait for the key, refund, withdraw, vote, stake.

Library calls shared by the CLI (node/commands/*) and the UI. Each checks what it can before
sending (so the person gets a sentence, not a revert), then sends through ``Chain.transact``,
which dry-runs the call and decodes any custom error into ContractRevert.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from web3.logs import DISCARD

from node import keywrap
from node.errors import ChainError, KeyDeliveryError
from node.fetch import sale_terms

log = logging.getLogger(__name__)


def parse_eth(text: str | int | Decimal, *, what: str = "amount") -> int:
    """ETH as a decimal string ("0.25") → wei; ChainError with a clear sentence otherwise."""
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise ChainError(f"{what} {text!r} is not a number of ETH (e.g. 0.25)") from None
    if value < 0 or not value.is_finite():
        raise ChainError(f"{what} must be 0 or more ETH, got {text}")
    wei = value * 10**18
    if wei != wei.to_integral_value():
        raise ChainError(f"{what} {text} has more than 18 decimals (smaller than 1 wei)")
    return int(wei)


def fmt_eth(wei: int) -> str:
    return f"{(Decimal(int(wei)) / 10**18).normalize():f} ETH"


@dataclass
class Purchase:
    purchase_id: int
    model_id: int
    buyer: str
    price: int
    buyer_key: bytes
    tx_hash: str


def purchase_from_receipt(chain, receipt) -> Purchase:
    events = chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
    if not events:
        raise ChainError("the purchase was mined but emitted no Purchased event; check the "
                         "deployment file's Marketplace address")
    a = events[0]["args"]
    return Purchase(int(a["purchaseId"]), int(a["modelId"]), a["buyer"], int(a["price"]),
                    bytes(a["buyerKey"]), "0x" + bytes(receipt["transactionHash"]).hex())


def buy(chain, signer, model_id: int, *, max_price: int | None = None) -> Purchase:
    """Buy a licence: derive the wallet's X25519 key, check price and funds, send ``buy``."""
    price, active = sale_terms(chain, model_id)
    if not active:
        raise ChainError(f"model {model_id} is not for sale (the seller deactivated it)",
                         model_id=model_id)
    if max_price is not None and price > max_price:
        raise ChainError(
            f"model {model_id} costs {fmt_eth(price)}, above your --max-price of "
            f"{fmt_eth(max_price)}; nothing was sent", model_id=model_id, price=price)
    have = chain.balance(signer.address)
    if have < price:
        raise ChainError(
            f"insufficient funds: {signer.address} holds {fmt_eth(have)} but model {model_id} "
            f"costs {fmt_eth(price)} plus gas; fund the account (nothing was sent)",
            address=signer.address)
    _secret, public = keywrap.derive_x25519(signer, chain.chain_id)
    cap = price if max_price is None else max_price
    receipt = chain.transact(chain.marketplace.functions.buy(model_id, public, cap), signer,
                             value=price)
    purchase = purchase_from_receipt(chain, receipt)
    log.info("bought model %d: purchase %d for %s", model_id, purchase.purchase_id,
             fmt_eth(purchase.price))
    return purchase


def delivered_key(chain, purchase_id: int, from_block: int | None = None) -> bytes | None:
    """The wrapped key delivered for ``purchase_id`` (from its KeyDelivered event), or None."""
    start = from_block if from_block is not None else int(chain.deployment.get("block", 0) or 0)
    events = chain.events("KeyDelivered", from_block=start, purchaseId=purchase_id)
    return bytes(events[-1]["args"]["wrappedKey"]) if events else None


def wait_for_key(chain, purchase_id: int, *, timeout: float, interval: float = 0.5,
                 from_block: int | None = None) -> bytes:
    """Poll until the seller's worker delivers; KeyDeliveryError (with the refund hint) after."""
    deadline = time.monotonic() + timeout
    while True:
        wrapped = delivered_key(chain, purchase_id, from_block)
        if wrapped is not None:
            return wrapped
        if time.monotonic() >= deadline:
            raise KeyDeliveryError(
                f"no key delivered for purchase {purchase_id} within {timeout:g} s. The seller's "
                f"worker may be offline; your payment stays in escrow. Check again with "
                f"`modex fetch`, or after the delivery window run `modex refund {purchase_id}`",
                purchase_id=purchase_id)
        time.sleep(interval)


def refund(chain, signer, purchase_id: int):
    receipt = chain.transact(chain.marketplace.functions.refund(purchase_id), signer)
    log.info("purchase %d refunded", purchase_id)
    return receipt


def withdraw(chain, signer) -> int:
    """Withdraw the signer's credited balance; return the amount (wei) from the Withdrawn event."""
    receipt = chain.transact(chain.marketplace.functions.withdraw(), signer)
    events = chain.marketplace.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    amount = sum(int(e["args"]["amount"]) for e in events)
    log.info("withdrew %s to %s", fmt_eth(amount), signer.address)
    return amount


def vote(chain, signer, model_id: int, score: int):
    if not 1 <= int(score) <= 5:
        raise ChainError(f"a score is a whole number from 1 to 5, got {score}")
    return chain.transact(chain.votes.functions.vote(model_id, int(score)), signer)


def min_stake(chain) -> int:
    return int(chain.call(chain.validators.functions.minStake()))


def stake(chain, signer, amount: int | None = None):
    """Stake ``amount`` wei (default: the contract's minimum)."""
    amount = min_stake(chain) if amount is None else amount
    return chain.transact(chain.validators.functions.stake(), signer, value=amount)
