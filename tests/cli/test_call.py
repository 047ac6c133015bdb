"""`modex call` without a chain: its argument errors, a service it cannot reach or that is not one,
a service on another marketplace, and the request it signs, checked by the server's own code."""

import contextlib
import http.server
import json
import threading
from pathlib import Path
from unittest.mock import ANY

import pytest
from eth_account import Account

from ml import signing
from ml.endpoint import InferenceService
from modex import cli
from modex.commandline import SERVE_PORT, service_url
from modex.commands.call import check_same_marketplace
from node import channels
from node.devchain import free_port
from node.errors import ConfigError
from node.signer import LocalSigner

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WALLET = LocalSigner(Account.from_key("0x" + "42" * 32))


def modex_call(capsys, *argv: str) -> tuple[int, str, str]:
    """`modex call ARGV` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(["call", *argv])
    except SystemExit as exit:  # argparse refuses the arguments
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model_id", ["0", "-1", "x", "1.5"])
def test_a_model_id_that_is_not_a_positive_integer_is_refused(capsys, model_id):
    code, _, err = modex_call(capsys, model_id, "great phone")
    assert code == 2
    assert f"argument MODEL_ID: {model_id!r} is not an id" in err
    assert "a whole number, 1 or more" in err


def test_texts_are_required(capsys):
    code, _, err = modex_call(capsys, "1")
    assert code == 2 and "the following arguments are required: TEXT" in err


@pytest.mark.parametrize("url", ["localhost:8600", "127.0.0.1:8600", "ftp://host/", "http://"])
def test_a_url_that_is_not_http_is_refused_with_the_form_to_use(capsys, url):
    code, _, err = modex_call(capsys, "1", "great phone", "--url", url)
    assert code == 1
    assert f"--url {url!r} is not an http:// or https:// URL" in err
    assert f"e.g. {service_url()}" in err


def test_the_default_url_is_where_modex_serve_listens_by_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["call", "--help"])
    out = capsys.readouterr().out
    assert f"(default: http://127.0.0.1:{SERVE_PORT})" in " ".join(out.split())


def test_no_service_at_the_url_says_how_to_start_one(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = modex_call(capsys, "3", "great phone", "--url", url)
    assert code == 1 and out == ""
    assert f"no inference service answers at {url}" in err
    assert "`modex serve MODEL_DIR --model-id 3 --chain URL`" in err


@contextlib.contextmanager
def answering(status: int, body: bytes, content_type: str = "application/json"):
    """The URL of a local HTTP server answering every GET with ``status`` and ``body``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_an_inference_service_is_named(capsys):
    with answering(404, b"<h1>Not Found</h1>", "text/html") as url:
        code, _, err = modex_call(capsys, "1", "great phone", "--url", url + "/")
    assert code == 1
    assert f"{url} does not answer as a Modex inference service" in err
    assert "HTTP 404" in err


def test_a_model_the_service_cannot_load_is_said_before_signing(capsys):
    listing = {
        "models": [{"modelId": 4, "labels": [], "status": "unavailable", "reason": "no weights"}],
        "chainId": CHAIN_ID,
        "verifyingContract": MARKET,
    }
    with answering(200, json.dumps(listing).encode()) as url:
        code, _, err = modex_call(capsys, "4", "great phone", "--url", url)
        assert code == 1
        assert f"the service at {url} cannot serve model 4 now: no weights" in err
        code, _, err = modex_call(capsys, "5", "great phone", "--url", url)
        assert code == 1
        assert f"the service at {url} does not serve model 5 (it serves: 4)" in err


def test_a_service_on_another_chain_or_marketplace_is_refused_before_signing():
    served = {"models": {1: {}}, "chainId": CHAIN_ID, "verifyingContract": MARKET.lower()}
    check_same_marketplace(served, "http://s", CHAIN_ID, MARKET)  # same, whatever the case
    other = "0x" + "77" * 20
    with pytest.raises(
        ConfigError, match="checks licences on chain 31337 .* your node on chain 1 "
    ):
        check_same_marketplace(served, "http://s", 1, MARKET)
    with pytest.raises(ConfigError, match=f"your node on chain 31337 \\(marketplace {other}\\)"):
        check_same_marketplace(served, "http://s", CHAIN_ID, other)


class Echo:
    """A served model for the service's checks: one fixed answer per text."""

    labels = ["negative", "positive"]

    def predict(self, inputs):
        return [{"label": "positive", "score": 0.9, "truncated": False} for _ in inputs]


def test_the_request_it_signs_verifies_with_the_servers_own_checks():
    texts = ["great phone, love it", "naïve ☃ text"]
    body = signing.sign_request_as(
        WALLET, model_id=7, inputs=texts, chain_id=CHAIN_ID, verifying_contract=MARKET
    )
    assert body["signer"] == WALLET.address
    assert (
        signing.recover_signer(
            chain_id=CHAIN_ID,
            verifying_contract=MARKET,
            model_id=7,
            inputs=texts,
            nonce=int(body["nonce"]),
            deadline=body["deadline"],
            signature=body["signature"],
        )
        == WALLET.address
    )
    service = InferenceService(
        {7: Echo()},
        has_license=lambda model_id, address: address == WALLET.address,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
    )
    answer = service.handle(body)
    assert answer["signer"] == WALLET.address and len(answer["outputs"]) == 2
    # the same typed data an eth-account key signs through sign_request
    fields = {"nonce": body["nonce"], "deadline": body["deadline"]}
    same = signing.sign_request(
        Account.from_key("0x" + "42" * 32),
        model_id=7,
        inputs=texts,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        **fields,
    )
    assert same == body


def test_the_docs_typed_data_and_test_vector_are_what_the_code_signs():
    doc = (Path(__file__).parents[2] / "docs" / "inference-api.md").read_text()
    typed = doc.split("## What is signed", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    fields = {"chain_id": CHAIN_ID, "verifying_contract": MARKET, "model_id": 1}
    digest = signing.inputs_digest(["great phone"])
    assert json.loads(typed) == signing.typed_data(
        **fields, digest=digest, nonce=4660, deadline=1790000000
    )
    body = signing.sign_request_as(
        WALLET, **fields, inputs=["great phone"], nonce=4660, deadline=1790000000
    )
    assert f"\n{json.dumps(body)}\n" in doc  # the raw HTTP request's body
    assert f"signer\n`{WALLET.address}`" in doc


def test_the_docs_voucher_typed_data_and_test_vector_are_what_the_code_signs():
    doc = (Path(__file__).parents[2] / "docs" / "inference-api.md").read_text()
    section = doc.split("### The voucher: EIP-712 typed data", 1)[1]
    typed = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    vector = (channels.VECTOR_CHAIN_ID, channels.VECTOR_CHANNELS, channels.VECTOR_CHANNEL_ID)
    assert typed == channels.voucher_typed_data(*vector, channels.VECTOR_AMOUNT)
    key = Account.from_key(channels.VECTOR_KEY)
    body = signing.with_voucher(
        {},
        key,
        chain_id=vector[0],
        channels_address=vector[1],
        channel_id=vector[2],
        cumulative_amount=channels.VECTOR_AMOUNT,
    )
    assert body == {"channelId": "1", "cumulativeAmount": "1000000", "voucherSignature": ANY}
    assert body["voucherSignature"] == channels.VECTOR_SIGNATURE
    assert f"signature\n`{channels.VECTOR_SIGNATURE}`" in section
    assert f"digest\n`{channels.VECTOR_DIGEST}`" in section and f"`{key.address}`" in section
