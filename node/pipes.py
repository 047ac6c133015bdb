"""Run a producer and a consumer of one byte stream concurrently through an OS pipe.

The publish path is tar → seal → store.put and the fetch path is store.get → unseal → extract;
each stage is a streaming function over file objects, so chaining two of them through a pipe
keeps memory flat (one pipe buffer plus each stage's chunk) and overlaps their work on two
cores (hashlib, AES-GCM and file I/O release the GIL on large buffers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
BUFFER = 1 << 20


class ByteReader(Protocol):
    """What the content stages read from: a file opened "rb", a pipe, or a wrapper such as
    CountingReader, IterReader or seal.UnsealReader."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int: ...


class ByteWriter(Protocol):
    """What the content stages write to: a file opened "wb", a pipe, or a wrapper such as
    CountingWriter or seal.SealWriter."""

    def write(self, data: bytes | memoryview, /) -> int: ...


def temp_beside(
    path: str | os.PathLike, error: type[Exception], *, prefix: str, suffix: str = ""
) -> tuple[int, str]:
    """``mkstemp`` in the folder of ``path``, the output about to be written there; an output
    that is a folder, or a folder that is missing or not writable, raises ``error`` with a
    sentence instead of an OSError."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise error(f"{path} is a folder: give the path of the file to write")
    try:
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=os.path.dirname(path))
    except OSError as exc:
        raise error(
            f"cannot write {path}: {exc.strerror}; give a file in an existing folder "
            "you can write to"
        ) from None


class CountingWriter:
    """A write-only file object that counts bytes and reports them to ``on_bytes``."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None] | None = None):
        self._raw = raw
        self._on_bytes = on_bytes
        self.count = 0

    def write(self, data) -> int:
        n = self._raw.write(data)
        n = len(data) if n is None else n
        self.count += n
        if self._on_bytes:
            self._on_bytes(n)
        return n

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True


class CountingReader:
    """A read-only file object that counts bytes and reports them to ``on_bytes``."""

    def __init__(self, raw: BinaryIO | ByteReader, on_bytes: Callable[[int], None] | None = None):
        self._raw = raw
        self._on_bytes = on_bytes
        self.count = 0

    def _seen(self, n: int) -> None:
        self.count += n
        if self._on_bytes and n:
            self._on_bytes(n)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._seen(len(data))
        return data

    def readinto(self, buf) -> int:
        if hasattr(self._raw, "readinto"):
            n = self._raw.readinto(buf) or 0
        else:
            data = self._raw.read(len(buf))
            n = len(data)
            buf[:n] = data
        self._seen(n)
        return n

    def readable(self) -> bool:
        return True

    def __iter__(self):
        while chunk := self.read(BUFFER):
            yield chunk


def pipeline(produce: Callable[[BinaryIO], None], consume: Callable[[BinaryIO], T]) -> T:
    """Run ``produce(writer)`` in a thread and ``consume(reader)`` here; return its result.

    Errors: if the producer fails, its error wins (the consumer then saw a short stream and any
    error it raised is a consequence); if only the consumer fails, the producer is unblocked by
    closing the pipe and the consumer's error is raised. After the consumer returns, the rest of
    the stream is drained so the producer finishes its own checks (e.g. the last chunk's
    authentication) before the result is trusted.
    """
    r, w = os.pipe()
    _widen(w)
    reader = os.fdopen(r, "rb", buffering=BUFFER)
    writer = os.fdopen(w, "wb", buffering=BUFFER)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            produce(writer)
            writer.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            failure.append(exc)
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    thread = threading.Thread(target=run, name="pipeline-producer", daemon=True)
    thread.start()
    try:
        result = consume(reader)
        while reader.read(BUFFER):  # let the producer finish (and verify) what it started
            pass
    except BaseException as exc:
        reader.close()  # the producer gets EPIPE instead of blocking forever
        thread.join()
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0] from exc
        raise
    reader.close()
    thread.join()
    if failure:
        raise failure[0]
    return result


def _widen(fd: int) -> None:
    """Grow the pipe from Linux's 64 KiB to BUFFER (capped by /proc/sys/fs/pipe-max-size), so a
    1 MiB write is one wake-up of the reader instead of sixteen. Best effort elsewhere."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BUFFER)


class IterReader:
    """A file object over an iterator of byte chunks (what some stores' ``get`` return)."""

    def __init__(self, chunks):
        self._it = iter(chunks)
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self._buf + b"".join(self._it)
            self._buf = b""
            return data
        while len(self._buf) < size:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close:
            close()


def as_reader(stream) -> ByteReader:
    """A file object for a stream that is either file-like or an iterator of bytes."""
    return stream if hasattr(stream, "read") else IterReader(stream)
