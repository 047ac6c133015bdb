"""A validator's wallet on the Validate page (issue 16 §2): a browser wallet (EIP-1193) stakes and
names the hot key the node's validator agent runs with through /api/tx/prepare's ``stake`` and
``setAttester`` (the node prepares, the wallet signs, the page follows the receipt); a server-held
wallet does the same with the page's forms. Flask's test client; the browser wallet is an
eth-account key that signs what the page would have its wallet sign."""

from __future__ import annotations

from decimal import Decimal

from eth_account import Account

from modex import demo
from modex.commands import up
from node import market
from node.protocol import StakeInfo
from node.validator import NO_ATTESTER_ADDRESS
from tests.app.conftest import FAST_SCRYPT, csrf_token, post, unlock
from tests.app.test_pages import send_prepared
from tests.app.test_siwe import sign_in


def connected(client, stack):
    """A new key with test ETH, signed in (SIWE) and connected as the session's browser wallet."""
    wallet = Account.create()
    stack.fund(wallet.address, 10**18)
    sign_in(client, wallet, stack.chain.chain_id)
    r = client.post(
        "/api/wallet/connect",
        json={"address": wallet.address},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert r.status_code == 200, r.get_json()
    return wallet


def prepare(client, body: dict):
    return client.post("/api/tx/prepare", json=body, headers={"X-CSRFToken": csrf_token(client)})


def sentence(r) -> str:
    """A JSON error's sentence ({"error": sentence} or {"error": {"code", "message"}})."""
    error = r.get_json()["error"]
    return error["message"] if isinstance(error, dict) else error


def sent(client, stack, wallet, body: dict) -> dict:
    """Prepare ``body``'s transaction, sign and send it as the page's wallet would; the tx."""
    r = prepare(client, body)
    assert r.status_code == 200, r.get_json()
    tx = r.get_json()["tx"]
    assert send_prepared(client, stack.chain, wallet, tx) == "mined"
    return tx


def test_a_browser_wallet_stakes_and_names_an_attester(client, stack):
    wallet = connected(client, stack)
    chain = stack.chain
    v = chain.validators.functions
    html = client.get("/validate/").get_data(as_text=True)
    assert "data-eip1193-stake" in html and "data-eip1193-attester" in html
    assert 'id="stake-button"' not in html  # a browser wallet's page offers its buttons
    min_stake = market.min_stake(chain)

    r = prepare(client, {"action": "stake", "amount": "0"})
    assert r.status_code == 400 and "Stake more than 0 ETH" in sentence(r)
    tx = sent(
        client, stack, wallet, {"action": "stake", "amount": str(Decimal(min_stake) / 10**18)}
    )
    assert tx["to"] == chain.validators.address and int(tx["value"], 16) == min_stake
    assert StakeInfo.from_call(chain.call(v.stakeOf(wallet.address))).amount == min_stake

    hot = Account.create().address
    r = prepare(client, {"action": "setAttester", "attester": "0x1234"})
    assert r.status_code == 400 and "is not an attester address" in sentence(r)
    r = prepare(client, {"action": "setAttester", "attester": wallet.address})
    assert r.status_code >= 400 and "holds a stake of its own" in sentence(r)  # the dry-run
    assert chain.call(v.attesterOf(wallet.address)) == NO_ATTESTER_ADDRESS  # nothing was sent
    sent(client, stack, wallet, {"action": "setAttester", "attester": hot})
    assert chain.call(v.attesterOf(wallet.address)) == hot
    assert f'id="attester-now">{hot}<' in client.get("/validate/").get_data(as_text=True)
    sent(client, stack, wallet, {"action": "setAttester", "attester": "none"})
    assert chain.call(v.attesterOf(wallet.address)) == NO_ATTESTER_ADDRESS


def test_a_server_held_wallet_names_an_attester_with_the_form(own_exchange):
    demo.demo_accounts(own_exchange)  # an exchange of its own: the session's demo validator stays
    app = up.create_ui(
        own_exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT}
    )
    client = app.test_client()
    address = unlock(client, own_exchange, "validator")
    html = client.get("/validate/").get_data(as_text=True)
    assert 'id="attester-button"' in html and "this wallet itself" in html
    hot = Account.create().address
    post(client, "/validate/attester", {"attester": hot}, token_from="/validate/")
    assert "has no stake" in client.get("/validate/").get_data(as_text=True)  # stake first
    post(client, "/validate/stake", {"amount": "1"}, token_from="/validate/")
    post(client, "/validate/attester", {"attester": hot}, token_from="/validate/")
    html = client.get("/validate/").get_data(as_text=True)
    assert f"{hot} now attests for this wallet" in html
    chain = own_exchange.chain
    assert chain.call(chain.validators.functions.attesterOf(address)) == hot
