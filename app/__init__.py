"""The Modex web UI: a Flask app factory over the node/ library (and ml/ for inference and
recommendations). One blueprint per area: market (+ model page), wallet, publish, train,
validate, api; what several of them look up lives in app.lookups (no blueprint imports another),
and the inference endpoint with its model loading in app.inference.

    from app import create_app
    app = create_app({"MODEX_NODE_CONFIG": config, "MODEX_CHAIN": chain, "MODEX_STORE": store})

`modex up` builds the embedded stack and hands it in; without it the resources are built lazily
from the node configuration (node.config.load_config: one TOML file + MODEX_* env).
"""

from __future__ import annotations

import os

from flask import Flask, Response

from app import (
    api,
    auth,
    download,
    errors,
    feedback,
    helpers,
    inference,
    jobs,
    market,
    paying,
    publish,
    resources,
    reviews,
    session_keys,
    train,
    validate,
    versions,
    wallet,
)
from node.errors import ConfigError

csrf = auth.SameOriginCSRFProtect()  # the CSRF token and the Origin check, on the same requests

DEFAULTS = {
    # Sessions only carry a random id and the address; a new key per process is fine because
    # unlocked signers live in this process's memory anyway.
    "SECRET_KEY": None,
    "MAX_CONTENT_LENGTH": 512 * 1024 * 1024,  # model upload limit (413 with a sentence above it)
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead of a clock
    "MODEX_UNLOCK_TIMEOUT": 15 * 60,
    "MODEX_PER_PAGE": 20,
    "MODEX_FAUCET_WEI": 0,  # > 0 on dev chains: a "get test ETH" button for new wallets
    "MODEX_DEMO": False,
    # An exchange for other people (`modex up --hosted`): no keystore is created, imported or
    # unlocked on the server; visitors sign with their browser wallet (app.wallet).
    "MODEX_HOSTED": False,
}


# Sent with every response (pages and JSON): scripts only from the app's own files (no inline
# script or on*= handler in app/templates: tests/app/test_security_headers.py reads them), and
# no page of the UI inside another site's frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _whole_number(variable: str) -> int:
    text = os.environ[variable]
    if not text.isdigit():
        raise ConfigError(f"${variable} is {text!r}: use a whole number, 0 or more", key=variable)
    return int(text)


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    if test_config:
        app.config.update(test_config)
    if os.environ.get("MODEX_LISTINGS_CACHE_SIZE"):  # 0 turns the market's cache off
        app.config["MODEX_LISTINGS_CACHE_SIZE"] = _whole_number("MODEX_LISTINGS_CACHE_SIZE")
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = os.environ.get("MODEX_SECRET_KEY") or os.urandom(32).hex()

    csrf.init_app(app)
    resources.init_app(app)
    session_keys.init_app(app)
    auth.init_app(app)
    jobs.init_app(app)
    errors.init_app(app)
    helpers.init_app(app)
    for bp in (market.bp, paying.bp, wallet.bp, publish.bp, train.bp, validate.bp, api.bp):
        app.register_blueprint(bp)
    app.register_blueprint(feedback.bp)  # "wrong? correct it" and its API (private feedback)
    app.register_blueprint(reviews.bp)  # reviews and reports on the model page
    app.register_blueprint(download.bp)  # the in-browser download's data and sealed archive
    app.register_blueprint(versions.bp)  # the model page's version history
    inference.init_app(app, csrf)
    app.after_request(_security_headers)
    return app
