"""Sign-In with Ethereum (EIP-4361, the kept `siwe` module of PyPI's signinwithethereum), the
session cookie's Secure flag, and the Origin check of every state-changing request.

    GET  /auth/nonce     {"nonce": "..."}: kept in the UI's shared state (app.ui_state),
                         single use, expires after
                         MODEX_SIWE_NONCE_TTL seconds
    POST /auth/siwe      JSON {"message", "signature"}: 200 {"address": "0x..."} and this session
                         bound to that address (app.session_keys.signed_in_address)
    POST /auth/logout    forget the session (its signed-in address and any unlocked wallet)

A refusal is a 401 `{"error": {"code", "message"}}` (app.errors, as every JSON error; a request
that is not a sign-in at all: 400 bad_request): a bad signature, a message
for another domain or URI (this request's host), another chain id (the node's chain), a nonce
this node did not issue or already used, an expired or not-yet-valid message. The nonce is spent
by the first attempt that names it, refused or not.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import siwe
from eth_utils import to_checksum_address
from flask import Blueprint, current_app, has_request_context, jsonify, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import Forbidden

from app import session_keys
from app.resources import get_chain, get_ui_state
from app.session_keys import SignInRefused
from app.ui_state import UiState
from node.errors import InputError

bp = Blueprint("auth", __name__, url_prefix="/auth")

DEFAULT_NONCE_TTL_S = 5 * 60
MAX_OPEN_NONCES = 100_000  # past this many unexpired nonces, new ones are refused (disk bound)

# Each refusal of the library, as the code and sentence the page shows.
REFUSALS: tuple[tuple[type[Exception], str, str], ...] = (
    (
        siwe.InvalidSignature,
        "bad_signature",
        "The signature does not match the message and its address; sign the message again.",
    ),
    (
        siwe.DomainMismatch,
        "wrong_domain",
        "The message signs in to another site; sign the message this page offers.",
    ),
    (
        siwe.UriMismatch,
        "wrong_uri",
        "The message's URI is another site's; sign the message this page offers.",
    ),
    (
        siwe.ChainIdMismatch,
        "wrong_chain",
        "The message names another chain id than this exchange's; switch networks and sign again.",
    ),
    (
        siwe.ExpiredMessage,
        "expired",
        "The message has expired; sign in again.",
    ),
    (
        siwe.NotYetValidMessage,
        "not_yet_valid",
        "The message is not valid yet (its not-before time is ahead); sign in again.",
    ),
)


class NonceStore:
    """Nonces this exchange issued, each valid once until it expires, kept in the UI's shared
    state (app.ui_state): any of the processes serving the UI spends a nonce another issued."""

    def __init__(self, state: UiState, ttl_s: float = DEFAULT_NONCE_TTL_S, clock=time.time):
        self._state, self.ttl_s, self._clock = state, ttl_s, clock

    def issue(self) -> str:
        nonce = siwe.generate_nonce()
        now = self._clock()
        self._state.rows("DELETE FROM siwe_nonces WHERE expires <= ?", (now,))
        kept = self._state.rows(
            "INSERT INTO siwe_nonces (nonce, expires) SELECT ?, ?"
            " WHERE (SELECT COUNT(*) FROM siwe_nonces) < ? RETURNING 1",
            (nonce, now + self.ttl_s, MAX_OPEN_NONCES),
        )
        if not kept:
            raise InputError("Too many sign-ins are under way on this node; try again in a minute.")
        return nonce

    def spend(self, nonce: str) -> bool:
        """True once for a nonce issued here and not expired; False ever after."""
        found = self._state.rows(
            "DELETE FROM siwe_nonces WHERE nonce = ? RETURNING expires", (nonce,)
        )
        return bool(found) and found[0][0] > self._clock()


def _nonces() -> NonceStore:
    return NonceStore(
        get_ui_state(), float(current_app.config.get("MODEX_SIWE_NONCE_TTL", DEFAULT_NONCE_TTL_S))
    )


def request_origin() -> str:
    """This request's own origin: scheme://host[:port] as the browser sees the page."""
    return f"{request.scheme}://{request.host}"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@bp.route("/nonce")
def nonce():
    return jsonify(nonce=_nonces().issue())


@bp.route("/siwe", methods=["POST"])
def sign_in():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        raise InputError('Send JSON {"message": the EIP-4361 text, "signature": "0x..."}.')
    try:
        # The library's regular-expression parser of EIP-4361 (0.2 ms; its ABNF one, 0.4 ms).
        # The fields' own checks run on abnf's compiled parser (abnf-rust): 8 ms a sign-in on
        # its pure-Python one, the most costly request of a hosted exchange's visitors.
        message = siwe.SiweMessage.from_message(data["message"], abnf=False)
    except ValueError as exc:
        raise InputError(
            "The message is not an EIP-4361 sign-in message; sign the message this page offers."
        ) from exc
    if not _nonces().spend(message.nonce):
        raise SignInRefused(
            "bad_nonce",
            "This sign-in's nonce was not issued here, was already used or has expired; "
            "ask for a new one (GET /auth/nonce) and sign again.",
        )
    if _origin_of(str(message.uri)) != request_origin():
        raise SignInRefused(*_refusal(siwe.UriMismatch))
    try:
        message.verify(
            str(data.get("signature") or ""),
            domain=request.host,
            nonce=message.nonce,
            chain_id=get_chain().chain_id,
        )
    except siwe.VerificationError as exc:
        raise SignInRefused(*_refusal(type(exc))) from exc
    address = to_checksum_address(message.address)
    if session_keys.signed_in_address() != address:
        _forget_wallets()
    session_keys.sign_in(address)
    return jsonify(address=address)


def _refusal(kind: type[Exception]) -> tuple[str, str]:
    for error_type, code, sentence in REFUSALS:
        if issubclass(kind, error_type):
            return code, sentence
    return "refused", "The sign-in message was refused; sign the message this page offers."


def _forget_wallets() -> None:
    session_keys.lock()
    for key in ("address", "browser_wallet", "browser_x25519"):
        session.pop(key, None)


@bp.route("/logout", methods=["POST"])
def logout():
    _forget_wallets()
    session.clear()
    return jsonify(address=None)


class SameOriginCSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF token check, and before it the Origin check, on the same requests (the
    methods of WTF_CSRF_METHODS, views not exempted): a browser names the page that sent a
    request in Origin (or, without it, Referer); one from another site is refused with 403."""

    def protect(self, apply_exemptions=False):
        if apply_exemptions and (not request.endpoint or self._is_exempt()):
            return
        if request.method in current_app.config["WTF_CSRF_METHODS"]:
            sender = request.headers.get("Origin") or request.referrer
            if sender is not None and _origin_of(sender) != request_origin():
                raise Forbidden(
                    f"This request came from another site ({sender}); only this exchange's own "
                    "pages may change anything here. Open the page on this site and try again."
                )
        super().protect(apply_exemptions)


class HttpsAwareSessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure when this request came over HTTPS (or SESSION_COOKIE_SECURE
    says so for every request)."""

    def get_cookie_secure(self, app) -> bool:
        return bool(super().get_cookie_secure(app) or (has_request_context() and request.is_secure))


def init_app(app) -> None:
    app.session_interface = HttpsAwareSessionInterface()
    app.register_blueprint(bp)
