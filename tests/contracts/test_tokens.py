"""Prices in an ERC-20 (issue 14 §1): the token is fixed per purchase, escrow, refunds, fees, verifiers'
rewards and withdrawals are kept per token, EIP-2612 permits, and tokens that misbehave (a fee on
transfer, no bool returned, reverts, re-entry) can neither take nor strand more than is owed."""

import pytest
from conftest import BUYER_KEY, ETH, PARAMS, PRICE, WRAPPED, fee_split
from eth_account import Account

from node.protocol import PurchaseStatus
from node.revert import decode_revert

WINDOW = PARAMS["delivery_window"]
USD = 25 * 10**6  # $25 in MockStablecoin's 6 decimals
BROKEN = "RevertingToken: broken"


@pytest.fixture
def usd(chain):
    return chain.deploy("MockStablecoin")


def permit_signature(chain, token, owner, spender: str, value: int, deadline: int):
    """(v, r, s) of ``owner``'s EIP-2612 permit on the MockStablecoin ``token``."""
    domain = {
        "name": token.functions.name().call(),
        "version": "1",
        "chainId": chain.w3.eth.chain_id,
        "verifyingContract": token.address,
    }
    types = {
        "Permit": [
            {"name": "owner", "type": "address"},
            {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    }
    nonce = token.functions.nonces(owner.address).call()
    message = {
        "owner": owner.address,
        "spender": spender,
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    signed = Account.sign_typed_data(owner.key, domain, types, message)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def held_by_market(chain, token) -> int:
    return token.functions.balanceOf(chain.market.address).call()


def test_the_payment_token_is_set_by_the_owner_only(chain, usd):
    seller, other = chain.accounts[1], chain.accounts[2]
    r = chain.registry.functions
    mid = chain.list_model(seller, USD)
    assert r.paymentToken(mid).call() == ETH
    chain.expect_revert(r.setPaymentToken(mid, usd.address), other, "ModelRegistryNotOwner")
    chain.expect_revert_with(
        r.setPaymentToken(mid, other), seller, "ModelRegistryNotAToken", (other,)
    )
    rc = chain.send(r.setPaymentToken(mid, usd.address), seller)
    assert chain.events(rc, chain.registry, "PaymentTokenChanged") == [
        {"modelId": mid, "token": usd.address}
    ]
    assert r.paymentToken(mid).call() == usd.address
    assert r.saleTermsWithToken(mid).call() == [USD, True, seller, usd.address]
    chain.send(r.setActive(mid, False), seller)  # the flags keep the token and the state apart
    assert r.saleTermsWithToken(mid).call() == [USD, False, seller, usd.address]
    chain.send(r.setPaymentToken(mid, ETH), seller)
    assert r.saleTermsWithToken(mid).call() == [USD, False, seller, ETH]
    chain.expect_revert(r.paymentToken(999), seller, "ERC721NonexistentToken")


def test_buy_in_a_token_hold_release_withdraw_per_token(chain, usd):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    m = chain.market.functions
    mid = chain.token_model(seller, usd, USD)
    chain.fund(usd, buyer, 10 * USD)
    chain.expect_revert_with(
        m.buy(mid, BUYER_KEY, USD),
        buyer,
        "MarketplaceEthSentForToken",
        (mid, usd.address, 1),
        value=1,
    )
    chain.expect_revert_with(
        m.buy(mid, BUYER_KEY, USD - 1),
        buyer,
        "MarketplaceTokenPriceAboveMax",
        (mid, usd.address, USD, USD - 1),
    )
    rc = chain.send(m.buy(mid, BUYER_KEY, USD), buyer)
    (ev,) = chain.events(rc, chain.market, "Purchased")
    assert ev["price"] == USD and ev["token"] == usd.address
    pid = ev["purchaseId"]
    assert m.purchaseToken(pid).call() == usd.address
    assert held_by_market(chain, usd) == USD and chain.balance(chain.market.address) == 0

    chain.deliver(seller, pid)
    rc = chain.release_revenue(pid)
    net, fee = fee_split(USD)
    assert chain.events(rc, chain.market, "RevenueReleased") == [
        {"purchaseId": pid, "owner": seller, "amount": net, "fee": fee, "token": usd.address}
    ]
    assert m.credited(seller, usd.address).call() == net
    assert m.credited(chain.fee_recipient, usd.address).call() == fee
    assert m.credited(seller).call() == 0 == m.credited(seller, ETH).call()
    chain.expect_revert(m.withdraw(), seller, "MarketplaceNothingToWithdraw")

    rc = chain.send(m.withdraw(usd.address), seller)
    assert chain.events(rc, chain.market, "Withdrawn") == [
        {"account": seller, "amount": net, "token": usd.address}
    ]
    assert usd.functions.balanceOf(seller).call() == net
    assert m.credited(seller, usd.address).call() == 0
    assert held_by_market(chain, usd) == fee
    chain.send(m.withdraw(usd.address), chain.fee_recipient)
    assert held_by_market(chain, usd) == 0


def test_the_token_of_a_purchase_is_fixed_at_buy_time(chain, usd):
    """A later setPaymentToken (and price) changes neither what is refunded nor what is released."""
    seller, refunded, delivered = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    m, r = chain.market.functions, chain.registry.functions
    mid = chain.token_model(seller, usd, USD)
    for buyer in (refunded, delivered):
        chain.fund(usd, buyer, 10 * USD)
    late = chain.buy_with_token(refunded, mid)
    kept = chain.buy_with_token(delivered, mid)
    chain.send(r.setPaymentToken(mid, ETH), seller)
    chain.send(r.setPrice(mid, 5 * USD), seller)

    chain.deliver(seller, kept)
    chain.travel(WINDOW + 1)
    rc = chain.send(m.refund(late), refunded)
    assert chain.events(rc, chain.market, "Refunded") == [
        {"purchaseId": late, "buyer": refunded, "amount": USD, "token": usd.address}
    ]
    assert m.credited(refunded, usd.address).call() == USD and m.credited(refunded).call() == 0
    chain.release_revenue(kept)
    assert m.credited(seller, usd.address).call() == fee_split(USD)[0]
    assert m.credited(seller).call() == 0
    # the next buyer pays the new terms, in ETH
    assert (
        chain.events(
            chain.send(m.buy(mid, BUYER_KEY, 5 * USD), refunded, value=5 * USD),
            chain.market,
            "Purchased",
        )[0]["token"]
        == ETH
    )
    assert held_by_market(chain, usd) == USD + fee_split(USD)[1] + fee_split(USD)[0]


def test_verifiers_share_the_fee_per_token_and_token_licences_do_not_vote(chain, usd):
    seller, buyer, v1, v2 = chain.accounts[1:5]
    m = chain.market.functions
    mid = chain.token_model(seller, usd, USD)
    chain.verified_by(mid, [v1, v2])
    chain.fund(usd, buyer, 10 * USD)
    pid = chain.buy_with_token(buyer, mid)
    chain.deliver(seller, pid)
    chain.release_revenue(pid)
    fee = fee_split(USD)[1]
    per = fee * PARAMS["validator_share_bps"] // 10_000 // 2
    assert m.rewardPerWeight(mid, usd.address).call() == per
    assert m.book(mid).call()[3] == 0  # ETH's reward per weight
    assert m.pendingValidatorReward(mid, v1, usd.address).call() == per
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNothingToClaim")
    rc = chain.send(m.claimValidatorReward(mid, usd.address), v1)
    assert chain.events(rc, chain.market, "ValidatorRewardClaimed") == [
        {"modelId": mid, "validator": v1, "amount": per, "token": usd.address}
    ]
    assert m.credited(v1, usd.address).call() == per
    assert m.credited(chain.fee_recipient, usd.address).call() == fee - 2 * per
    # Vote weights are wei: a licence paid in a token has no common unit with them.
    chain.expect_revert(chain.votes.functions.vote(mid, 5), buyer, "VotesNoLicense")


def test_buy_with_permit_and_with_a_front_run_permit(chain, usd):
    seller = chain.accounts[1]
    m = chain.market.functions
    mid = chain.token_model(seller, usd, USD)
    deadline = chain.now() + 3600
    for front_run in (False, True):
        buyer = chain.new_local_account()
        chain.send(usd.functions.mint(buyer.address, USD), chain.deployer)
        v, r, s = permit_signature(chain, usd, buyer, chain.market.address, USD, deadline)
        if front_run:  # someone copies the permit from the mempool and submits it first
            chain.send(
                usd.functions.permit(buyer.address, chain.market.address, USD, deadline, v, r, s),
                chain.accounts[8],
            )
        rc = chain.send(m.buyWithPermit(mid, BUYER_KEY, USD, deadline, v, r, s), buyer.address)
        pid = chain.events(rc, chain.market, "Purchased")[0]["purchaseId"]
        assert chain.purchase(pid).status == PurchaseStatus.PENDING
        assert usd.functions.balanceOf(buyer.address).call() == 0
    assert held_by_market(chain, usd) == 2 * USD


def test_a_permit_that_fails_without_an_allowance_is_refused(chain, usd):
    seller = chain.accounts[1]
    m = chain.market.functions
    mid = chain.token_model(seller, usd, USD)
    buyer, stranger = chain.new_local_account(), chain.new_local_account()
    chain.send(usd.functions.mint(buyer.address, USD), chain.deployer)
    deadline = chain.now() + 3600
    forged = permit_signature(chain, usd, stranger, chain.market.address, USD, deadline)
    chain.expect_revert_with(
        m.buyWithPermit(mid, BUYER_KEY, USD, deadline, *forged),
        buyer.address,
        "MarketplacePermitFailed",
        (usd.address, 0, USD),
    )
    eth_model = chain.list_model(seller)
    chain.expect_revert_with(
        m.buyWithPermit(eth_model, BUYER_KEY, USD, deadline, *forged),
        buyer.address,
        "MarketplaceNotPricedInToken",
        (eth_model,),
    )


def test_a_fee_on_transfer_token_is_refused(chain):
    token = chain.deploy("FeeOnTransferToken")
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.token_model(seller, token)
    chain.fund(token, buyer)
    chain.expect_revert_with(
        chain.market.functions.buy(mid, BUYER_KEY, PRICE),
        buyer,
        "MarketplaceTokenAmountMismatch",
        (token.address, PRICE, PRICE - PRICE // 100),
    )
    assert held_by_market(chain, token) == 0
    assert chain.market.functions.nextPurchaseId().call() == 1


def test_a_token_that_returns_no_bool_works_through_safe_erc20(chain):
    token = chain.deploy("NoBoolToken")
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.token_model(seller, token)
    chain.fund(token, buyer)
    pid = chain.buy_with_token(buyer, mid)
    chain.deliver(seller, pid)
    chain.release_revenue(pid)
    chain.send(chain.market.functions.withdraw(token.address), seller)
    assert token.functions.balanceOf(seller).call() == fee_split(PRICE)[0]


def test_a_reverting_token_cannot_be_bought_with_and_its_credit_waits(chain):
    token = chain.deploy("RevertingToken")
    seller, buyer = chain.accounts[1], chain.accounts[2]
    m = chain.market.functions
    mid = chain.token_model(seller, token)
    chain.fund(token, buyer)
    pid = chain.buy_with_token(buyer, mid)
    chain.fund(token, chain.accounts[3])
    chain.send(token.functions.setBroken(True), chain.deployer)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE), chain.accounts[3], "Error", message=BROKEN)
    chain.deliver(seller, pid)
    chain.release_revenue(pid)
    net = fee_split(PRICE)[0]
    chain.expect_revert(m.withdraw(token.address), seller, "Error", message=BROKEN)
    assert m.credited(seller, token.address).call() == net  # nothing lost
    chain.send(token.functions.setBroken(False), chain.deployer)
    chain.send(m.withdraw(token.address), seller)
    assert token.functions.balanceOf(seller).call() == net


def as_token(chain, token, fn):
    """Send ``fn`` as the token contract itself (it is msg.sender)."""
    return chain.send(
        token.functions.exec(fn.address, fn._encode_transaction_data()), chain.deployer
    )


def test_a_token_reentering_on_transfer_is_refused(chain):
    """The token is the seller: during its own withdraw it withdraws again, and during a buy it tries to
    withdraw: the guard refuses both, and it is paid exactly once."""
    token = chain.deploy("ReentrantToken")
    buyer = chain.accounts[2]
    m = chain.market.functions
    rc = as_token(chain, token, chain.registry.functions.list(b"\x11" * 32, "cid", PRICE))
    mid = chain.events(rc, chain.registry, "ModelListed")[0]["modelId"]
    as_token(chain, token, chain.registry.functions.setPaymentToken(mid, token.address))
    chain.fund(token, buyer, 2 * PRICE)
    pid = chain.buy_with_token(buyer, mid)
    as_token(chain, token, m.deliverKey(pid, buyer, WRAPPED))
    chain.release_revenue(pid)
    net = fee_split(PRICE)[0]

    withdraw = m.withdraw(token.address)
    chain.send(
        token.functions.setReentry(m.address, withdraw._encode_transaction_data(), False),
        chain.deployer,
    )
    as_token(chain, token, withdraw)
    t = token.functions
    assert t.attempts().call() == 1 and t.lastOk().call() is False
    assert decode_revert(t.lastResult().call()).context["error"] == "ReentrancyGuardReentrantCall"
    assert t.balanceOf(token.address).call() == net  # paid once
    assert m.credited(token.address, token.address).call() == 0

    # A buy's transferFrom calls back too: propagated, the whole buy reverts; nothing is kept.
    chain.send(
        token.functions.setReentry(m.address, withdraw._encode_transaction_data(), True),
        chain.deployer,
    )
    second = chain.list_model(chain.accounts[1])
    chain.send(chain.registry.functions.setPaymentToken(second, token.address), chain.accounts[1])
    chain.expect_revert(m.buy(second, BUYER_KEY, PRICE), buyer, "ReentrancyGuardReentrantCall")
    assert t.balanceOf(m.address).call() == fee_split(PRICE)[1]
