"""Subscriptions (issue 14 §2): the owner's terms, subscribe in ETH or an ERC-20, paid to the owner at
once less the fee, extended from the later of now and the current expiry, and hasAccess = a licence or
a subscription that has not ended."""

import pytest
from conftest import PARAMS, PRICE, fee_split

from node.protocol import SubscriptionTerms

DAY = 86400
PER_DAY = 10**15  # 0.001 ETH a day
USD_PER_DAY = 10**6  # $1 a day in MockStablecoin's 6 decimals


def offer(chain, seller, model_id: int, price: int = PER_DAY, period: int = DAY) -> None:
    chain.send(chain.registry.functions.setSubscription(model_id, price, period), seller)


def subscribe(chain, account, model_id: int, periods: int, total: int, value: int | None = None):
    """Subscribe for ``periods`` (paying ``total``, in ETH unless ``value`` is 0); the Subscribed event."""
    rc = chain.send(
        chain.market.functions.subscribe(model_id, periods, total),
        account,
        value=total if value is None else value,
    )
    (event,) = chain.events(rc, chain.market, "Subscribed")
    return event, rc


def test_the_owner_sets_and_withdraws_the_terms(chain):
    seller, other = chain.accounts[1], chain.accounts[2]
    r = chain.registry.functions
    mid = chain.list_model(seller)
    assert r.subscriptionTerms(mid).call() == [0, 0]
    chain.expect_revert(r.setSubscription(mid, PER_DAY, DAY), other, "ModelRegistryNotOwner")
    chain.expect_revert_with(
        r.setSubscription(mid, PER_DAY, 0), seller, "ModelRegistryBadPeriod", (PER_DAY, 0)
    )
    chain.expect_revert(r.setSubscription(mid, 2**80, DAY), seller, "ModelRegistryPriceTooHigh")
    rc = chain.send(r.setSubscription(mid, PER_DAY, DAY), seller)
    assert chain.events(rc, chain.registry, "SubscriptionTermsChanged") == [
        {"modelId": mid, "pricePerPeriod": PER_DAY, "periodSeconds": DAY}
    ]
    terms = SubscriptionTerms.from_call(r.subscriptionTerms(mid).call())
    assert terms == SubscriptionTerms(PER_DAY, DAY) and terms.offered
    chain.send(r.setSubscription(mid, 0, DAY), seller)  # withdrawn: the period goes with it
    assert not SubscriptionTerms.from_call(r.subscriptionTerms(mid).call()).offered
    assert r.subscriptionTerms(mid).call() == [0, 0]
    chain.expect_revert_with(
        chain.market.functions.subscribe(mid, 1, PER_DAY),
        other,
        "MarketplaceNoSubscription",
        (mid,),
        value=PER_DAY,
    )
    chain.expect_revert(r.subscriptionTerms(999), seller, "ERC721NonexistentToken")


def test_subscribe_in_eth_pays_the_owner_at_once_and_extends(chain):
    seller, account = chain.accounts[1], chain.accounts[2]
    m = chain.market.functions
    mid = chain.list_model(seller)
    offer(chain, seller, mid)
    assert m.accessUntil(mid, account).call() == 0 and m.hasAccess(mid, account).call() is False

    start = chain.now() + 10
    chain.at(start)
    event, _ = subscribe(chain, account, mid, 3, 3 * PER_DAY)
    assert event == {"modelId": mid, "account": account, "expiresAt": start + 3 * DAY}
    net, fee = fee_split(3 * PER_DAY)
    assert m.credited(seller).call() == net and m.credited(chain.fee_recipient).call() == fee
    assert chain.balance(chain.market.address) == 3 * PER_DAY
    assert m.hasAccess(mid, account).call() is True

    # extended while live: from the current expiry
    event, _ = subscribe(chain, account, mid, 2, 2 * PER_DAY)
    assert event["expiresAt"] == start + 5 * DAY == m.accessUntil(mid, account).call()
    chain.travel_to(start + 5 * DAY)
    assert m.hasAccess(mid, account).call() is False  # ends at expiresAt
    # renewed after it ended: from now
    later = start + 6 * DAY
    chain.at(later)
    event, _ = subscribe(chain, account, mid, 1, PER_DAY)
    assert event["expiresAt"] == later + DAY
    assert m.hasAccess(mid, account).call() is True


def test_subscribe_refusals(chain):
    seller, account = chain.accounts[1], chain.accounts[2]
    m, r = chain.market.functions, chain.registry.functions
    mid = chain.list_model(seller)
    offer(chain, seller, mid)
    chain.expect_revert_with(
        m.subscribe(mid, 2, 2 * PER_DAY - 1),
        account,
        "MarketplacePriceAboveMax",
        (mid, 2 * PER_DAY, 2 * PER_DAY - 1),
        value=2 * PER_DAY,
    )
    chain.expect_revert_with(
        m.subscribe(mid, 2, 2 * PER_DAY),
        account,
        "MarketplaceWrongPayment",
        (mid, PER_DAY, 2 * PER_DAY),
        value=PER_DAY,
    )
    for periods in (0, 2**64, 2**63):  # none, more than uint64, an expiry past 2^64 seconds
        chain.expect_revert_with(
            m.subscribe(mid, periods, 2**256 - 1), account, "MarketplaceBadPeriods", (periods,)
        )
    chain.send(r.setActive(mid, False), seller)
    chain.expect_revert(
        m.subscribe(mid, 1, PER_DAY), account, "MarketplaceModelInactive", value=PER_DAY
    )
    chain.send(r.setActive(mid, True), seller)
    chain.disputed_by(mid, chain.accounts[6:8])
    chain.expect_revert(
        m.subscribe(mid, 1, PER_DAY), account, "MarketplaceModelDisputed", value=PER_DAY
    )


@pytest.fixture
def usd(chain):
    return chain.deploy("MockStablecoin")


def test_subscribe_in_a_token_and_verifiers_share_its_fee(chain, usd):
    seller, account = chain.accounts[1], chain.accounts[2]
    m = chain.market.functions
    mid = chain.token_model(seller, usd, 25 * 10**6)
    chain.verified_by(mid, chain.accounts[6:8])
    offer(chain, seller, mid, USD_PER_DAY)
    chain.fund(usd, account, 30 * USD_PER_DAY)
    chain.expect_revert_with(
        m.subscribe(mid, 30, 30 * USD_PER_DAY),
        account,
        "MarketplaceEthSentForToken",
        (mid, usd.address, 1),
        value=1,
    )
    chain.expect_revert_with(
        m.subscribe(mid, 30, 29 * USD_PER_DAY),
        account,
        "MarketplaceTokenPriceAboveMax",
        (mid, usd.address, 30 * USD_PER_DAY, 29 * USD_PER_DAY),
    )
    event, _ = subscribe(chain, account, mid, 30, 30 * USD_PER_DAY, value=0)
    assert event["expiresAt"] == m.accessUntil(mid, account).call()
    assert usd.functions.balanceOf(account).call() == 0
    assert usd.functions.balanceOf(chain.market.address).call() == 30 * USD_PER_DAY
    net, fee = fee_split(30 * USD_PER_DAY)
    per = fee * PARAMS["validator_share_bps"] // 10_000 // 2
    assert m.credited(seller, usd.address).call() == net
    assert m.rewardPerWeight(mid, usd.address).call() == per
    assert m.credited(chain.fee_recipient, usd.address).call() == fee - 2 * per
    assert m.credited(seller).call() == 0


def test_a_fee_on_transfer_token_cannot_pay_a_subscription(chain):
    token = chain.deploy("FeeOnTransferToken")
    seller, account = chain.accounts[1], chain.accounts[2]
    mid = chain.token_model(seller, token)
    offer(chain, seller, mid, PRICE)
    chain.fund(token, account)
    chain.expect_revert_with(
        chain.market.functions.subscribe(mid, 1, PRICE),
        account,
        "MarketplaceTokenAmountMismatch",
        (token.address, PRICE, PRICE - PRICE // 100),
    )
    assert chain.market.functions.accessUntil(mid, account).call() == 0


def test_a_licence_gives_access_without_a_subscription(chain):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    m = chain.market.functions
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    assert m.hasAccess(mid, buyer).call() is False  # paid, not yet delivered
    chain.deliver(seller, pid)
    assert m.hasAccess(mid, buyer).call() is True and m.accessUntil(mid, buyer).call() == 0
