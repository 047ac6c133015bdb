"""The model hash (docs/formats.md §2): a manifest of a model directory and the SHA-256 of its bytes.

A model is a directory. Its manifest lists every regular file under it, sorted by the UTF-8 bytes
of its POSIX relative path, each ``{"path", "size", "sha256"}``. The canonical bytes are the
canonical JSON (node/onchain.py: sorted keys, no whitespace, UTF-8) of
``{"files": [...], "version": 1}``, and ``modelHash = sha256(canonical bytes)`` is what the chain
stores as ``bytes32``.

Files are hashed in parallel threads (hashlib releases the GIL on large updates, so one big file
per core runs at OpenSSL's speed) and streamed in large blocks: memory stays flat for any size.
Symlinks, devices, FIFOs, sockets, non-UTF-8 names and paths escaping the directory are refused
with a ManifestError naming the path. Files are opened component by component with O_NOFOLLOW
under the model directory, so a symlink swapped in after the scan cannot redirect a read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from node.errors import IntegrityError, ManifestError
from node.onchain import canonical_json

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
READ_BLOCK = 1 << 20  # large enough that hashlib drops the GIL and syscalls are amortised
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Weight formats that unpickle (and so can run code) when loaded; issue 4 refuses them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill")


@dataclass(frozen=True)
class Manifest:
    """The sorted file list of a model directory; ``files`` holds {path, size, sha256} dicts."""

    files: tuple[dict, ...]

    def canonical_bytes(self) -> bytes:
        doc = {"files": [dict(f) for f in self.files], "version": MANIFEST_VERSION}
        return canonical_json(doc)

    @property
    def model_hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    @property
    def model_hash_hex(self) -> str:
        return "0x" + self.model_hash.hex()

    @property
    def total_size(self) -> int:
        return sum(f["size"] for f in self.files)

    def as_dict(self) -> dict:
        """The manifest as the JSON object of §4.1 (what metadata JSON embeds)."""
        return {"files": [dict(f) for f in self.files], "version": MANIFEST_VERSION}


def sort_key(path: str) -> bytes:
    return path.encode("utf-8")


def check_relative_path(path: object) -> str:
    """Return ``path`` if it is a safe POSIX relative path inside a model directory, else raise."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"manifest path {path!r} is not a non-empty string", path=path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(
            f"path {path!r} is not valid UTF-8: rename the file with a UTF-8 name", path=path
        ) from None
    if "\0" in path or path.startswith("/"):
        raise ManifestError(f"path {path!r} is absolute or contains NUL: refused", path=path)
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ManifestError(
            f"path {path!r} has an empty, '.' or '..' component (it could escape the model "
            "directory): refused",
            path=path,
        )
    return path


def manifest_from_files(files: Iterable[dict]) -> Manifest:
    """Build a Manifest from {path,size,sha256} entries, validating and sorting them."""
    out: list[dict] = []
    seen = set()
    for f in files:
        if not isinstance(f, dict) or set(f) != {"path", "size", "sha256"}:
            raise ManifestError(
                f"manifest entry {f!r} must have exactly the keys path, size, sha256"
            )
        path = check_relative_path(f["path"])
        size, digest = f["size"], f["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"manifest entry {path!r}: size {size!r} is not a non-negative int")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ManifestError(
                f"manifest entry {path!r}: sha256 {digest!r} is not 64 lowercase hex digits"
            )
        if path in seen:
            raise ManifestError(f"manifest lists {path!r} twice", path=path)
        seen.add(path)
        out.append({"path": path, "size": size, "sha256": digest})
    out.sort(key=lambda f: sort_key(f["path"]))
    _refuse_file_dir_clash(out)
    return Manifest(tuple(out))


def _refuse_file_dir_clash(files: list[dict]) -> None:
    paths = {f["path"] for f in files}
    for f in files:
        parts = f["path"].split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in paths:
                raise ManifestError(
                    f"manifest has both a file {parent!r} and a file under it ({f['path']!r})",
                    path=f["path"],
                )


def manifest_from_json(
    data: str | bytes | dict, *, expected_hash: bytes | str | None = None
) -> Manifest:
    """Parse a manifest (canonical JSON text, bytes or the dict of §4.1) and validate it.

    With ``expected_hash`` (32 bytes or 0x-hex), raise IntegrityError if the manifest's model hash
    differs: a manifest read from metadata JSON is only trusted once it matches the chain.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("version") != MANIFEST_VERSION
        or set(data)
        != {
            "files",
            "version",
        }
    ):
        raise ManifestError(
            'manifest must be {"files": [...], "version": 1}; got keys '
            f"{sorted(data) if isinstance(data, dict) else type(data).__name__}"
        )
    if not isinstance(data["files"], list):
        raise ManifestError("manifest 'files' must be a list")
    manifest = manifest_from_files(data["files"])
    if expected_hash is not None:
        check_model_hash(manifest, expected_hash)
    return manifest


def check_model_hash(manifest: Manifest, expected_hash: bytes | str) -> None:
    """Raise IntegrityError unless ``manifest`` has the expected model hash (bytes or 0x-hex)."""
    expected = _hash_bytes(expected_hash)
    if manifest.model_hash != expected:
        raise IntegrityError(
            f"model hash mismatch: expected 0x{expected.hex()}, got {manifest.model_hash_hex}; "
            "these are not the bytes that were listed",
            expected="0x" + expected.hex(),
            actual=manifest.model_hash_hex,
        )


def _hash_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value.lower().startswith("0x") else value
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ManifestError(f"model hash {value!r} is not hex") from None
    if len(value) != 32:
        raise ManifestError(f"a model hash is 32 bytes, got {len(value)}")
    return bytes(value)


def open_member(root: str | os.PathLike, relpath: str) -> int:
    """Open ``root/relpath`` for reading without following any symlink; return an fd.

    Walks the path one component at a time with O_NOFOLLOW (and O_NONBLOCK so that a FIFO
    does not block the open); the result must be a regular file.
    """
    check_relative_path(relpath)
    parts = relpath.split("/")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                raise ManifestError(
                    f"{relpath}: cannot open directory {part!r} without following links ({exc.strerror})",
                    path=relpath,
                ) from None
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as exc:
            raise ManifestError(
                f"{relpath}: cannot open as a regular file ({exc.strerror}); symlinks are refused",
                path=relpath,
            ) from None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ManifestError(f"{relpath}: not a regular file: refused", path=relpath)
    return fd


def scan_dir(model_dir: str | os.PathLike) -> list[tuple[str, int]]:
    """List (relative POSIX path, size) of every regular file under ``model_dir``, sorted.

    Refuses symlinks, special files and non-UTF-8 names with a ManifestError naming the path.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise ManifestError(f"{root} is not a directory: give the model's folder", path=str(root))
    found: list[tuple[str, int]] = []

    def walk(abs_dir: str, rel: str) -> None:
        with os.scandir(abs_dir) as it:
            entries = list(it)
        for entry in entries:
            relpath = f"{rel}{entry.name}"
            try:
                relpath.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(relpath).decode("utf-8", "backslashreplace")
                raise ManifestError(
                    f"{shown}: the file name is not valid UTF-8; rename it", path=shown
                ) from None
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise ManifestError(
                    f"{relpath}: symlinks are refused (they can point outside the model "
                    "directory); replace it with the file itself",
                    path=relpath,
                )
            if stat.S_ISDIR(st.st_mode):
                walk(entry.path, relpath + "/")
            elif stat.S_ISREG(st.st_mode):
                found.append((relpath, st.st_size))
            else:
                raise ManifestError(
                    f"{relpath}: not a regular file (device, FIFO or socket): refused; "
                    "a model directory holds only regular files",
                    path=relpath,
                )

    walk(str(root), "")
    found.sort(key=lambda item: sort_key(item[0]))
    return found


def hash_fd(fd: int, *, on_bytes: Callable[[int], None] | None = None) -> tuple[int, str]:
    """SHA-256 and size of an open file, read in large blocks into one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    total = 0
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
            if on_bytes:
                on_bytes(n)
    return total, h.hexdigest()


def _hash_member(root: Path, relpath: str, expected_size: int, on_bytes) -> dict:
    fd = open_member(root, relpath)
    try:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        size, digest = hash_fd(fd, on_bytes=on_bytes)
    finally:
        os.close(fd)
    if size != expected_size:
        raise ManifestError(
            f"{relpath}: changed while it was hashed ({expected_size} bytes, then {size}); "
            "hash the model when nothing writes to it",
            path=relpath,
        )
    return {"path": relpath, "size": size, "sha256": digest}


def default_workers() -> int:
    return max(
        1,
        min(
            32,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1,
        ),
    )


def build_manifest(
    model_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> Manifest:
    """Scan and hash a model directory (§4.1).

    ``workers``: threads hashing files in parallel (default: the usable CPU cores).
    ``progress``: called with the number of bytes just hashed (``tqdm.update`` fits); it may be
    called from worker threads, one call at a time.
    """
    root = Path(model_dir).resolve()
    listing = scan_dir(root)
    if not listing:
        raise ManifestError(f"{root} holds no regular files: nothing to hash", path=str(root))
    on_bytes = None
    if progress is not None:
        lock = threading.Lock()

        def on_bytes(n: int) -> None:
            with lock:
                progress(n)

    workers = workers or default_workers()
    # Largest first, so one big file does not start last and leave the other cores idle.
    order = sorted(listing, key=lambda item: -item[1])
    if workers == 1 or len(listing) == 1:
        entries = [_hash_member(root, p, s, on_bytes) for p, s in order]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(listing))) as pool:
            entries = list(
                pool.map(lambda item: _hash_member(root, item[0], item[1], on_bytes), order)
            )
    log.debug("hashed %d files (%d bytes) under %s", len(entries), sum(s for _, s in listing), root)
    return manifest_from_files(entries)


def model_hash(model_dir: str | os.PathLike) -> bytes:
    """The 32-byte model hash of a directory (§4.1)."""
    return build_manifest(model_dir).model_hash


def refuse_pickles(manifest: Manifest) -> None:
    """Raise ManifestError if the model ships pickle-based weights (they run code when loaded)."""
    refuse_pickle_paths(f["path"] for f in manifest.files)


def refuse_pickle_paths(paths: Iterable[str]) -> None:
    """:func:`refuse_pickles` for a list of relative paths (e.g. ``scan_dir`` output)."""
    bad = [p for p in paths if p.lower().endswith(PICKLE_SUFFIXES)]
    if bad:
        raise ManifestError(
            f"pickle-based weight files are refused: {', '.join(bad)}. Loading a pickle can run "
            "arbitrary code; convert the weights to safetensors (e.g. "
            "`model.save_pretrained(dir, safe_serialization=True)`) and remove these files",
            paths=bad,
        )
