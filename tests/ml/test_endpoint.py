"""The signed inference endpoint: one test per refusal, plus the licensed happy path."""

import sqlite3
import time

import pytest
from eth_account import Account

from ml import signing
from ml.endpoint import InferenceService, LicenseCache, create_app, create_blueprint
from ml.serve import DynamicBatcher, QueueFull

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BUYER = Account.from_key("0x" + "42" * 32)
STRANGER = Account.from_key("0x" + "43" * 32)


class Licences:
    def __init__(self, holders):
        self.holders, self.calls = set(holders), 0

    def __call__(self, model_id, address):
        self.calls += 1
        return model_id == 7 and address in self.holders


@pytest.fixture(scope="module")
def batcher(predictor):
    with DynamicBatcher(predictor, max_batch_size=8, max_wait_ms=2) as b:
        yield b


@pytest.fixture
def service(batcher):
    return InferenceService(
        {7: batcher},
        has_license=Licences({BUYER.address}),
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
    )


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def client_for(models):
    """A standalone endpoint over these models, where BUYER holds the licence for model 7."""
    service = InferenceService(
        models, has_license=Licences({BUYER.address}), chain_id=CHAIN_ID, verifying_contract=MARKET
    )
    return create_app(service).test_client()


def signed(account=BUYER, **overrides):
    fields = {
        "model_id": 7,
        "inputs": ["I love this phone"],
        "chain_id": CHAIN_ID,
        "verifying_contract": MARKET,
    } | overrides
    return signing.sign_request(account, **fields)


def refused(response, status, code):
    assert response.status_code == status, response.json
    body = response.json
    assert body["error"]["code"] == code and len(body["error"]["message"]) > 10
    return body["error"]["message"]


def test_licensed_buyer_gets_predictions(client):
    r = client.post("/v1/infer", json=signed(inputs=["I love this phone", "awful, broke at once"]))
    assert r.status_code == 200, r.json
    assert r.json["signer"] == BUYER.address and r.json["modelId"] == 7
    assert [o["label"] in ("negative", "neutral", "positive") for o in r.json["outputs"]] == [
        True
    ] * 2
    assert r.json["warnings"] == []


def test_over_long_text_is_truncated_and_said_so(client):
    r = client.post("/v1/infer", json=signed(inputs=["short", "very long text " * 40]))
    assert r.status_code == 200
    assert [o["truncated"] for o in r.json["outputs"]] == [False, True]
    assert r.json["warnings"] == ["input 1 was longer than the model's limit and was truncated"]


def test_malformed_json_is_400(client):
    refused(
        client.post("/v1/infer", data="{not json", content_type="application/json"),
        400,
        "malformed_json",
    )
    refused(
        client.post("/v1/infer", data="hello", content_type="text/plain"), 400, "malformed_json"
    )
    refused(client.post("/v1/infer", json=[1, 2]), 400, "malformed_json")


@pytest.mark.parametrize(
    "field, value, code",
    [
        ("nonce", None, "bad_request"),
        ("deadline", "soon", "bad_request"),
        ("modelId", -1, "bad_request"),
        ("modelId", 1.5, "bad_request"),
        ("signature", "", "bad_request"),
        ("inputs", "text", "bad_request"),
        ("inputs", [], "bad_request"),
    ],
)
def test_missing_or_mistyped_fields_are_400(client, field, value, code):
    body = signed()
    body[field] = value
    assert field in refused(client.post("/v1/infer", json=body), 400, code)


def test_empty_text_is_400(client):
    msg = refused(client.post("/v1/infer", json=signed(inputs=["fine", "   "])), 400, "empty_input")
    assert "input 1 is empty" in msg


def test_too_many_or_too_long_inputs_are_413(client, service):
    refused(client.post("/v1/infer", json=signed(inputs=["x"] * 65)), 413, "too_many_inputs")
    refused(client.post("/v1/infer", json=signed(inputs=["x" * 20_001])), 413, "input_too_long")


def test_unknown_model_is_404(client):
    msg = refused(client.post("/v1/infer", json=signed(model_id=8)), 404, "unknown_model")
    assert "served: 7" in msg


def test_expired_request_is_401(client):
    body = signed(deadline=int(time.time()) - 1)
    assert "expired" in refused(client.post("/v1/infer", json=body), 401, "expired")


def test_deadline_too_far_ahead_is_400(client):
    refused(client.post("/v1/infer", json=signed(ttl=7200)), 400, "bad_request")


def test_unreadable_signature_is_401(client):
    body = signed()
    body["signature"] = "0x1234"
    refused(client.post("/v1/infer", json=body), 401, "bad_signature")


def test_tampered_inputs_or_wrong_domain_is_401(client):
    body = signed()
    body["inputs"] = ["something else"]
    refused(client.post("/v1/infer", json=body), 401, "signer_mismatch")
    other_chain = signed(chain_id=1)
    refused(client.post("/v1/infer", json=other_chain), 401, "signer_mismatch")


def test_signed_for_another_model_or_marketplace_is_401(batcher):
    client = client_for({7: batcher, 9: batcher})
    body = signed()  # for model 7, sent as a request for model 9 (also served here)
    body["modelId"] = 9
    assert "not by" in refused(client.post("/v1/infer", json=body), 401, "signer_mismatch")
    other_market = signed(verifying_contract="0x" + "12" * 20)  # another EIP-712 domain
    refused(client.post("/v1/infer", json=other_market), 401, "signer_mismatch")
    assert client.post("/v1/infer", json=signed()).status_code == 200


class LazyModels(dict):
    """Counts model look-ups the way app.api.ServedModels loads: on item access."""

    def __init__(self, model):
        super().__init__({7: model})
        self.loads = 0

    def __getitem__(self, key):
        self.loads += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key not in self:
            return default
        return self[key]  # through __getitem__, so that the load is counted


def test_unsigned_or_unlicensed_requests_load_no_model(batcher):
    models = LazyModels(batcher)
    client = client_for(models)
    body = signed()
    body["signature"] = "0x1234"
    refused(client.post("/v1/infer", json=body), 401, "bad_signature")
    refused(client.post("/v1/infer", json=signed(STRANGER)), 403, "no_licence")
    refused(client.post("/v1/infer", json=signed(model_id=8)), 404, "unknown_model")
    assert models.loads == 0
    assert client.post("/v1/infer", json=signed()).status_code == 200 and models.loads == 1


def test_no_licence_is_403(client):
    msg = refused(client.post("/v1/infer", json=signed(STRANGER)), 403, "no_licence")
    assert STRANGER.address in msg
    # without the optional signer field the recovered address is what gets checked
    body = signed()
    body.pop("signer")
    body["inputs"] = ["tampered"]  # recovers to some other address, which holds no licence
    refused(client.post("/v1/infer", json=body), 403, "no_licence")


def test_replayed_nonce_is_409(client):
    body = signed()
    assert client.post("/v1/infer", json=body).status_code == 200
    refused(client.post("/v1/infer", json=body), 409, "replayed")
    # a fresh signature over other inputs does not make an old nonce usable again
    refused(
        client.post("/v1/infer", json=signed(nonce=int(body["nonce"]), inputs=["x"])),
        409,
        "replayed",
    )
    assert client.post("/v1/infer", json=signed(nonce=int(body["nonce"]) + 1)).status_code == 200


class Raising:
    """A served model whose every request raises ``exc``."""

    labels = ("negative", "neutral", "positive")

    def __init__(self, exc):
        self.exc = exc

    def submit(self, texts):
        raise self.exc


@pytest.mark.parametrize(
    "exc, status, code, retry_after",
    [
        (
            QueueFull("inference queue is full (1 requests waiting); retry in a moment"),
            503,
            "queue_full",
            "1",
        ),
        # a fault in the model: a JSON answer (was Flask's HTML 500 page) that leaks nothing of it
        (RuntimeError("CUDA error: device-side assert triggered"), 500, "inference_failed", None),
    ],
)
def test_unserved_request_is_refused_and_its_nonce_stays_usable(
    batcher, exc, status, code, retry_after
):
    models = {7: Raising(exc)}
    client = client_for(models)
    body = signed()
    r = client.post("/v1/infer", json=body)
    assert "CUDA" not in refused(r, status, code)
    assert r.headers.get("Retry-After") == retry_after
    models[7] = batcher  # capacity again / fixed: the very same signed request is served
    assert client.post("/v1/infer", json=body).status_code == 200


def test_licence_check_failure_is_503(batcher):
    def broken(model_id, address):
        raise ConnectionError("rpc down")

    service = InferenceService(
        {7: batcher}, has_license=broken, chain_id=CHAIN_ID, verifying_contract=MARKET
    )
    refused(
        create_app(service).test_client().post("/v1/infer", json=signed()),
        503,
        "licence_check_unavailable",
    )


def test_an_unexpected_server_fault_is_json_too(batcher):
    class LockedNonces:  # the SQLite ServiceStore shared by --processes under heavy load
        def use_nonce(self, signer, nonce, deadline):
            raise sqlite3.OperationalError("database is locked")

    service = InferenceService(
        {7: batcher},
        has_license=Licences({BUYER.address}),
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        store=LockedNonces(),
    )
    app = create_app(service)
    app.testing = False  # as served: the fault is answered, not raised into the test
    msg = refused(app.test_client().post("/v1/infer", json=signed()), 500, "internal_error")
    assert "database" not in msg


def test_licence_answers_are_cached_briefly():
    now = [0.0]
    check = Licences({BUYER.address})
    cache = LicenseCache(check, ttl=30, negative_ttl=5, clock=lambda: now[0])
    assert cache(7, BUYER.address) and cache(7, BUYER.address) and check.calls == 1
    assert not cache(7, STRANGER.address) and check.calls == 2
    check.holders.add(STRANGER.address)  # the stranger buys a licence
    now[0] = 4.0
    assert not cache(7, STRANGER.address) and check.calls == 2  # refusal still cached
    now[0] = 5.5
    assert cache(7, STRANGER.address) and check.calls == 3
    now[0] = 31.0
    assert cache(7, BUYER.address) and check.calls == 4


def test_licence_cache_forgets_expired_answers():
    """Each forged signature recovers to a new address: the cache must not keep them all."""
    now = [0.0]
    cache = LicenseCache(Licences(set()), ttl=30, negative_ttl=5, clock=lambda: now[0])
    for i in range(1000):
        now[0] = i * 0.1
        assert not cache(7, f"0x{i:040x}")
    assert len(cache._cache) <= 400  # at most one ttl's worth of refusals (was all 1000)
    now[0] = 1000.0
    cache(7, BUYER.address)
    assert len(cache._cache) == 1


def test_blueprint_mounts_under_a_prefix_and_lists_models(service):
    from flask import Flask

    app = Flask("host")
    app.register_blueprint(create_blueprint(service), url_prefix="/inference")
    client = app.test_client()
    r = client.get("/inference/v1/models")
    assert r.json["models"] == [
        {"modelId": 7, "labels": ["negative", "neutral", "positive"], "status": "available"}
    ]
    assert r.json["chainId"] == CHAIN_ID
    assert client.post("/inference/v1/infer", json=signed()).status_code == 200


def test_a_chunked_body_over_the_limit_is_413_when_mounted(service):
    """No Content-Length (chunked): the body is bounded as it is read, also inside an app whose
    own limit is the 512 MiB upload limit (was: read whole, then served)."""
    import io
    import json

    from flask import Flask

    from ml.endpoint import MAX_BODY_BYTES

    app = Flask("host")
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024 * 1024
    app.register_blueprint(create_blueprint(service), url_prefix="/inference")

    def chunked(body):  # run directly: Flask's test client would add a Content-Length
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        environ = EnvironBuilder(
            path="/inference/v1/infer",
            method="POST",
            input_stream=io.BytesIO(json.dumps(body).encode()),
            content_type="application/json",
        ).get_environ()
        del environ["CONTENT_LENGTH"]  # what a chunked request looks like to the app
        environ["wsgi.input_terminated"] = True  # as werkzeug's server sets it for chunked
        app_iter, status, headers = run_wsgi_app(app, environ)
        return app.response_class(b"".join(app_iter), status=status, headers=headers)

    assert chunked(signed()).status_code == 200
    refused(chunked({**signed(), "padding": "x" * MAX_BODY_BYTES}), 413, "body_too_large")


def test_typed_data_is_what_a_browser_wallet_signs():
    digest = signing.inputs_digest(["a", "é"])
    import hashlib

    assert digest == hashlib.sha256(b'["a","\\u00e9"]').digest()
    msg = signing.typed_data(
        chain_id=5,
        verifying_contract=MARKET.lower(),
        model_id=1,
        digest=digest,
        nonce=2,
        deadline=3,
    )
    assert msg["domain"] == {
        "name": "Modex",
        "version": "1",
        "chainId": 5,
        "verifyingContract": MARKET,
    }
    assert msg["message"]["inputsDigest"] == "0x" + digest.hex()
    assert [f["name"] for f in msg["types"]["InferenceRequest"]] == [
        "modelId",
        "inputsDigest",
        "nonce",
        "deadline",
    ]


def test_modex_serve_refuses_the_private_embedded_chain(tiny_model, tmp_path, monkeypatch, capsys):
    from modex.cli import main as modex

    monkeypatch.delenv("MODEX_CHAIN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(f'chain = "embedded"\ndata_dir = "{tmp_path}"\n')
    assert modex(["serve", str(tiny_model[0]), "--model-id", "1", "--config", str(config)]) == 1
    assert "modex serve needs a chain" in capsys.readouterr().err
