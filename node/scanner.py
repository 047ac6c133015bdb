"""One chain follower: the block-scan loop the indexer, the key-delivery worker and the
validator agent share.

A follower keeps a ``Checkpoint``: the last block it processed and the hashes of the last
``RECENT_BLOCKS`` processed blocks it remembers (the newest being the checkpoint's own). It
persists that checkpoint in its own storage, in the same write as what the blocks changed.
``BlockScanner.scan(follower)`` then:

1. **Reorg check.** If the checkpoint block's hash is no longer the chain's (a reorg, or a chain
   now shorter than it), walk back through the remembered hashes, newest first, to the newest
   one the chain still has: the fork point (none left: the block before ``start_block``). The
   follower is told to ``rewind`` to it and forgets what it learnt above it; the blocks above
   are scanned again.
2. **Batches.** Read the logs of ``batch_blocks`` blocks at a time (``fetch_logs(first,
   last)``, one ``eth_getLogs`` per range) up to head − ``confirmations``, and hand each range to
   the follower's ``apply_batch`` with the checkpoint to persist with it. A batch is handed over
   only when the chain did not move under the read: the last block's hash is the same before
   and after the logs were read, and the checkpoint's block is still on the chain (otherwise
   back to step 1).

Followers on one storage (two indexers on one database) may race: ``apply_batch`` returns False
when the stored checkpoint moved meanwhile, and the scan goes on from the stored one.

``poll_loop`` runs a follower's passes (the worker's, the validator agent's) until stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from web3.exceptions import BlockNotFound

from node.errors import InputError, ModexError

log = logging.getLogger(__name__)

RECENT_BLOCKS = 64  # hashes a checkpoint remembers: a reorg deeper than these rescans it all


@dataclass(frozen=True)
class Checkpoint:
    """The last block a follower processed, and (number, hash) of the processed blocks it
    remembers, oldest first (normally ending with ``block`` itself)."""

    block: int
    hashes: tuple[tuple[int, str], ...] = ()

    @property
    def next_block(self) -> int:
        return self.block + 1

    @property
    def tip_hash(self) -> str | None:
        """The checkpoint block's hash, when it is remembered."""
        if self.hashes and self.hashes[-1][0] == self.block:
            return self.hashes[-1][1]
        return None

    def advanced(self, block: int, block_hash: str) -> Checkpoint:
        """The checkpoint after processing up to ``block``."""
        return Checkpoint(block, (*self.hashes, (block, block_hash))[-RECENT_BLOCKS:])

    def rewound(self, block: int) -> Checkpoint:
        """The checkpoint at ``block`` (a fork point), forgetting the hashes above it."""
        return Checkpoint(block, tuple(h for h in self.hashes if h[0] <= block))

    def hashes_json(self) -> list[list[Any]]:
        return [[number, block_hash] for number, block_hash in self.hashes]

    @classmethod
    def from_json(
        cls, next_block: int, hashes: Sequence[Sequence[Any]] | None, tip_hash: str | None = None
    ) -> Checkpoint:
        """A checkpoint from a state file: the next block to scan, ``hashes_json()``'s list, and
        the checkpoint block's hash as older state files recorded it alone (``tip_hash``, which
        then stands for that block)."""
        block = int(next_block) - 1
        known = [(int(n), str(h)) for n, h in hashes or () if int(n) <= block]
        if tip_hash:
            known = [h for h in known if h[0] != block] + [(block, str(tip_hash))]
        return cls(block, tuple(sorted(known))[-RECENT_BLOCKS:])


@dataclass(frozen=True)
class Batch:
    """The logs of blocks ``first..last`` and the checkpoint to persist once they are applied."""

    first: int
    last: int
    logs: list
    checkpoint: Checkpoint


class Follower(Protocol):
    def load_checkpoint(self) -> Checkpoint:
        """The checkpoint as persisted (``start_block - 1`` before the first batch)."""

    def apply_batch(self, batch: Batch) -> bool:
        """Apply the batch's logs and persist ``batch.checkpoint`` with them; False (nothing
        applied) when the persisted checkpoint is no longer at ``batch.first - 1``."""

    def rewind(self, checkpoint: Checkpoint) -> None:
        """A reorg: forget what was learnt above ``checkpoint.block``, persist ``checkpoint``."""


def deployment_block(chain) -> int:
    """The block the chain's contract suite was deployed in (0 when its record does not say):
    no event of the suite is older, so following it starts there."""
    deployment = chain.deployment if isinstance(chain.deployment, dict) else {}
    return int(deployment.get("block") or 0)


class BlockScanner:
    """Follows the chain for one follower: batching, confirmations, reorgs, the checkpoint."""

    def __init__(
        self,
        chain,
        fetch_logs: Callable[[int, int], list],
        *,
        start_block: int | None = None,
        confirmations: int = 0,
        batch_blocks: int = 2000,
    ):
        """``start_block``: the first block to scan; default the suite's ``deployment_block``."""
        if confirmations < 0:
            raise InputError(f"confirmations must be 0 or more blocks, got {confirmations}")
        self.chain = chain
        self.fetch_logs = fetch_logs
        self.start_block = deployment_block(chain) if start_block is None else start_block
        self.confirmations = confirmations
        self.batch_blocks = max(1, batch_blocks)

    def target(self, until: int | None = None) -> int:
        """The last block to process now: head − confirmations, or ``until`` if lower."""
        head = self.chain.block_number() - self.confirmations
        return head if until is None else min(head, until)

    def scan(self, follower: Follower, until: int | None = None) -> int:
        """Hand the follower every block up to ``target(until)``; return that block."""
        checkpoint = self._check_reorg(follower, follower.load_checkpoint())
        target = self.target(until)
        while checkpoint.next_block <= target:
            first = checkpoint.next_block
            last = min(first + self.batch_blocks - 1, target)
            before = self.hash_at(last)
            logs = self.fetch_logs(first, last)
            after = self.hash_at(last)
            if before is None or before != after or not self._on_chain(checkpoint):
                log.info("blocks %d..%d changed while reading; checking for a reorg", first, last)
                checkpoint = self._check_reorg(follower, follower.load_checkpoint())
                target = self.target(until)
                continue
            batch = Batch(first, last, logs, checkpoint.advanced(last, after))
            # False: another follower on this storage moved the checkpoint; go on from there.
            checkpoint = (
                batch.checkpoint if follower.apply_batch(batch) else (follower.load_checkpoint())
            )
        return target

    def hash_at(self, number: int) -> str | None:
        """The hash of block ``number`` on the chain now; None when the chain is shorter."""
        try:
            block = self.chain.get_block(number)
        except BlockNotFound:
            return None
        return None if block is None else "0x" + bytes(block["hash"]).hex()

    def _on_chain(self, checkpoint: Checkpoint) -> bool:
        """Whether the checkpoint's block is still the chain's (True when its hash is unknown)."""
        tip = checkpoint.tip_hash
        return tip is None or self.hash_at(checkpoint.block) == tip

    def _check_reorg(self, follower: Follower, checkpoint: Checkpoint) -> Checkpoint:
        """Rewind the follower to the fork point when its newest remembered block is gone."""
        if checkpoint.block < self.start_block or not checkpoint.hashes:
            return checkpoint  # nothing processed, or nothing to compare with (older state)
        newest = checkpoint.hashes[-1]
        if self.hash_at(newest[0]) == newest[1]:
            return checkpoint
        fork = self.start_block - 1
        for number, block_hash in reversed(checkpoint.hashes[:-1]):
            if self.hash_at(number) == block_hash:
                fork = number
                break
        log.warning(
            "reorg: block %d (%s) is no longer on the chain; rescanning from block %d",
            newest[0],
            newest[1],
            fork + 1,
        )
        rewound = checkpoint.rewound(fork)
        follower.rewind(rewound)
        return rewound


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
