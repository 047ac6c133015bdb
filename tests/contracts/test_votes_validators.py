"""Votes (licence holders only, one live vote each) and Validators (stake, attest, quorum, slash, unstake)."""

from conftest import PARAMS

from node.deploy import deploy_suite, suite_contracts

MIN = PARAMS["min_stake"]


def licensed(chain, buyer, seller=None):
    seller = seller or chain.accounts[1]
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(buyer, mid))
    return mid


def test_vote_change_and_score(chain):
    b1, b2 = chain.accounts[2], chain.accounts[3]
    mid = licensed(chain, b1)
    chain.deliver(chain.accounts[1], chain.buy(b2, mid))
    v = chain.votes.functions
    rc = chain.send(v.vote(mid, 4), b1)
    assert chain.events(rc, chain.votes, "Voted") == [{"modelId": mid, "voter": b1, "score": 4}]
    chain.send(v.vote(mid, 2), b2)
    assert v.scoreOf(mid).call() == [6, 2]
    rc = chain.send(v.vote(mid, 5), b1)  # changed, still counted once
    assert chain.events(rc, chain.votes, "Voted") == [{"modelId": mid, "voter": b1, "score": 5}]
    assert v.scoreOf(mid).call() == [7, 2]
    assert v.voteOf(mid, b1).call() == 5


def test_vote_reverts(chain):
    b1, stranger = chain.accounts[2], chain.accounts[4]
    mid = licensed(chain, b1)
    v = chain.votes.functions
    chain.expect_revert(v.vote(mid, 0), b1, "VotesScoreOutOfRange", score=0)
    chain.expect_revert(v.vote(mid, 6), b1, "VotesScoreOutOfRange", score=6)
    chain.expect_revert(v.vote(mid, 3), stranger, "VotesNoLicense", modelId=mid, voter=stranger)
    pending_buyer = chain.accounts[5]
    chain.buy(pending_buyer, mid)  # paid but not delivered: no licence yet
    chain.expect_revert(v.vote(mid, 3), pending_buyer, "VotesNoLicense")


def test_stake_unstake(chain):
    val = chain.accounts[3]
    v = chain.validators.functions
    chain.expect_revert(v.stake(), val, "ValidatorsStakeTooLow", value=MIN - 1, stake=MIN - 1, minStake=MIN)
    chain.expect_revert(v.requestUnstake(), val, "ValidatorsNotStaked", validator=val)
    chain.expect_revert(v.unstake(), val, "ValidatorsNotStaked", validator=val)
    rc = chain.stake(val)
    assert chain.events(rc, chain.validators, "Staked") == [{"validator": val, "amount": MIN, "total": MIN}]
    rc = chain.send(v.stake(), val, value=5)
    assert chain.events(rc, chain.validators, "Staked") == [{"validator": val, "amount": 5, "total": MIN + 5}]
    assert v.isActiveValidator(val).call() is True
    chain.expect_revert(v.unstake(), val, "ValidatorsUnstakeNotRequested", validator=val)
    rc = chain.send(v.requestUnstake(), val)
    (ev,) = chain.events(rc, chain.validators, "UnstakeRequested")
    assert ev["validator"] == val and ev["unlockAt"] == chain.now() + PARAMS["unstake_delay"]
    assert v.isActiveValidator(val).call() is False
    chain.expect_revert(v.requestUnstake(), val, "ValidatorsUnstakePending", validator=val)
    chain.expect_revert(v.stake(), val, "ValidatorsUnstakePending", value=MIN)
    chain.expect_revert(v.unstake(), val, "ValidatorsStillLocked", validator=val, unlockAt=ev["unlockAt"])
    chain.travel(PARAMS["unstake_delay"] + 1)
    before = chain.balance(val)
    rc = chain.send(v.unstake(), val)
    assert chain.events(rc, chain.validators, "Unstaked") == [{"validator": val, "amount": MIN + 5}]
    assert chain.balance(val) == before + MIN + 5 - chain.gas_cost(rc)
    assert chain.balance(chain.validators.address) == 0


def test_attest_quorum_slash(chain):
    seller, a, b, c = chain.accounts[1], chain.accounts[3], chain.accounts[4], chain.accounts[5]
    mid = chain.list_model(seller)
    good = chain.registry.functions.modelHash(mid).call()
    bad, metrics = b"\x99" * 32, b"\x42" * 32
    v = chain.validators.functions
    chain.expect_revert(v.attest(mid, good, metrics), a, "ValidatorsNotActive", validator=a)
    for val in (a, b, c):
        chain.stake(val)
    rc = chain.send(v.attest(mid, bad, metrics), c)
    assert chain.events(rc, chain.validators, "Attested") == [
        {"modelId": mid, "validator": c, "observedHash": bad, "metricsDigest": metrics, "matches": False}]
    chain.expect_revert(v.attest(mid, good, metrics), c, "ValidatorsAlreadyAttested", modelId=mid, validator=c)
    chain.expect_revert(v.slash(mid, c), a, "ValidatorsNotSettled", modelId=mid)
    chain.send(v.attest(mid, good, metrics), a)
    assert v.status(mid).call() == 0
    rc = chain.send(v.attest(mid, good, metrics), b)
    assert chain.events(rc, chain.validators, "StatusChanged") == [{"modelId": mid, "status": 1}]
    assert v.status(mid).call() == 1 and v.tally(mid).call() == [2, 1]
    assert v.isVerifier(mid, a).call() and v.isVerifier(mid, b).call() and not v.isVerifier(mid, c).call()
    chain.expect_revert(v.attest(mid, good, metrics), a, "ValidatorsAlreadySettled", modelId=mid, status=1)
    chain.expect_revert(v.attest(99, good, metrics), a, "ERC721NonexistentToken", tokenId=99)
    chain.expect_revert(v.slash(mid, a), c, "ValidatorsNotSlashable", modelId=mid, validator=a)
    rc = chain.send(v.slash(mid, c), a)
    half = MIN * PARAMS["slash_bps"] // 10_000
    assert chain.events(rc, chain.validators, "Slashed") == [{"modelId": mid, "validator": c, "amount": half}]
    assert v.stakeOf(c).call()[0] == MIN - half and v.isActiveValidator(c).call() is False
    chain.expect_revert(v.slash(mid, c), a, "ValidatorsNotSlashable")
    treasury = chain.fee_recipient
    assert v.credited(treasury).call() == half
    chain.expect_revert(v.withdraw(), a, "ValidatorsNothingToWithdraw", account=a)
    rc = chain.send(v.withdraw(), treasury)
    assert chain.events(rc, chain.validators, "Withdrawn") == [{"account": treasury, "amount": half}]
    assert chain.balance(chain.validators.address) == 3 * MIN - half


def test_validator_slashed_to_nothing_while_leaving_can_stake_again(chain):
    """With slash_bps 10,000 a leaving validator can lose its whole stake; the account must not be left
    'leaving' with nothing to unstake (stake() would refuse it forever: UnstakePending)."""
    record = deploy_suite(chain.w3, chain.deployer, artifacts=chain.artifacts,
                          **{**PARAMS, "slash_bps": 10_000, "quorum": 2})
    s = suite_contracts(chain.w3, record, chain.artifacts)
    seller, a, b, c = chain.accounts[1], chain.accounts[3], chain.accounts[4], chain.accounts[5]
    rc = chain.send(s["ModelRegistry"].functions.list(b"\x01" * 32, "bafy-anything", 0), seller)
    mid = chain.events(rc, s["ModelRegistry"], "ModelListed")[0]["modelId"]
    v = s["Validators"].functions
    for val in (a, b, c):
        chain.send(v.stake(), val, value=MIN)
    chain.send(v.attest(mid, b"\x99" * 32, b"\0" * 32), c)  # the losing side
    chain.send(v.requestUnstake(), c)
    for val in (a, b):
        chain.send(v.attest(mid, b"\x01" * 32, b"\0" * 32), val)
    rc = chain.send(v.slash(mid, c), a)
    assert chain.events(rc, s["Validators"], "Slashed") == [{"modelId": mid, "validator": c, "amount": MIN}]
    assert v.stakeOf(c).call() == [0, 0]  # nothing left, not "leaving"
    chain.travel(PARAMS["unstake_delay"] + 1)
    chain.expect_revert(v.unstake(), c, "ValidatorsNotStaked", validator=c)
    rc = chain.send(v.stake(), c, value=MIN)
    assert chain.events(rc, s["Validators"], "Staked") == [{"validator": c, "amount": MIN, "total": MIN}]
    assert v.isActiveValidator(c).call() is True
    # a's, b's and c's new stake, plus c's old one, credited to the treasury
    assert chain.balance(s["Validators"].address) == 4 * MIN
    assert v.credited(chain.deployer).call() == MIN  # the treasury (defaults to the deployer here)
