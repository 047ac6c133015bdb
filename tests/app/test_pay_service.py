"""The model page's three ways to pay (issue 14 §5) and the wallet page's payments, on an exchange
of its own (a fresh suite with the test stablecoin): a listing in mUSD with a subscription offer
and a price per call; a subscriber's Try it paid by the subscription, a channel's Try it paid by
vouchers (the running total kept per wallet), the wallet page's balances per token, channels,
subscriptions, the seller's claim and the buyer's reclaim after expiry."""

from __future__ import annotations

import re

import pytest

from modex import demo
from modex.commands import up
from node.channels import ChannelClient
from node.publish import ListingInfo, publish
from node.tokens import stablecoin
from tests.app.conftest import FAST_SCRYPT, make_model_dir, post, settle, unlock
from tests.node.modex_stack import time_travel

MUSD = 10**6  # one mUSD in base units (6 decimals)
CALL_PRICE = MUSD // 100  # 0.01 mUSD


@pytest.fixture
def exchange(own_exchange, trained_model, tmp_path):
    """own_exchange with the demo wallets and one served listing in mUSD: 5 mUSD for the weights,
    1 mUSD per 30 days, 0.01 mUSD a call; ``exchange.listing`` is its id."""
    demo.demo_accounts(own_exchange)
    chain, seller = own_exchange.chain, own_exchange.demo_accounts["seller"]
    model_id = publish(
        chain,
        seller,
        own_exchange.store,
        own_exchange.vault,
        make_model_dir(tmp_path, "musd"),
        ListingInfo(
            name="Priced in dollars", description="mUSD model", task="other", license="mit"
        ),
        price_wei=5 * MUSD,
        operator=own_exchange.operator.address,
        token=stablecoin(chain),
        subscription=(MUSD, 30 * 86400),
    ).model_id
    ChannelClient.for_chain(chain).set_call_price(seller, model_id, CALL_PRICE)
    own_exchange.models[model_id] = trained_model
    settle(own_exchange)
    own_exchange.listing = model_id
    return own_exchange


@pytest.fixture
def client(exchange):
    app = up.create_ui(exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT})
    return app.test_client()


PASSWORD = "pay-service-pw"


def new_funded_wallet(client) -> str:
    """A new wallet created and unlocked in the session, then the faucet's ETH and mUSD."""
    r = post(client, "/wallet/create", {"password": PASSWORD, "confirm": PASSWORD})
    assert r.status_code == 302
    post(client, "/wallet/faucet")
    html = client.get("/wallet/").get_data(as_text=True)
    assert "1000 mUSD" in html, html
    return re.search(r'id="address">(0x[0-9a-fA-F]{40})<', html).group(1)


def page(client, model_id: int) -> str:
    return client.get(f"/models/{model_id}").get_data(as_text=True)


def act(client, model_id: int, action: str, **form: str) -> str:
    """Send one of the model page's forms (subscribe, channel, try); the page it returns to."""
    post(client, f"/models/{model_id}/{action}", form, token_from=f"/models/{model_id}")
    return page(client, model_id)


def try_it(client, model_id: int, text: str = "great phone, love it") -> str:
    html = act(client, model_id, "try", text=text)
    return re.search(r'id="try-result"[^>]*>([^<]*)<', html).group(1)


def test_the_model_page_offers_three_ways_to_pay_in_the_listings_token(client, exchange):
    model_id = exchange.listing
    new_funded_wallet(client)
    html = page(client, model_id)
    assert '<h2 id="price">5 mUSD</h2>' in html
    assert 'name="max_price" value="5"' in html and "Maximum price (mUSD)" in html
    assert "1 mUSD per 30 days" in html  # the subscription offer
    assert "0.01 mUSD a call" in html
    assert 'id="try"' not in html  # no licence, subscription or channel yet: no Try it
    # A refusal is a sentence and sends nothing.
    assert "whole number from 1 to" in act(client, model_id, "subscribe", periods="0")
    html = act(client, model_id, "channel", amount="0.0000001", days="7")
    assert "The deposit has more than 6 decimals; round it." in html
    assert 'id="my-channels"' not in html and 'id="subscribed-until"' not in html


def test_the_market_lists_the_price_per_call_and_the_service_state(client, exchange):
    """Issue 14 §4: the market shows each service's state (for the models this node serves) and
    its price per call, from the index (Channels' CallPriceChanged)."""
    html = client.get("/?q=Priced+in+dollars").get_data(as_text=True)
    row = html[html.index(f'href="/models/{exchange.listing}"') :].split("</tr>")[0]
    assert "5 mUSD" in row and "0.01 mUSD a call" in row
    assert re.search(r'class="service-(ready|starting)">(ready|starting) on this node<', row), row


def test_subscribe_then_try_it_paid_by_the_subscription(client, exchange):
    model_id = exchange.listing
    new_funded_wallet(client)
    html = act(client, model_id, "subscribe", periods="2")
    assert "Subscribed for 2 mUSD" in html, html
    assert 'id="subscribed-until"' in html and 'id="try"' in html
    assert "paid with your subscription" in try_it(client, model_id)
    settle(exchange)
    wallet = client.get("/wallet/").get_data(as_text=True)
    assert "Priced in dollars" in wallet.split('id="subscriptions"')[1]
    assert "998 mUSD" in wallet  # 1000 from the faucet, 2 periods of 1 mUSD


def test_a_channel_pays_try_it_by_voucher_then_is_claimed_and_reclaimed(client, exchange):
    model_id = exchange.listing
    buyer = new_funded_wallet(client)
    html = act(client, model_id, "channel", amount="1", days="1")
    number = int(re.search(r"Opened payment channel #(\d+) with 1 mUSD", html).group(1))
    assert "1 mUSD of 1 mUSD" in html and 'id="try"' in html
    assert f"paid by a voucher on channel #{number} (0.01 mUSD spent" in try_it(client, model_id)
    assert f"channel #{number} (0.02 mUSD spent" in try_it(client, model_id, "awful, broke")
    assert "0.98 mUSD of 1 mUSD" in page(client, model_id)  # the credit left after two calls
    wallet = client.get("/wallet/").get_data(as_text=True)
    assert re.search(rf'id="channel-{number}">.*?class="channel-spent">0.02 mUSD<', wallet, re.S)
    assert f'id="channel-{number}"' in wallet and "reclaim after expiry" in wallet
    assert re.search(r'data-token="mUSD">.*?999 mUSD', wallet), wallet  # 1000 less the deposit

    unlock(client, exchange, "seller")
    seller_page = client.get("/wallet/").get_data(as_text=True)
    assert f"channel #{number} (0.02 mUSD unclaimed)" in seller_page
    post(client, "/wallet/claim")
    assert f"Claimed channel #{number}" in client.get("/wallet/").get_data(as_text=True)
    assert ChannelClient.for_chain(exchange.chain).channel(number).claimed == 2 * CALL_PRICE
    seller = exchange.demo_accounts["seller"].address
    credited = ChannelClient.for_chain(exchange.chain).credited(
        seller, stablecoin(exchange.chain).address
    )
    assert 0 < credited <= 2 * CALL_PRICE  # less the platform's fee
    post(client, f"/wallet/withdraw/{stablecoin(exchange.chain).address}")
    wallet = client.get("/wallet/").get_data(as_text=True)
    assert f"Withdrew {credited / MUSD:g} mUSD from paid calls to your wallet." in wallet, wallet

    post(client, f"/wallet/channels/{number}/reclaim")  # the seller is not the buyer
    assert ChannelClient.for_chain(exchange.chain).channel(number).open

    time_travel(exchange.chain, 2 * 86400)  # the channel expires
    post(client, "/wallet/unlock", {"address": buyer, "password": PASSWORD})
    assert "Reclaim</button>" in client.get("/wallet/").get_data(as_text=True)
    post(client, f"/wallet/channels/{number}/reclaim")
    wallet = client.get("/wallet/").get_data(as_text=True)
    assert f"Channel #{number} closed: 0.98 mUSD came back to you." in wallet, wallet
    assert not ChannelClient.for_chain(exchange.chain).channel(number).open
