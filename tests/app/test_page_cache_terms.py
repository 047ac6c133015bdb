"""The model page reads a listing's sale terms from the index (app.payments.shown_payments), not
with four chain calls per view: they equal the chain's (app.payments.model_payments) for a
listing in ETH and one in the test stablecoin with a subscription and a price per call, after
each change of price, token, subscription and call price, once the index has its block; a
wallet's own access is still read from the chain."""

from __future__ import annotations

import time

from app.payments import model_payments, shown_payments
from app.resources import get_indexer
from node import market
from node.protocol import ETH_TOKEN
from node.tokens import stablecoin
from tests.app.conftest import publish_listing, settle


def same_terms(shown, chained) -> None:
    assert shown.token == chained.token
    assert (shown.price, shown.price_text) == (chained.price, chained.price_text)
    assert shown.offer.offered == chained.offer.offered
    assert shown.offer.text == chained.offer.text
    if chained.offer.offered:
        assert (shown.offer.price_per_period, shown.offer.period) == (
            chained.offer.price_per_period,
            chained.offer.period,
        )
    assert (shown.call_price, shown.call_price_text) == (
        chained.call_price,
        chained.call_price_text,
    )


def test_the_index_serves_the_terms_the_chain_has(app, stack, tmp_path):
    chain, seller = stack.chain, stack.demo_accounts["seller"]
    model_id = publish_listing(stack, tmp_path, "index-terms", "Terms from the index")
    settle(stack)
    changes = [
        lambda: None,  # as listed: 0.1 ETH, no subscription, no price per call
        lambda: chain.registry.functions.setPrice(model_id, 3 * 10**17),
        lambda: chain.registry.functions.setPaymentToken(model_id, stablecoin(chain).address),
        lambda: chain.registry.functions.setPrice(model_id, 5 * 10**6),
        lambda: chain.registry.functions.setSubscription(model_id, 10**6, 30 * 86400),
        lambda: chain.contracts["Channels"].functions.setCallPrice(model_id, 10**4),
        lambda: chain.registry.functions.setSubscription(model_id, 0, 0),
        lambda: chain.registry.functions.setPaymentToken(model_id, ETH_TOKEN),
    ]
    with app.test_request_context():
        started = int(time.time())
        for change in changes:
            call = change()
            if call is not None:
                chain.transact(call, seller)
            settle(stack)
            same_terms(shown_payments(model_id, None), model_payments(model_id, None))
        assert shown_payments(model_id, None).call_price == 10**4  # the last change kept it
        assert shown_payments(model_id, None).now >= started  # never behind this clock


def test_the_page_shows_the_indexed_terms_and_the_wallets_own_access(app, stack, tmp_path):
    """Until the index has the block that changed a term the page shows the terms of the block
    it has (as every other part of the page); a wallet's licence is the chain's at once."""
    chain, seller = stack.chain, stack.demo_accounts["seller"]
    model_id = publish_listing(stack, tmp_path, "index-lag", "Terms behind the chain")
    settle(stack)
    chain.transact(chain.registry.functions.setPrice(model_id, 2 * 10**17), seller)
    client = app.test_client()
    assert "0.1 ETH" in client.get(f"/models/{model_id}").get_data(as_text=True)
    settle(stack)
    assert "0.2 ETH" in client.get(f"/models/{model_id}").get_data(as_text=True)
    buyer = stack.demo_accounts["buyer"]
    with app.test_request_context():
        assert not shown_payments(model_id, buyer.address).access
        market.buy(chain, buyer, model_id, max_price=2 * 10**17)
        stack.key_delivery().poll()  # the licence: the key delivered, on the chain
        indexed = [
            p for p in get_indexer().purchases_of(buyer.address) if p["model_id"] == model_id
        ]
        assert indexed == []  # the index has not seen it (the session's buyer bought elsewhere)
        assert shown_payments(model_id, buyer.address).access
