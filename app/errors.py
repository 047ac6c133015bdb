"""Errors become responses in one place: a sentence for a person, HTML for pages, JSON for /api.

Views raise (or let through) `node.errors.ModexError`; this module turns it into a response with
a status code chosen by the branch of the tree (ConfigError 500, ContractRevert 409, KeystoreError
403, ContentNotFound 404, other ModexErrors 400...). HTTP errors (404, 413, CSRF 400) get the same
treatment. A traceback is logged for unexpected exceptions, never shown.
"""

from __future__ import annotations

import logging

from flask import flash, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from node.amounts import fmt_eth as format_eth  # the app's name for it (templates' "eth" filter)
from node.errors import (
    ConfigError,
    ContentNotFound,
    ContractRevert,
    IntegrityError,
    KeystoreError,
    ModexError,
)

log = logging.getLogger(__name__)

# Custom errors whose generic sentence the UI replaces by one that fits a page the buyer opened.
PRICE_GUARD_ERRORS = {"MarketplacePriceAboveMax"}


def price_changed_message(new_price_wei: int) -> str:
    return f"Price changed to {format_eth(new_price_wei)} since you opened this page; nothing was charged."


# The status code of each branch of the ModexError tree, most specific first: the first that
# matches wins, so ModexError itself (any other error of ours) comes last.
STATUS_BY_ERROR: tuple[tuple[type[ModexError], int], ...] = (
    (ContentNotFound, 404),
    (KeystoreError, 403),
    (ContractRevert, 409),
    (IntegrityError, 422),
    (ConfigError, 500),
    (ModexError, 400),
)


def status_for(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):
        return exc.code or 500
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


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


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(exc: BaseException):
    code = status_for(exc)
    message = describe(exc)
    if code >= 500 and not isinstance(exc, HTTPException):
        log.error("error on %s %s", request.method, request.path, exc_info=exc)
    else:
        log.info("%s %s -> %s: %s", request.method, request.path, code, message)
    if wants_json():
        return jsonify(error=message, status=code), code
    return render_template("error.html", message=message, status=code), code


def flash_error(exc: BaseException) -> None:
    """For views that redirect back to the form: the sentence goes into a flash message."""
    log.info("%s %s: %s", request.method, request.path, exc)
    flash(describe(exc), "error")


def init_app(app) -> None:
    app.register_error_handler(ModexError, error_response)
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, error_response)
