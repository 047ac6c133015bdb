"""Errors become responses in one place: a sentence for a person, HTML for pages, JSON for /api.

Views raise (or let through) `node.errors.ModexError`; this module turns it into a response with
a status code chosen by the branch of the tree (ConfigError 500, ContractRevert 409, KeystoreError
403, ContentNotFound 404, other ModexErrors 400...). HTTP errors (404, 405, 413, CSRF 400) get the
same treatment. A traceback is logged for unexpected exceptions, never shown.

Every JSON error of the app (/api/*, /auth/*, the inference mount, and any request that asks for
JSON) has one shape, built by `error_body`:

    {"error": {"code": "not_found", "message": "There is no model #9999 ..."}}

``code`` is a stable word a program can test (`error_code`), ``message`` the sentence a person
reads; the HTTP status is the response's own.
"""

from __future__ import annotations

import logging

from flask import flash, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.session_keys import SignInRefused
from node.amounts import ETH, Token, fmt_amount
from node.amounts import fmt_eth as format_eth  # noqa: F401 (the app's name for it: "eth" filter)
from node.errors import (
    ConfigError,
    ContentNotFound,
    ContractRevert,
    InputError,
    IntegrityError,
    KeystoreError,
    ModexError,
)

log = logging.getLogger(__name__)

# Custom errors whose generic sentence the UI replaces by one that fits a page the buyer opened.
PRICE_GUARD_ERRORS = {"MarketplacePriceAboveMax"}


def price_changed_message(new_price: int, token: Token = ETH) -> str:
    return f"Price changed to {fmt_amount(new_price, token)} since you opened this page; nothing was charged."


# The status code and code word of each branch of the ModexError tree, most specific first: the
# first that matches wins, so ModexError itself (any other error of ours) comes last. An error
# with a `code` of its own (app.session_keys.SignInRefused) answers with that word.
STATUS_BY_ERROR: tuple[tuple[type[ModexError], int, str], ...] = (
    (SignInRefused, 401, "sign_in_refused"),
    (ContentNotFound, 404, "not_found"),
    (KeystoreError, 403, "keystore_refused"),
    (ContractRevert, 409, "contract_reverted"),
    (IntegrityError, 422, "integrity_failed"),
    (ConfigError, 500, "node_misconfigured"),
    (InputError, 400, "bad_request"),
    (ModexError, 400, "refused"),
)
SERVER_ERROR_CODE = "server_error"


def status_for(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):
        return exc.code or 500
    for error_type, status, _code in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def error_code(exc: BaseException) -> str:
    """The word naming the error in a JSON body: the error's own `error_code`/`code` word, else
    its HTTP status's name (not_found, method_not_allowed...), else its branch's (above)."""
    own = getattr(exc, "error_code", None) or getattr(exc, "code", None)
    if isinstance(own, str) and own:
        return own
    if isinstance(exc, CSRFError):
        return "csrf_failed"
    if isinstance(exc, HTTPException):
        return "_".join((exc.name or "error").lower().replace("-", " ").split())
    for error_type, _status, code in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return code
    return SERVER_ERROR_CODE


def error_body(code: str, message: str) -> dict:
    """The one shape of the app's JSON errors."""
    return {"error": {"code": code, "message": message}}


def json_error(code: str, message: str, status: int):
    """A JSON error response: (body, status) for a view or an error handler to return."""
    return jsonify(error_body(code, message)), status


def describe(exc: BaseException) -> str:
    """The sentence a person reads."""
    if isinstance(exc, CSRFError):
        return (
            "The form expired or did not come from this site (missing or invalid CSRF token); "
            "reload the page and submit it again."
        )
    if isinstance(exc, HTTPException):
        if exc.code == 413:
            limit = request.max_content_length
            size = f" (limit {limit // (1 << 20)} MiB)" if limit else ""
            return f"The upload is too large{size}; choose a smaller model or publish it with `modex publish`."
        if exc.code == 404:
            return (
                exc.description
                if exc.description and "requested URL" not in exc.description
                else "There is nothing at this address; go back to the market."
            )
        return exc.description or exc.name
    if isinstance(exc, ContractRevert):
        name = exc.context.get("error") or exc.context.get("name")
        if name in PRICE_GUARD_ERRORS:
            price = _price_from_context(exc.context)
            if price is not None:
                return price_changed_message(price)
    if isinstance(exc, ModexError):
        return str(exc)
    return "Something went wrong on the server; the details are in its log. Nothing was charged by this page."


def _price_from_context(context: dict) -> int | None:
    args = context.get("args") or {}
    if isinstance(args, dict):
        for key in ("price", "currentPrice", "newPrice"):
            if key in args:
                return int(args[key])
    if isinstance(args, (list, tuple)) and len(args) >= 2:
        return int(args[1])
    return None


# The app's JSON-only routes: their errors are JSON whatever the client accepts.
JSON_PREFIXES = ("/api/", "/auth/")


def wants_json() -> bool:
    return (
        request.path.startswith(JSON_PREFIXES)
        or request.accept_mimetypes.best == "application/json"
    )


def error_response(exc: BaseException):
    code = status_for(exc)
    message = describe(exc)
    if code >= 500 and not isinstance(exc, HTTPException):
        log.error("error on %s %s", request.method, request.path, exc_info=exc)
    else:
        log.info("%s %s -> %s: %s", request.method, request.path, code, message)
    if wants_json():
        return json_error(error_code(exc), message, code)
    return render_template("error.html", message=message, status=code), code


def flash_error(exc: BaseException) -> None:
    """For views that redirect back to the form: the sentence goes into a flash message."""
    log.info("%s %s: %s", request.method, request.path, exc)
    flash(describe(exc), "error")


def init_app(app) -> None:
    app.register_error_handler(ModexError, error_response)
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, error_response)
