"""Walking a UnixFS file DAG given a ``get_block(cid) -> bytes`` function (which verifies)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

from node.content.cid import DAG_PB, cid_codec, cid_to_str, decode_file_node
from node.errors import IntegrityError

GetBlock = Callable[[bytes], bytes]


def walk_blocks(get_block: GetBlock, root: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every block of the DAG once, depth-first pre-order (the order `ipfs dag export` uses)."""
    seen: set[bytes] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        block = get_block(cid)
        yield cid, block
        if cid_codec(cid) == DAG_PB:
            stack.extend(reversed(decode_file_node(block, cid).links))


def repair_dag(root: bytes, local: GetBlock, again: GetBlock) -> list[str]:
    """Walk the DAG of ``root`` reading each block with ``local`` (which verifies it); a block
    it finds corrupt (IntegrityError) or cannot read (OSError) is replaced by ``again(cid)``
    (drop it, fetch it again, verify). Returns the CIDs of the replaced blocks."""
    replaced: list[str] = []

    def check(cid: bytes) -> bytes:
        try:
            return local(cid)
        except (IntegrityError, OSError):
            block = again(cid)
            replaced.append(cid_to_str(cid))
            return block

    for _ in walk_blocks(check, root):
        pass
    return replaced


def iter_file(get_block: GetBlock, root: bytes) -> Iterator[bytes]:
    """The file's bytes, leaf by leaf, in order (a repeated leaf is fetched each time)."""
    stack = [root]
    while stack:
        cid = stack.pop()
        block = get_block(cid)
        if cid_codec(cid) != DAG_PB:
            if block:
                yield block
            continue
        node = decode_file_node(block, cid)
        if node.data:
            yield node.data
        stack.extend(reversed(node.links))


class ChunkStream(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks; iterating it yields the chunks."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None = None):
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def __iter__(self):
        if self._buf:
            yield bytes(self._buf)
            self._buf = memoryview(b"")
        yield from self._chunks

    def close(self) -> None:
        if not self.closed and self._on_close is not None:
            self._on_close()
        super().close()
