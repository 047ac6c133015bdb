"""Validators.setAttester (issue 16 §2): a validator's cold wallet names a hot key that requests keys,
commits and reveals for it (Marketplace.requestValidatorKeyFor, Validators.commitAttestationFor and
revealAttestationFor); the stake, the bonds and the rewards stay the validator's, and the attester can
never unstake, withdraw, claim to itself or change the attester."""

import os

from conftest import BUYER_KEY, ETH, PARAMS

from node.protocol import ModelStatus, SeatState

ZERO = "0x" + "00" * 20
MIN = PARAMS["min_stake"]


def named(chain, validator, attester):
    """``validator`` stakes and names ``attester``; returns the AttesterChanged event."""
    chain.stake_if_needed([validator])
    rc = chain.send(chain.validators.functions.setAttester(attester), validator)
    return chain.events(rc, chain.validators, "AttesterChanged")


def key_for(chain, attester, validator, model_id):
    """The attester asks for the model's key for its validator and the seller delivers it."""
    rc = chain.send(
        chain.market.functions.requestValidatorKeyFor(validator, model_id, BUYER_KEY), attester
    )
    (purchased,) = chain.events(rc, chain.market, "Purchased")
    chain.deliver(chain.registry.functions.ownerOf(model_id).call(), purchased["purchaseId"])
    return purchased


def test_the_attester_requests_commits_and_reveals_for_its_validator(chain):
    seller, v1, v2 = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    hot = chain.new_account()
    assert named(chain, v1, hot) == [{"validator": v1, "attester": hot}]
    v = chain.validators.functions
    assert v.attesterOf(v1).call() == hot and v.validatorOf(hot).call() == v1
    mid = chain.list_model(seller)
    purchased = key_for(chain, hot, v1, mid)
    assert purchased["buyer"] == v1  # the request, and the seat it opens, are the validator's
    assert chain.seat(mid, v1).state == SeatState.KEYED
    observed, digest = chain.target(mid)
    salt = os.urandom(32)
    commitment = chain.commitment(mid, v1, observed, digest, salt)
    rc = chain.send(v.commitAttestationFor(v1, mid, commitment), hot)
    assert chain.events(rc, chain.validators, "AttestationCommitted") == [
        {"modelId": mid, "validator": v1, "commitment": commitment}
    ]
    assert chain.stake_of(hot).amount == 0
    assert chain.stake_of(v1).bonded > 0  # the validator's stake holds the bonds
    chain.stake_if_needed([v2])
    chain.key(v2, mid)
    _, salt2 = chain.commit(v2, mid, observed, digest)
    chain.to_reveals(mid)
    rc = chain.send(v.revealAttestationFor(v1, mid, observed, digest, salt), hot)
    assert chain.events(rc, chain.validators, "Attested")[0]["validator"] == v1
    chain.reveal(v2, mid, observed, digest, salt2)
    chain.to_settlement(mid)
    chain.settle(mid)
    assert chain.status(mid) == ModelStatus.VERIFIED
    assert v.verifierWeight(mid, v1).call() == 1 and v.verifierWeight(mid, hot).call() == 0
    # The reward is the validator's: the attester cannot claim it to itself, and claiming it for the
    # validator credits the validator.
    buyer = chain.accounts[4]
    pid = chain.buy(buyer, mid)
    chain.deliver(seller, pid)
    chain.release_revenue(pid)
    m = chain.market.functions
    reward = m.pendingValidatorReward(mid, v1).call()
    assert reward > 0
    chain.expect_revert(m.claimValidatorReward(mid), hot, "MarketplaceNotVerifier", account=hot)
    rc = chain.send(m.claimValidatorRewardFor(v1, mid, ETH), hot)
    assert chain.events(rc, chain.market, "ValidatorRewardClaimed") == [
        {"modelId": mid, "validator": v1, "amount": reward, "token": ETH}
    ]
    assert m.credited(v1).call() == reward and m.credited(hot).call() == 0
    chain.expect_revert(m.withdraw(), hot, "MarketplaceNothingToWithdraw", account=hot)
    chain.release(mid, v1)
    assert chain.stake_of(v1).amount == MIN  # bonds back to the validator's stake


def test_the_attester_cannot_unstake_withdraw_stake_or_change_the_attester(chain):
    v1 = chain.accounts[2]
    hot, other = chain.new_account(), chain.new_account()
    named(chain, v1, hot)
    v = chain.validators.functions
    chain.expect_revert(v.requestUnstake(), hot, "ValidatorsNotStaked", validator=hot)
    chain.expect_revert(v.unstake(), hot, "ValidatorsNotStaked", validator=hot)
    chain.expect_revert(v.withdraw(), hot, "ValidatorsNothingToWithdraw", account=hot)
    chain.expect_revert(v.setAttester(other), hot, "ValidatorsNotStaked", validator=hot)
    chain.expect_revert_with(v.stake(), hot, "ValidatorsIsAttester", (hot, v1), value=MIN)
    assert v.attesterOf(v1).call() == hot
    assert chain.stake_of(v1).amount == MIN and chain.stake_of(v1).unlock_at == 0
    chain.send(v.requestUnstake(), v1)  # the validator still can


def test_a_validator_cannot_be_named_and_an_attester_serves_one_validator(chain):
    v1, v2, v3 = chain.accounts[2], chain.accounts[3], chain.accounts[4]
    hot = chain.new_account()
    chain.stake_if_needed([v1, v2])
    v = chain.validators.functions
    chain.expect_revert(v.setAttester(v2), v1, "ValidatorsAttesterIsValidator", attester=v2)
    chain.expect_revert(v.setAttester(v1), v1, "ValidatorsAttesterIsValidator", attester=v1)
    named(chain, v1, hot)
    chain.expect_revert_with(v.setAttester(hot), v2, "ValidatorsAttesterTaken", (hot, v1))
    chain.expect_revert(v.setAttester(hot), v3, "ValidatorsNotStaked", validator=v3)


def test_changing_the_attester_revokes_the_old_one(chain):
    seller, v1, v2 = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    hot, hot2 = chain.new_account(), chain.new_account()
    named(chain, v1, hot)
    named(chain, v1, hot2)
    v = chain.validators.functions
    assert v.validatorOf(hot).call() == ZERO
    mid = chain.list_model(seller)
    request = chain.market.functions.requestValidatorKeyFor(v1, mid, BUYER_KEY)
    chain.expect_revert_with(request, hot, "ValidatorsNotAttester", (v1, hot))
    key_for(chain, hot2, v1, mid)
    observed, digest = chain.target(mid)
    commitment = chain.commitment(mid, v1, observed, digest, bytes(32))
    chain.expect_revert_with(
        v.commitAttestationFor(v1, mid, commitment), hot, "ValidatorsNotAttester", (v1, hot)
    )
    chain.send(v.commitAttestationFor(v1, mid, commitment), hot2)
    assert named(chain, v1, ZERO) == [{"validator": v1, "attester": ZERO}]
    chain.to_reveals(mid)
    reveal = v.revealAttestationFor(v1, mid, observed, digest, bytes(32))
    chain.expect_revert_with(reveal, hot2, "ValidatorsNotAttester", (v1, hot2))
    chain.send(v.revealAttestation(mid, observed, digest, bytes(32)), v1)  # itself, as ever
    named(chain, v2, hot)  # the revoked key is free to serve another validator
