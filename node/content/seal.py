"""The sealed archive, version 1 (docs/formats.md §3): AES-256-GCM in a chunked STREAM construction.

    sealed  = header || chunk_0 || ... || chunk_n
    header  = b"MDXSEAL1" || u32be(chunk_size) || nonce_prefix(7) || 5 zero bytes     (24 bytes)
    chunk_i = AESGCM(key).encrypt(prefix || u32be(i) || final, plaintext_i, aad=header)
              final = 0x01 on the last chunk, else 0x00

Every chunk but the last carries exactly chunk_size plaintext bytes; the last carries 1..chunk_size
(an empty plaintext is a single empty final chunk). So truncation, reordering, extension, a
flipped bit or a wrong key all fail authentication: each ends in a SealError saying which.

Memory is flat: AES-GCM writes straight into one reused output buffer (``encrypt_into``/
``decrypt_into``), and :func:`seal_stream` and :class:`UnsealReader` read their input through a
small ring of 8 MiB blocks filled by a background thread, so the kernel's copy of the next
block runs on the second core while this one is sealed (``cryptography`` holds the GIL inside
AES-GCM, so the chunks themselves cannot be spread over threads). A reader cannot know that a
stream is complete before its final chunk authenticates, so :func:`unseal_file` writes to a
temporary file that is renamed into place only then (nothing partial is left behind), and :class:`UnsealReader` raises at the end of a
truncated stream, which :func:`node.content.tarball.extract_tar` turns into "nothing extracted".

Limits of this implementation (not of the format): chunk size 1 B .. 64 MiB.
"""

from __future__ import annotations

import logging
import mmap
import os
import queue
import struct
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.errors import SealError
from node.pipes import ByteReader, ByteWriter, temp_beside

log = logging.getLogger(__name__)

MAGIC = b"MDXSEAL1"
HEADER_SIZE = 24
TAG_SIZE = 16
KEY_SIZE = 32
PREFIX_SIZE = 7
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 1 << 26
_MAX_CHUNKS = 1 << 32
_BLOCK_BYTES = 8 << 20  # read-ahead block (whole chunks); three in flight


def new_key() -> bytes:
    """A fresh random 32-byte content key (one per listing; never reuse, log or publish it)."""
    return os.urandom(KEY_SIZE)


def _aead(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise SealError(
            f"the content key must be {KEY_SIZE} bytes (AES-256), got "
            f"{len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__}"
        )
    return AESGCM(bytes(key))


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealError(f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes, got {chunk_size!r}")


def make_header(chunk_size: int = DEFAULT_CHUNK_SIZE, nonce_prefix: bytes | None = None) -> bytes:
    _check_chunk_size(chunk_size)
    prefix = os.urandom(PREFIX_SIZE) if nonce_prefix is None else bytes(nonce_prefix)
    if len(prefix) != PREFIX_SIZE:
        raise SealError(f"the nonce prefix must be {PREFIX_SIZE} bytes, got {len(prefix)}")
    return MAGIC + struct.pack(">I", chunk_size) + prefix + b"\0" * 5


def parse_header(header: bytes) -> tuple[int, bytes]:
    """Return (chunk_size, nonce_prefix) of a sealed archive's 24-byte header."""
    if len(header) < HEADER_SIZE:
        raise SealError(f"sealed archive truncated: {len(header)} of {HEADER_SIZE} header bytes")
    if header[:8] != MAGIC:
        raise SealError("not a Modex sealed archive (bad magic; expected MDXSEAL1)")
    (chunk_size,) = struct.unpack(">I", header[8:12])
    if header[19:24] != b"\0" * 5:
        raise SealError("sealed archive header has non-zero reserved bytes (unknown version)")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealError(
            f"sealed archive declares chunk size {chunk_size}, outside 1..{MAX_CHUNK_SIZE}"
        )
    return chunk_size, bytes(header[12:19])


def sealed_size(plain_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER_SIZE + plain_size + TAG_SIZE * chunks


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise SealError("too many chunks for one sealed archive (2**32): use a larger chunk size")
    return prefix + struct.pack(">I", index) + (b"\x01" if final else b"\x00")


def _read_full(src: ByteReader, view: memoryview) -> int:
    """Fill ``view`` from ``src`` unless EOF comes first; return the bytes read."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    return got


class _ReadAhead:
    """Reads ``src`` in large blocks on a background thread, a few blocks ahead of the consumer.

    A read from a file, pipe or socket runs with the GIL released, so the kernel's copy overlaps
    with AES-GCM on the consumer's thread (on one core the thread just reads first). Blocks are
    anonymous mmaps: nothing is touched (or counted in RSS) until data lands in it, so a small
    stream costs no more than its own size.
    """

    def __init__(self, src: ByteReader, block_size: int, count: int):
        self._src = src
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._full: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(memoryview(mmap.mmap(-1, block_size)))
        self._reading = threading.Event()  # set when the thread is in a read (or has ended)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="modex-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                buf = self._free.get()
                if buf is None:
                    return
                self._reading.set()
                n = _read_full(self._src, buf)
                self._full.put((buf, n, None))
                if n < len(buf):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, in order, by next()
            self._full.put((None, 0, exc))
        finally:
            self._reading.set()

    def next(self) -> tuple[memoryview, int]:
        buf, n, exc = self._full.get()
        if exc is not None:
            raise exc
        return buf, n

    def release(self, buf: memoryview) -> None:
        """Hand a consumed block back; if no block is ready, let the thread start its next read.

        The consumer holds the GIL while it computes, and a thread that finished a read would
        wait up to the switch interval (5 ms) for it: waiting here until the read has begun
        costs a thread switch and keeps a read running beside every block's computation.
        """
        waiting = self._full.empty() and self._thread.is_alive()
        if waiting:
            self._reading.clear()
        self._free.put(buf)
        if waiting:
            self._reading.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._free.put(None)  # wakes the thread if it waits for a buffer; it then ends


def _records(src: ByteReader, record: int) -> Generator[tuple[memoryview, bool], None, None]:
    """Yield (record bytes, final) over ``src``, cut every ``record`` bytes: the last is ``final``.

    An empty ``src`` gives one empty final record. A full record is final only when nothing
    follows it, which the read-ahead of the next block tells. Each view is valid until the next
    one is asked for.
    """
    per_block = max(1, _BLOCK_BYTES // record)
    ra = _ReadAhead(src, record * per_block, 3 if per_block > 1 else 2)
    try:
        buf, n = ra.next()
        while True:
            nxt, more = ra.next() if n == len(buf) else (None, 0)
            for off in range(0, max(n, 1), record):
                end = min(off + record, n)
                yield buf[off:end], end == n and more == 0
            ra.release(buf)
            if not more:
                return
            assert nxt is not None  # read ahead whenever a full block came
            buf, n = nxt, more
    finally:
        ra.close()


class SealWriter:
    """A writable stream that seals what is written to it into ``dst``.

    ``close()`` (or leaving a ``with`` block normally) writes the final chunk; an exception in
    the ``with`` block leaves the archive without one, so it can never pass as complete.
    """

    def __init__(
        self,
        dst: ByteWriter,
        key: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        nonce_prefix: bytes | None = None,
    ):
        self._aead = _aead(key)
        self.header = make_header(chunk_size, nonce_prefix)
        self._prefix = self.header[12:19]
        self._chunk = chunk_size
        self._dst = dst
        self._buf = bytearray(chunk_size)
        self._view = memoryview(self._buf)
        self._have = 0
        self._out = memoryview(bytearray(chunk_size + TAG_SIZE))
        self._index = 0
        self._closed = False
        self.bytes_in = 0
        self.bytes_out = HEADER_SIZE
        dst.write(self.header)

    def _emit(self, plain: memoryview, final: bool) -> None:
        out = self._out[: len(plain) + TAG_SIZE]
        self._aead.encrypt_into(_nonce(self._prefix, self._index, final), plain, self.header, out)
        self._dst.write(out)
        self._index += 1
        self.bytes_out += len(out)

    def write(self, data) -> int:
        if self._closed:
            raise SealError("write to a closed SealWriter")
        view = memoryview(data).cast("B")
        total = len(view)
        self.bytes_in += total
        while view:
            if self._have == self._chunk:
                self._emit(self._view, final=False)  # more data follows, so not the last
                self._have = 0
            if self._have == 0 and len(view) > self._chunk:
                self._emit(view[: self._chunk], final=False)  # no copy for whole chunks
                view = view[self._chunk :]
                continue
            n = min(len(view), self._chunk - self._have)
            self._view[self._have : self._have + n] = view[:n]
            self._have += n
            view = view[n:]
        return total

    def close(self) -> None:
        if not self._closed:
            self._emit(self._view[: self._have], final=True)
            self._closed = True

    def writable(self) -> bool:
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True


def seal_stream(
    key: bytes,
    src: ByteReader,
    dst: ByteWriter,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
) -> int:
    """Seal everything read from ``src`` into ``dst``; return the sealed bytes written.

    ``src`` is read ahead in large blocks on a second thread, so reading overlaps sealing.
    """
    aead = _aead(key)
    header = make_header(chunk_size, nonce_prefix)
    prefix = header[12:19]
    dst.write(header)
    out = memoryview(bytearray(chunk_size + TAG_SIZE))
    written = HEADER_SIZE
    for index, (plain, final) in enumerate(_records(src, chunk_size)):
        n = len(plain) + TAG_SIZE
        aead.encrypt_into(_nonce(prefix, index, final), plain, header, out[:n])
        dst.write(out[:n])
        written += n
    return written


class UnsealReader:
    """A readable stream of the plaintext of a sealed archive read from ``src``.

    Every byte it returns has been authenticated; reaching the end raises SealError if the
    archive was truncated or extended, so a consumer must read to EOF before trusting the whole.
    """

    def __init__(self, src: ByteReader, key: bytes):
        self._aead = _aead(key)
        self._src = src
        header = bytearray(HEADER_SIZE)
        got = _read_full(src, memoryview(header))
        self.header = bytes(header)
        if got < HEADER_SIZE:
            parse_header(self.header[:got])
        self.chunk_size, self._prefix = parse_header(self.header)
        # started on the first read: the read-ahead thread begins then
        self._records: Generator[tuple[memoryview, bool], None, None] | None = None
        self._plain = memoryview(bytearray(self.chunk_size))
        self._pos = 0
        self._end = 0
        self._index = 0
        self._done = False
        self._failed: SealError | None = None
        self.bytes_out = 0

    def _next_chunk(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._records is None:
            self._records = _records(self._src, self.chunk_size + TAG_SIZE)
        sealed, final = next(self._records)
        n = len(sealed)
        where = f"chunk {self._index}"
        try:
            if n < TAG_SIZE or (final and n == TAG_SIZE and self._index > 0):
                raise SealError(f"sealed archive truncated at {where}: the download is incomplete")
            try:
                self._aead.decrypt_into(
                    _nonce(self._prefix, self._index, final),
                    sealed,
                    self.header,
                    self._plain[: n - TAG_SIZE],
                )
            except InvalidTag:
                raise SealError(
                    f"sealed archive fails authentication at {where}: wrong key, or the archive "
                    "is corrupt, truncated, reordered or extended",
                    chunk=self._index,
                ) from None
        except SealError as exc:
            self._failed = exc
            self._stop_reading()
            raise
        self._pos, self._end = 0, n - TAG_SIZE
        self.bytes_out += self._end
        self._index += 1
        if final:
            self._done = True
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self._records is not None:
            self._records.close()  # its `finally` ends the read-ahead thread

    def close(self) -> None:
        """Stop reading (``src`` stays open: it is the caller's); later reads raise."""
        if not self._done and self._failed is None:
            self._failed = SealError("read from a closed UnsealReader")
        self._stop_reading()

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        while self._pos == self._end:
            if self._done:
                return 0
            self._next_chunk()
        n = min(len(view), self._end - self._pos)
        view[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(self.chunk_size):
                parts.append(chunk)
            return b"".join(parts)
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def readable(self) -> bool:
        return True


def unseal_stream(key: bytes, src: ByteReader, dst: ByteWriter) -> int:
    """Unseal ``src`` into ``dst``; return the plaintext bytes written.

    ``dst`` receives each chunk once it authenticates; if the archive turns out truncated at
    the end, SealError is raised after earlier chunks were written: write to a temporary
    destination (see :func:`unseal_file`) when partial output must not be kept.
    """
    reader = UnsealReader(src, key)
    while not reader._done:
        reader._next_chunk()
        dst.write(reader._plain[: reader._end])
    return reader.bytes_out


def _atomic_output(out_path: Path, work) -> int:
    out_path = Path(out_path)
    fd, tmp = temp_beside(out_path, SealError, prefix=f".{out_path.name}.", suffix=".partial")
    try:
        with open(fd, "wb") as dst:
            result = work(dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        os.unlink(tmp)
        raise
    return result


def seal_file(
    key: bytes,
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    nonce_prefix: bytes | None = None,
) -> int:
    """Seal a file into ``out_path`` (written to a temporary file, renamed when complete)."""
    with open(in_path, "rb", buffering=0) as src:
        return _atomic_output(
            Path(out_path),
            lambda dst: seal_stream(
                key, src, dst, chunk_size=chunk_size, nonce_prefix=nonce_prefix
            ),
        )


def unseal_file(key: bytes, in_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Unseal a file into ``out_path``; nothing appears there unless every chunk authenticates."""
    with open(in_path, "rb", buffering=0) as src:
        return _atomic_output(Path(out_path), lambda dst: unseal_stream(key, src, dst))
