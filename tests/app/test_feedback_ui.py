"""Private feedback from the UI (issue 15 §3) on an exchange of its own: Try it's answer, then
"wrong? correct it" beside it (the form offers the answer, the session's keystore wallet sends
the correction sealed to the seller), the JSON API's send and withdraw, and the refusals. The
seller reads each item with node.feedback; the node's data folder (store, index, wallets) and
the app's log records never hold the text."""

from __future__ import annotations

import logging
import uuid

import pytest

from modex import demo
from modex.commands import up
from node import feedback
from node.publish import ListingInfo, publish
from tests.app.conftest import FAST_SCRYPT, csrf_token, make_model_dir, post, settle, unlock


@pytest.fixture
def exchange(own_exchange, trained_model, tmp_path):
    """own_exchange with the demo wallets, one served listing and the buyer's licence of it."""
    demo.demo_accounts(own_exchange)
    seller = own_exchange.demo_accounts["seller"]
    own_exchange.listing = publish(
        own_exchange.chain,
        seller,
        own_exchange.store,
        own_exchange.vault,
        make_model_dir(tmp_path, "served"),
        ListingInfo(name="Served", description="a served model", task="other", license="mit"),
        price_wei=10**16,
        operator=own_exchange.operator.address,
    ).model_id
    own_exchange.models[own_exchange.listing] = trained_model
    settle(own_exchange)
    return own_exchange


@pytest.fixture
def client(exchange):
    app = up.create_ui(exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT})
    client = app.test_client()
    unlock(client, exchange, "buyer")
    post(client, f"/models/{exchange.listing}/buy", {"max_price": "0.01"})
    settle(exchange)
    return client


def seller_items(exchange) -> list[feedback.FeedbackItem]:
    return feedback.read_feedback(
        exchange.chain, exchange.store, exchange.demo_accounts["seller"], exchange.listing
    )


def test_wrong_correct_it_beside_try_its_answer(exchange, client, caplog):
    caplog.set_level(logging.DEBUG)
    page = f"/models/{exchange.listing}"
    secret = f"the screen cracked in a day {uuid.uuid4()}"
    assert 'id="feedback"' in client.get(page).get_data(as_text=True)  # a licence holder's page
    post(client, f"{page}/try", {"text": secret})
    html = client.get(page).get_data(as_text=True)
    assert "Wrong? Correct it" in html and f">{secret}</textarea>" in html  # the answer offered
    answered = html.split('name="output" value="')[1].split('"')[0]
    assert answered  # the label Try it answered
    r = post(
        client,
        f"{page}/feedback",
        {"text": secret, "output": answered, "label": "0", "note": ""},
        token_from=page,
    )
    assert r.status_code == 302 and r.location.endswith("#feedback")
    html = client.get(page).get_data(as_text=True)
    assert "Sent privately to the seller" in html and f">{secret}</textarea>" not in html
    (item,) = seller_items(exchange)
    assert (item.input, item.output, item.label, item.note) == (secret, answered, 0, None)
    assert item.sender == exchange.demo_accounts["buyer"].address
    settle(exchange)  # the index follows the anchor
    data = exchange.config.data_dir
    holding = [p for p in data.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holding == []
    assert secret not in caplog.text


def test_the_api_sends_and_withdraws_and_refuses(exchange, client):
    api = f"/api/models/{exchange.listing}/feedback"
    headers = {"X-CSRFToken": csrf_token(client)}
    r = client.post(
        api, json={"text": "meh", "output": "positive", "note": "it is lukewarm"}, headers=headers
    )
    assert r.status_code == 200, r.get_json()
    cid = r.get_json()["cid"]
    assert [(i.cid, i.note) for i in seller_items(exchange)] == [(cid, "it is lukewarm")]
    r = client.post(api, json={"text": "meh", "label": "x"}, headers=headers)
    assert r.status_code == 400 and "whole number" in r.get_json()["error"]["message"]
    r = client.post(api, json={"text": "meh"}, headers=headers)
    assert r.status_code == 400 and "right label" in r.get_json()["error"]["message"]
    r = client.post(f"{api}/withdraw", json={"cid": cid}, headers=headers)
    assert r.status_code == 200 and r.get_json()["cid"] == cid
    assert seller_items(exchange) == []
    unlock(client, exchange, "validator")  # holds no licence
    r = client.post(api, json={"text": "meh", "label": 1}, headers=headers)
    body = r.get_json()["error"]
    assert r.status_code == 400 and body["code"] == "feedback_refused", body
    assert "no licence or live subscription" in body["message"]
    r = client.post(f"{api}/withdraw", json={"cid": cid}, headers=headers)
    assert r.status_code == 400 and "only its sender" in r.get_json()["error"]["message"]
