"""Unlocked signers, held only in this server's memory, per browser session, with a timeout.

The browser session (a signed cookie) carries a random session id and the wallet address, never a
key or a password. `unlock` keeps the `Signer` (and the X25519 key pair derived from it, docs/formats.md
§4) in a dict keyed by that id; it expires after `MODEX_UNLOCK_TIMEOUT` seconds without use,
on `lock`, or when the server stops. Views reach key material only through the Signer protocol.

The session also carries the address it signed in with (app.auth), remembers which stored
wallets are its own (`own_wallets`: created, imported or unlocked in it), and `Backoff` counts the failures of what a guesser would repeat (a wallet's
password) per key (a session, an address), with a growing wait after the first few.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from flask import current_app, session

from node.errors import ModexError

DEFAULT_TIMEOUT_S = 15 * 60


@dataclass
class Unlocked:
    signer: object
    x25519_secret: bytes | None = None
    x25519_public: bytes | None = None
    expires: float = 0.0
    extra: dict = field(default_factory=dict)


class SessionKeys:
    """Thread-safe map session id -> Unlocked, with sliding expiry."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, clock=time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, Unlocked] = {}

    def put(self, sid: str, entry: Unlocked) -> None:
        with self._lock:
            entry.expires = self._clock() + self.timeout_s
            self._entries[sid] = entry
            self._purge()

    def get(self, sid: str | None) -> Unlocked | None:
        if not sid:
            return None
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None:
                return None
            if entry.expires < self._clock():
                del self._entries[sid]
                return None
            entry.expires = self._clock() + self.timeout_s
            return entry

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._entries.pop(sid or "", None)

    def _purge(self) -> None:
        now = self._clock()
        for sid in [s for s, e in self._entries.items() if e.expires < now]:
            del self._entries[sid]


class Backoff:
    """Failures per key; after `free` of them each new one makes the key wait `first_wait_s`,
    doubled every time (at most `max_wait_s`). Thread-safe, in memory; a success clears a key."""

    def __init__(
        self,
        free: int = 5,
        first_wait_s: float = 30.0,
        max_wait_s: float = 3600.0,
        clock=time.monotonic,
    ):
        self.free, self.first_wait_s, self.max_wait_s = free, first_wait_s, max_wait_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, may retry at)

    def wait_s(self, *keys: str) -> float:
        """Seconds before any of `keys` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([0.0, *(self._failures.get(k, (0, now))[1] - now for k in keys)])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                count = self._failures.get(key, (0, now))[0] + 1
                over = count - self.free
                wait = min(self.max_wait_s, self.first_wait_s * 2 ** (over - 1)) if over > 0 else 0
                self._failures[key] = (count, now + wait)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def _keys() -> SessionKeys:
    return current_app.extensions["modex.session_keys"]


def session_id() -> str:
    if "sid" not in session:
        session["sid"] = secrets.token_urlsafe(24)
    return session["sid"]


def unlock(signer, *, x25519: tuple[bytes, bytes] | None = None) -> None:
    """Bind an unlocked signer to this browser session (replacing any other one)."""
    secret, public = x25519 if x25519 else (None, None)
    _keys().put(session_id(), Unlocked(signer, secret, public))
    session["address"] = signer.address
    session.pop("browser_wallet", None)


def current() -> Unlocked | None:
    return _keys().get(session.get("sid"))


def current_signer():
    entry = current()
    return entry.signer if entry else None


def current_address() -> str | None:
    """The session's wallet address: unlocked here, or a connected browser wallet, else None."""
    entry = current()
    if entry:
        return entry.signer.address
    return session.get("browser_wallet")


def lock() -> None:
    _keys().drop(session.get("sid"))


class SignInRefused(ModexError):
    """A sign-in, or what needs one, refused (401, app.auth); ``code`` names the reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)
        self.code = code


SIGNED_IN = "siwe_address"  # the session's key for it


def signed_in_address() -> str | None:
    """The address this session proved it holds by Sign-In with Ethereum (app.auth), else None."""
    return session.get(SIGNED_IN)


def sign_in(address: str) -> None:
    session[SIGNED_IN] = address
    session_id()


def own_wallets() -> list[str]:
    """The stored wallets this session created, imported or unlocked (checksummed)."""
    return list(session.get("own_wallets", []))


def add_own_wallet(address: str) -> None:
    if address not in own_wallets():
        session["own_wallets"] = [*own_wallets(), address]


def init_app(app) -> None:
    app.extensions["modex.session_keys"] = SessionKeys(
        float(app.config.get("MODEX_UNLOCK_TIMEOUT", DEFAULT_TIMEOUT_S))
    )
    app.extensions["modex.unlock_backoff"] = Backoff()
