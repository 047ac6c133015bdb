"""One JSON error shape (app.errors): every error of a JSON route of the app — /api/*, /auth/*,
the inference mount, and 404/405/413/500 under /api/ — is `{"error": {"code", "message"}}` with
nothing else, its status the response's own."""

from __future__ import annotations

import pytest
from eth_account import Account

from app.helpers import require_signer
from node import errors
from tests.app.conftest import csrf_token

# What a view may raise, the status and the code word the JSON error must carry.
RAISED = {
    "content-not-found": (errors.ContentNotFound("no such block"), 404, "not_found"),
    "keystore": (errors.KeystoreError("wrong password"), 403, "keystore_refused"),
    "revert": (errors.ContractRevert("the contract refused"), 409, "contract_reverted"),
    "integrity": (errors.IntegrityError("hash mismatch"), 422, "integrity_failed"),
    "config": (errors.ConfigError("no deployment"), 500, "node_misconfigured"),
    "input": (errors.InputError("modelId must be a number"), 400, "bad_request"),
    "modex": (errors.ModexError("refused"), 400, "refused"),
    "unexpected": (RuntimeError("secret internals"), 500, "server_error"),
}


@pytest.fixture
def json_app(app):
    """The UI app with one /api/ route per kind of error a view may raise (RAISED)."""

    @app.route("/api/test-raise/<kind>")
    def raise_kind(kind: str):
        raise RAISED[kind][0]

    @app.route("/api/test-needs-signer")
    def needs_signer():
        return require_signer()

    app.config["MAX_CONTENT_LENGTH"] = 1024
    return app


def _with_token(client, **headers) -> dict:
    return {"X-CSRFToken": csrf_token(client), **headers}


# (method, path, request keywords (a callable of the client for ones that need a page's token),
#  status, code)
CASES = [
    ("GET", "/api/no-such-route", {}, 404, "not_found"),
    ("GET", "/api/models/9999/delivery", {}, 404, "not_found"),
    ("GET", "/api/jobs/no-such-job", {}, 404, "not_found"),
    ("POST", "/api/health", {}, 405, "method_not_allowed"),
    ("GET", "/auth/siwe", {}, 405, "method_not_allowed"),
    ("GET", "/auth/no-such-route", {}, 404, "not_found"),
    ("POST", "/auth/siwe", {"json": {"message": "x"}}, 400, "csrf_failed"),
    (
        "POST",
        "/auth/siwe",
        lambda c: {"json": {"message": 1}, "headers": _with_token(c)},
        400,
        "bad_request",
    ),
    (
        "POST",
        "/auth/siwe",
        lambda c: {"json": {"message": 1}, "headers": _with_token(c, Origin="http://evil.example")},
        403,
        "forbidden",
    ),
    (
        "POST",
        "/api/wallet/connect",
        lambda c: {"json": {"address": Account.create().address}, "headers": _with_token(c)},
        401,
        "not_signed_in",
    ),
    (
        "POST",
        "/api/tx/prepare",
        lambda c: {"json": {"action": "buy"}, "headers": _with_token(c)},
        400,
        "bad_request",
    ),
    (
        "POST",
        "/api/wallet/encryption-key",
        lambda c: {"data": "x" * 2048, "headers": _with_token(c)},
        413,
        "request_entity_too_large",
    ),
    ("GET", "/api/test-needs-signer", {}, 401, "needs_wallet"),
    ("GET", "/api/inference/v1/infer", {}, 405, "method_not_allowed"),
    (
        "POST",
        "/api/inference/v1/infer",
        {"data": "not json", "content_type": "application/json"},
        400,
        "malformed_json",
    ),
    *(
        ("GET", f"/api/test-raise/{kind}", {}, status, code)
        for kind, (_exc, status, code) in RAISED.items()
    ),
]


@pytest.mark.parametrize(
    "method, path, keywords, status, code",
    CASES,
    ids=[f"{m} {p} {s}" for m, p, _k, s, _c in CASES],
)
def test_every_json_error_has_one_shape(json_app, method, path, keywords, status, code):
    client = json_app.test_client()
    kw = keywords(client) if callable(keywords) else keywords
    r = client.open(path, method=method, **kw)
    body = r.get_json(silent=True)
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "application/json", r.get_data(as_text=True)[:300]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message.strip(), body
    assert "secret internals" not in message and "Traceback" not in message


def test_a_page_asking_for_json_gets_the_same_shape_and_a_page_gets_html(json_app):
    client = json_app.test_client()
    r = client.get("/models/9999", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.get("/models/9999")
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "There is no model #9999" in r.get_data(as_text=True)
