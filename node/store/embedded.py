"""The embedded content store: Kubo's blocks on local disk, no daemon (DESIGN.md §4.4, §6).

Layout under the root directory (the block layout of Kubo's flatfs, so a person can compare):

    blocks/<XY>/<NAME>.data   one file per block; NAME = base32 (upper, unpadded) of the block's
                              multihash, XY = NAME's next-to-last two characters
    pins/<cid>                one empty file per pinned root (its whole DAG is kept)

Blocks are written to a temporary file and renamed into place, so a reader never sees half a
block; every block read is hashed and compared with its CID (IntegrityError naming the CID).
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from node.car import read_car, write_car
from node.cid import (
    DEFAULT_PROFILE,
    UnixFSBuilder,
    cid_multihash,
    cid_to_str,
    parse_cid,
    verify_block,
)
from node.errors import ContentNotFound, StoreError
from node.store import Source, open_source
from node.store.dag import ChunkStream, iter_file, walk_blocks

log = logging.getLogger(__name__)


class EmbeddedStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.blocks_dir = self.root / "blocks"
        self.pins_dir = self.root / "pins"
        self._shards: set[str] = set()  # block subfolders known to exist (saves a mkdir each)
        try:
            self.blocks_dir.mkdir(parents=True, exist_ok=True)
            self.pins_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc}", root=str(root)) from None

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r})"

    # -- blocks -------------------------------------------------------------------------------
    def block_path(self, cid: bytes) -> Path:
        name = base64.b32encode(cid_multihash(cid)).decode("ascii").rstrip("=")
        return self.blocks_dir / name[-3:-1] / f"{name}.data"

    def has_block(self, cid: bytes) -> bool:
        return self.block_path(cid).exists()

    def put_block(self, cid: bytes, block) -> None:
        path = self.block_path(cid)
        if path.exists():
            return
        shard = path.parent.name
        if shard not in self._shards:
            path.parent.mkdir(exist_ok=True)
            self._shards.add(shard)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:  # the subfolder was removed behind our back: make it again
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                view = memoryview(block)
                while view:  # a raw write may be partial
                    view = view[f.write(view):]
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def get_block(self, cid: bytes) -> bytes:
        try:
            with open(self.block_path(cid), "rb") as f:
                block = f.read()
        except FileNotFoundError:
            raise ContentNotFound(
                f"block {cid_to_str(cid)} is not in the embedded store at {self.root}",
                cid=cid_to_str(cid),
            ) from None
        verify_block(cid, block)
        return block

    # -- the Store interface ------------------------------------------------------------------
    def put(self, source: Source, *, profile: str = DEFAULT_PROFILE, pin: bool = True) -> str:
        """Add a file or stream as UnixFS blocks (Kubo's, for ``profile``); pins the root."""
        stream, close = open_source(source)
        try:
            cid = UnixFSBuilder(profile).add(stream, on_block=self.put_block)
        finally:
            if close:
                stream.close()
        if pin:
            self._write_pin(cid)
        log.info("stored %s (%s)", cid, profile)
        return cid

    def get(self, cid: str) -> ChunkStream:
        """The file's bytes as a stream; each block is verified as it is read (IntegrityError),
        a missing one raises ContentNotFound (at once for the root)."""
        root = parse_cid(cid)
        self.get_block(root)  # fail now, not on first read, for unknown content
        return ChunkStream(iter_file(self.get_block, root))

    def has(self, cid: str) -> bool:
        """True when every block of the DAG is here (leaves are checked for presence only)."""
        root = parse_cid(cid)
        try:
            for _ in walk_blocks(self._get_block_or_presence, root):
                pass
        except ContentNotFound:
            return False
        return True

    def pin(self, cid: str) -> None:
        """Keep ``cid`` and its whole DAG; raises ContentNotFound/IntegrityError if incomplete."""
        root = parse_cid(cid)
        for _ in walk_blocks(self.get_block, root):
            pass
        self._write_pin(cid_to_str(root))

    def pins(self) -> list[str]:
        return sorted(p.name for p in self.pins_dir.iterdir() if not p.name.startswith("."))

    def export_car(self, cid: str, out: BinaryIO) -> int:
        """Write the DAG of ``cid`` as a CAR v1 (root first, depth-first); returns bytes written."""
        root = parse_cid(cid)
        self.get_block(root)
        return write_car([root], walk_blocks(self.get_block, root), out)

    def import_car(self, source: BinaryIO) -> list[str]:
        """Store every block of a CAR v1 (each verified first) and pin its roots."""
        roots, blocks = read_car(source)
        count = 0
        for cid, block in blocks:
            self.put_block(cid, block)
            count += 1
        names = [cid_to_str(r) for r in roots]
        for name in names:
            self.pin(name)
        log.info("imported %d blocks, roots %s", count, names)
        return names

    # -- internals ----------------------------------------------------------------------------
    def _get_block_or_presence(self, cid: bytes) -> bytes:
        # dag-pb nodes must be read to follow their links; raw leaves only need to exist.
        if cid[:2] == b"\x01\x55":
            if not self.has_block(cid):
                raise ContentNotFound(f"block {cid_to_str(cid)} is missing", cid=cid_to_str(cid))
            return b""
        return self.get_block(cid)

    def _write_pin(self, cid: str) -> None:
        (self.pins_dir / cid).touch()
