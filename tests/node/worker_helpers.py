"""What the key-delivery worker's tests (and the validator tests that need keys delivered) share:
the seller's worker on a test stack, and what it delivered on the chain."""

from __future__ import annotations

from pathlib import Path

from node.errors import KeyWrapError
from node.fetch import unwrap_for
from node.worker import KeyDelivery


def seller_worker(stack, state: Path, **options) -> KeyDelivery:
    """The seller's key-delivery worker on ``stack``, its state file ``state``."""
    return KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), state, **options)


def deliver_keys(stack, state: Path) -> list[int]:
    """One pass of the seller's worker; the purchase ids it delivered."""
    return seller_worker(stack, state).poll().delivered


def deliveries(stack) -> dict[int, int]:
    """How many times each purchase's key was delivered on the chain (purchase id → count)."""
    counts: dict[int, int] = {}
    for ev in stack.chain.events("KeyDelivered", from_block=stack.chain.deployment["block"]):
        pid = int(ev["args"]["purchaseId"])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def can_open(stack, role: str, pid: int) -> bool:
    """Whether ``role`` can unwrap the key delivered for purchase ``pid`` with its wallet key."""
    (ev,) = stack.chain.events(
        "KeyDelivered", from_block=stack.chain.deployment["block"], purchaseId=pid
    )
    try:
        unwrap_for(stack.chain, stack.signers[role], pid, bytes(ev["args"]["wrappedKey"]))
    except KeyWrapError:
        return False
    return True
