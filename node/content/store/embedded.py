"""The embedded content store: Kubo's blocks on local disk, no daemon (docs/formats.md §5, §6).

Layout under the root directory (the block layout of Kubo's flatfs, so a person can compare):

    blocks/<XY>/<NAME>.data   one file per block; NAME = base32 (upper, unpadded) of the block's
                              multihash, XY = NAME's next-to-last two characters
    pins/<cid>                one empty file per pinned root (its whole DAG is kept)
    corrupt/<NAME>.data       blocks that failed their CID on read, set aside (evidence)

Blocks are written to a temporary file and renamed into place, so a reader never sees half a
block; every block read is hashed and compared with its CID.

Every block is verified (or computed) before it is written, so a stored block that no longer
hashes to its CID is this disk's fault (bit rot, a file half-written by a crash, a full disk),
never the content's. Such a block is set aside under ``corrupt/`` (which also lets a re-import
write the good one) and:

- with a ``source`` (a ``GatewaySource``: any IPFS gateway answering ``?format=raw``, e.g. a
  peer's ``modex store gateway``; config key ``store_source``), fetched again from it,
  verified, cached and returned; blocks this store lacks are fetched the same way. Bytes the
  source serves that do not hash to the CID raise IntegrityError: that is the network's copy.
  A cache write the disk refuses is logged and the verified bytes are still returned;
- without one (the embedded default: every role of ``modex up``, or several ``modex`` commands
  sharing one data folder, read the same blocks, so there is no other copy to ask),
  LocalStoreError says so and what to do.

A read the disk refuses (permission, I/O error) is treated like a corrupt block. LocalStoreError
is a StoreError, not an IntegrityError: the validator retries it, it never attests on it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from node.content.car import read_car, write_car
from node.content.cid import (
    DEFAULT_PROFILE,
    UnixFSBuilder,
    cid_multihash,
    cid_to_str,
    parse_cid,
    verify_block,
)
from node.content.store.dag import ChunkStream, iter_file, repair_dag, walk_blocks
from node.content.store.source import Source, open_source
from node.errors import ContentNotFound, IntegrityError, LocalStoreError, StoreError

log = logging.getLogger(__name__)


class EmbeddedStore:
    """``EmbeddedStore(root, source=None)``; ``source`` has ``get_block(cid) -> verified bytes``."""

    def __init__(self, root: str | os.PathLike, *, source=None):
        self.root = Path(root)
        self.blocks_dir = self.root / "blocks"
        self.pins_dir = self.root / "pins"
        self.corrupt_dir = self.root / "corrupt"
        self.source = source
        self._shards: set[str] = set()  # block subfolders known to exist (saves a mkdir each)
        try:
            self.blocks_dir.mkdir(parents=True, exist_ok=True)
            self.pins_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store at {self.root}: {exc}", root=str(root)
            ) from None

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r}" + (
            f", source={self.source!r})" if self.source else ")"
        )

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
        self._write_block(path, block)

    def _write_block(self, path: Path, block) -> None:
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
                    view = view[f.write(view) :]
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get_block(self, cid: bytes, *, fetch: bool = True) -> bytes:
        """The verified block: from disk, else (missing or corrupt here) from ``source`` unless
        ``fetch`` is false."""
        path = self.block_path(cid)
        problem = None
        try:
            with open(path, "rb") as f:
                block = f.read()
        except FileNotFoundError:
            pass
        except OSError as exc:
            problem = f"this disk refused to read it ({exc.strerror or exc})"
        else:
            try:
                verify_block(cid, block)
                return block
            except IntegrityError:
                problem = (
                    "its bytes on this disk no longer hash to its CID (bit rot, or a file "
                    "half-written by a crash)"
                ) + self._set_aside(path)
        name = cid_to_str(cid)
        if self.source is None or not fetch:
            if problem is None:
                aside = self.corrupt_dir / path.name
                raise ContentNotFound(
                    f"block {name} is not in the embedded store at {self.root}"
                    + (f" (a corrupt copy was set aside as {aside})" if aside.exists() else ""),
                    cid=name,
                )
            raise LocalStoreError(
                f"block {name} in the embedded store at {self.root}: {problem}. This node's copy "
                "is unusable and the store has no source to fetch it again from: re-import the "
                "content (`modex store import-car FILE`, or publish it again), or set "
                "store_source to an IPFS gateway that holds it",
                cid=name,
                root=str(self.root),
            )
        block = self.source.get_block(cid)  # verified; IntegrityError: the network's copy is bad
        if problem:
            log.warning(
                "block %s in %s: %s; fetched it again from %r",
                name,
                self.root,
                problem,
                self.source,
            )
        try:
            self._write_block(path, block)
        except OSError as exc:
            log.warning(
                "could not keep block %s in the embedded store at %s (%s); using the "
                "verified copy from %r without caching it",
                name,
                self.root,
                exc.strerror or exc,
                self.source,
            )
        return block

    def _set_aside(self, path: Path) -> str:
        """Move a corrupt block file to ``corrupt/``; the text to add to the report."""
        try:
            self.corrupt_dir.mkdir(exist_ok=True)
            os.replace(path, self.corrupt_dir / path.name)
        except OSError as exc:
            return f"; it could not be set aside ({exc.strerror or exc})"
        return f"; set aside as {self.corrupt_dir / path.name}"

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
        except (ContentNotFound, LocalStoreError):
            return False
        return True

    def repair(self, cid: str) -> list[str]:
        """Check every block of ``cid``'s DAG on this disk; a corrupt, unreadable or missing one
        is set aside and fetched again from ``source`` (LocalStoreError or ContentNotFound
        without one). Returns the CIDs of the blocks that were replaced."""

        def on_disk(block_cid: bytes) -> bytes:
            block = self.block_path(block_cid).read_bytes()
            verify_block(block_cid, block)
            return block

        return repair_dag(parse_cid(cid), on_disk, self.get_block)

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
        return self.get_block(cid, fetch=False)

    def _write_pin(self, cid: str) -> None:
        (self.pins_dir / cid).touch()
