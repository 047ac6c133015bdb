"""Unlocked signers, held only in this server's memory, per browser session, with a timeout.

The browser session (a signed cookie) carries a random session id and the wallet address, never a
key or a password. `unlock` keeps the `Signer` (and the X25519 key pair derived from it, docs/formats.md
§4) in a dict keyed by that id; it expires after `MODEX_UNLOCK_TIMEOUT` seconds without use,
on `lock`, or when the server stops. Views reach key material only through the Signer protocol.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from flask import current_app, session

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


def init_app(app) -> None:
    app.extensions["modex.session_keys"] = SessionKeys(
        float(app.config.get("MODEX_UNLOCK_TIMEOUT", DEFAULT_TIMEOUT_S))
    )
