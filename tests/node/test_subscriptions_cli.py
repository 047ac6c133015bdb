"""Subscriptions through `modex`: a seller offers time-limited access (in the test stablecoin or
in ETH), a buyer subscribes from the CLI (approved for exactly the total), subscribes again to
extend it, the seller is credited at once and withdraws; no offer, too little money or a total
above --max-price are refused in words with nothing sent; the index records the offer and the
subscription."""

from __future__ import annotations

import json

import pytest
from cli_results import ok, refused
from modex_stack import write_model
from token_helpers import balance, mint, stablecoin_stack

from node import subscriptions, tokens
from node.indexer import Indexer

FEE_BPS = 250
DAY = 86400


@pytest.fixture
def stack(tmp_path):
    return stablecoin_stack(tmp_path, fee_bps=FEE_BPS)


def published(stack, folder, *options: str) -> int:
    out = ok(stack.cli("seller", "publish", str(write_model(folder)), "--json", *options))
    return json.loads(out)["model_id"]


def now(stack) -> int:
    return stack.chain.get_block("latest")["timestamp"]


def nonce(stack, role: str) -> int:
    return stack.chain.w3.eth.get_transaction_count(stack.signers[role].address)


def test_a_buyer_subscribes_from_the_cli_in_the_token_and_extends_it(stack, tmp_path):
    usd = tokens.stablecoin(stack.chain)
    model_id = published(
        stack, tmp_path / "m", "--price", "50", "--stablecoin", "--subscription", "2/30d"
    )
    terms = subscriptions.subscription_offer(stack.chain, model_id)
    assert (terms.price_per_period, terms.period, terms.token) == (2_000_000, 30 * DAY, usd)
    buyer = stack.signers["buyer"].address

    mint(stack, "buyer", 5_000_000)
    sent = nonce(stack, "buyer")
    refused(
        stack.cli("buyer", "subscribe", str(model_id), "--periods", "3"),
        f"insufficient funds: {buyer} holds 5 mUSD but 3 periods of 2 mUSD per 30 days cost "
        "6 mUSD; get 1 mUSD more into the account (nothing was sent)",
    )
    refused(
        stack.cli("buyer", "subscribe", str(model_id), "--periods", "2", "--max-price", "3"),
        "2 periods of 2 mUSD per 30 days cost 4 mUSD, above your --max-price of 3 mUSD; "
        "nothing was sent",
    )
    assert nonce(stack, "buyer") == sent
    assert not subscriptions.has_access(stack.chain, model_id, buyer)

    out = ok(stack.cli("buyer", "subscribe", str(model_id), "--periods", "2"))
    assert f"subscribed to model {model_id} until" in out and "paid 4 mUSD for 2 period(s)" in out
    first_end = subscriptions.access_until(stack.chain, model_id, buyer)
    assert first_end == now(stack) + 60 * DAY
    assert subscriptions.has_access(stack.chain, model_id, buyer)
    assert balance(stack, usd, "buyer") == 1_000_000
    # Again: the access is extended from its end, not from now.
    refused(
        stack.cli("buyer", "subscribe", str(model_id)),
        "holds 1 mUSD but 1 period of 2 mUSD per 30 days costs 2 mUSD",
    )
    mint(stack, "buyer", 1_000_000)
    ok(stack.cli("buyer", "subscribe", str(model_id)))
    assert subscriptions.access_until(stack.chain, model_id, buyer) == first_end + 30 * DAY

    # The seller is credited at once (less the fee) and withdraws in the token.
    out = ok(stack.cli("seller", "withdraw"))
    assert f"withdrew 5.85 mUSD to {stack.signers['seller'].address}" in out
    assert balance(stack, usd, "seller") == 5_850_000

    index = Indexer(stack.chain, tmp_path / "index.sqlite3")
    index.sync()
    offer = index.get_model(model_id)["subscription"]
    assert offer == {"price": 2_000_000, "period": 30 * DAY, "text": "2 mUSD per 30 days"}
    (row,) = index.subscriptions_of(buyer)
    assert (row["model_id"], row["expires_at"], row["token"]["symbol"]) == (
        model_id,
        first_end + 30 * DAY,
        "mUSD",
    )
    table = ok(stack.cli("buyer", "models")).splitlines()
    line = next(line for line in table if line.startswith(str(model_id)))
    assert "50 mUSD" in line and "2 mUSD per 30 days" in line


def test_a_subscription_in_eth_and_a_model_that_offers_none(stack, tmp_path):
    plain = published(stack, tmp_path / "plain", "--price", "0.01")
    sent = nonce(stack, "buyer")
    refused(
        stack.cli("buyer", "subscribe", str(plain)),
        f"model {plain} offers no subscription (its seller has not set one); nothing was sent",
    )
    with pytest.raises(SystemExit) as usage:  # argparse: "'0' is not a number of periods"
        stack.cli("buyer", "subscribe", str(plain), "--periods", "0")
    assert usage.value.code == 2
    assert nonce(stack, "buyer") == sent

    model_id = published(
        stack, tmp_path / "hourly", "--price", "0.01", "--subscription", "0.001/1h"
    )
    out = ok(stack.cli("buyer", "subscribe", str(model_id), "--periods", "5"))
    assert "paid 0.005 ETH for 5 period(s) of 0.001 ETH per 1 hour" in out
    buyer = stack.signers["buyer"].address
    assert subscriptions.access_until(stack.chain, model_id, buyer) == now(stack) + 5 * 3600
    stack.time_travel(5 * 3600 + 1)
    assert not subscriptions.has_access(stack.chain, model_id, buyer)
    credited = stack.chain.marketplace.functions.credited(stack.signers["seller"].address)
    assert stack.chain.call(credited) == 5 * 10**15 * (10_000 - FEE_BPS) // 10_000
    refused(
        stack.cli(
            "seller", "publish", str(tmp_path / "plain"), "--price", "1", "--subscription", "0.1"
        ),
        "--subscription '0.1' needs a price and a period: write PRICE/PERIOD, e.g. 5/30d",
    )


def test_a_seller_changes_a_listing_s_token_price_and_offer_with_modex_terms(stack, tmp_path):
    usd = tokens.stablecoin(stack.chain)
    model_id = published(stack, tmp_path / "m", "--price", "0.01")
    refused(
        stack.cli("seller", "terms", str(model_id), "--stablecoin"),
        f"model {model_id} is priced in ETH: pricing it in mUSD needs a new --price in mUSD",
    )
    refused(
        stack.cli("buyer", "terms", str(model_id), "--price", "0.02"),
        f"{stack.signers['buyer'].address} is not the owner",
    )
    out = ok(
        stack.cli(
            "seller",
            "terms",
            str(model_id),
            "--stablecoin",
            "--price",
            "7",
            "--subscription",
            "1/1d",
        )
    )
    assert f"model {model_id}: 7 mUSD; subscription: 1 mUSD per 1 day" in out
    # The price went to the registry's maximum before the token changed: never 7 base units of
    # mUSD read as wei, nor 0.01 ETH's wei read as mUSD.
    registry = stack.chain.registry.functions
    highest = stack.chain.call(registry.MAX_PRICE())
    changes = sorted(
        stack.chain.events("PriceChanged", modelId=model_id)
        + stack.chain.events("PaymentTokenChanged", modelId=model_id),
        key=lambda e: (e["blockNumber"], e["logIndex"]),
    )
    assert [(e["event"], e["args"].get("price")) for e in changes] == [
        ("PriceChanged", highest),
        ("PaymentTokenChanged", None),
        ("PriceChanged", 7_000_000),
    ]
    offer = subscriptions.subscription_offer(stack.chain, model_id)
    assert (offer.price_per_period, offer.period, offer.token) == (1_000_000, DAY, usd)

    out = ok(stack.cli("seller", "terms", str(model_id), "--no-subscription"))
    assert "7 mUSD; subscription: no subscription offered (1 transaction(s) sent)" in out
    out = ok(stack.cli("seller", "terms", str(model_id), "--eth", "--price", "0.02"))
    assert f"model {model_id}: 0.02 ETH; subscription: no subscription offered" in out
