"""node/scanner.py: batching, confirmations, reorgs (deeper than a block, at the checkpoint,
deeper than the memory, a shorter chain, during a read), a restart from the persisted
checkpoint, and followers racing on one storage. A scripted chain stands in for the node; the
followers' reorgs on anvil are in test_followers_reorg.py."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from web3.exceptions import BlockNotFound

from node.errors import InputError
from node.scanner import RECENT_BLOCKS, Batch, BlockScanner, Checkpoint

START = 3  # the deployment block: nothing before it is scanned


class ScriptedChain:
    """Blocks 0..head, each with a hash and a list of log labels; ``reorg`` replaces the top."""

    def __init__(self, blocks: int = 10):
        self.hashes: list[str] = []
        self.logs: list[list[str]] = []
        self.forks = 0
        self.reads: list[tuple[int, int]] = []
        self.during_read = None  # called once inside the next fetch_logs
        self.during_head = None  # called once inside the next block_number
        self.mine(*([f"b{n}"] for n in range(blocks)))

    def mine(self, *blocks: list[str]) -> None:
        for labels in blocks:
            n = len(self.hashes)
            self.hashes.append("0x" + hashlib.sha256(f"{n}/{self.forks}".encode()).hexdigest())
            self.logs.append(list(labels))

    def reorg(self, depth: int, *blocks: list[str]) -> None:
        """Drop the top ``depth`` blocks and mine ``blocks`` in their place."""
        self.forks += 1
        del self.hashes[len(self.hashes) - depth :], self.logs[len(self.logs) - depth :]
        self.mine(*blocks)

    def block_number(self) -> int:
        if self.during_head is not None:
            hook, self.during_head = self.during_head, None
            hook()
        return len(self.hashes) - 1

    def get_block(self, number: int) -> dict:
        if number >= len(self.hashes):
            raise BlockNotFound(f"block {number}")
        return {"hash": bytes.fromhex(self.hashes[number][2:])}

    def fetch_logs(self, first: int, last: int) -> list[tuple[int, str]]:
        self.reads.append((first, last))
        found = [(n, label) for n in range(first, last + 1) for label in self.logs[n]]
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return found

    def history(self, upto: int | None = None) -> list[tuple[int, str]]:
        last = self.block_number() if upto is None else upto
        return [(n, label) for n in range(START, last + 1) for label in self.logs[n]]


class MemoryFollower:
    """A follower whose storage is a JSON text (what the worker and the validator persist)."""

    def __init__(self, saved: str | None = None):
        self.saved = saved
        doc = json.loads(saved) if saved else {"next_block": START, "recent_blocks": []}
        self.seen: list[tuple[int, str]] = [tuple(x) for x in doc.get("seen", [])]
        self.rewinds: list[int] = []

    def load_checkpoint(self) -> Checkpoint:
        doc = json.loads(self.saved) if self.saved else {"next_block": START, "recent_blocks": []}
        return Checkpoint.from_json(doc["next_block"], doc["recent_blocks"])

    def _save(self, checkpoint: Checkpoint) -> None:
        self.saved = json.dumps(
            {
                "next_block": checkpoint.next_block,
                "recent_blocks": checkpoint.hashes_json(),
                "seen": self.seen,
            }
        )

    def apply_batch(self, batch: Batch) -> bool:
        self.seen += batch.logs
        self._save(batch.checkpoint)
        return True

    def rewind(self, checkpoint: Checkpoint) -> None:
        self.rewinds.append(checkpoint.block)
        self.seen = [x for x in self.seen if x[0] <= checkpoint.block]
        self._save(checkpoint)


def scanner(chain: ScriptedChain, **kw) -> BlockScanner:
    return BlockScanner(chain, chain.fetch_logs, start_block=START, **kw)


def test_batches_cover_the_range_once_from_the_start_block():
    chain = ScriptedChain(12)
    follower = MemoryFollower()
    assert scanner(chain, batch_blocks=4).scan(follower) == 11
    assert chain.reads == [(3, 6), (7, 10), (11, 11)]
    assert follower.seen == chain.history()
    checkpoint = follower.load_checkpoint()
    assert checkpoint.block == 11 and checkpoint.tip_hash == chain.hashes[11]
    assert [n for n, _ in checkpoint.hashes] == [6, 10, 11]
    chain.reads.clear()
    assert scanner(chain, batch_blocks=4).scan(follower) == 11 and chain.reads == []


def test_confirmations_keep_the_scan_behind_the_head():
    chain = ScriptedChain(12)
    follower = MemoryFollower()
    follow = scanner(chain, confirmations=3)
    assert follow.scan(follower) == 8 and follower.seen == chain.history(8)
    chain.mine(["new"])
    assert follow.scan(follower) == 9 and follower.seen == chain.history(9)
    assert follow.scan(follower, until=5) == 5 and follower.seen == chain.history(9)
    with pytest.raises(InputError, match="confirmations"):
        scanner(chain, confirmations=-1)


def test_a_reorg_deeper_than_a_block_rescans_from_the_fork_point(caplog):
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain, batch_blocks=1)  # every block remembered
    follow.scan(follower)
    chain.reorg(3, ["x5"], ["x6"], [], ["x8"])  # blocks 5..7 replaced, one more mined
    chain.reads.clear()
    with caplog.at_level(logging.WARNING, logger="node.scanner"):
        assert follow.scan(follower) == 8
    assert follower.rewinds == [4] and chain.reads == [(5, 5), (6, 6), (7, 7), (8, 8)]
    assert follower.seen == chain.history()  # each event of the new chain exactly once
    assert "rescanning from block 5" in caplog.text


def test_a_reorg_of_the_checkpoint_block_alone():
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain)
    follow.scan(follower)
    chain.mine(["b8"])
    follow.scan(follower)  # checkpoints at 7, then 8
    chain.reorg(1, ["y8"])
    assert follow.scan(follower) == 8
    assert follower.rewinds == [7] and follower.seen == chain.history()


def test_a_shorter_chain_rewinds_to_the_newest_block_it_still_has():
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain, batch_blocks=2)
    follow.scan(follower)  # remembers 4, 6, 7
    chain.reorg(3)  # blocks 5..7 gone, none mined instead
    assert follow.scan(follower) == 4
    assert follower.rewinds == [4] and follower.load_checkpoint().block == 4
    assert follower.seen == chain.history()


def test_a_reorg_deeper_than_every_remembered_block_rescans_from_the_start():
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain)
    follow.scan(follower)
    chain.reorg(6, *([f"z{n}"] for n in range(2, 9)))
    assert follow.scan(follower) == 8
    assert follower.rewinds == [START - 1] and follower.seen == chain.history()


def test_a_checkpoint_remembers_at_most_recent_blocks():
    chain = ScriptedChain(START + RECENT_BLOCKS + 5)
    follower = MemoryFollower()
    scanner(chain, batch_blocks=1).scan(follower)
    hashes = follower.load_checkpoint().hashes
    assert len(hashes) == RECENT_BLOCKS and hashes[-1] == (chain.block_number(), chain.hashes[-1])


def test_a_restart_goes_on_from_the_persisted_checkpoint_and_still_sees_a_reorg():
    chain = ScriptedChain(8)
    first = MemoryFollower()
    scanner(chain, batch_blocks=3).scan(first)
    chain.reorg(2, ["w6"], ["w7"], ["w8"])
    chain.reads.clear()
    restarted = MemoryFollower(first.saved)  # a new process reading the same storage
    assert scanner(chain, batch_blocks=3).scan(restarted) == 8
    assert restarted.rewinds == [5] and chain.reads == [(6, 8)]
    assert restarted.seen == chain.history()


def test_a_reorg_while_a_batch_is_read_discards_the_batch():
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain, batch_blocks=2)
    follow.scan(follower)  # remembers 4, 6, 7
    chain.mine(["b8"], ["b9"])
    chain.during_read = lambda: chain.reorg(3, ["v7"], ["v8"], ["v9"])  # 7..9 replaced
    chain.reads.clear()
    assert follow.scan(follower) == 9
    assert chain.reads == [(8, 9), (7, 8), (9, 9)]  # the first read was of the old chain
    assert follower.rewinds == [6] and follower.seen == chain.history()


def test_a_reorg_below_the_checkpoint_just_before_a_batch_is_read_discards_the_batch():
    """The batch's own blocks look stable (the reorg happened before they were read), but the
    checkpoint block under them is gone: the batch is not applied on top of it."""
    chain = ScriptedChain(8)
    follower = MemoryFollower()
    follow = scanner(chain, batch_blocks=2)
    follow.scan(follower)  # remembers 4, 6, 7
    chain.mine(["b8"], ["b9"])
    chain.during_head = lambda: chain.reorg(4, ["u6"], ["u7"], ["u8"], ["u9"])  # 6..9 replaced
    chain.reads.clear()
    assert follow.scan(follower) == 9
    assert chain.reads == [(8, 9), (5, 6), (7, 8), (9, 9)]
    assert follower.rewinds == [4] and follower.seen == chain.history()


def test_a_follower_whose_storage_moved_on_resumes_from_the_stored_checkpoint():
    chain = ScriptedChain(10)
    other = MemoryFollower()

    class Racing(MemoryFollower):
        def apply_batch(self, batch: Batch) -> bool:
            if batch.first == START:  # another process committed the first batch meanwhile
                other.apply_batch(batch)
                self.saved = other.saved
                return False
            return super().apply_batch(batch)

    racing = Racing()
    assert scanner(chain, batch_blocks=4).scan(racing) == 9
    assert chain.reads == [(3, 6), (7, 9)]
    assert other.seen + racing.seen == chain.history()  # each block applied once


def test_an_older_state_file_s_tip_hash_stands_for_the_checkpoint_block():
    checkpoint = Checkpoint.from_json(10, [[7, "0xa"], [9, "0xb"]], tip_hash="0xc")
    assert checkpoint == Checkpoint(9, ((7, "0xa"), (9, "0xc")))
    assert (
        Checkpoint.from_json(10, None).hashes == ()
        and Checkpoint.from_json(10, None).tip_hash is None
    )
    assert Checkpoint(9, ((7, "0xa"),)).tip_hash is None
    assert Checkpoint(9, ((7, "0xa"), (9, "0xc"))).rewound(8) == Checkpoint(8, ((7, "0xa"),))
