"""Wallet keystores: eth-account's encrypted JSON keyfiles (Web3 Secret Storage v3, scrypt).

``create_keystore`` makes a new random account, ``import_private_key`` encrypts an existing key,
``load_signer`` decrypts one into a ``LocalSigner``. Files are written atomically (temp file in
the same folder, fsync, link into place, fsync the folder) with mode 0600, and never overwrite
an existing keystore. Neither keys nor passwords are ever logged or put into an exception
message.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
from pathlib import Path

from eth_account import Account
from eth_typing import HexStr
from eth_utils import to_checksum_address

from node.errors import KeystoreError
from node.keyvault import fsync_dir
from node.signer import LocalSigner, signer_from_key

log = logging.getLogger(__name__)

# scrypt work factor N: eth-account's default 2**18 (~0.5 s, 256 MB); tests may pass or set less.
DEFAULT_SCRYPT_N = 2**18
PASSWORD_ENV = "MODEX_PASSWORD"


def _write_keyfile(path: Path, keyfile: dict) -> None:
    path = Path(path)
    if path.exists():
        raise KeystoreError(
            f"keystore {path} already exists; choose another path or move the old file away",
            path=str(path),
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise KeystoreError(
            f"cannot write keystore {path}: {exc.strerror}; choose a path in a "
            "folder you can write to",
            path=str(path),
        ) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(keyfile, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # link() refuses to replace a file that appeared meanwhile, unlike rename().
        os.link(tmp, path)
        fsync_dir(path.parent)
    except FileExistsError:
        raise KeystoreError(
            f"keystore {path} already exists; choose another path", path=str(path)
        ) from None
    finally:
        os.unlink(tmp)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise KeystoreError("the keystore password must not be empty")


def import_private_key(
    path: str | os.PathLike, private_key_hex: str, password: str, *, scrypt_n: int | None = None
) -> str:
    """Encrypt ``private_key_hex`` into a new keystore at ``path``; return its checksum address."""
    _check_password(password)
    signer = signer_from_key(private_key_hex)
    keyfile = Account.encrypt(
        HexStr(private_key_hex), password, kdf="scrypt", iterations=scrypt_n or DEFAULT_SCRYPT_N
    )
    _write_keyfile(Path(path), keyfile)
    log.info("wrote keystore %s for %s", path, signer.address)
    return signer.address


def create_keystore(path: str | os.PathLike, password: str, *, scrypt_n: int | None = None) -> str:
    """Create a new random account in a keystore at ``path``; return its checksum address."""
    _check_password(password)
    account = Account.create()
    keyfile = Account.encrypt(
        account.key, password, kdf="scrypt", iterations=scrypt_n or DEFAULT_SCRYPT_N
    )
    _write_keyfile(Path(path), keyfile)
    log.info("created keystore %s for %s", path, account.address)
    return account.address


def _read_keyfile(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeystoreError(
            f"no keystore at {path}: create one with `modex account new` or "
            f"`modex account import`, or set keystore in the configuration",
            path=str(path),
        ) from None
    except OSError as exc:
        raise KeystoreError(
            f"cannot read keystore {path}: {exc.strerror}", path=str(path)
        ) from None
    try:
        keyfile = json.loads(text)
        if not isinstance(keyfile, dict) or "crypto" not in {k.lower() for k in keyfile}:
            raise ValueError
    except ValueError:
        raise KeystoreError(
            f"{path} is not an encrypted JSON keystore (Web3 Secret Storage v3)", path=str(path)
        ) from None
    return keyfile


def keystore_address(path: str | os.PathLike) -> str:
    """The checksum address recorded in a keystore, without decrypting it."""
    path = Path(path)
    keyfile = _read_keyfile(path)
    if "address" not in keyfile:
        raise KeystoreError(
            f"keystore {path} does not record its address; load it with the password"
        )
    return to_checksum_address("0x" + keyfile["address"].removeprefix("0x"))


def load_signer(path: str | os.PathLike, password: str) -> LocalSigner:
    """Decrypt the keystore at ``path``; KeystoreError on a wrong password or a bad file."""
    path = Path(path)
    keyfile = _read_keyfile(path)
    try:
        key = Account.decrypt(keyfile, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(
                f"wrong password for keystore {path}", path=str(path), wrong_password=True
            ) from None
        raise KeystoreError(f"cannot decrypt keystore {path}: {exc}", path=str(path)) from None
    return LocalSigner(Account.from_key(key))


def read_password(*, confirm: bool = False, prompt: str = "Keystore password: ") -> str:
    """The password from $MODEX_PASSWORD, else asked on the terminal (twice if ``confirm``)."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    try:
        password = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise KeystoreError("the two passwords differ; nothing was written")
    except EOFError:
        raise KeystoreError(
            f"no password: set {PASSWORD_ENV} or run the command on a terminal"
        ) from None
    _check_password(password)
    return password
