"""Replacing a stuck transaction: the fields of a signed one, ready to sign again at the same
nonce, and the fees of its replacement (+25% on both fee fields and at least the node's
current fees, never above a cap). The key-delivery worker (``node.worker``) uses them."""

from __future__ import annotations

import rlp
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes

GWEI = 10**9
# A replacement raises both fee fields by a quarter (and to at least the node's current fees):
# geth and anvil accept a replacement at the same nonce from +10% on both.
BUMP_NUM, BUMP_DEN = 5, 4
NODE_MIN_NUM, NODE_MIN_DEN = 11, 10
UNDERPRICED = (
    "underpriced",
    "less than block base fee",
    "fee cap less than",
    "max fee per gas less",
)


def unsigned_transaction(raw: bytes) -> dict:
    """The fields of a signed transaction (typed or legacy), ready to be signed again."""
    if raw[0] <= 0x7F:  # EIP-2718 typed transaction
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        keep = (
            "chainId",
            "nonce",
            "to",
            "value",
            "data",
            "gas",
            "maxFeePerGas",
            "maxPriorityFeePerGas",
            "gasPrice",
            "accessList",
        )
        tx = {k: fields[k] for k in keep if k in fields}
        tx["type"] = fields["type"]
    else:
        nonce, price, gas, to, value, data, v, _r, _s = rlp.decode(raw)
        v = int.from_bytes(v, "big")
        tx = {
            "nonce": int.from_bytes(nonce, "big"),
            "gasPrice": int.from_bytes(price, "big"),
            "gas": int.from_bytes(gas, "big"),
            "to": to,
            "value": int.from_bytes(value, "big"),
            "data": data,
        }
        if v >= 35:
            tx["chainId"] = (v - 35) // 2
    tx["to"] = to_checksum_address(bytes(tx["to"]))
    tx["data"] = "0x" + bytes(tx["data"]).hex()
    if "accessList" in tx:
        tx["accessList"] = [dict(item) for item in tx["accessList"]]
    return tx


def _at_least(new: int, old: int) -> bool:
    """Whether a node takes ``new`` as a replacement fee for ``old`` (+10%)."""
    return new * NODE_MIN_DEN >= old * NODE_MIN_NUM


def replacement_fees(tx: dict, current: dict, cap: int) -> dict | None:
    """Fees for replacing ``tx``: +25% on each field and at least the node's ``current`` fees,
    never above ``cap`` wei per gas; None when the cap leaves less than a node accepts."""

    def bump(value: int) -> int:
        return -(-value * BUMP_NUM // BUMP_DEN)

    if "gasPrice" in tx:
        price = min(
            cap, max(bump(tx["gasPrice"]), current.get("gasPrice", current.get("maxFeePerGas", 0)))
        )
        return {"gasPrice": price} if _at_least(price, tx["gasPrice"]) else None
    old_fee, old_tip = tx["maxFeePerGas"], tx["maxPriorityFeePerGas"]
    tip = max(bump(old_tip), current.get("maxPriorityFeePerGas", 0))
    fee = min(cap, max(bump(old_fee), current.get("maxFeePerGas", 0), tip))
    tip = min(tip, fee)
    if not (_at_least(fee, old_fee) and _at_least(tip, old_tip)):
        return None
    return {"maxFeePerGas": fee, "maxPriorityFeePerGas": tip}


def max_fee(tx: dict) -> int:
    return tx.get("maxFeePerGas", tx.get("gasPrice", 0))


def gwei(wei: int) -> str:
    """Wei per gas, as gwei for a log line."""
    return f"{wei / GWEI:.9g}"
