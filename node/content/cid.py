"""UnixFS CIDs computed exactly as Kubo computes them (docs/formats.md §5), streaming.

A file is cut into fixed-size chunks; each chunk becomes a leaf block (a raw block, or for CIDv0 a
dag-pb node wrapping a UnixFS ``File`` message); leaves are gathered into dag-pb parent nodes of at
most ``max_links`` children, level by level, in Kubo's *balanced* layout: every subtree is filled
left to right before the next one starts, a single-chunk file is its own root, and an empty file
is one empty leaf. The result is byte-identical to ``ipfs add`` (and to the npm
``ipfs-unixfs-importer`` under the same options), which the tests check against both.

Encodings written by hand here (a few lines each):
  UnixFS ``Data``:  1: Type (varint, File = 2)  2: Data (bytes)  3: filesize  4: blocksizes (repeated)
  dag-pb ``PBNode``: Links (field 2, each {1: Hash, 2: Name = "", 3: Tsize}) first, then Data (1).
CIDs: sha2-256 multihash; CIDv1 strings in base32 (``b…``), CIDv0 in base58btc (``Qm…``).
``multiformats`` parses CIDs in any base; the hot path builds binary CIDs directly (it is ~100×
faster than constructing ``multiformats.CID`` objects per block).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from multiformats import CID

from node.errors import ConfigError, DecodeError, IntegrityError, StoreError

log = logging.getLogger(__name__)

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12


@dataclass(frozen=True)
class Profile:
    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    max_links: int

    @property
    def chunker(self) -> str:
        """Kubo's ``chunker`` argument for this profile."""
        return f"size-{self.chunk_size}"


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("unixfs-v1-2025", 1, True, 1 << 20, 1024),
        Profile("kubo-v1", 1, True, 256 << 10, 174),
        Profile("kubo-v0", 0, False, 256 << 10, 174),
    )
}
DEFAULT_PROFILE = "unixfs-v1-2025"

# on_block(cid: bytes, block: bytes-like); the block may be a view into a reused buffer, so a
# callback that keeps it must copy it before returning.
BlockCallback = Callable[[bytes, "bytes | memoryview"], None]


def get_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ConfigError(
            f"unknown CID profile {profile!r}: use one of {', '.join(PROFILES)}",
            key="cid_profile",
        ) from None


# -- binary CIDs and their strings -------------------------------------------------------------


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def make_cid(version: int, codec: int, digest: bytes) -> bytes:
    """Binary CID for a sha2-256 digest (CIDv0 is the bare multihash and implies dag-pb)."""
    mh = b"\x12\x20" + digest
    if version == 0:
        return mh
    return b"\x01" + uvarint(codec) + mh


def cid_to_str(cid: bytes) -> str:
    if len(cid) == 34 and cid[0] == SHA2_256:
        return str(CID.decode(cid))  # CIDv0: base58btc "Qm…"
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


def parse_cid(text: str) -> bytes:
    """A CID string in any multibase → binary CID; StoreError for anything that is not one."""
    if not isinstance(text, str) or not text.strip():
        raise StoreError(f"not a CID: {text!r}", cid=text, reason="malformed")
    try:
        cid = CID.decode(text.strip())
    except Exception as exc:  # noqa: BLE001 (multiformats raises several unrelated types)
        raise StoreError(f"not a CID: {text!r} ({exc})", cid=text, reason="malformed") from None
    if cid.hashfun.code != SHA2_256 or len(cid.raw_digest) != 32:
        raise StoreError(
            f"unsupported CID {text}: only sha2-256 content is stored here",
            cid=text,
            reason="malformed",
        )
    if cid.codec.code not in (RAW, DAG_PB):
        raise StoreError(
            f"unsupported CID {text}: codec {cid.codec.name} is not a UnixFS file block",
            cid=text,
            reason="malformed",
        )
    return bytes(cid)


def normalize_cid(text: str) -> str:
    """Canonical string: CIDv0 stays base58 ``Qm…``; CIDv1 becomes base32 ``b…`` (js-ipfs prints
    base58btc ``z…``)."""
    return cid_to_str(parse_cid(text))


def cid_codec(cid: bytes) -> int:
    if len(cid) == 34 and cid[0] == SHA2_256:
        return DAG_PB
    return cid[1]  # raw (0x55) and dag-pb (0x70) are one-byte varints


def cid_multihash(cid: bytes) -> bytes:
    return cid[-34:]


def verify_block(cid: bytes, block: bytes | memoryview) -> None:
    """Raise IntegrityError unless ``block`` hashes to ``cid``."""
    if hashlib.sha256(block).digest() != cid[-32:]:
        raise IntegrityError(
            f"block {cid_to_str(cid)} is corrupt: its bytes do not hash to its CID",
            cid=cid_to_str(cid),
        )


# -- protobuf pieces ---------------------------------------------------------------------------


def _field_bytes(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + uvarint(len(data)) + data


def _unixfs_leaf_parts(size: int) -> tuple[bytes, bytes]:
    """Prefix and suffix of a dag-pb leaf block around ``size`` bytes of file data."""
    data_msg_len = 2 + (1 + len(uvarint(size)) + size if size else 0) + 1 + len(uvarint(size))
    prefix = b"\x0a" + uvarint(data_msg_len) + b"\x08\x02"
    if size:
        prefix += b"\x12" + uvarint(size)
    return prefix, b"\x18" + uvarint(size)


def _parent_block(links: list[tuple[bytes, int, int]]) -> tuple[bytes, int, int]:
    """dag-pb File node over (cid, tsize, filesize) children → (block, tsize, filesize)."""
    filesize = sum(f for _, _, f in links)
    data = b"\x08\x02\x18" + uvarint(filesize) + b"".join(b"\x20" + uvarint(f) for _, _, f in links)
    parts = [
        _field_bytes(0x12, _field_bytes(0x0A, c) + b"\x12\x00\x18" + uvarint(t))
        for c, t, _ in links
    ]
    parts.append(_field_bytes(0x0A, data))
    block = b"".join(parts)
    return block, len(block) + sum(t for _, t, _ in links), filesize


def read_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` (short reads from pipes and sockets are retried)."""
    got = 0
    want = len(view)
    readinto = getattr(stream, "readinto", None)
    while got < want:
        if readinto is not None:
            n = readinto(view[got:])
        else:
            data = stream.read(want - got)
            n = len(data) if data else 0
            view[got : got + n] = data if data else b""
        if not n:
            break
        got += n
    return got


# -- the builder -------------------------------------------------------------------------------


class UnixFSBuilder:
    """Build a file's UnixFS DAG from bytes, emitting every block once, in order (children
    before parents; the root last).

    Pull style: ``add(stream, on_block=cb) -> root CID string``. Push style (for bytes that pass
    through, e.g. an HTTP upload): ``write(data)`` any number of times, then ``finish()``.
    Memory: one chunk buffer plus the pending links (~40 bytes per child), whatever the size.
    """

    def __init__(
        self, profile: str | Profile = DEFAULT_PROFILE, on_block: BlockCallback | None = None
    ):
        self.profile = get_profile(profile)
        self.on_block = on_block
        self.root: bytes | None = None
        self.size = 0
        self.blocks = 0
        # _levels[k] holds (cid, tsize, filesize) of finished nodes at height k awaiting a parent.
        self._levels: list[list[tuple[bytes, int, int]]] = [[]]
        self._leaves = 0
        self._chunk: memoryview | None = None  # push style: one reused chunk buffer
        self._fill = 0

    # -- pull ---------------------------------------------------------------------------------
    def add(self, stream: BinaryIO, on_block: BlockCallback | None = None) -> str:
        if on_block is not None:
            self.on_block = on_block
        view = memoryview(bytearray(self.profile.chunk_size))
        while True:
            n = read_full(stream, view)
            if n:
                self._leaf(view[:n])
            if n < len(view):
                return self.finish()

    # -- push ---------------------------------------------------------------------------------
    def write(self, data) -> None:
        """Add bytes; whole chunks are hashed in place, the rest gathered in one reused buffer
        (no allocation per chunk: writes that straddle chunk boundaries, like a sealed
        stream's 1 MiB + 16 chunks, stay at memcpy speed)."""
        view = memoryview(data).cast("B")
        size = self.profile.chunk_size
        while view:
            if not self._fill and len(view) >= size:
                self._leaf(view[:size])
                view = view[size:]
                continue
            if self._chunk is None:
                self._chunk = memoryview(bytearray(size))
            n = min(size - self._fill, len(view))
            self._chunk[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == size:
                self._leaf(self._chunk)
                self._fill = 0

    def finish(self) -> str:
        if self._fill or not self._leaves:  # the tail chunk, or the empty file's one leaf
            self._leaf(self._chunk[: self._fill] if self._chunk is not None else memoryview(b""))
            self._fill = 0
        levels = self._levels
        # Close the partial nodes bottom-up; the single entry left on the top level is the root.
        level = 0
        while not (level == len(levels) - 1 and len(levels[level]) == 1):
            if levels[level]:
                entry = self._close(levels[level])
                levels[level] = []
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(entry)
            level += 1
        self.root = levels[-1][0][0]
        return cid_to_str(self.root)

    # -- internals ----------------------------------------------------------------------------
    def _emit(self, cid: bytes, block) -> None:
        self.blocks += 1
        if self.on_block is not None:
            self.on_block(cid, block)

    def _leaf(self, chunk: memoryview) -> None:
        n = len(chunk)
        self.size += n
        self._leaves += 1
        if self.profile.raw_leaves:
            cid = make_cid(1, RAW, hashlib.sha256(chunk).digest())
            self._emit(cid, chunk)
            self._push((cid, n, n))
            return
        prefix, suffix = _unixfs_leaf_parts(n)
        if self.on_block is not None:
            block = b"".join((prefix, chunk, suffix))
            digest = hashlib.sha256(block).digest()
        else:  # hash the pieces in place: no copy of the chunk
            h = hashlib.sha256(prefix)
            h.update(chunk)
            h.update(suffix)
            digest = h.digest()
            block = None
        cid = make_cid(self.profile.cid_version, DAG_PB, digest)
        self._emit(cid, block)
        self._push((cid, len(prefix) + n + len(suffix), n))

    def _push(self, entry: tuple[bytes, int, int]) -> None:
        # Kubo's balanced layout: a node is closed as soon as it holds max_links children.
        levels, level = self._levels, 0
        while True:
            if level == len(levels):
                levels.append([])
            levels[level].append(entry)
            if len(levels[level]) < self.profile.max_links:
                return
            entry = self._close(levels[level])
            levels[level] = []
            level += 1

    def _close(self, links) -> tuple[bytes, int, int]:
        block, tsize, filesize = _parent_block(links)
        cid = make_cid(self.profile.cid_version, DAG_PB, hashlib.sha256(block).digest())
        self._emit(cid, block)
        return cid, tsize, filesize


def cid_of_stream(stream: BinaryIO, profile: str | Profile = DEFAULT_PROFILE) -> str:
    """The CID ``ipfs add`` would give these bytes under ``profile`` (nothing is stored)."""
    return UnixFSBuilder(profile).add(stream)


def cid_of_file(path: str | os.PathLike, profile: str | Profile = DEFAULT_PROFILE) -> str:
    with open(path, "rb", buffering=0) as f:
        return cid_of_stream(f, profile)


# -- reading dag-pb UnixFS nodes back (for get / export) ---------------------------------------


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def _fields(buf):
    """Yield (field number, wire type, value) of a protobuf message (varint and bytes only)."""
    pos = 0
    while pos < len(buf):
        key, pos = read_uvarint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = read_uvarint(buf, pos)
        elif wire == 2:
            length, pos = read_uvarint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("truncated field")
            value = bytes(buf[pos : pos + length])
            pos += length
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        yield field, wire, value


@dataclass
class FileNode:
    """A decoded dag-pb UnixFS file node: inline data and child CIDs (binary)."""

    data: bytes
    links: list[bytes]
    filesize: int


def decode_file_node(block: bytes, cid: bytes | None = None) -> FileNode:
    """Decode a dag-pb block holding a UnixFS file (or raw-type) node; IntegrityError otherwise."""
    try:
        links: list[bytes] = []
        data_msg = b""
        for field, wire, value in _fields(block):
            if field == 2 and wire == 2:
                link_cid = next((v for f, w, v in _fields(value) if f == 1 and w == 2), None)
                if link_cid is None:
                    raise DecodeError("link without a hash")
                links.append(link_cid)
            elif field == 1 and wire == 2:
                data_msg = value
        kind, data, filesize = None, b"", None
        for field, wire, value in _fields(data_msg):
            if field == 1 and wire == 0:
                kind = value
            elif field == 2 and wire == 2:
                data = value
            elif field == 3 and wire == 0:
                filesize = value
        if kind not in (0, 2):  # Raw or File; directories and the rest are not model content
            raise DecodeError(f"UnixFS node type {kind} is not a file")
    except ValueError as exc:
        name = cid_to_str(cid) if cid else "block"
        raise IntegrityError(f"{name} is not a UnixFS file node: {exc}", cid=name) from None
    return FileNode(data, links, filesize if filesize is not None else len(data))
