"""The ServiceStore interface every backend implements, its error, and helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from urllib.parse import urlsplit, urlunsplit

from node.errors import InputError, ModexError

UINT256_DIGITS = 78  # len(str(2**256 - 1))


class ServiceStoreError(ModexError):
    """The service's state store (SQLite, Redis or Postgres) cannot be opened or reached; the
    message names its URL, without a password, and what to check."""


def sortable(number: int) -> str:
    """A uint256 as zero-padded decimal text: compared as text, ordered as the numbers."""
    if not 0 <= number < 10**UINT256_DIGITS:
        raise InputError(f"{number} is not a uint256 (0 to 2**256 - 1)")
    return f"{number:0{UINT256_DIGITS}d}"


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ***: safe for a message or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class ServiceStore(ABC):
    """The interface every backend implements (see the module's docstring); ``url`` names the
    store in messages, without a password."""

    url: str

    @abstractmethod
    def use_nonce(self, signer: str, nonce: int, deadline: int) -> bool: ...

    @abstractmethod
    def release_nonce(self, signer: str, nonce: int) -> None: ...

    @abstractmethod
    def nonces_held(self) -> int:
        """How many used nonces the store holds (an expired one until it is forgotten)."""

    def accept_voucher(
        self,
        channel_id: int,
        cumulative_amount: int,
        signature: bytes,
        *,
        previous_at_most: int,
        limit: int,
    ) -> bool:
        if cumulative_amount > limit or previous_at_most < 0:  # no stored amount is below 0
            return False
        return self._raise_voucher(
            int(channel_id), int(cumulative_amount), bytes(signature), int(previous_at_most)
        )

    @abstractmethod
    def _raise_voucher(
        self, channel_id: int, cumulative_amount: int, signature: bytes, previous_at_most: int
    ) -> bool:
        """Store the voucher, durably, iff the stored highest (0 when none) <= previous_at_most."""

    @abstractmethod
    def highest_voucher(self, channel_id: int) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def vouchers_to_claim(self) -> list[tuple[int, int, bytes, int]]: ...

    @abstractmethod
    def mark_claimed(self, channel_id: int, cumulative_amount: int) -> None: ...

    def use_trial(self, model_id: int, address: str, limit: int) -> bool:
        if limit <= 0:
            return False
        return self._count_trial(int(model_id), address.lower(), int(limit))

    @abstractmethod
    def _count_trial(self, model_id: int, address: str, limit: int) -> bool:
        """Count one call iff fewer than ``limit`` were counted."""

    @abstractmethod
    def release_trial(self, model_id: int, address: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
