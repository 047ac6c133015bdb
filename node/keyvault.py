"""The seller's content-key store: one file, encrypted at rest, written atomically, mode 0600.

Each sealed listing has its own 32-byte AES key (docs/formats.md §3). The worker needs it to wrap it
for buyers, so it must outlive the publish command, but it must never sit on disk in clear.

File format (JSON, version 1):

    {"version": 1, "kdf": {"name": "scrypt", "salt": hex, "n": int, "r": int, "p": int},
     "nonce": hex(12), "ciphertext": hex}

The 32-byte file key is ``scrypt(passphrase, salt, n, r, p)``; ``ciphertext`` is
``AESGCM(file key).encrypt(nonce, canonical JSON of the entries, aad=canonical JSON of
{"version", "kdf"})`` so the parameters cannot be swapped. A fresh nonce is drawn on every write.
Entries are keyed by the content CID of the sealed archive (known before the listing exists, so
the key is stored before ``list()`` is sent and is never lost by a crash in between); the model
id is attached once the listing is on-chain.

Writers take an exclusive ``flock`` on ``<path>.lock`` around read-modify-write, so ``modex
publish`` and a running worker can share the file. Keys never appear in logs or reprs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from node.errors import KeystoreError
from node.onchain import canonical_json

log = logging.getLogger(__name__)

VERSION = 1
# scrypt cost: n=2**15, r=8 is ~32 MiB and ~0.1 s here; stored in the file so it can be raised.
DEFAULT_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


@dataclass(frozen=True)
class VaultEntry:
    content_cid: str
    key: bytes
    model_hash: str
    chain_id: int | None = None
    model_id: int | None = None
    registry: str | None = None

    def __repr__(self) -> str:  # never print the key
        return (
            f"VaultEntry(content_cid={self.content_cid!r}, model_hash={self.model_hash!r}, "
            f"chain_id={self.chain_id!r}, registry={self.registry!r}, model_id={self.model_id!r}, "
            "key=<hidden>)"
        )


class KeyVault:
    """Content keys of one seller, encrypted under a passphrase-derived key.

    ``KeyVault(path, passphrase)`` opens (or, on the first write, creates) the vault. A wrong
    passphrase raises KeystoreError on the first read.
    """

    def __init__(self, path: str | os.PathLike, passphrase: str, *, scrypt_params=None):
        if not passphrase:
            raise KeystoreError(
                "the key vault needs a passphrase: set MODEX_PASSWORD or answer the prompt"
            )
        self.path = Path(path)
        self._passphrase = passphrase.encode()
        self._new_params = dict(scrypt_params or DEFAULT_SCRYPT)
        self._kdf_cache: tuple[str, bytes] | None = None  # (kdf header json, file key)

    def __repr__(self) -> str:
        return f"KeyVault({str(self.path)!r})"

    # -- public API -------------------------------------------------------------------------

    def put(self, content_cid: str, key: bytes, *, model_hash: str) -> None:
        """Store the content key of a sealed archive (before it is listed)."""
        if len(key) != 32:
            raise KeystoreError(f"a content key is 32 bytes, got {len(key)}")
        with self._locked():
            entries = self._read()
            old = entries.get(content_cid)
            if old and bytes.fromhex(old["key"]) != key:
                raise KeystoreError(
                    f"the key vault already holds a different key for {content_cid}; "
                    "a content CID is tied to one key, refusing to overwrite it"
                )
            entries[content_cid] = {
                "key": key.hex(),
                "model_hash": model_hash,
                **{k: (old or {}).get(k) for k in ("chain_id", "registry", "model_id")},
            }
            self._write(entries)
        log.info("stored the content key for %s in %s", content_cid, self.path)

    def assign(
        self,
        content_cid: str,
        *,
        chain_id: int,
        model_id: int,
        registry: str | None = None,
        new_version: bool = False,
    ) -> None:
        """Record the on-chain listing (chain, registry address, model id) of a stored key.

        A listing names one key: another key that claimed the same listing loses the claim (it
        stays in the vault, unassigned). That happens when a chain went back past a listing
        (a local chain restarted from a save older than it, a dev node restarted) and the id
        was given to a new listing: the old key must not be delivered for the new model. It
        also happens, by design, when the seller publishes a new version (``new_version``): the
        listing names the latest version's key, and the older versions' keys stay in the vault,
        found by their archives' CIDs."""
        listing = {
            "chain_id": int(chain_id),
            "model_id": int(model_id),
            "registry": registry.lower() if registry else None,
        }
        with self._locked():
            entries = self._read()
            if content_cid not in entries:
                raise KeystoreError(f"the key vault {self.path} holds no key for {content_cid}")
            for cid, entry in entries.items():
                if cid != content_cid and all(entry.get(k) == v for k, v in listing.items()):
                    entry.update(dict.fromkeys(listing))
                    if new_version:
                        log.info(
                            "model %d on chain %d: its latest version is %s; the key of the "
                            "older version %s stays in the vault",
                            model_id,
                            chain_id,
                            content_cid,
                            cid,
                        )
                    else:
                        log.warning(
                            "model %d on chain %d is now %s; the key of %s, listed under "
                            "that id on a chain that went back, is kept unassigned",
                            model_id,
                            chain_id,
                            content_cid,
                            cid,
                        )
            entries[content_cid].update(listing)
            self._write(entries)

    def discard_unassigned(self, content_cid: str) -> bool:
        """Remove the key of a sealed archive that was never listed (an upload its seller
        abandoned); a key assigned to a listing is kept. Whether a key was removed."""
        with self._locked():
            entries = self._read()
            entry = entries.get(content_cid)
            if entry is None or entry.get("model_id") is not None:
                return False
            del entries[content_cid]
            self._write(entries)
        log.info("removed the unlisted content key for %s from %s", content_cid, self.path)
        return True

    def get(self, content_cid: str) -> VaultEntry | None:
        entry = self._read().get(content_cid)
        return self._entry(content_cid, entry) if entry else None

    def for_model(
        self, chain_id: int, model_id: int, registry: str | None = None
    ) -> VaultEntry | None:
        """The key listed as ``model_id`` (on that registry, when given: ids repeat across
        deployments on one chain id, e.g. a fresh anvil)."""
        for cid, entry in self._read().items():
            if entry.get("chain_id") != chain_id or entry.get("model_id") != model_id:
                continue
            if registry and (entry.get("registry") or "") != registry.lower():
                continue
            return self._entry(cid, entry)
        return None

    def entries(self) -> list[VaultEntry]:
        return [self._entry(cid, e) for cid, e in sorted(self._read().items())]

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _entry(cid: str, e: dict) -> VaultEntry:
        return VaultEntry(
            cid,
            bytes.fromhex(e["key"]),
            e["model_hash"],
            e.get("chain_id"),
            e.get("model_id"),
            e.get("registry"),
        )

    def _unusable(self, exc: OSError) -> KeystoreError:
        return KeystoreError(
            f"cannot use the key vault {self.path}: {exc.strerror}; set keyvault "
            "in the configuration to a file in a folder you can write to"
        )

    @contextlib.contextmanager
    def _locked(self):
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(self.path))
        except OSError as exc:
            raise self._unusable(exc) from None
        with held:
            yield

    def _file_key(self, kdf: dict) -> bytes:
        header = canonical_json(kdf).decode()
        if self._kdf_cache and self._kdf_cache[0] == header:
            return self._kdf_cache[1]
        try:
            salt = bytes.fromhex(kdf["salt"])
            key = Scrypt(
                salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])
            ).derive(self._passphrase)
        except (KeyError, ValueError, TypeError) as exc:
            raise KeystoreError(
                f"the key vault {self.path} has bad scrypt parameters: {exc}"
            ) from exc
        self._kdf_cache = (header, key)
        return key

    def _read(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            doc = json.loads(raw)
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
            kdf = doc["kdf"]
            if kdf.get("name") != "scrypt":
                raise ValueError(f"kdf {kdf.get('name')!r}, expected scrypt")
            nonce, ct = bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["ciphertext"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeystoreError(
                f"{self.path} is not a Modex key vault ({exc}); restore it from a backup"
            ) from None
        aad = canonical_json({"kdf": kdf, "version": VERSION})
        try:
            plain = AESGCM(self._file_key(kdf)).decrypt(nonce, ct, aad)
        except InvalidTag:
            raise KeystoreError(
                f"wrong passphrase for key vault {self.path} (or the file was altered)",
                wrong_password=True,
            ) from None
        return json.loads(plain)

    def _write(self, entries: dict) -> None:
        kdf = self._current_kdf()
        nonce = secrets.token_bytes(12)
        aad = canonical_json({"kdf": kdf, "version": VERSION})
        ct = AESGCM(self._file_key(kdf)).encrypt(nonce, canonical_json(entries), aad)
        doc = {"version": VERSION, "kdf": kdf, "nonce": nonce.hex(), "ciphertext": ct.hex()}
        try:
            atomic_write(self.path, canonical_json(doc), mode=0o600)
        except OSError as exc:
            raise self._unusable(exc) from None

    def _current_kdf(self) -> dict:
        try:
            return json.loads(self.path.read_bytes())["kdf"]
        except FileNotFoundError:
            return {"name": "scrypt", "salt": secrets.token_hex(16), **self._new_params}


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (created 0600 beside ``path``, with its
    folder): the writers of one file, in any process or thread, take turns in its
    read-modify-write. OSError when the lock file cannot be opened."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder, so a file just renamed or linked into it survives a power cut."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
