"""Signing as a small protocol: the only place the node touches key material.

Views, journeys and the chain client hold a ``Signer`` and never a private key. ``LocalSigner``
wraps an eth-account ``LocalAccount`` (loaded from an encrypted keystore by node/keystore.py, or a
well-known dev account of the embedded chain / anvil); tests may pass any object with the same
four members.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol, runtime_checkable

from eth_account import Account
from eth_account.messages import SignableMessage, encode_defunct
from eth_account.signers.local import LocalAccount

from node.devchain import ANVIL_MNEMONIC
from node.errors import InputError, KeystoreError

log = logging.getLogger(__name__)

# eth-tester's funded accounts are the private keys 1, 2, 3, ...; anvil's come from its mnemonic.
EMBEDDED_DEV_ACCOUNTS = 10


@runtime_checkable
class Signer(Protocol):
    """What the node needs from a wallet."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, tx: dict) -> bytes:
        """The raw signed transaction, ready for ``eth_sendRawTransaction``."""
        ...

    def sign_message(self, text: str) -> bytes:
        """The 65-byte EIP-191 (personal_sign) signature of ``text``."""
        ...

    def sign_typed_data(self, full_message: dict) -> bytes:
        """The 65-byte EIP-712 signature of a full typed-data message."""
        ...


class LocalSigner:
    """A Signer backed by an in-memory eth-account key; ``repr`` never shows the key."""

    def __init__(self, account: LocalAccount):
        self._account = account

    @property
    def address(self) -> str:
        return self._account.address

    def sign_transaction(self, tx: dict) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)

    def sign_message(self, text: str | SignableMessage) -> bytes:
        message = text if isinstance(text, SignableMessage) else encode_defunct(text=text)
        return bytes(self._account.sign_message(message).signature)

    def sign_typed_data(self, full_message: dict) -> bytes:
        return bytes(self._account.sign_typed_data(full_message=full_message).signature)

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"


# Exactly 64 hex digits: eth-account zero-pads shorter hex, so a key missing a digit would
# silently become another account's key. The wallet page imports through signer_from_key too.
PRIVATE_KEY_HEX_RE = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")


def signer_from_key(private_key: str | bytes) -> LocalSigner:
    """A LocalSigner from a raw private key: exactly 64 hex digits (with or without 0x) or 32 bytes."""
    # The message must not echo the key, nor chain an exception that might.
    bad = KeystoreError(
        "not a valid private key: expected exactly 64 hex digits (with or without 0x); "
        "check that the whole key was pasted"
    )
    if isinstance(private_key, str):
        if PRIVATE_KEY_HEX_RE.fullmatch(private_key) is None:
            raise bad
    elif not isinstance(private_key, bytes) or len(private_key) != 32:
        raise bad
    try:
        return LocalSigner(Account.from_key(private_key))
    except (ValueError, TypeError):
        raise bad from None  # e.g. zero, or not below the curve order


def dev_signer(kind: str, index: int = 0) -> LocalSigner:
    """A funded development account: ``kind`` "embedded" (eth-tester) or "anvil" (its mnemonic).

    These keys are public knowledge; they exist only on local development chains.
    """
    if index < 0:
        raise InputError("dev account index must be >= 0")
    if kind == "embedded":
        if index >= EMBEDDED_DEV_ACCOUNTS:
            raise InputError(
                f"the embedded chain has {EMBEDDED_DEV_ACCOUNTS} dev accounts: "
                f"choose an index from 0 to {EMBEDDED_DEV_ACCOUNTS - 1}"
            )
        return LocalSigner(Account.from_key((index + 1).to_bytes(32, "big")))
    if kind == "anvil":
        Account.enable_unaudited_hdwallet_features()
        return LocalSigner(
            Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        )
    raise InputError(f"unknown dev chain kind {kind!r}: use 'embedded' or 'anvil'")
