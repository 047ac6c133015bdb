"""The deterministic tar of a model directory (docs/formats.md §3, the sealed archive's plaintext).

Writer (exact bytes, so the same directory gives the same tar on any machine):
- one entry per manifest file, in manifest order, no directory entries;
- a POSIX ustar header: the path in ``name`` when it is ASCII and at most 100 bytes, otherwise
  a pax extended header (typeflag ``x``, name ``././@PaxHeader``) carrying ``path=`` first and
  ``name`` holding the path's first 100 bytes cut at a UTF-8 boundary; a ``size=`` pax record
  too when the size does not fit ustar's 11 octal digits (8 GiB);
- mode 0644, uid/gid 0, empty user/group names, mtime 0, devmajor/devminor 0, numeric fields
  as zero-padded octal ending in NUL, checksum as six octal digits, NUL, space;
- data padded with zeros to 512 bytes; two zero blocks; zeros up to a multiple of 10240 bytes
  (tar's default record size).

Reader (:func:`extract_tar`): streaming, one pass, refuses anything that is not a regular file
or directory (symlinks, hard links, devices, FIFOs, GNU extensions), absolute paths, ``..``,
duplicates and bad checksums; it hashes each file while writing it and returns the manifest of
what it extracted. Extraction happens in a temporary sibling folder renamed into place at the
end, so a failure (or a model hash that does not match) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from node.content.manifest import (
    READ_BLOCK,
    Manifest,
    check_model_hash,
    check_relative_path,
    manifest_from_files,
    open_member,
)
from node.errors import IntegrityError, ManifestError
from node.pipes import ByteReader, ByteWriter

log = logging.getLogger(__name__)

BLOCK = 512
RECORD = 20 * BLOCK
PAX_NAME = b"././@PaxHeader"
_USTAR_MAX_SIZE = 8**11 - 1


def _octal(value: int, width: int) -> bytes:
    """Zero-padded octal digits ending in NUL (width includes the NUL)."""
    return b"%0*o\0" % (width - 1, value)


def _pad(n: int) -> int:
    return -n % BLOCK


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:  # the length counts its own digits
        length += 1
    return str(length).encode() + body


def _header(name: bytes, size: int, typeflag: bytes) -> bytes:
    h = bytearray(BLOCK)
    h[0:100] = name.ljust(100, b"\0")
    h[100:108] = _octal(0o644, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[329:337] = _octal(0, 8)
    h[337:345] = _octal(0, 8)
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _cut_utf8(raw: bytes, limit: int) -> bytes:
    cut = raw[:limit]
    while cut and (cut[-1] & 0xC0) == 0x80:  # drop a partial multi-byte character
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return cut


def entry_headers(path: str, size: int) -> bytes:
    """The header block(s) that precede a file's data in a Modex tar."""
    raw = path.encode("utf-8")
    records = b""
    if len(raw) > 100 or not raw.isascii():
        records += _pax_record("path", raw)
    if size > _USTAR_MAX_SIZE:
        records += _pax_record("size", str(size).encode())
    out = b""
    if records:
        out += _header(PAX_NAME, len(records), b"x") + records + b"\0" * _pad(len(records))
    return out + _header(_cut_utf8(raw, 100), 0 if size > _USTAR_MAX_SIZE else size, b"0")


def tar_size(manifest: Manifest) -> int:
    """The exact size in bytes of the tar that :func:`write_tar` writes for ``manifest``."""
    return listing_tar_size((f["path"], f["size"]) for f in manifest.files)


def listing_tar_size(listing) -> int:
    """The tar's size for (path, size) pairs (what :func:`write_tar_hashing` writes)."""
    total = sum(len(entry_headers(path, size)) + size + _pad(size) for path, size in listing)
    total += 2 * BLOCK
    return total + (-total % RECORD)


def write_tar(model_dir: str | os.PathLike, manifest: Manifest, out: ByteWriter) -> int:
    """Write the deterministic tar of ``model_dir`` to ``out``; return the bytes written.

    Every file is re-read and must still have the manifest's size and sha256 (IntegrityError
    otherwise: the directory changed since it was hashed). On an error ``out`` holds a partial
    tar: callers seal into a temporary file or a writer they discard (see node.content.seal).
    """
    written, _ = _write_members(Path(model_dir), manifest.files, out)
    return written


def write_tar_hashing(
    model_dir: str | os.PathLike, listing: list[tuple[str, int]], out: ByteWriter
) -> tuple[int, Manifest]:
    """Write the tar of the files ``listing`` names (``scan_dir`` output) and hash them in the
    same pass; return (bytes written, the manifest of exactly the bytes written).

    One read of the model instead of two (hash, then tar): the tar bytes depend only on the
    paths and sizes, and the manifest comes from the bytes that went into the tar, so the two
    cannot disagree. A file whose size changed since the scan raises IntegrityError.
    """
    files = [{"path": path, "size": size, "sha256": None} for path, size in listing]
    written, digests = _write_members(Path(model_dir), files, out)
    return written, manifest_from_files(
        {"path": f["path"], "size": f["size"], "sha256": d}
        for f, d in zip(files, digests, strict=True)
    )


def _write_members(root: Path, files, out: ByteWriter) -> tuple[int, list[str]]:
    """The tar of ``files`` (in order) under ``root``; a file's ``sha256`` (when not None) must
    match what is read. Returns (bytes written, each file's sha256 hex)."""
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    written = 0
    digests = []
    for f in files:
        path, size = f["path"], f["size"]
        head = entry_headers(path, size)
        out.write(head)
        written += len(head)
        fd = open_member(root, path)
        h = hashlib.sha256()
        left = size
        with open(fd, "rb", buffering=0) as src:
            while left:
                n = src.readinto(view[: min(left, READ_BLOCK)])
                if not n:
                    break
                h.update(view[:n])
                out.write(view[:n])
                left -= n
            extra = src.read(1)
        digest = h.hexdigest()
        if left or extra or (f["sha256"] is not None and digest != f["sha256"]):
            raise IntegrityError(
                f"{path}: the file changed since the model was hashed (size or sha256 differ); "
                "hash the model again and republish",
                path=path,
            )
        digests.append(digest)
        tail = _pad(size)
        out.write(b"\0" * tail)
        written += size + tail
    end = 2 * BLOCK
    end += -(written + end) % RECORD
    out.write(b"\0" * end)
    return written + end, digests


# ---------------------------------------------------------------------------------------- reader


class _Reader:
    """Exact reads from a stream, counting bytes, with a clear error on a truncated tar."""

    def __init__(self, src: ByteReader):
        self.src = src
        self.offset = 0

    def readinto(self, view: memoryview) -> int:
        got = 0
        while got < len(view):
            n = self.src.readinto(view[got:])
            if not n:
                break
            got += n
        self.offset += got
        return got

    def exact(self, n: int) -> bytes:
        buf = bytearray(n)
        if self.readinto(memoryview(buf)) != n:
            raise IntegrityError(f"tar truncated at byte {self.offset}: the archive is incomplete")
        return bytes(buf)


def _parse_octal(field: bytes, what: str, offset: int) -> int:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise IntegrityError(f"tar header at byte {offset}: bad {what} field {field!r}") from None


def _parse_pax(data: bytes, offset: int) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise IntegrityError(f"tar pax header at byte {offset}: malformed record") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise IntegrityError(f"tar pax header at byte {offset}: malformed record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("ascii", "replace")] = value
        pos += length
    return records


def _check_header(block: bytes, offset: int) -> None:
    stored = _parse_octal(block[148:156], "checksum", offset)
    computed = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if stored != computed:
        raise IntegrityError(f"tar header at byte {offset}: checksum mismatch (corrupt archive)")
    if block[257:262] != b"ustar":
        raise IntegrityError(f"tar header at byte {offset}: not a POSIX ustar header")


def _member_name(block: bytes, pax: dict[str, bytes]) -> str:
    if "path" in pax:
        raw = pax["path"]
    else:
        name = block[0:100].split(b"\0", 1)[0]
        prefix = block[345:500].split(b"\0", 1)[0]
        raw = prefix + b"/" + name if prefix else name
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"tar member name {raw!r} is not UTF-8: refused") from None
    text = text.removeprefix("./")
    return check_relative_path(text.rstrip("/") if text.endswith("/") else text)


class _Extractor:
    """Creates directories and files under one root without following any symlink."""

    def __init__(self, root: Path):
        self.root = root
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        os.close(self.root_fd)

    def _dir_fd(self, parts: list[str]) -> int:
        fd = os.dup(self.root_fd)
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                os.close(fd)
                raise ManifestError(
                    f"tar member under {'/'.join(parts)!r} clashes with a file of that name"
                ) from None
            os.close(fd)
            fd = nfd
        return fd

    def mkdir(self, path: str) -> None:
        os.close(self._dir_fd(path.split("/")))

    def create(self, path: str) -> BinaryIO:
        parts = path.split("/")
        dfd = self._dir_fd(parts[:-1])
        try:
            fd = os.open(
                parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd
            )
        except FileExistsError:
            raise ManifestError(
                f"tar member {path!r} appears twice (or clashes with a directory)", path=path
            ) from None
        finally:
            os.close(dfd)
        return open(fd, "wb", buffering=0)


def extract_tar(
    src: ByteReader, dest_dir: str | os.PathLike, *, expected_hash: bytes | str | None = None
) -> Manifest:
    """Extract a Modex tar from a stream into ``dest_dir`` (which must not exist or be empty).

    Returns the manifest of the extracted files (sha256 computed while writing). With
    ``expected_hash`` the manifest's model hash must match (IntegrityError otherwise). On any
    error nothing is left at ``dest_dir``. The stream is read to its end, and only zero padding
    may follow the end-of-archive blocks (so a sealed stream's final chunk is authenticated).
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ManifestError(
            f"{dest} exists and is not an empty directory: choose a new folder", path=str(dest)
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        manifest = _extract_into(src, tmp)
        if expected_hash is not None:
            check_model_hash(manifest, expected_hash)
        os.chmod(tmp, 0o755)
        if dest.exists():
            dest.rmdir()
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _extract_into(src: ByteReader, root: Path) -> Manifest:
    reader = _Reader(src)
    out = _Extractor(root)
    files: list[dict] = []
    seen: set[str] = set()
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    pax: dict[str, bytes] = {}
    try:
        while True:
            offset = reader.offset
            block = _next_block(reader)
            if block == b"\0" * BLOCK:
                if pax:
                    raise IntegrityError(f"tar pax header at byte {offset} has no member")
                _expect_zeros(reader, view)
                break
            _check_header(block, offset)
            typeflag = block[156:157]
            size = _parse_octal(block[124:136], "size", offset)
            if typeflag == b"x":
                if size > 1 << 20:
                    raise IntegrityError(f"tar pax header at byte {offset} is too large")
                data = reader.exact(size + _pad(size))[:size]
                pax = _parse_pax(data, offset)
                continue
            if "size" in pax:
                size = _pax_size(pax, offset)
            name = _member_name(block, pax)
            pax = {}
            if typeflag == b"5":
                out.mkdir(name)
                continue
            if typeflag not in (b"0", b"\0"):
                raise _not_a_regular_file(name, typeflag)
            if name in seen:
                raise ManifestError(f"tar member {name!r} appears twice", path=name)
            seen.add(name)
            files.append(_extract_file(reader, out, name, size, view))
    finally:
        out.close()
    return manifest_from_files(files)


def _next_block(reader: _Reader) -> bytes:
    """The next 512-byte header block; IntegrityError for an empty or truncated stream."""
    offset = reader.offset
    got = reader.readinto(memoryview(filled := bytearray(BLOCK)))
    if got == 0 and offset == 0:
        raise IntegrityError("empty stream: not a tar archive")
    if got != BLOCK:
        raise IntegrityError(f"tar truncated at byte {reader.offset}: no end-of-archive")
    return bytes(filled)


def _pax_size(pax: dict[str, bytes], offset: int) -> int:
    """The member size a pax header gives, which overrides the ustar header's."""
    try:
        return int(pax["size"])
    except ValueError:
        raise IntegrityError(f"tar pax size at byte {offset} is not a number") from None


def _not_a_regular_file(name: str, typeflag: bytes) -> ManifestError:
    """The error for a member that is neither a regular file nor a directory."""
    kind = {
        b"1": "hard link",
        b"2": "symlink",
        b"3": "character device",
        b"4": "block device",
        b"6": "FIFO",
    }.get(typeflag, f"type {typeflag!r}")
    return ManifestError(
        f"tar member {name!r} is a {kind}: only regular files are allowed in a model",
        path=name,
    )


def _extract_file(reader: _Reader, out: _Extractor, name: str, size: int, view) -> dict:
    h = hashlib.sha256()
    left = size
    with out.create(name) as dst:
        while left:
            n = reader.readinto(view[: min(left, len(view))])
            if not n:
                raise IntegrityError(f"tar truncated inside {name!r}: the archive is incomplete")
            h.update(view[:n])
            dst.write(view[:n])
            left -= n
    pad = _pad(size)
    if pad and reader.readinto(view[:pad]) != pad:
        raise IntegrityError(f"tar truncated after {name!r}: the archive is incomplete")
    return {"path": name, "size": size, "sha256": h.hexdigest()}


def _expect_zeros(reader: _Reader, view: memoryview) -> None:
    """After the first zero block: the rest of the stream must be zeros (padding) to its end."""
    while n := reader.readinto(view):
        if view[:n].tobytes().strip(b"\0"):
            raise IntegrityError(
                f"data after the end of the tar archive (near byte {reader.offset}): refused"
            )
