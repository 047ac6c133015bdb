"""Marketplace: buy / deliver / hold / release / refund / withdraw, validator keys, fees, and every
revert path."""

from conftest import BAD_HASH, BUYER_KEY, CLAIM, ETH, PARAMS, PRICE, WRAPPED, fee_split

from node.protocol import Book, ModelStatus, PurchaseStatus

ZERO = "0x" + "00" * 20
CHALLENGE = PARAMS["challenge_period"]
WINDOW = PARAMS["delivery_window"]


def assert_refunded_for_good(chain, pid: int, buyer, seller) -> None:
    """A refunded purchase is neither refunded again nor delivered: it is no longer pending."""
    m, refunded = chain.market.functions, (pid, PurchaseStatus.REFUNDED)
    for call, sender in ((m.refund(pid), buyer), (m.deliverKey(pid, buyer, WRAPPED), seller)):
        chain.expect_revert_with(call, sender, "MarketplaceNotPending", refunded)


def test_buy_deliver_hold_release_withdraw(chain):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    m = chain.market.functions
    rc = chain.send(m.buy(mid, BUYER_KEY, PRICE), buyer, value=PRICE)
    (ev,) = chain.events(rc, chain.market, "Purchased")
    assert ev == dict(
        purchaseId=1, modelId=mid, buyer=buyer, price=PRICE, buyerKey=BUYER_KEY, token=ETH
    )
    assert chain.balance(chain.market.address) == PRICE
    assert m.hasLicense(mid, buyer).call() is False
    p = chain.purchase(1)
    assert (
        p.account,
        p.model_id,
        p.price,
        p.status,
        p.for_validator,
        p.delivered_at,
        p.released,
    ) == (buyer, mid, PRICE, PurchaseStatus.PENDING, False, 0, False)
    assert p.deadline == chain.now() + WINDOW

    rc = chain.send(m.deliverKey(1, buyer, WRAPPED), seller)
    assert chain.events(rc, chain.market, "KeyDelivered") == [
        {"purchaseId": 1, "wrappedKey": WRAPPED}
    ]
    assert m.hasLicense(mid, buyer).call() is True
    p = chain.purchase(1)
    assert (p.status, p.delivered_at, p.released) == (PurchaseStatus.DELIVERED, chain.now(), False)
    # the revenue is held for the challenge period: nobody is credited yet
    assert m.credited(seller).call() == m.credited(chain.fee_recipient).call() == 0
    chain.expect_revert(
        m.releaseRevenue(1),
        chain.accounts[7],
        "MarketplaceRevenueHeld",
        purchaseId=1,
        challengeEnd=p.delivered_at + CHALLENGE,
    )
    chain.at(p.delivered_at + CHALLENGE)  # the last second of the period still holds it
    chain.expect_revert(m.releaseRevenue(1), chain.accounts[7], "MarketplaceRevenueHeld")
    chain.at(p.delivered_at + CHALLENGE + 1)
    rc = chain.send(m.releaseRevenue(1), chain.accounts[7])  # anyone may release
    net, fee = fee_split(PRICE)
    assert chain.events(rc, chain.market, "RevenueReleased") == [
        {"purchaseId": 1, "owner": seller, "amount": net, "fee": fee, "token": ETH}
    ]
    assert chain.purchase(1).released is True
    assert m.credited(seller).call() == net and m.credited(chain.fee_recipient).call() == fee
    chain.expect_revert(
        m.releaseRevenue(1), seller, "MarketplaceNothingToRelease", purchaseId=1
    )  # once
    chain.expect_revert(m.refund(1), buyer, "MarketplaceNotRefundable", purchaseId=1)

    before = chain.balance(seller)
    rc = chain.send(m.withdraw(), seller)
    assert chain.events(rc, chain.market, "Withdrawn") == [
        {"account": seller, "amount": net, "token": ETH}
    ]
    assert chain.balance(seller) == before + net - chain.gas_cost(rc)
    assert m.credited(seller).call() == 0
    assert chain.balance(chain.market.address) == fee


def test_operator_delivers_and_the_owner_at_release_is_paid(chain):
    """The revenue goes to whoever owns the model's token when it is released (selling the token
    sells the held revenue); the old owner's operator loses the right to deliver on transfer."""
    seller, buyer = chain.accounts[1:3]
    worker, new_owner = chain.accounts[5:7]
    mid = chain.list_model(seller)
    chain.send(chain.registry.functions.setOperator(mid, worker), seller)
    pid = chain.buy(buyer, mid)
    chain.send(chain.registry.functions.transferFrom(seller, new_owner, mid), seller)
    chain.expect_revert(
        chain.market.functions.deliverKey(pid, buyer, WRAPPED),
        worker,
        "MarketplaceNotDeliverer",
        purchaseId=pid,
        caller=worker,
    )
    chain.send(chain.registry.functions.setOperator(mid, worker), new_owner)
    chain.deliver(worker, pid)
    chain.send(chain.registry.functions.transferFrom(new_owner, chain.accounts[7], mid), new_owner)
    rc = chain.release_revenue(pid)
    net, _ = fee_split(PRICE)
    assert chain.events(rc, chain.market, "RevenueReleased")[0]["owner"] == chain.accounts[7]
    assert chain.market.functions.credited(chain.accounts[7]).call() == net
    assert (
        chain.market.functions.credited(seller).call()
        == chain.market.functions.credited(new_owner).call()
        == 0
    )


def test_buy_reverts(chain):
    seller, buyer = chain.accounts[1:3]
    mid = chain.list_model(seller)
    m = chain.market.functions
    before = chain.balance(chain.market.address)
    double = 2 * PRICE
    # buy(model, buyer key, max price) sending a value: the error and all its arguments, in order
    for (model, key, max_price, value), error, args in (
        ((mid, BUYER_KEY, PRICE - 1, PRICE), "MarketplacePriceAboveMax", (mid, PRICE, PRICE - 1)),
        ((mid, BUYER_KEY, double, double), "MarketplaceWrongPayment", (mid, double, PRICE)),
        ((mid, BUYER_KEY, PRICE, PRICE - 1), "MarketplaceWrongPayment", (mid, PRICE - 1, PRICE)),
        ((mid, b"\0" * 32, PRICE, PRICE), "MarketplaceZeroBuyerKey", ()),
        ((99, BUYER_KEY, PRICE, PRICE), "ERC721NonexistentToken", (99,)),
    ):
        chain.expect_revert_with(m.buy(model, key, max_price), buyer, error, args, value=value)
    chain.send(chain.registry.functions.setActive(mid, False), seller)
    err = chain.buy_refused(buyer, mid, "MarketplaceModelInactive")
    assert "nothing was charged" in str(err)
    chain.send(chain.registry.functions.setActive(mid, True), seller)
    pid = chain.buy(buyer, mid)
    chain.buy_refused(buyer, mid, "MarketplacePurchasePending", purchaseId=pid)
    chain.deliver(seller, pid)
    chain.buy_refused(buyer, mid, "MarketplaceAlreadyLicensed", modelId=mid, account=buyer)
    assert chain.balance(chain.market.address) == before + PRICE


def test_deliver_reverts(chain):
    seller, buyer, other = chain.accounts[1:4]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    m = chain.market.functions
    # deliverKey(purchase, buyer, wrapped key) from a sender: the error and all its arguments
    for (purchase, to, wrapped), sender, error, args in (
        ((99, buyer, WRAPPED), seller, "MarketplaceUnknownPurchase", (99,)),
        ((99, ZERO, WRAPPED), seller, "MarketplaceUnknownPurchase", (99,)),
        ((pid, other, WRAPPED), seller, "MarketplaceWrongBuyer", (pid, buyer, other)),
        ((pid, buyer, WRAPPED), other, "MarketplaceNotDeliverer", (pid, other)),
        ((pid, buyer, WRAPPED[:79]), seller, "MarketplaceBadWrappedKey", (79, 80)),
    ):
        chain.expect_revert_with(m.deliverKey(purchase, to, wrapped), sender, error, args)
    chain.deliver(seller, pid)
    again, delivered = m.deliverKey(pid, buyer, WRAPPED), (pid, PurchaseStatus.DELIVERED)
    chain.expect_revert_with(again, seller, "MarketplaceNotPending", delivered)
    pid2 = chain.buy(other, mid)
    chain.travel(WINDOW + 1)
    late = m.deliverKey(pid2, other, WRAPPED)
    chain.expect_revert(late, seller, "MarketplaceDeliveryWindowClosed", purchaseId=pid2)


def test_refund_after_window_then_buy_again(chain):
    seller, buyer, other = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    m = chain.market.functions
    chain.expect_revert(m.refund(pid), buyer, "MarketplaceDeliveryWindowOpen", purchaseId=pid)
    chain.expect_revert(m.refund(pid), other, "MarketplaceNotBuyer", purchaseId=pid, caller=other)
    chain.expect_revert(m.refund(99), buyer, "MarketplaceUnknownPurchase", purchaseId=99)
    chain.travel(WINDOW + 1)
    rc = chain.send(m.refund(pid), buyer)
    assert chain.events(rc, chain.market, "Refunded") == [
        {"purchaseId": pid, "buyer": buyer, "amount": PRICE, "token": ETH}
    ]
    assert m.credited(buyer).call() == PRICE
    assert_refunded_for_good(chain, pid, buyer, seller)
    chain.expect_revert(
        m.releaseRevenue(pid), seller, "MarketplaceNothingToRelease", purchaseId=pid
    )
    pid2 = chain.buy(buyer, mid)
    assert pid2 == pid + 1
    assert chain.purchase(pid).status == PurchaseStatus.REFUNDED  # the old one reads as refunded
    chain.deliver(seller, pid2)
    assert m.hasLicense(mid, buyer).call() is True
    chain.release_revenue(pid2)
    # paid out exactly once each: the refund to the buyer, the second sale to the seller and the fee
    net, fee = fee_split(PRICE)
    assert chain.balance(chain.market.address) == PRICE + net + fee
    chain.expect_revert(m.withdraw(), other, "MarketplaceNothingToWithdraw", account=other)


def test_free_model(chain):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller, price=0)
    pid = chain.buy(buyer, mid, price=0)
    chain.deliver(seller, pid)
    assert chain.market.functions.hasLicense(mid, buyer).call() is True
    chain.travel(CHALLENGE + 1)
    chain.expect_revert(
        chain.market.functions.releaseRevenue(pid),
        seller,
        "MarketplaceNothingToRelease",
        purchaseId=pid,
    )
    assert chain.market.functions.credited(seller).call() == 0


def test_fee_settings_apply_to_revenue_released_from_then_on(chain):
    m, owner, other = chain.market.functions, chain.deployer, chain.accounts[3]
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    chain.deliver(seller, pid)  # delivered at 2.5 %, released after the change
    rc = chain.send(m.setFeeBps(1000), owner)
    assert chain.events(rc, chain.market, "FeeChanged") == [{"feeBps": 1000}]
    rc = chain.send(m.setFeeRecipient(other), owner)
    assert chain.events(rc, chain.market, "FeeRecipientChanged") == [{"feeRecipient": other}]
    assert (m.feeBps().call(), m.feeRecipient().call()) == (1000, other)
    chain.expect_revert(
        m.setFeeBps(1001), owner, "MarketplaceFeeTooHigh", feeBps=1001, maxFeeBps=1000
    )
    chain.expect_revert(m.setFeeRecipient(ZERO), owner, "MarketplaceZeroAddress")
    chain.expect_revert(m.setFeeBps(1), other, "OwnableUnauthorizedAccount", account=other)
    chain.expect_revert(
        m.setFeeRecipient(other), other, "OwnableUnauthorizedAccount", account=other
    )
    chain.expect_revert(
        m.connectValidators(other),
        owner,
        "MarketplaceValidatorsAlreadySet",
        validators=chain.validators.address,
    )
    chain.expect_revert(
        m.recordVerdict(1, 1, ModelStatus.VERIFIED, 1),
        owner,
        "MarketplaceOnlyValidators",
        caller=owner,
    )
    chain.release_revenue(pid)
    assert (
        m.credited(other).call() == PRICE // 10 and m.credited(seller).call() == PRICE - PRICE // 10
    )
    assert m.credited(chain.fee_recipient).call() == 0


def test_platform_fees_follow_the_recipient_at_release(chain):
    """A recipient change leaves what was released so far with the previous recipient."""
    m, owner, recipient, new_recipient = (
        chain.market.functions,
        chain.deployer,
        chain.fee_recipient,
        chain.accounts[8],
    )
    seller, buyer, buyer2 = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    chain.deliver(seller, pid)
    chain.release_revenue(pid)
    net, fee = fee_split(PRICE)
    assert m.credited(recipient).call() == fee
    chain.send(m.setFeeRecipient(new_recipient), owner)
    assert (m.credited(recipient).call(), m.credited(new_recipient).call()) == (fee, 0)
    pid2 = chain.buy(buyer2, mid)
    chain.deliver(seller, pid2)
    chain.release_revenue(pid2)
    assert (m.credited(recipient).call(), m.credited(new_recipient).call()) == (fee, fee)
    for account in (recipient, new_recipient):
        before = chain.balance(account)
        rc = chain.send(m.withdraw(), account)
        assert chain.events(rc, chain.market, "Withdrawn") == [
            {"account": account, "amount": fee, "token": ETH}
        ]
        assert chain.balance(account) == before + fee - chain.gas_cost(rc)
        chain.expect_revert(m.withdraw(), account, "MarketplaceNothingToWithdraw", account=account)
    assert chain.balance(chain.market.address) == m.credited(seller).call() == 2 * net


def test_validator_key_request_and_rewards_by_weight(chain):
    seller, buyer, v1, v2 = chain.accounts[1:5]
    mid = chain.list_model(seller)
    m = chain.market.functions
    chain.expect_revert(
        m.requestValidatorKey(mid, BUYER_KEY), v1, "ValidatorsNotActive", validator=v1
    )
    chain.stake(v1, 2 * PARAMS["min_stake"])  # weight 2
    chain.stake(v2)  # weight 1
    rc = chain.send(m.requestValidatorKey(mid, BUYER_KEY), v1)
    (ev,) = chain.events(rc, chain.market, "Purchased")
    assert ev == {
        "purchaseId": ev["purchaseId"],
        "modelId": mid,
        "buyer": v1,
        "price": 0,
        "buyerKey": BUYER_KEY,
        "token": ETH,
    }
    assert chain.events(rc, chain.market, "ValidatorKeyRequested") == [
        {"purchaseId": ev["purchaseId"], "modelId": mid, "validator": v1}
    ]
    assert chain.purchase(ev["purchaseId"]).for_validator is True
    chain.expect_revert(m.requestValidatorKey(mid, BUYER_KEY), v1, "MarketplacePurchasePending")
    chain.expect_revert(m.requestValidatorKey(mid, b"\0" * 32), v2, "MarketplaceZeroBuyerKey")
    chain.expect_revert(
        m.requestValidatorKey(99, BUYER_KEY), v2, "ERC721NonexistentToken", tokenId=99
    )
    chain.expect_revert(m.refund(ev["purchaseId"]), v1, "MarketplaceNotBuyer")
    chain.deliver(seller, ev["purchaseId"])
    assert m.hasLicense(mid, v1).call() is False  # a validator key is not a licence
    chain.expect_revert(chain.votes.functions.vote(mid, 5), v1, "VotesNoLicense")
    chain.expect_revert(m.requestValidatorKey(mid, BUYER_KEY), v1, "MarketplaceAlreadyLicensed")
    chain.travel(CHALLENGE + 1)
    chain.expect_revert(
        m.releaseRevenue(ev["purchaseId"]), seller, "MarketplaceNothingToRelease"
    )  # price 0
    # no reward before verification
    chain.expect_revert(
        m.claimValidatorReward(mid), v1, "MarketplaceNotVerifier", modelId=mid, account=v1
    )
    chain.key(v2, mid)
    rc = chain.round(mid, {v1: chain.target(mid), v2: chain.target(mid)}, keyed=True)
    assert chain.events(rc, chain.market, "VerdictRecorded") == [
        {"modelId": mid, "version": 1, "status": ModelStatus.VERIFIED, "verifierWeight": 3}
    ]
    assert Book.from_call(m.book(mid).call())[:2] == (3, False)
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNothingToClaim")
    pid = chain.buy(buyer, mid)
    chain.deliver(seller, pid)
    assert m.pendingValidatorReward(mid, v1).call() == 0  # held with the revenue
    chain.release_revenue(pid)
    net, fee = fee_split(PRICE)
    per = fee * PARAMS["validator_share_bps"] // 10_000 // 3
    assert Book.from_call(m.book(mid).call()).reward_per_weight == per
    assert m.pendingValidatorReward(mid, v1).call() == 2 * per  # by weight
    assert m.pendingValidatorReward(mid, v2).call() == per
    assert m.credited(chain.fee_recipient).call() == fee - 3 * per  # the rounding dust stays here
    assert m.credited(seller).call() == net
    rc = chain.send(m.claimValidatorReward(mid), v1)
    assert chain.events(rc, chain.market, "ValidatorRewardClaimed") == [
        {"modelId": mid, "validator": v1, "amount": 2 * per, "token": ETH}
    ]
    assert m.credited(v1).call() == 2 * per
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNothingToClaim")
    chain.expect_revert(m.claimValidatorReward(mid), buyer, "MarketplaceNotVerifier")


def test_disputed_model_cannot_be_bought(chain):
    seller, buyer, v1, v2 = chain.accounts[1:5]
    mid = chain.list_model(seller)
    chain.disputed_by(mid, (v1, v2))
    assert Book.from_call(chain.market.functions.book(mid).call()).disputed is True
    chain.buy_refused(buyer, mid, "MarketplaceModelDisputed", modelId=mid)


def test_disputed_model_pending_purchases_are_never_delivered_and_refundable_at_once(chain):
    """Validators found the content bad while purchases were pending: the seller can no longer deliver
    (and be paid), and each buyer takes the whole price back at once, without waiting for the window."""
    seller, buyer, buyer2, v1, v2, v3 = chain.accounts[1:7]
    m = chain.market.functions
    mid = chain.list_model(seller)
    pid, pid2 = chain.buy(buyer, mid), chain.buy(buyer2, mid)
    chain.stake(v3)
    request = chain.request_key(v3, mid)  # asked before the verdict, never delivered after it
    chain.disputed_by(mid, (v1, v2))
    err = chain.expect_revert(
        m.deliverKey(pid, buyer, WRAPPED), seller, "MarketplaceModelDisputed", modelId=mid
    )
    assert "can no longer be delivered" in str(err) and "refund" in str(err)
    chain.expect_revert(
        m.deliverKey(request, v3, WRAPPED), seller, "MarketplaceModelDisputed", modelId=mid
    )
    assert chain.now() < chain.purchase(pid).deadline  # the delivery window is still open
    chain.expect_revert(m.refund(pid), buyer2, "MarketplaceNotBuyer", purchaseId=pid, caller=buyer2)
    chain.expect_revert(m.refund(request), v3, "MarketplaceNotBuyer", purchaseId=request)
    rc = chain.send(m.refund(pid), buyer)
    assert chain.events(rc, chain.market, "Refunded") == [
        {"purchaseId": pid, "buyer": buyer, "amount": PRICE, "token": ETH}
    ]
    assert chain.purchase(pid).status == PurchaseStatus.REFUNDED
    assert_refunded_for_good(chain, pid, buyer, seller)
    chain.travel(WINDOW + 1)  # after the window it is refundable as before
    chain.send(m.refund(pid2), buyer2)
    # The buyers get the whole price back; the seller, the platform and the verifiers nothing.
    assert (m.credited(buyer).call(), m.credited(buyer2).call()) == (PRICE, PRICE)
    assert m.credited(seller).call() == m.credited(chain.fee_recipient).call() == 0
    assert m.hasLicense(mid, buyer).call() is False
    before = chain.balance(buyer)
    rc = chain.send(m.withdraw(), buyer)
    assert chain.balance(buyer) == before + PRICE - chain.gas_cost(rc)
    assert chain.balance(chain.market.address) == PRICE  # buyer2's, credited, not yet withdrawn
    chain.expect_revert(m.withdraw(), seller, "MarketplaceNothingToWithdraw", account=seller)
    # v3's request expired undelivered: its seat is released with nothing lost
    assert chain.release(mid, v3) == {
        "modelId": mid,
        "validator": v3,
        "returned": PARAMS["request_bond"],
        "forfeited": 0,
    }


def test_a_dispute_within_the_challenge_period_refunds_delivered_buyers(chain):
    """Revenue waits out disputes: a delivered sale whose model is disputed while its revenue is held is
    refunded to the buyer (licence and vote revoked); the seller, platform and verifiers get nothing.
    A sale whose challenge period ended before the dispute was released, or can be, and stays paid."""
    seller, early, late, v1, v2 = chain.accounts[1:6]
    m = chain.market.functions
    mid = chain.list_model(seller)
    paid = chain.buy(early, mid)
    chain.deliver(seller, paid)
    chain.release_revenue(paid)  # its challenge period is over and released
    held = chain.buy(late, mid)
    chain.deliver(seller, held)
    chain.send(chain.votes.functions.vote(mid, 5), late)
    chain.expect_revert(
        m.refund(held), late, "MarketplaceNotRefundable", purchaseId=held
    )  # not disputed yet
    chain.disputed_by(mid, (v1, v2))
    disputed_at = Book.from_call(m.book(mid).call()).disputed_at
    assert disputed_at <= chain.purchase(held).delivered_at + CHALLENGE
    chain.travel(CHALLENGE + 1)  # the period ends; the dispute fell inside it
    chain.expect_revert(m.releaseRevenue(held), seller, "MarketplaceModelDisputed", modelId=mid)
    chain.expect_revert(m.refund(paid), early, "MarketplaceNotRefundable", purchaseId=paid)
    rc = chain.send(m.refund(held), late)
    assert chain.events(rc, chain.market, "Refunded") == [
        {"purchaseId": held, "buyer": late, "amount": PRICE, "token": ETH}
    ]
    assert chain.events(rc, chain.votes, "VoteDropped") == [
        {"modelId": mid, "score": 5, "weight": PRICE}
    ]
    assert chain.votes.functions.scoreOf(mid).call() == [0, 0, 0]
    assert m.hasLicense(mid, late).call() is False and m.voteOf(mid, late).call() == 0
    assert chain.purchase(held).status == PurchaseStatus.REFUNDED
    net, fee = fee_split(PRICE)
    assert (
        m.credited(late).call(),
        m.credited(seller).call(),
        m.credited(chain.fee_recipient).call(),
    ) == (PRICE, net, fee)
    assert chain.balance(chain.market.address) == PRICE + net + fee


def test_a_dispute_after_the_challenge_period_leaves_the_sale_paid(chain):
    seller, buyer, v1, v2 = chain.accounts[1:5]
    m = chain.market.functions
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    chain.deliver(seller, pid)
    chain.travel(CHALLENGE + 1)
    chain.disputed_by(mid, (v1, v2))  # after the period: not within it
    chain.expect_revert(m.refund(pid), buyer, "MarketplaceNotRefundable", purchaseId=pid)
    chain.send(m.releaseRevenue(pid), buyer)
    assert (
        m.credited(seller).call() == fee_split(PRICE)[0] and m.hasLicense(mid, buyer).call() is True
    )


def test_verified_and_unsettled_models_keep_the_delivery_window(chain):
    """Only a dispute opens the refund early: a pending purchase of a model not yet settled (even with a
    dissenting attestation revealed) or verified still waits for the window, and is delivered and paid
    as before."""
    seller, buyer, buyer2, v1, v2, v3 = chain.accounts[1:7]
    m = chain.market.functions
    mid = chain.list_model(seller)
    early = chain.buy(buyer2, mid)
    for validator in (v1, v2, v3):
        chain.stake(validator)
        chain.key(validator, mid)
    good = chain.target(mid)
    _, salt1 = chain.commit(v1, mid, BAD_HASH, CLAIM)  # one dissent
    _, salt2 = chain.commit(v2, mid, *good)
    _, salt3 = chain.commit(v3, mid, *good)
    chain.to_reveals(mid)
    chain.reveal(v1, mid, BAD_HASH, CLAIM, salt1)
    assert chain.status(mid) == ModelStatus.UNVERIFIED
    chain.expect_revert(m.refund(early), buyer2, "MarketplaceDeliveryWindowOpen", purchaseId=early)
    chain.reveal(v2, mid, *good, salt2)
    chain.reveal(v3, mid, *good, salt3)
    chain.to_settlement(mid)
    chain.settle(mid)
    assert chain.status(mid) == ModelStatus.VERIFIED
    pid = chain.buy(buyer, mid)
    for p, who in ((early, buyer2), (pid, buyer)):
        chain.expect_revert(m.refund(p), who, "MarketplaceDeliveryWindowOpen", purchaseId=p)
        chain.deliver(seller, p)
    for p in (early, pid):
        chain.release_revenue(p)
    net, fee = fee_split(PRICE)
    per = fee * PARAMS["validator_share_bps"] // 10_000 // 2
    assert m.credited(seller).call() == 2 * net
    assert m.pendingValidatorReward(mid, v2).call() == 2 * per
    assert m.pendingValidatorReward(mid, v1).call() == 0  # argued against the outcome
    assert m.credited(chain.fee_recipient).call() == 2 * (fee - 2 * per)


def test_votes_wiring(chain):
    m, owner, other = chain.market.functions, chain.deployer, chain.accounts[3]
    assert m.votes().call() == chain.votes.address
    chain.expect_revert(
        m.connectVotes(other), owner, "MarketplaceVotesAlreadySet", votes=chain.votes.address
    )
    chain.expect_revert(m.connectVotes(other), other, "OwnableUnauthorizedAccount", account=other)
    chain.expect_revert(m.recordVote(1, other, 3), other, "MarketplaceOnlyVotes", caller=other)
    chain.expect_revert(
        chain.votes.functions.dropVote(1, 3, 1), other, "VotesOnlyMarketplace", caller=other
    )
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(buyer, mid))
    chain.send(chain.votes.functions.vote(mid, 4), buyer)
    assert m.voteOf(mid, buyer).call() == chain.votes.functions.voteOf(mid, buyer).call() == 4
    assert m.voteOf(mid, other).call() == 0


def test_views_and_constructor_checks(chain):
    m = chain.market.functions
    assert (
        m.deliveryWindow().call(),
        m.challengePeriod().call(),
        m.validatorShareBps().call(),
    ) == (WINDOW, CHALLENGE, PARAMS["validator_share_bps"])
    assert (
        m.registry().call() == chain.registry.address
        and m.validators().call() == chain.validators.address
    )
    assert m.nextPurchaseId().call() == 1
    chain.expect_revert(
        m.purchase(1), chain.accounts[1], "MarketplaceUnknownPurchase", purchaseId=1
    )
    art = chain.artifacts["Marketplace"]
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    reg, owner = chain.registry.address, chain.deployer
    for args, error, what in (
        ((ZERO, 1, 0, 0, owner, 0, owner), "MarketplaceZeroAddress", None),
        ((reg, 1, 0, 0, ZERO, 0, owner), "MarketplaceZeroAddress", None),
        ((reg, 1, 0, 1001, owner, 0, owner), "MarketplaceFeeTooHigh", None),
        ((reg, 0, 0, 0, owner, 0, owner), "MarketplaceBadConfig", "deliveryWindow"),
        ((reg, 2**32, 0, 0, owner, 0, owner), "MarketplaceBadConfig", "deliveryWindow"),
        ((reg, 1, 2**32, 0, owner, 0, owner), "MarketplaceBadConfig", "challengePeriod"),
        ((reg, 1, 0, 0, owner, 10_001, owner), "MarketplaceBadConfig", "validatorShareBps"),
    ):
        err = chain.expect_revert(factory.constructor(*args), owner, error)
        if what:
            assert err.context["args"]["what"] == what
