"""Hostile receivers and front-running: nobody can take more than credited, and nothing gets stuck."""

import pytest
from conftest import BUYER_KEY, CID_V1, ETH, MODEL_HASH, PARAMS, PRICE, fee_split

from node.protocol import PurchaseStatus
from node.revert import decode_revert


@pytest.fixture
def hostile(chain):
    return chain.deploy("Hostile")


def as_hostile(chain, hostile, contract_fn, value=0):
    """Send a call through the hostile contract (it is msg.sender)."""
    data = contract_fn._encode_transaction_data()
    return chain.send(
        hostile.functions.exec(contract_fn.address, data, value), chain.deployer, value=value
    )


def hostile_seller_with_sale(chain, hostile):
    rc = as_hostile(chain, hostile, chain.registry.functions.list(MODEL_HASH, CID_V1, PRICE))
    mid = chain.events(rc, chain.registry, "ModelListed")[0]["modelId"]
    pid = chain.buy(chain.accounts[2], mid)
    as_hostile(chain, hostile, chain.market.functions.deliverKey(pid, chain.accounts[2], bytes(80)))
    chain.release_revenue(pid)
    return mid, fee_split(PRICE)[0]


def assert_reentry_refused(chain, hostile, payout_fn):
    """Call ``payout_fn`` as the hostile contract, which calls it again from receive(): the guard refuses."""
    chain.send(
        hostile.functions.setReentry(
            payout_fn.address, payout_fn._encode_transaction_data(), False
        ),
        chain.deployer,
    )
    as_hostile(chain, hostile, payout_fn)
    h = hostile.functions
    assert h.reentryAttempts().call() == 1 and h.lastReentryOk().call() is False
    assert (
        decode_revert(h.lastReentryResult().call()).context["error"]
        == "ReentrancyGuardReentrantCall"
    )


def assert_withdrawal_fails_and_stays_credited(chain, hostile, net: int) -> None:
    """The hostile seller's withdraw() fails in its transfer to it: it stays credited with ``net``."""
    withdraw = chain.market.functions.withdraw()
    chain.expect_revert(
        hostile.functions.exec(chain.market.address, withdraw._encode_transaction_data(), 0),
        chain.deployer,
        "MarketplaceTransferFailed",
        account=hostile.address,
        amount=net,
    )
    assert chain.market.functions.credited(hostile.address).call() == net


def test_seller_reentering_withdraw_is_refused(chain, hostile):
    _mid, net = hostile_seller_with_sale(chain, hostile)
    assert_reentry_refused(chain, hostile, chain.market.functions.withdraw())
    assert hostile.functions.received().call() == net  # paid exactly once
    assert chain.market.functions.credited(hostile.address).call() == 0


def test_seller_propagating_reentry_keeps_its_balance(chain, hostile):
    _mid, net = hostile_seller_with_sale(chain, hostile)
    withdraw = chain.market.functions.withdraw()
    chain.send(
        hostile.functions.setReentry(
            chain.market.address, withdraw._encode_transaction_data(), True
        ),
        chain.deployer,
    )
    assert_withdrawal_fails_and_stays_credited(chain, hostile, net)
    chain.send(hostile.functions.setReentry("0x" + "00" * 20, b"", False), chain.deployer)
    as_hostile(chain, hostile, withdraw)
    assert hostile.functions.received().call() == net


def test_fee_recipient_reentering_refund_gets_nothing_extra(chain, hostile):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    chain.send(chain.market.functions.setFeeRecipient(hostile.address), chain.deployer)
    mid = chain.list_model(seller)
    sale = chain.buy(buyer, mid)
    chain.deliver(seller, sale)
    chain.release_revenue(sale)
    # a purchase of the hostile contract, refunded, so that re-entering refund() has a target
    mid2 = chain.list_model(seller)
    rc = as_hostile(chain, hostile, chain.market.functions.buy(mid2, BUYER_KEY, PRICE), value=PRICE)
    pid = chain.events(rc, chain.market, "Purchased")[0]["purchaseId"]
    chain.travel(PARAMS["delivery_window"] + 1)
    as_hostile(chain, hostile, chain.market.functions.refund(pid))
    fee = fee_split(PRICE)[1]
    assert chain.market.functions.credited(hostile.address).call() == fee + PRICE
    refund = chain.market.functions.refund(pid)
    chain.send(
        hostile.functions.setReentry(
            chain.market.address, refund._encode_transaction_data(), False
        ),
        chain.deployer,
    )
    before = chain.balance(chain.market.address)
    as_hostile(chain, hostile, chain.market.functions.withdraw())
    err = decode_revert(hostile.functions.lastReentryResult().call())
    assert (
        err.context["error"] == "MarketplaceNotPending"
        and err.context["args"]["status"] == PurchaseStatus.REFUNDED
    )
    assert hostile.functions.received().call() == fee + PRICE
    assert chain.balance(chain.market.address) == before - fee - PRICE


def test_eth_rejecting_seller_stays_credited_and_others_are_unaffected(chain, hostile):
    _mid, net = hostile_seller_with_sale(chain, hostile)
    chain.send(hostile.functions.setAcceptEth(False), chain.deployer)
    withdraw = chain.market.functions.withdraw()
    assert_withdrawal_fails_and_stays_credited(chain, hostile, net)
    # the fee recipient withdraws normally meanwhile
    fee = PRICE - net
    rc = chain.send(withdraw, chain.fee_recipient)
    assert chain.events(rc, chain.market, "Withdrawn") == [
        {"account": chain.fee_recipient, "amount": fee, "token": ETH}
    ]
    chain.send(hostile.functions.setAcceptEth(True), chain.deployer)
    as_hostile(chain, hostile, withdraw)
    assert hostile.functions.received().call() == net
    assert chain.balance(chain.market.address) == 0


def test_front_run_price_increase_reverts_and_charges_nothing(chain):
    """setPrice and buy land in the same block, setPrice first: the buy reverts, the buyer pays only gas."""
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    w3 = chain.w3
    if chain.kind == "anvil":
        w3.provider.make_request("evm_setAutomine", [False])
    else:
        w3.provider.ethereum_tester.disable_auto_mine_transactions()
    try:
        before = chain.balance(buyer)
        h1 = chain.registry.functions.setPrice(mid, PRICE * 2).transact(
            {"from": seller, "gas": 100_000}
        )
        h2 = chain.market.functions.buy(mid, BUYER_KEY, PRICE).transact(
            {"from": buyer, "value": PRICE, "gas": 200_000}
        )
        if chain.kind == "anvil":
            w3.provider.make_request("evm_mine", [])
        else:
            w3.provider.ethereum_tester.mine_blocks()
    finally:
        if chain.kind == "anvil":
            w3.provider.make_request("evm_setAutomine", [True])
        else:
            w3.provider.ethereum_tester.enable_auto_mine_transactions()
    r1, r2 = w3.eth.get_transaction_receipt(h1), w3.eth.get_transaction_receipt(h2)
    assert r1["blockNumber"] == r2["blockNumber"] and r1["status"] == 1 and r2["status"] == 0
    assert chain.balance(buyer) == before - chain.gas_cost(r2)
    assert chain.balance(chain.market.address) == 0


def test_validator_reentering_unstake_is_paid_its_stake_once(chain, hostile):
    """Validators.unstake sends ETH too: a re-entering validator gets its stake once, the others' stay."""
    v = chain.validators.functions
    stake = PARAMS["min_stake"]
    chain.stake(chain.accounts[3])  # another validator's stake sits in the same contract
    as_hostile(chain, hostile, v.stake(), value=stake)
    as_hostile(chain, hostile, v.requestUnstake())
    chain.travel(PARAMS["unstake_delay"] + 1)
    assert_reentry_refused(chain, hostile, v.unstake())
    assert hostile.functions.received().call() == stake
    assert chain.stake_of(hostile.address) == (0, 0, 0, 0)
    assert chain.balance(chain.validators.address) == stake  # accounts[3]'s stake, untouched


def test_treasury_reentering_withdraw_of_forfeits_is_paid_once(chain, hostile):
    """Validators.withdraw pays the treasury its forfeited bonds: re-entered, it pays once."""
    suite = chain.variant(treasury=hostile.address)
    seller, lazy, a, b = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = suite.list_model(seller)
    suite.stake(lazy)
    suite.key(lazy, mid)
    suite.verified_by(mid, (a, b))
    suite.release(
        mid, lazy
    )  # held the key through the deciding round: the request bond is forfeited
    forfeited = PARAMS["request_bond"]
    assert suite.validators.functions.credited(hostile.address).call() == forfeited
    assert_reentry_refused(suite, hostile, suite.validators.functions.withdraw())
    assert hostile.functions.received().call() == forfeited
    assert suite.validators.functions.credited(hostile.address).call() == 0
    assert chain.balance(suite.validators.address) == 3 * PARAMS["min_stake"] - forfeited


def test_a_hostile_buyer_refunded_after_a_dispute_gets_the_price_once(chain, hostile):
    """A contract buyer whose delivered purchase is refunded after a dispute (its vote dropped) and that
    re-enters refund() while withdrawing gets the price once."""
    seller, v1, v2 = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    rc = as_hostile(chain, hostile, chain.market.functions.buy(mid, BUYER_KEY, PRICE), value=PRICE)
    pid = chain.events(rc, chain.market, "Purchased")[0]["purchaseId"]
    chain.deliver(seller, pid)
    as_hostile(chain, hostile, chain.votes.functions.vote(mid, 5))
    chain.disputed_by(mid, (v1, v2))
    refund = chain.market.functions.refund(pid)
    as_hostile(chain, hostile, refund)
    assert chain.votes.functions.scoreOf(mid).call() == [0, 0, 0]
    chain.send(
        hostile.functions.setReentry(
            chain.market.address, refund._encode_transaction_data(), False
        ),
        chain.deployer,
    )
    as_hostile(chain, hostile, chain.market.functions.withdraw())
    err = decode_revert(hostile.functions.lastReentryResult().call())
    assert (
        err.context["error"] == "MarketplaceNotPending"
        and err.context["args"]["status"] == PurchaseStatus.REFUNDED
    )
    assert hostile.functions.received().call() == PRICE
    assert chain.balance(chain.market.address) == 0
