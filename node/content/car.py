"""CAR v1 (Content Addressable aRchive) files: how content moves between IPFS nodes and pinning
services (`ipfs dag export` / `dag import`).

    car     = varint(len(header)) header  ( varint(len(cid) + len(block)) cid block )*
    header  = dag-cbor {"roots": [CID, ...], "version": 1}   (CID = tag 42, bytes 0x00 || cid)

Writing is streaming; reading yields (cid, block) one at a time and verifies each block against
its CID before handing it out (IntegrityError naming the CID).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from node.content.cid import SHA2_256, cid_to_str, read_uvarint, uvarint, verify_block
from node.errors import DecodeError, InputError, IntegrityError, StoreError

log = logging.getLogger(__name__)

# Kubo refuses blocks over 2 MiB on the network; 1 MiB chunks fit. A larger section in a CAR is
# either not ours or a corrupt length prefix: refuse it before allocating it.
MAX_SECTION = 4 << 20
MAX_HEADER = 1 << 16


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes((major << 5 | info,)) + n.to_bytes(width, "big")
    raise InputError("integer too large for CBOR")


def encode_header(roots: list[bytes]) -> bytes:
    """dag-cbor header; map keys in dag-cbor order (shorter first: "roots", "version")."""
    out = bytearray(_cbor_head(5, 2))
    out += _cbor_head(3, 5) + b"roots" + _cbor_head(4, len(roots))
    for cid in roots:
        out += b"\xd8\x2a" + _cbor_head(2, len(cid) + 1) + b"\x00" + cid
    out += _cbor_head(3, 7) + b"version" + _cbor_head(0, 1)
    return bytes(out)


def write_car(roots: list[bytes], blocks: Iterable[tuple[bytes, bytes]], out: BinaryIO) -> int:
    """Write a CAR v1 with ``roots`` (binary CIDs) and the (cid, block) pairs; returns bytes written."""
    header = encode_header(roots)
    written = out.write(uvarint(len(header)) + header)
    for cid, block in blocks:
        written += out.write(uvarint(len(cid) + len(block)) + cid)
        written += out.write(block)
    return written


# -- reading -----------------------------------------------------------------------------------


def _read_uvarint(stream: BinaryIO) -> int | None:
    """A varint from the stream; None at a clean end of stream."""
    shift = result = 0
    while True:
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise IntegrityError("CAR file truncated inside a length prefix")
        result |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            raise IntegrityError("CAR file has a malformed length prefix")


class _Cbor:
    """Just enough dag-cbor to read a CAR header."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def item(self):
        if self.pos >= len(self.data):
            raise DecodeError("truncated")
        first = self.data[self.pos]
        self.pos += 1
        major, info = first >> 5, first & 31
        if major == 7:
            return {20: False, 21: True, 22: None}.get(info)
        if info < 24:
            n = info
        elif info <= 27:
            width = 1 << (info - 24)
            n = int.from_bytes(self.data[self.pos : self.pos + width], "big")
            self.pos += width
        else:
            raise DecodeError("indefinite lengths are not dag-cbor")
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            raw = self.data[self.pos : self.pos + n]
            if len(raw) != n:
                raise DecodeError("truncated")
            self.pos += n
            return bytes(raw) if major == 2 else raw.decode("utf-8")
        if major == 4:
            return [self.item() for _ in range(n)]
        if major == 5:
            return {self.item(): self.item() for _ in range(n)}
        value = self.item()  # major 6: a tag; 42 is a CID
        if n == 42 and isinstance(value, bytes) and value[:1] == b"\x00":
            return ("cid", value[1:])
        return value


def _read_cid(section: bytes) -> tuple[bytes, int]:
    """Split a section's leading CID; returns (cid, its length)."""
    if section[:2] == b"\x12\x20":
        return section[:34], 34
    pos, values = 0, []
    try:
        for _ in range(4):  # version, codec, hash code, digest length
            value, pos = read_uvarint(section, pos)
            values.append(value)
    except ValueError:
        raise IntegrityError("CAR section truncated inside a CID") from None
    version, _codec, hash_code, digest_len = values
    if version != 1:
        raise IntegrityError(f"CAR section holds a CID of unknown version {version}")
    end = pos + digest_len
    if hash_code != SHA2_256 or digest_len != 32:
        raise StoreError(
            "CAR holds a block hashed with multihash code "
            f"0x{hash_code:x}: only sha2-256 content is stored here"
        )
    return section[:end], end


def read_header(stream: BinaryIO) -> list[bytes]:
    n = _read_uvarint(stream)
    if n is None or n == 0 or n > MAX_HEADER:
        raise IntegrityError("not a CAR v1 file: missing or oversized header")
    raw = stream.read(n)
    if len(raw) != n:
        raise IntegrityError("CAR file truncated inside its header")
    try:
        header = _Cbor(raw).item()
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(f"not a CAR v1 file: bad header ({exc})") from None
    if not isinstance(header, dict) or header.get("version") != 1:
        raise IntegrityError(f"not a CAR v1 file: header {header!r}")
    roots = header.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, tuple) for r in roots):
        raise IntegrityError("not a CAR v1 file: header has no list of root CIDs")
    return [r[1] for r in roots]


def read_blocks(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """Yield verified (cid, block) pairs after the header, to the end of the stream."""
    while True:
        n = _read_uvarint(stream)
        if n is None:
            return
        if n > MAX_SECTION:
            raise IntegrityError(f"CAR section of {n} bytes exceeds the {MAX_SECTION}-byte limit")
        section = stream.read(n)
        if len(section) != n:
            raise IntegrityError("CAR file truncated inside a block")
        cid, cid_len = _read_cid(section)
        block = section[cid_len:]
        verify_block(cid, block)
        yield cid, block


def read_car(stream: BinaryIO) -> tuple[list[bytes], Iterator[tuple[bytes, bytes]]]:
    """(roots, verified block iterator) of a CAR v1 stream."""
    roots = read_header(stream)
    log.debug("CAR roots: %s", [cid_to_str(r) for r in roots])
    return roots, read_blocks(stream)
