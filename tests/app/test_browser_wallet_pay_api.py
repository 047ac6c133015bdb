"""A browser wallet (EIP-1193) pays for a model's service without a key on the node (issue 16 §2):
/api/tx/prepare's subscribe, openChannel, topUp, extend and reclaim (an ERC-20 listing's approve
first, "step": "approve"), and Try it's typed data signed by the wallet (the request, and the
voucher on a channel) then handed to the service. Flask's test client on an exchange of its own
(tests/app/test_pay_service.py's: a listing in mUSD, 1 mUSD per 30 days, 0.01 mUSD a call); the
wallet here is an eth-account key that signs what the page would have its wallet sign."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data

from node.channels import ChannelClient
from node.tokens import stablecoin
from tests.app.conftest import csrf_token, post
from tests.app.test_pages import send_prepared
from tests.app.test_pay_service import CALL_PRICE, MUSD, client, exchange  # noqa: F401 (fixtures)
from tests.app.test_siwe import sign_in
from tests.node.modex_stack import time_travel


def connected_wallet(ui, node):
    """A new key, signed in (SIWE) and connected as this session's browser wallet, given test ETH
    and 1000 mUSD by the faucet."""
    wallet = Account.create()
    sign_in(ui, wallet, node.chain.chain_id)
    headers = {"X-CSRFToken": csrf_token(ui)}
    r = ui.post("/api/wallet/connect", json={"address": wallet.address}, headers=headers)
    assert r.get_json() == {"address": wallet.address}
    post(ui, "/wallet/faucet")
    assert node.chain.balance_in(stablecoin(node.chain), wallet.address) == 1000 * MUSD
    return wallet


def api(ui, path: str, body: dict):
    return ui.post(path, json=body, headers={"X-CSRFToken": csrf_token(ui)})


def error_of(r) -> str:
    """The sentence of a JSON error: {"error": sentence} or {"error": {"code", "message"}}."""
    error = r.get_json()["error"]
    return error["message"] if isinstance(error, dict) else error


def send_steps(ui, node, wallet, body: dict) -> list[str]:
    """What the page's sendSteps does: prepare, send, and again while the server says "approve";
    returns the steps sent."""
    steps = []
    while True:
        r = api(ui, "/api/tx/prepare", body)
        assert r.status_code == 200, r.get_json()
        prepared = r.get_json()
        assert send_prepared(ui, node.chain, wallet, prepared["tx"]) == "mined"
        steps.append(prepared.get("step", ""))
        if prepared.get("step") != "approve":
            return steps


def sign(wallet, typed: dict) -> str:
    """eth_signTypedData_v4 as a wallet answers it (the typed data as the page received it)."""
    return "0x" + bytes(wallet.sign_message(encode_typed_data(full_message=typed)).signature).hex()


def ask(ui, model_id: int, text: str = "great phone, love it") -> dict:
    """The typed data the page asks for Try it."""
    r = api(ui, f"/api/models/{model_id}/try/typed-data", {"text": text})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def post_signed(ui, wallet, model_id: int, asked: dict):
    """What the page posts once the wallet signed the request (and the voucher)."""
    signed = asked["body"] | {"signature": sign(wallet, asked["request"])}
    if asked["voucher"]:
        signed["voucherSignature"] = sign(wallet, asked["voucher"])
    return api(ui, f"/api/models/{model_id}/try", signed)


def try_it(ui, wallet, model_id: int, text: str = "great phone, love it"):
    """The page's Try it: ask for the typed data, sign it (and the voucher), post it."""
    asked = ask(ui, model_id, text)
    return asked, post_signed(ui, wallet, model_id, asked)


def test_a_browser_wallet_subscribes_then_signs_try_it_in_the_page(client, exchange):  # noqa: F811
    model_id = exchange.listing
    wallet = connected_wallet(client, exchange)
    r = api(client, f"/api/models/{model_id}/try/typed-data", {"text": "great phone"})
    assert r.status_code == 400
    assert error_of(r) == (
        f"You have no licence, subscription or payment channel for model {model_id}: buy it, "
        "subscribe or open a payment channel (Use the service), then Try it."
    )
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'data-eip1193-subscribe="' in html and 'data-eip1193-channel="' in html
    assert 'id="try"' not in html  # nothing to pay with yet

    r = api(client, "/api/tx/prepare", {"action": "subscribe", "modelId": model_id, "periods": 0})
    assert r.status_code == 400 and "whole number from 1 to" in error_of(r)
    body = {"action": "subscribe", "modelId": model_id, "periods": "2"}
    assert send_steps(client, exchange, wallet, body) == ["approve", "subscribe"]
    coin = stablecoin(exchange.chain)
    assert exchange.chain.balance_in(coin, wallet.address) == 998 * MUSD

    asked, r = try_it(client, wallet, model_id)
    assert asked["paying"] == "subscription" and asked["voucher"] is None
    assert asked["request"]["domain"]["verifyingContract"] == exchange.chain.marketplace.address
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["said"].startswith("“great phone, love it” → ")
    assert r.get_json()["said"].endswith("· paid with your subscription")
    with client.session_transaction() as kept:  # "wrong? correct it" offers this answer
        assert kept["feedback_answer"]["text"] == "great phone, love it"
        assert kept["feedback_answer"]["model_id"] == model_id
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'data-eip1193-try="' in html and 'id="try-button"' not in html

    # The same signed request again: its nonce is spent (the service checks everything).
    again = api(
        client, f"/api/models/{model_id}/try", asked["body"] | {"signature": "0x" + "00" * 65}
    )
    assert again.status_code != 200
    # A request signed for another wallet than the connected one is not handed on.
    other = Account.create()
    forged = asked["body"] | {"signer": other.address, "signature": sign(other, asked["request"])}
    r = api(client, f"/api/models/{model_id}/try", forged)
    assert r.status_code == 400 and "Sign the request with the connected wallet" in error_of(r)


def test_a_browser_wallet_opens_tops_up_extends_and_reclaims_a_channel(client, exchange):  # noqa: F811
    model_id = exchange.listing
    chain, coin = exchange.chain, stablecoin(exchange.chain)
    channels = ChannelClient.for_chain(chain)
    wallet = connected_wallet(client, exchange)
    body = {"action": "openChannel", "modelId": model_id, "amount": "0.015", "days": "1"}
    r = api(client, "/api/tx/prepare", body | {"amount": "0"})
    assert r.status_code == 400 and error_of(r) == "The deposit must be more than 0 mUSD."
    r = api(client, "/api/tx/prepare", body | {"amount": "5000"})
    assert r.status_code == 400 and "holds 1000 mUSD but the deposit is 5000 mUSD" in error_of(r)
    assert send_steps(client, exchange, wallet, body) == ["approve", "open"]
    [channel] = channels.channels_of(wallet.address)
    number = channel.channel_id
    assert (channel.deposit, channel.buyer) == (15 * CALL_PRICE // 10, wallet.address)

    asked, twice = ask(client, model_id), ask(client, model_id)  # two tabs, say
    assert asked["paying"] == "channel"
    assert asked["voucher"]["domain"]["verifyingContract"] == channels.address
    assert asked["voucher"]["message"] == {
        "channelId": str(number),
        "cumulativeAmount": str(CALL_PRICE),
    }
    assert twice["voucher"]["message"] == asked["voucher"]["message"]
    r = post_signed(client, wallet, model_id, asked)
    assert r.status_code == 200, r.get_json()
    assert f"paid by a voucher on channel #{number} (0.01 mUSD spent" in r.get_json()["said"]
    assert r.get_json()["left"] == "0.005 mUSD of 0.015 mUSD"
    # The second tab's voucher pays nothing more: the service holds it (the page asks again).
    r = post_signed(client, wallet, model_id, twice)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "voucher_stale"

    # The deposit is spent: refused before the wallet opens.
    r = api(client, f"/api/models/{model_id}/try/typed-data", {"text": "again"})
    assert r.status_code == 400
    assert error_of(r) == (
        f"Your payment channel #{number} has 0.005 mUSD left, less than one call (0.01 mUSD): "
        "its deposit is spent. Top it up on the Wallet page or open another."
    )
    wallet_page = client.get("/wallet/").get_data(as_text=True)
    assert f'data-eip1193-topup="{number}"' in wallet_page
    assert f'data-eip1193-extend="{number}"' in wallet_page
    top_up = {"action": "topUp", "channelId": str(number), "amount": "1"}
    assert send_steps(client, exchange, wallet, top_up) == ["approve", "topUp"]
    asked, r = try_it(client, wallet, model_id, "awful, broke in a day")
    assert asked["voucher"]["message"]["cumulativeAmount"] == str(2 * CALL_PRICE)
    assert f"channel #{number} (0.02 mUSD spent" in r.get_json()["said"], r.get_json()

    before = channels.channel(number).expires_at
    assert send_steps(
        client, exchange, wallet, {"action": "extend", "channelId": number, "days": 2}
    )
    assert channels.channel(number).expires_at == before + 2 * 86400

    # Another wallet may not change it; the buyer may reclaim only after expiry.
    intruder = connected_wallet(client, exchange)
    r = api(client, "/api/tx/prepare", top_up)
    assert r.status_code == 400
    assert error_of(r) == f"Payment channel #{number} is not yours: only its buyer may change it."
    sign_in(client, wallet, chain.chain_id)
    headers = {"X-CSRFToken": csrf_token(client)}
    client.post("/api/wallet/connect", json={"address": wallet.address}, headers=headers)
    reclaim = {"action": "reclaim", "channelId": str(number)}
    r = api(client, "/api/tx/prepare", reclaim)
    assert r.status_code == 409 and "can reclaim the rest only after that" in error_of(r)
    time_travel(chain, 4 * 86400)
    r = api(client, f"/api/models/{model_id}/try/typed-data", {"text": "late"})
    assert r.status_code == 400 and f"channel #{number} expires at" in error_of(r)
    held, left = chain.balance_in(coin, wallet.address), channels.channel(number).remaining
    assert left == 1_015_000  # the seller claimed none of the vouchers before the expiry
    assert send_steps(client, exchange, wallet, reclaim)
    assert not channels.channel(number).open
    assert chain.balance_in(coin, wallet.address) == held + left
    assert intruder.address != wallet.address
