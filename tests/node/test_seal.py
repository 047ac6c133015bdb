"""MDXSEAL1 sealed archives (docs/formats.md §3): known answers, round trips, every failure mode."""

import hashlib
import io
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from node.content.seal import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    SealWriter,
    UnsealReader,
    make_header,
    seal_file,
    seal_stream,
    sealed_size,
    unseal_file,
    unseal_stream,
)
from node.errors import SealError

KEY = bytes(range(32))
PREFIX = bytes.fromhex("a1a2a3a4a5a6a7")
SMALL = 64


def seal(data, chunk=SMALL, key=KEY, prefix=PREFIX):
    out = io.BytesIO()
    n = seal_stream(key, io.BytesIO(data), out, chunk_size=chunk, nonce_prefix=prefix)
    assert n == len(out.getvalue()) == sealed_size(len(data), chunk)
    return out.getvalue()


def unseal(blob, key=KEY):
    out = io.BytesIO()
    n = unseal_stream(key, io.BytesIO(blob), out)
    assert n == len(out.getvalue())
    return out.getvalue()


def reference_seal(key, data, chunk, prefix):
    """The format written out from the design page with plain AESGCM.encrypt, for comparison."""
    header = b"MDXSEAL1" + struct.pack(">I", chunk) + prefix + bytes(5)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    out = [header]
    for i, piece in enumerate(pieces):
        nonce = prefix + struct.pack(">I", i) + (b"\x01" if i == len(pieces) - 1 else b"\x00")
        out.append(AESGCM(key).encrypt(nonce, piece, header))
    return b"".join(out)


def test_known_answer_header_and_chunks():
    blob = seal(b"hello modex", chunk=4)
    assert blob[:HEADER_SIZE] == bytes.fromhex("4d44585345414c3100000004a1a2a3a4a5a6a70000000000")
    assert blob == reference_seal(KEY, b"hello modex", 4, PREFIX)
    # Frozen known answer (sha256 of the sealed bytes): any format change shows up here.
    assert hashlib.sha256(blob).hexdigest() == (
        "5ff8131dc307c783f23825ba78974b62343ea2ca6adc17250d53767ab04f71e6"
    )


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 5 * SMALL, 5 * SMALL + 7])
def test_round_trip_small_chunks(size):
    data = os.urandom(size)
    blob = seal(data)
    assert blob == reference_seal(KEY, data, SMALL, PREFIX)
    assert unseal(blob) == data
    assert UnsealReader(io.BytesIO(blob), KEY).read() == data


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        DEFAULT_CHUNK_SIZE - 1,
        DEFAULT_CHUNK_SIZE,
        DEFAULT_CHUNK_SIZE + 1,
        3 * DEFAULT_CHUNK_SIZE + 5,
    ],
)
def test_round_trip_default_chunk(size):
    data = os.urandom(size)
    blob = seal(data, chunk=DEFAULT_CHUNK_SIZE)
    assert unseal(blob) == data


@pytest.mark.parametrize(
    "pieces",
    [
        [],
        [b""],
        [b"a" * 64],
        [b"a" * 63, b"b"],
        [b"x" * 200],
        [b"x" * 10] * 30,
        [b"x" * 64, b"", b"y" * 64],
    ],
)
def test_seal_writer_equals_seal_stream(pieces):
    data = b"".join(pieces)
    out = io.BytesIO()
    with SealWriter(out, KEY, chunk_size=SMALL, nonce_prefix=PREFIX) as w:
        for p in pieces:
            w.write(p)
    assert out.getvalue() == seal(data)


def test_seal_writer_without_close_is_not_a_valid_archive():
    out = io.BytesIO()
    with (
        pytest.raises(RuntimeError),
        SealWriter(out, KEY, chunk_size=SMALL, nonce_prefix=PREFIX) as w,
    ):
        w.write(b"z" * 100)
        raise RuntimeError("producer failed")
    with pytest.raises(SealError, match="truncated|authentication"):
        unseal(out.getvalue())


def test_random_prefix_differs_each_time():
    a, b = io.BytesIO(), io.BytesIO()
    seal_stream(KEY, io.BytesIO(b"same"), a)
    seal_stream(KEY, io.BytesIO(b"same"), b)
    assert a.getvalue()[12:19] != b.getvalue()[12:19]


DATA = bytes(range(256)) * 2  # 8 chunks of 64


@pytest.fixture
def blob():
    return seal(DATA)


def chunks_of(blob):
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + SMALL + 16] for i in range(0, len(body), SMALL + 16)]


def test_wrong_key(blob):
    with pytest.raises(SealError, match="chunk 0.*wrong key"):
        unseal(blob, key=bytes(32))


def test_bad_magic_and_reserved(blob):
    with pytest.raises(SealError, match="bad magic"):
        unseal(b"MDXSEAL2" + blob[8:])
    with pytest.raises(SealError, match="reserved"):
        unseal(blob[:23] + b"\x01" + blob[24:])


def test_header_fields_are_authenticated(blob):
    # Another chunk size or prefix in the header changes the AAD/nonce: authentication fails.
    with pytest.raises(SealError):
        unseal(blob[:11] + b"\x41" + blob[12:])
    with pytest.raises(SealError):
        unseal(blob[:12] + b"\x00" + blob[13:])


@pytest.mark.parametrize("pos", [HEADER_SIZE, HEADER_SIZE + 70, -1, -17])
def test_flipped_bit(blob, pos):
    b = bytearray(blob)
    b[pos] ^= 0x04
    with pytest.raises(SealError, match="authentication"):
        unseal(bytes(b))


def test_truncations(blob):
    header, chunks = chunks_of(blob)
    with pytest.raises(SealError, match="truncated"):
        unseal(blob[:10])
    with pytest.raises(SealError, match="truncated"):
        unseal(header)  # no chunk at all
    for cut in (1, 16, SMALL + 16, 3 * (SMALL + 16)):
        with pytest.raises(SealError):
            unseal(blob[:-cut])
    # Dropping whole trailing chunks: the new last chunk is not marked final.
    with pytest.raises(SealError, match="authentication"):
        unseal(header + b"".join(chunks[:-1]))


def test_reordered_and_duplicated_chunks(blob):
    header, chunks = chunks_of(blob)
    swapped = chunks[:]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(SealError, match="chunk 1"):
        unseal(header + b"".join(swapped))
    with pytest.raises(SealError):
        unseal(header + b"".join(chunks[:2] + chunks[1:]))


def test_extended_and_trailing_data(blob):
    _header, chunks = chunks_of(blob)
    with pytest.raises(SealError):
        unseal(blob + chunks[-1])
    with pytest.raises(SealError):
        unseal(blob + b"\0")
    # Two archives concatenated are not one archive.
    with pytest.raises(SealError):
        unseal(blob + blob)


def test_empty_final_chunk_only_for_empty_plaintext():
    header = make_header(SMALL, PREFIX)
    aead = AESGCM(KEY)
    full = aead.encrypt(PREFIX + struct.pack(">I", 0) + b"\0", b"q" * SMALL, header)
    empty_final = aead.encrypt(PREFIX + struct.pack(">I", 1) + b"\1", b"", header)
    with pytest.raises(SealError, match="truncated at chunk 1"):
        unseal(header + full + empty_final)
    assert unseal(seal(b"")) == b""


def test_bad_parameters():
    with pytest.raises(SealError, match="32 bytes"):
        seal(b"x", key=b"short")
    with pytest.raises(SealError, match="chunk size"):
        seal(b"x", chunk=0)
    with pytest.raises(SealError, match="nonce prefix"):
        seal(b"x", prefix=b"123")
    huge = b"MDXSEAL1" + struct.pack(">I", 1 << 31) + PREFIX + bytes(5)
    with pytest.raises(SealError, match="chunk size"):
        unseal(huge + b"\0" * 32)


def test_unseal_file_leaves_nothing_on_failure(tmp_path, blob):
    good, bad = tmp_path / "good.sealed", tmp_path / "bad.sealed"
    good.write_bytes(blob)
    bad.write_bytes(blob[:-1])
    assert unseal_file(KEY, good, tmp_path / "out") == len(DATA)
    assert (tmp_path / "out").read_bytes() == DATA
    with pytest.raises(SealError):
        unseal_file(KEY, bad, tmp_path / "out2")
    with pytest.raises(SealError):
        unseal_file(bytes(32), good, tmp_path / "out3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.sealed", "good.sealed", "out"]


def test_seal_file_round_trip(tmp_path):
    src = tmp_path / "plain"
    src.write_bytes(os.urandom(3 * SMALL + 1))
    seal_file(KEY, src, tmp_path / "s", chunk_size=SMALL)
    unseal_file(KEY, tmp_path / "s", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


@pytest.mark.slow
def test_one_gigabyte_streams_in_flat_memory(tmp_path):
    """1 GiB sparse-ish file → seal → unseal in a subprocess; peak RSS stays under 200 MB.

    The peak is VmHWM of /proc/self/status, the high-water mark of the subprocess's own memory.
    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's high-water mark over
    exec into the child's ru_maxrss, so after earlier tests had grown the pytest process to
    ~480 MB the child "peaked" at that even though it never used it.
    """
    script = textwrap.dedent(
        """
        import hashlib, os, sys
        from node.content.seal import seal_stream, unseal_stream
        d = sys.argv[1]; src = os.path.join(d, "big"); size = 1 << 30
        with open(src, "wb") as f:            # sparse, with real data every 64 MiB
            for off in range(0, size, 64 << 20):
                f.seek(off); f.write(os.urandom(1 << 20))
            f.truncate(size)
        key = os.urandom(32)
        with open(src, "rb", buffering=0) as i, open(src + ".sealed", "wb") as o:
            seal_stream(key, i, o)
        class HashSink:
            def __init__(self): self.h = hashlib.sha256(); self.n = 0
            def write(self, b): self.h.update(b); self.n += len(b); return len(b)
        sink = HashSink()
        with open(src + ".sealed", "rb", buffering=0) as i:
            unseal_stream(key, i, sink)
        with open(src, "rb") as f:
            expected = hashlib.file_digest(f, "sha256").hexdigest()
        assert sink.n == size and sink.h.hexdigest() == expected
        with open("/proc/self/status") as f:   # peak RSS of this process image, in KiB
            print(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    peak_kib = int(out.stdout.split()[-1])
    assert peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"


# --- the read-ahead thread (seal_stream and UnsealReader read their input on a second thread) ---

BLOCK = (
    8 << 20
)  # node.content.seal._BLOCK_BYTES: a block holds whole records, so edges fall on blocks


class Trickle(io.RawIOBase):
    """A source that returns at most ``step`` bytes a read, then fails after ``fail_at`` bytes."""

    def __init__(self, data: bytes, step: int, fail_at: int | None = None):
        self._data, self._pos, self._step, self._fail_at = data, 0, step, fail_at

    def readable(self):
        return True

    def readinto(self, b):
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise OSError("connection reset by peer")
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("size", [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 4096 * 3])
def test_block_edges_give_the_reference_archive(size):
    """A full last block is followed by an empty read: the finality look-ahead crosses blocks."""
    data = os.urandom(size)
    blob = seal(data, chunk=4096)
    assert blob == reference_seal(KEY, data, 4096, PREFIX)
    assert unseal(blob) == data


def test_short_reads_from_the_source():
    data = os.urandom(40 * SMALL + 3)
    out = io.BytesIO()
    seal_stream(KEY, Trickle(data, 7), out, chunk_size=SMALL, nonce_prefix=PREFIX)
    assert out.getvalue() == reference_seal(KEY, data, SMALL, PREFIX)
    assert UnsealReader(Trickle(out.getvalue(), 5), KEY).read() == data


def test_a_failing_source_fails_the_seal_and_the_unseal_after_the_good_chunks():
    data = os.urandom(3 * BLOCK)
    with pytest.raises(OSError, match="reset by peer"):
        seal_stream(
            KEY, Trickle(data, 1 << 20, fail_at=BLOCK + 12345), io.BytesIO(), chunk_size=4096
        )
    blob = seal(data, chunk=4096)
    reader = UnsealReader(Trickle(blob, 1 << 20, fail_at=2 * BLOCK), KEY)
    got = bytearray()
    with pytest.raises(OSError, match="reset by peer"):
        while chunk := reader.read(1 << 16):
            got += chunk
    assert 0 < len(got) < len(data) and data.startswith(got)  # only authenticated chunks came out


def _read_ahead_threads() -> int:
    return sum(t.name == "modex-read-ahead" for t in threading.enumerate())


def _settles_to(count: int, within_s: float = 30.0) -> bool:
    """True once the read-ahead threads are back to ``count``; generous, since a loaded machine
    (the full suite beside other jobs) can take seconds to schedule a thread's last step."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _read_ahead_threads() == count:
            return True
        time.sleep(0.01)
    return False


def test_the_read_ahead_thread_ends_with_the_stream():
    before = _read_ahead_threads()
    data = os.urandom(3 * BLOCK)
    blob = seal(data, chunk=4096)
    assert _settles_to(before)  # a whole seal leaves no thread behind
    reader = UnsealReader(io.BytesIO(blob), KEY)
    assert reader.read(10) == data[:10]
    assert _read_ahead_threads() == before + 1
    reader.close()  # abandoned half way: the thread ends, later reads raise
    assert _settles_to(before)
    with pytest.raises(SealError, match="closed"):
        reader.read(1 << 20)
        reader.read(1 << 20)
    reader = UnsealReader(io.BytesIO(blob[:-1]), KEY)  # a truncated archive ends it too
    with pytest.raises(SealError, match="authentication|truncated"):
        reader.read()
    assert _settles_to(before)
