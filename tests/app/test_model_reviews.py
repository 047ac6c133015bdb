"""Reviews and reports on the model page (issue 15 §2, app/reviews.py): a licence holder reviews
from its keystore wallet or a browser wallet (the node prepares, the wallet signs the document and
the transaction), the page lists the reviews newest first with their version and texts sanitised
with nh3, and counts the accounts that reported the model; each refusal is a sentence."""

from __future__ import annotations

import re

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from modex import demo
from modex.commands import up
from node import market
from node.signer import LocalSigner
from tests.app.conftest import FAST_SCRYPT, csrf_token, post, publish_listing, settle, unlock
from tests.app.test_pages import send_prepared
from tests.app.test_siwe import connect, sign_in


@pytest.fixture
def page(own_exchange, tmp_path):
    """A UI over an exchange of its own with one listing the demo buyer holds a licence of."""
    demo.demo_accounts(own_exchange)
    model_id = publish_listing(own_exchange, tmp_path, "reviewed", "Reviewed model")
    market.buy(own_exchange.chain, own_exchange.demo_accounts["buyer"], model_id)
    settle(own_exchange)  # delivered by the node's worker, indexed
    ui = up.create_ui(
        own_exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT}
    )
    return ui.test_client(), own_exchange, model_id


def test_a_keystore_review_is_listed_sanitised_and_counts_as_a_vote(page):
    client, exchange, model_id = page
    url = f"/models/{model_id}"
    assert 'id="review-form"' not in client.get(url).get_data(as_text=True)  # no wallet
    unlock(client, exchange, "buyer")
    html = client.get(url).get_data(as_text=True)
    assert 'id="review-form"' in html and 'id="no-reviews"' in html
    for bad in ("9", "four"):
        post(client, f"{url}/review", {"score": bad, "text": "x"}, token_from=url)
        assert "Choose a score from 1 to 5 stars." in client.get(url).get_data(as_text=True)
    post(client, f"{url}/review", {"score": "4", "text": "  "}, token_from=url)
    assert "cannot be empty" in client.get(url).get_data(as_text=True)
    text = 'Works. <b onmouseover="x()">bold</b><script>alert(1)</script><img src=x onerror=y()>'
    r = post(client, f"{url}/review", {"score": "4", "text": text}, token_from=url)
    assert r.status_code == 302 and r.headers["Location"].endswith("#reviews")
    assert "Your review (4★) is on-chain" in client.get(url).get_data(as_text=True)
    settle(exchange)
    html = client.get(url).get_data(as_text=True)
    shown = re.findall(r'<p class="review-text">(.*?)</p>', html, re.S)
    assert shown == ["Works. bold"], shown  # every tag, the script's text and the handlers gone
    assert "4★</strong>" in html and "about version 1" in html
    assert "4.0 from 1 voter" in html  # the review's score is the vote


def test_reports_need_access_and_are_counted(page):
    client, exchange, model_id = page
    url = f"/models/{model_id}"
    unlock(client, exchange, "validator")  # no licence, no subscription
    post(client, f"{url}/report", {"reason": "Spam."}, token_from=url)
    html = client.get(url).get_data(as_text=True)
    assert "has no access to model" in html and 'id="report-count"' not in html
    post(client, f"{url}/review", {"score": "5", "text": "Great."}, token_from=url)
    assert "holds no voting licence" in client.get(url).get_data(as_text=True)
    unlock(client, exchange, "buyer")
    post(client, f"{url}/report", {"reason": "Copies another listing."}, token_from=url)
    settle(exchange)
    assert "Reported by 1 account." in client.get(url).get_data(as_text=True)


def test_a_browser_wallet_signs_its_review_and_its_transaction(page):
    client, exchange, model_id = page
    chain = exchange.chain
    wallet = Account.create()
    exchange.fund(wallet.address, 10**18)
    market.buy(chain, LocalSigner(wallet), model_id)
    settle(exchange)
    sign_in(client, wallet, chain.chain_id)
    connect(client, wallet.address)
    headers = {"X-CSRFToken": csrf_token(client)}
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert f'data-eip1193-review="{model_id}"' in html and 'id="review-button"' not in html
    body = {"score": 5, "text": "Signed in my browser."}
    r = client.post(f"/api/models/{model_id}/review/typed-data", json=body, headers=headers)
    asked = r.get_json()
    assert asked["signer"] == wallet.address and asked["typedData"]["message"]["version"] == 1
    signature = wallet.sign_message(encode_typed_data(full_message=asked["typedData"])).signature
    prepare = {"action": "review", "modelId": model_id, **body, "version": 1}
    # Signed by another key, or for another score: refused before anything is pinned.
    forged = Account.create().sign_message(encode_typed_data(full_message=asked["typedData"]))
    for bad in ({"signature": "0x" + forged.signature.hex()}, {"score": 4}):
        r = client.post(
            "/api/tx/prepare",
            json={**prepare, "signature": "0x" + signature.hex(), **bad},
            headers=headers,
        )
        assert r.status_code == 400 and "is not signed by" in r.get_json()["error"]["message"]
    r = client.post(
        "/api/tx/prepare", json={**prepare, "signature": "0x" + signature.hex()}, headers=headers
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["tx"]["to"] == chain.votes.address
    assert send_prepared(client, chain, wallet, r.get_json()["tx"]) == "mined"
    settle(exchange)
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "Signed in my browser." in html and "5.0 from 1 voter" in html
    # A report is prepared the same way.
    r = client.post(
        f"/api/models/{model_id}/report/typed-data", json={"reason": "Odd."}, headers=headers
    )
    typed = r.get_json()["typedData"]
    signed = wallet.sign_message(encode_typed_data(full_message=typed)).signature
    r = client.post(
        "/api/tx/prepare",
        json={
            "action": "report",
            "modelId": model_id,
            "reason": "Odd.",
            "signature": "0x" + signed.hex(),
        },
        headers=headers,
    )
    assert send_prepared(client, chain, wallet, r.get_json()["tx"]) == "mined"
    settle(exchange)
    assert "Reported by 1 account." in client.get(f"/models/{model_id}").get_data(as_text=True)
