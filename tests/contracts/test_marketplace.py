"""Marketplace: buy / deliver / refund / withdraw, validator keys, fees, and every revert path."""

from conftest import BUYER_KEY, PRICE, WRAPPED

ZERO = "0x" + "00" * 20


def fee_split(price, fee_bps=250):
    fee = price * fee_bps // 10_000
    return price - fee, fee


def test_buy_deliver_withdraw(chain):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    m = chain.market.functions
    rc = chain.send(m.buy(mid, BUYER_KEY, PRICE), buyer, value=PRICE)
    (ev,) = chain.events(rc, chain.market, "Purchased")
    assert ev == {"purchaseId": 1, "modelId": mid, "buyer": buyer, "price": PRICE, "buyerKey": BUYER_KEY}
    assert chain.balance(chain.market.address) == PRICE
    assert m.hasLicense(mid, buyer).call() is False
    account, model, price, deadline, status, for_validator = m.purchase(1).call()
    assert (account, model, price, status, for_validator) == (buyer, mid, PRICE, 1, False)
    assert deadline == chain.now() + 3600

    rc = chain.deliver(seller, 1)
    assert chain.events(rc, chain.market, "KeyDelivered") == [{"purchaseId": 1, "wrappedKey": WRAPPED}]
    assert m.hasLicense(mid, buyer).call() is True
    assert m.purchase(1).call()[4] == 2
    net, fee = fee_split(PRICE)
    assert m.credited(seller).call() == net and m.credited(chain.fee_recipient).call() == fee

    before = chain.balance(seller)
    rc = chain.send(m.withdraw(), seller)
    assert chain.events(rc, chain.market, "Withdrawn") == [{"account": seller, "amount": net}]
    assert chain.balance(seller) == before + net - chain.gas_cost(rc)
    assert m.credited(seller).call() == 0
    assert chain.balance(chain.market.address) == fee


def test_operator_delivers_and_new_owner_is_paid(chain):
    seller, buyer, worker, new_owner = chain.accounts[1], chain.accounts[2], chain.accounts[5], chain.accounts[6]
    mid = chain.list_model(seller)
    chain.send(chain.registry.functions.setOperator(mid, worker), seller)
    pid = chain.buy(buyer, mid)
    chain.send(chain.registry.functions.transferFrom(seller, new_owner, mid), seller)
    # the transfer cleared the old operator: the worker of the old owner can no longer deliver
    chain.expect_revert(chain.market.functions.deliverKey(pid, WRAPPED), worker, "MarketplaceNotDeliverer",
                        purchaseId=pid, caller=worker)
    chain.send(chain.registry.functions.setOperator(mid, worker), new_owner)
    chain.deliver(worker, pid)
    net, _ = fee_split(PRICE)
    assert chain.market.functions.credited(new_owner).call() == net
    assert chain.market.functions.credited(seller).call() == 0


def test_buy_reverts(chain):
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    m = chain.market.functions
    before = chain.balance(chain.market.address)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE - 1), buyer, "MarketplacePriceAboveMax", value=PRICE,
                        modelId=mid, price=PRICE, maxPrice=PRICE - 1)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE * 2), buyer, "MarketplaceWrongPayment", value=PRICE * 2,
                        modelId=mid, sent=PRICE * 2, price=PRICE)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE), buyer, "MarketplaceWrongPayment", value=PRICE - 1,
                        sent=PRICE - 1)
    chain.expect_revert(m.buy(mid, b"\0" * 32, PRICE), buyer, "MarketplaceZeroBuyerKey", value=PRICE)
    chain.expect_revert(m.buy(99, BUYER_KEY, PRICE), buyer, "ERC721NonexistentToken", value=PRICE, tokenId=99)
    chain.send(chain.registry.functions.setActive(mid, False), seller)
    err = chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE), buyer, "MarketplaceModelInactive", value=PRICE)
    assert "nothing was charged" in str(err)
    chain.send(chain.registry.functions.setActive(mid, True), seller)
    pid = chain.buy(buyer, mid)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE), buyer, "MarketplacePurchasePending", value=PRICE,
                        purchaseId=pid)
    chain.deliver(seller, pid)
    chain.expect_revert(m.buy(mid, BUYER_KEY, PRICE), buyer, "MarketplaceAlreadyLicensed", value=PRICE,
                        modelId=mid, account=buyer)
    assert chain.balance(chain.market.address) == before + PRICE


def test_deliver_reverts(chain):
    seller, buyer, other = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    m = chain.market.functions
    chain.expect_revert(m.deliverKey(99, WRAPPED), seller, "MarketplaceUnknownPurchase", purchaseId=99)
    chain.expect_revert(m.deliverKey(pid, WRAPPED), other, "MarketplaceNotDeliverer", purchaseId=pid, caller=other)
    chain.expect_revert(m.deliverKey(pid, WRAPPED[:79]), seller, "MarketplaceBadWrappedKey", length=79, expected=80)
    chain.deliver(seller, pid)
    chain.expect_revert(m.deliverKey(pid, WRAPPED), seller, "MarketplaceNotPending", purchaseId=pid, status=2)
    pid2 = chain.buy(other, mid)
    chain.travel(3601)
    chain.expect_revert(m.deliverKey(pid2, WRAPPED), seller, "MarketplaceDeliveryWindowClosed", purchaseId=pid2)


def test_refund_after_window_then_buy_again(chain):
    seller, buyer, other = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    pid = chain.buy(buyer, mid)
    m = chain.market.functions
    chain.expect_revert(m.refund(pid), buyer, "MarketplaceDeliveryWindowOpen", purchaseId=pid)
    chain.expect_revert(m.refund(pid), other, "MarketplaceNotBuyer", purchaseId=pid, caller=other)
    chain.expect_revert(m.refund(99), buyer, "MarketplaceUnknownPurchase", purchaseId=99)
    chain.travel(3601)
    rc = chain.send(m.refund(pid), buyer)
    assert chain.events(rc, chain.market, "Refunded") == [{"purchaseId": pid, "buyer": buyer, "amount": PRICE}]
    assert m.credited(buyer).call() == PRICE
    chain.expect_revert(m.refund(pid), buyer, "MarketplaceNotPending", purchaseId=pid, status=3)
    chain.expect_revert(m.deliverKey(pid, WRAPPED), seller, "MarketplaceNotPending", status=3)
    pid2 = chain.buy(buyer, mid)
    assert pid2 == pid + 1
    assert m.purchase(pid).call()[4] == 3  # the old one reads as refunded
    chain.deliver(seller, pid2)
    assert m.hasLicense(mid, buyer).call() is True
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
    assert chain.market.functions.credited(seller).call() == 0


def test_fee_settings(chain):
    m, owner, other = chain.market.functions, chain.deployer, chain.accounts[3]
    rc = chain.send(m.setFeeBps(1000), owner)
    assert chain.events(rc, chain.market, "FeeChanged") == [{"feeBps": 1000}]
    rc = chain.send(m.setFeeRecipient(other), owner)
    assert chain.events(rc, chain.market, "FeeRecipientChanged") == [{"feeRecipient": other}]
    assert (m.feeBps().call(), m.feeRecipient().call()) == (1000, other)
    chain.expect_revert(m.setFeeBps(1001), owner, "MarketplaceFeeTooHigh", feeBps=1001, maxFeeBps=1000)
    chain.expect_revert(m.setFeeRecipient(ZERO), owner, "MarketplaceZeroAddress")
    chain.expect_revert(m.setFeeBps(1), other, "OwnableUnauthorizedAccount", account=other)
    chain.expect_revert(m.setFeeRecipient(other), other, "OwnableUnauthorizedAccount", account=other)
    chain.expect_revert(m.connectValidators(other), owner, "MarketplaceValidatorsAlreadySet",
                        validators=chain.validators.address)
    chain.expect_revert(m.recordVerdict(1, True, 1), owner, "MarketplaceOnlyValidators", caller=owner)
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(buyer, mid))
    assert m.credited(other).call() == PRICE // 10 and m.credited(seller).call() == PRICE - PRICE // 10


def test_validator_key_request_and_rewards(chain):
    seller, buyer, v1, v2 = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    m, v = chain.market.functions, chain.validators.functions
    chain.expect_revert(m.requestValidatorKey(mid, BUYER_KEY), v1, "MarketplaceNotValidator", account=v1)
    chain.stake(v1)
    chain.stake(v2)
    rc = chain.send(m.requestValidatorKey(mid, BUYER_KEY), v1)
    (ev,) = chain.events(rc, chain.market, "Purchased")
    assert ev == {"purchaseId": ev["purchaseId"], "modelId": mid, "buyer": v1, "price": 0, "buyerKey": BUYER_KEY}
    assert chain.events(rc, chain.market, "ValidatorKeyRequested") == [
        {"purchaseId": ev["purchaseId"], "modelId": mid, "validator": v1}]
    chain.expect_revert(m.requestValidatorKey(mid, BUYER_KEY), v1, "MarketplacePurchasePending")
    chain.expect_revert(m.requestValidatorKey(mid, b"\0" * 32), v2, "MarketplaceZeroBuyerKey")
    chain.expect_revert(m.refund(ev["purchaseId"]), v1, "MarketplaceNotBuyer")
    chain.deliver(seller, ev["purchaseId"])
    assert m.hasLicense(mid, v1).call() is False  # a validator key is not a licence
    chain.expect_revert(m.requestValidatorKey(mid, BUYER_KEY), v1, "MarketplaceAlreadyLicensed")
    # no reward before verification
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNotVerifier", modelId=mid, account=v1)
    model_hash = chain.registry.functions.modelHash(mid).call()
    chain.send(v.attest(mid, model_hash, b"\0" * 32), v1)
    rc = chain.send(v.attest(mid, model_hash, b"\0" * 32), v2)
    assert chain.events(rc, chain.market, "VerdictRecorded") == [{"modelId": mid, "verified": True, "verifiers": 2}]
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNothingToClaim")
    chain.deliver(seller, chain.buy(buyer, mid))
    fee = PRICE * 250 // 10_000
    per = fee * 2000 // 10_000 // 2
    assert m.pendingValidatorReward(mid, v1).call() == per
    assert m.credited(chain.fee_recipient).call() == fee - 2 * per
    assert m.credited(seller).call() == PRICE - fee
    rc = chain.send(m.claimValidatorReward(mid), v1)
    assert chain.events(rc, chain.market, "ValidatorRewardClaimed") == [
        {"modelId": mid, "validator": v1, "amount": per}]
    assert m.credited(v1).call() == per
    chain.expect_revert(m.claimValidatorReward(mid), v1, "MarketplaceNothingToClaim")
    chain.expect_revert(m.claimValidatorReward(mid), buyer, "MarketplaceNotVerifier")


def test_disputed_model_cannot_be_bought(chain):
    seller, buyer, v1, v2 = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    chain.stake(v1)
    chain.stake(v2)
    for v in (v1, v2):
        chain.send(chain.validators.functions.attest(mid, b"\x99" * 32, b"\0" * 32), v)
    assert chain.market.functions.book(mid).call()[1] is True
    chain.expect_revert(chain.market.functions.buy(mid, BUYER_KEY, PRICE), buyer, "MarketplaceModelDisputed",
                        value=PRICE, modelId=mid)


def dispute(chain, model_id, validators):
    for v in validators:
        chain.stake(v)
    for v in validators:
        chain.send(chain.validators.functions.attest(model_id, b"\x99" * 32, b"\0" * 32), v)
    assert chain.validators.functions.status(model_id).call() == 2


def test_disputed_model_pending_purchases_are_never_delivered_and_refundable_at_once(chain):
    """Validators found the content bad while purchases were pending: the seller can no longer deliver
    (and be paid), and each buyer takes the whole price back at once, without waiting for the window."""
    seller, buyer, buyer2, v1, v2 = chain.accounts[1:6]
    m = chain.market.functions
    mid = chain.list_model(seller)
    pid, pid2 = chain.buy(buyer, mid), chain.buy(buyer2, mid)
    dispute(chain, mid, (v1, v2))
    request = chain.events(chain.send(m.requestValidatorKey(mid, BUYER_KEY), v1), chain.market,
                           "Purchased")[0]["purchaseId"]
    err = chain.expect_revert(m.deliverKey(pid, WRAPPED), seller, "MarketplaceModelDisputed", modelId=mid)
    assert "can no longer be delivered" in str(err) and "refund" in str(err)
    chain.expect_revert(m.deliverKey(request, WRAPPED), seller, "MarketplaceModelDisputed", modelId=mid)
    deadline = m.purchase(pid).call()[3]
    assert chain.now() < deadline  # the delivery window is still open
    chain.expect_revert(m.refund(pid), buyer2, "MarketplaceNotBuyer", purchaseId=pid, caller=buyer2)
    chain.expect_revert(m.refund(request), v1, "MarketplaceNotBuyer", purchaseId=request)
    rc = chain.send(m.refund(pid), buyer)
    assert chain.events(rc, chain.market, "Refunded") == [{"purchaseId": pid, "buyer": buyer, "amount": PRICE}]
    assert m.purchase(pid).call()[4] == 3
    chain.expect_revert(m.refund(pid), buyer, "MarketplaceNotPending", purchaseId=pid, status=3)
    chain.expect_revert(m.deliverKey(pid, WRAPPED), seller, "MarketplaceNotPending", purchaseId=pid, status=3)
    chain.travel(3601)  # after the window it is refundable as before
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


def test_verified_and_unsettled_models_keep_the_delivery_window(chain):
    """Only a dispute opens the refund early: a pending purchase of a model not yet settled (even with a
    dissenting attestation) or verified still waits for the window, and is delivered and paid as before."""
    seller, buyer, buyer2, v1, v2, v3 = chain.accounts[1:7]
    m, v = chain.market.functions, chain.validators.functions
    mid = chain.list_model(seller)
    early = chain.buy(buyer2, mid)
    for validator in (v1, v2, v3):
        chain.stake(validator)
    model_hash = chain.registry.functions.modelHash(mid).call()
    chain.send(v.attest(mid, b"\x99" * 32, b"\0" * 32), v1)  # one dissent: below the quorum of 2
    chain.send(v.attest(mid, model_hash, b"\0" * 32), v2)
    assert v.status(mid).call() == 0
    chain.expect_revert(m.refund(early), buyer2, "MarketplaceDeliveryWindowOpen", purchaseId=early)
    chain.send(v.attest(mid, model_hash, b"\0" * 32), v3)
    assert v.status(mid).call() == 1
    pid = chain.buy(buyer, mid)
    for p, who in ((early, buyer2), (pid, buyer)):
        chain.expect_revert(m.refund(p), who, "MarketplaceDeliveryWindowOpen", purchaseId=p)
        chain.deliver(seller, p)
    fee = fee_split(PRICE)[1]
    per = fee * 2000 // 10_000 // 2
    assert m.credited(seller).call() == 2 * (PRICE - fee)
    assert m.pendingValidatorReward(mid, v2).call() == 2 * per
    assert m.credited(chain.fee_recipient).call() == 2 * (fee - 2 * per)


def test_platform_fees_accrue_beside_the_fee_config_and_follow_the_recipient(chain):
    """Fees accrue in the fee-config slot (gas), yet credited()/withdraw() treat them as the recipient's
    balance, and a recipient change leaves what accrued so far with the previous recipient."""
    m, owner, recipient, new_recipient = chain.market.functions, chain.deployer, chain.fee_recipient, chain.accounts[8]
    seller, buyer, buyer2 = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(buyer, mid))
    fee = PRICE * 250 // 10_000
    assert m.credited(recipient).call() == fee
    chain.send(m.setFeeRecipient(new_recipient), owner)
    assert (m.credited(recipient).call(), m.credited(new_recipient).call()) == (fee, 0)
    chain.deliver(seller, chain.buy(buyer2, mid))
    assert (m.credited(recipient).call(), m.credited(new_recipient).call()) == (fee, fee)
    for account in (recipient, new_recipient):
        before = chain.balance(account)
        rc = chain.send(m.withdraw(), account)
        assert chain.events(rc, chain.market, "Withdrawn") == [{"account": account, "amount": fee}]
        assert chain.balance(account) == before + fee - chain.gas_cost(rc)
        chain.expect_revert(m.withdraw(), account, "MarketplaceNothingToWithdraw", account=account)
    assert chain.balance(chain.market.address) == m.credited(seller).call() == 2 * (PRICE - fee)


def test_votes_wiring(chain):
    m, owner, other = chain.market.functions, chain.deployer, chain.accounts[3]
    assert m.votes().call() == chain.votes.address
    chain.expect_revert(m.connectVotes(other), owner, "MarketplaceVotesAlreadySet", votes=chain.votes.address)
    chain.expect_revert(m.connectVotes(other), other, "OwnableUnauthorizedAccount", account=other)
    chain.expect_revert(m.recordVote(1, other, 3), other, "MarketplaceOnlyVotes", caller=other)
    seller, buyer = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(buyer, mid))
    chain.send(chain.votes.functions.vote(mid, 4), buyer)
    assert m.voteOf(mid, buyer).call() == chain.votes.functions.voteOf(mid, buyer).call() == 4
    assert m.voteOf(mid, other).call() == 0
