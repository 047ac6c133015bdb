"""Votes (eligible licences only, weighted by the price paid, one live vote each) and Validators (stake,
key seats, commit–reveal rounds, stake-weighted settlement, bonds returned or forfeited, unstake)."""

import re

import pytest
from conftest import BAD_HASH, CLAIM, PARAMS, PRICE, seat_bonds

from node.deploy import VALIDATORS_CONFIG, validators_config
from node.protocol import (
    FAILED_WORK_DIGEST,
    ZERO32,
    ModelStatus,
    PurchaseStatus,
    SeatState,
    StakeInfo,
)

MIN = PARAMS["min_stake"]
ZERO = "0x" + "00" * 20


def licensed(chain, buyer, seller=None, price=PRICE):
    seller = seller or chain.accounts[1]
    mid = chain.list_model(seller, price=price)
    chain.deliver(seller, chain.buy(buyer, mid, price))
    return mid


# ---- votes -------------------------------------------------------------------------------------


def test_votes_are_weighted_by_the_price_paid(chain):
    seller, b1, b2 = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = licensed(chain, b1, seller)
    chain.send(chain.registry.functions.setPrice(mid, 3 * PRICE), seller)
    chain.deliver(seller, chain.buy(b2, mid, 3 * PRICE))
    v = chain.votes.functions
    rc = chain.send(v.vote(mid, 4), b1)
    assert chain.events(rc, chain.votes, "Voted") == [{"modelId": mid, "voter": b1, "score": 4}]
    chain.send(v.vote(mid, 2), b2)
    assert v.scoreOf(mid).call() == [4 * PRICE + 2 * 3 * PRICE, 4 * PRICE, 2]  # mean 2.5, not 3
    rc = chain.send(v.vote(mid, 5), b1)  # changed, still counted once, with the same weight
    assert chain.events(rc, chain.votes, "Voted") == [{"modelId": mid, "voter": b1, "score": 5}]
    assert v.scoreOf(mid).call() == [5 * PRICE + 6 * PRICE, 4 * PRICE, 2]
    chain.send(v.vote(mid, 5), b1)  # the same score again changes nothing
    assert v.scoreOf(mid).call() == [11 * PRICE, 4 * PRICE, 2]
    assert v.voteOf(mid, b1).call() == 5


def test_vote_reverts(chain):
    seller, b1, stranger = chain.accounts[1], chain.accounts[2], chain.accounts[4]
    mid = licensed(chain, b1, seller)
    v = chain.votes.functions
    chain.expect_revert(v.vote(mid, 0), b1, "VotesScoreOutOfRange", score=0)
    chain.expect_revert(v.vote(mid, 6), b1, "VotesScoreOutOfRange", score=6)
    chain.expect_revert(v.vote(mid, 3), stranger, "VotesNoLicense", modelId=mid, voter=stranger)
    pending_buyer = chain.accounts[5]
    chain.buy(pending_buyer, mid)  # paid but not delivered: no licence yet
    chain.expect_revert(v.vote(mid, 3), pending_buyer, "VotesNoLicense")


def test_free_and_owner_bought_licences_do_not_vote(chain):
    """M-4's levers: a licence bought at price 0, or by the model's owner (who gets the price back),
    holds a licence but no vote; the owner who later sells the token still has no vote, and a buyer who
    later buys the token keeps the vote of the price it paid to someone else."""
    seller, buyer, later_owner = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    v, m = chain.votes.functions, chain.market.functions
    free = licensed(chain, buyer, seller, price=0)
    assert m.hasLicense(free, buyer).call() is True
    chain.expect_revert(v.vote(free, 5), buyer, "VotesNoLicense", modelId=free, voter=buyer)
    mid = chain.list_model(seller)
    chain.deliver(seller, chain.buy(seller, mid))  # the owner buys its own model
    assert m.hasLicense(mid, seller).call() is True
    chain.expect_revert(v.vote(mid, 5), seller, "VotesNoLicense", modelId=mid, voter=seller)
    chain.deliver(seller, chain.buy(later_owner, mid))
    chain.send(chain.registry.functions.transferFrom(seller, later_owner, mid), seller)
    chain.expect_revert(
        v.vote(mid, 5), seller, "VotesNoLicense"
    )  # bought as the owner: never votes
    chain.send(v.vote(mid, 1), later_owner)  # bought from the then owner, at the price
    assert v.scoreOf(mid).call() == [PRICE, PRICE, 1]
    assert v.scoreOf(free).call() == [0, 0, 0]


# ---- stake --------------------------------------------------------------------------------------


def test_stake_unstake(chain):
    val = chain.accounts[3]
    v = chain.validators.functions
    chain.expect_revert(
        v.stake(), val, "ValidatorsStakeTooLow", value=MIN - 1, stake=MIN - 1, minStake=MIN
    )
    chain.expect_revert(v.requestUnstake(), val, "ValidatorsNotStaked", validator=val)
    chain.expect_revert(v.unstake(), val, "ValidatorsNotStaked", validator=val)
    rc = chain.stake(val)
    assert chain.events(rc, chain.validators, "Staked") == [
        {"validator": val, "amount": MIN, "total": MIN}
    ]
    rc = chain.send(v.stake(), val, value=5)
    assert chain.events(rc, chain.validators, "Staked") == [
        {"validator": val, "amount": 5, "total": MIN + 5}
    ]
    assert v.isActiveValidator(val).call() is True
    chain.expect_revert(v.unstake(), val, "ValidatorsUnstakeNotRequested", validator=val)
    rc = chain.send(v.requestUnstake(), val)
    (ev,) = chain.events(rc, chain.validators, "UnstakeRequested")
    assert ev["validator"] == val and ev["unlockAt"] == chain.now() + PARAMS["unstake_delay"]
    assert chain.stake_of(val) == StakeInfo(MIN + 5, 0, ev["unlockAt"], 0)
    assert v.isActiveValidator(val).call() is False
    chain.expect_revert(v.requestUnstake(), val, "ValidatorsUnstakePending", validator=val)
    chain.expect_revert(v.stake(), val, "ValidatorsUnstakePending", value=MIN)
    chain.expect_revert(
        v.unstake(), val, "ValidatorsStillLocked", validator=val, unlockAt=ev["unlockAt"]
    )
    chain.travel(PARAMS["unstake_delay"] + 1)
    before = chain.balance(val)
    rc = chain.send(v.unstake(), val)
    assert chain.events(rc, chain.validators, "Unstaked") == [{"validator": val, "amount": MIN + 5}]
    assert chain.balance(val) == before + MIN + 5 - chain.gas_cost(rc)
    assert chain.balance(chain.validators.address) == 0
    assert chain.stake_of(val) == StakeInfo(0, 0, 0, 0)


def test_config_views_and_constructor_checks(chain):
    v = chain.validators.functions
    p = chain.params
    # node.deploy's order of the Config fields is the struct's, as the ABI names them
    (config_view,) = (e for e in chain.validators.abi if e.get("name") == "config")
    fields = [field["name"] for field in config_view["outputs"][0]["components"]]
    assert fields == [re.sub(r"_(\w)", lambda m: m[1].upper(), key) for key in VALIDATORS_CONFIG]
    assert tuple(v.config().call()) == tuple(validators_config({**p, "treasury": chain.treasury}))
    assert (v.minStake().call(), v.quorum().call()) == (p["min_stake"], p["quorum"])
    assert (v.registry().call(), v.marketplace().call()) == (
        chain.registry.address,
        chain.market.address,
    )
    art = chain.artifacts["Validators"]
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    good = [MIN, 1, 60, 60, 0, 2000, MIN // 10, 4, chain.deployer]
    bad = {
        0: ("minStake", (0, 2**96)),
        1: ("quorum", (0, 2**32)),
        2: ("commitPeriod", (0, 2**32)),
        3: ("revealPeriod", (0, 2**32)),
        4: ("unstakeDelay", (2**32,)),
        5: ("bondBps", (0, 10_001)),
        6: ("requestBond", (0, MIN + 1)),
        7: ("maxOpenRequests", (0, 2**16)),
        8: ("zero address", (ZERO,)),
    }
    reg, market = chain.registry.address, chain.market.address
    for index, (what, values) in bad.items():
        for value in values:
            config = list(good)
            config[index] = value
            err = chain.expect_revert(
                factory.constructor(reg, market, config), chain.deployer, "ValidatorsBadConfig"
            )
            assert err.context["args"]["what"] == what, (index, value)
    for registry, marketplace in ((ZERO, market), (reg, ZERO)):
        err = chain.expect_revert(
            factory.constructor(registry, marketplace, good), chain.deployer, "ValidatorsBadConfig"
        )
        assert err.context["args"]["what"] == "zero address"


def test_only_the_marketplace_opens_seats_and_only_validators_record_verdicts(chain):
    other = chain.accounts[4]
    v = chain.validators.functions
    chain.expect_revert(v.keyRequested(1, other), other, "ValidatorsOnlyMarketplace", caller=other)
    chain.expect_revert(v.keyDelivered(1, other), other, "ValidatorsOnlyMarketplace", caller=other)
    chain.expect_revert(
        chain.market.functions.recordVerdict(1, 1, ModelStatus.DISPUTED, 0),
        other,
        "MarketplaceOnlyValidators",
        caller=other,
    )


# ---- one seat through a round ---------------------------------------------------------------------


def test_a_seat_from_key_request_to_release(chain):
    """REQUESTED (request bond) → KEYED → COMMITTED (commit bond, opens the round) → REVEALED → settled
    → released with every bond back; the validator may then leave."""
    seller, a, b = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    v = chain.validators.functions
    bonds = seat_bonds(chain)
    chain.stake(a)
    chain.stake(b)
    assert chain.round_of(mid) == (0, 0, 0)
    pid = chain.request_key(a, mid)
    assert chain.seat(mid, a).state == SeatState.REQUESTED
    assert chain.stake_of(a) == StakeInfo(MIN, bonds.request, 0, 1)
    assert chain.round_of(mid) == (1, 0, 0)  # numbered, not open
    chain.expect_revert(v.requestUnstake(), a, "ValidatorsOpenSeats", validator=a, openSeats=1)
    chain.expect_revert(
        v.commitAttestation(mid, b"\1" * 32), a, "ValidatorsNoKey", modelId=mid, validator=a
    )
    chain.expect_revert(
        v.release(mid, a), b, "ValidatorsNothingToRelease", modelId=mid, validator=a
    )
    chain.deliver(seller, pid)
    assert chain.seat(mid, a).state == SeatState.KEYED
    chain.expect_revert(
        v.release(mid, a), b, "ValidatorsNothingToRelease"
    )  # the model is not settled
    chain.key(b, mid)
    good = chain.target(mid)
    chain.expect_revert(v.commitAttestation(mid, ZERO32), a, "ValidatorsZeroCommitment")
    rc, salt = chain.commit(a, mid, *good)
    opened = chain.now()
    commit_end, reveal_end = (
        opened + PARAMS["commit_period"],
        opened + PARAMS["commit_period"] + PARAMS["reveal_period"],
    )
    assert chain.events(rc, chain.validators, "RoundOpened") == [
        {"modelId": mid, "round": 1, "commitEnd": commit_end, "revealEnd": reveal_end}
    ]
    commitment = chain.commitment(mid, a, *good, salt)
    assert chain.events(rc, chain.validators, "AttestationCommitted") == [
        {"modelId": mid, "validator": a, "commitment": commitment}
    ]
    assert v.commitmentOf(mid, a).call() == commitment
    assert chain.seat(mid, a) == (SeatState.COMMITTED, 1, None, 1, bonds.commit)
    assert chain.stake_of(a).bonded == bonds.request + bonds.commit
    chain.expect_revert(
        v.commitAttestation(mid, commitment), a, "ValidatorsNoKey"
    )  # once per round
    chain.expect_revert(
        v.revealAttestation(mid, *good, salt), a, "ValidatorsRevealNotOpen", commitEnd=commit_end
    )
    chain.expect_revert(v.settle(mid), b, "ValidatorsRevealOpen", revealEnd=reveal_end)
    _, salt_b = chain.commit(b, mid, *good)
    chain.at(commit_end + 1)
    wrong_salt = bytes(32)
    chain.expect_revert(
        v.revealAttestation(mid, *good, wrong_salt), a, "ValidatorsRevealMismatch", validator=a
    )
    chain.expect_revert(
        v.revealAttestation(mid, BAD_HASH, good[1], salt), a, "ValidatorsRevealMismatch"
    )
    rc = chain.reveal(a, mid, *good, salt)
    assert chain.events(rc, chain.validators, "Attested") == [
        {
            "modelId": mid,
            "validator": a,
            "observedHash": good[0],
            "workDigest": good[1],
            "matches": True,
        }
    ]
    assert chain.seat(mid, a) == (SeatState.REVEALED, 1, ModelStatus.VERIFIED, 1, bonds.commit)
    assert v.commitmentOf(mid, a).call() == ZERO32
    assert v.tally(mid).call() == [1, 0, 0]
    chain.expect_revert(
        v.revealAttestation(mid, *good, salt), a, "ValidatorsNothingToReveal"
    )  # once
    chain.expect_revert(
        v.release(mid, a), b, "ValidatorsNothingToRelease"
    )  # the round is not settled
    chain.at(reveal_end)  # the last second of reveals: not yet settled, still revealed
    chain.expect_revert(v.settle(mid), b, "ValidatorsRevealOpen")
    chain.reveal(b, mid, *good, salt_b)
    chain.at(reveal_end + 1)
    rc = chain.settle(mid)
    assert chain.events(rc, chain.validators, "StatusChanged") == [
        {"modelId": mid, "version": 1, "status": ModelStatus.VERIFIED}
    ]
    assert v.tally(mid).call() == [2, 0, 0] and chain.status(mid) == ModelStatus.VERIFIED
    assert (
        v.verifierWeight(mid, a).call(),
        v.isVerifier(mid, a).call(),
        v.isVerifier(mid, seller).call(),
    ) == (1, True, False)
    chain.expect_revert(
        v.settle(mid), b, "ValidatorsAlreadySettled", modelId=mid, status=ModelStatus.VERIFIED
    )
    chain.expect_revert(v.commitAttestation(mid, commitment), a, "ValidatorsAlreadySettled")
    assert chain.release(mid, a) == {
        "modelId": mid,
        "validator": a,
        "returned": bonds.request + bonds.commit,
        "forfeited": 0,
    }
    assert chain.seat(mid, a).state == SeatState.RELEASED
    assert v.isVerifier(mid, a).call() is True  # still a verifier (its rewards) after the release
    assert chain.stake_of(a) == StakeInfo(MIN, 0, 0, 0)
    chain.expect_revert(v.release(mid, a), b, "ValidatorsNothingToRelease")  # once
    chain.send(v.requestUnstake(), a)


def test_reveal_after_the_period_is_refused_and_the_commitment_forfeited(chain):
    seller, a, b = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    for val in (a, b):
        chain.stake(val)
        chain.key(val, mid)
    good = chain.target(mid)
    _, salt = chain.commit(a, mid, *good)
    chain.commit(b, mid, *good)
    reveal_end = chain.round_of(mid).reveal_end
    chain.travel_to(reveal_end + 1)
    v = chain.validators.functions
    chain.expect_revert(
        v.revealAttestation(mid, *good, salt), a, "ValidatorsRevealClosed", revealEnd=reveal_end
    )
    bonds = seat_bonds(chain)
    assert chain.release(mid, a) == {
        "modelId": mid,
        "validator": a,
        "returned": 0,
        "forfeited": bonds.request + bonds.commit,
    }
    assert chain.stake_of(a) == StakeInfo(MIN - bonds.request - bonds.commit, 0, 0, 0)
    assert v.commitmentOf(mid, a).call() == ZERO32
    assert v.credited(chain.treasury).call() == bonds.request + bonds.commit
    rc = chain.settle(mid)  # nobody revealed: undecided
    assert chain.events(rc, chain.validators, "RoundUndecided") == [
        {"modelId": mid, "round": 1, "revealedWeight": 0}
    ]
    assert chain.release(mid, b)["forfeited"] == bonds.request + bonds.commit
    chain.expect_revert(v.settle(mid), a, "ValidatorsNoRound", modelId=mid)


# ---- outcomes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attestation", "status", "matches"),
    [
        ("listed hash and claim", ModelStatus.VERIFIED, True),
        ("listed hash, another digest", ModelStatus.METRICS_DISPUTED, True),
        ("listed hash, evaluation failed", ModelStatus.METRICS_DISPUTED, True),
        ("another hash", ModelStatus.DISPUTED, False),
    ],
)
def test_each_outcome_and_what_the_marketplace_is_told(chain, attestation, status, matches):
    seller, a, b = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    model_hash, claim = chain.target(mid)
    observed = {
        "listed hash and claim": (model_hash, claim),
        "listed hash, another digest": (model_hash, b"\x44" * 32),
        "listed hash, evaluation failed": (model_hash, FAILED_WORK_DIGEST),
        "another hash": (BAD_HASH, claim),
    }[attestation]
    chain.stake_if_needed((a, b))
    rc = chain.round(mid, {a: observed, b: observed})
    assert chain.events(rc, chain.validators, "StatusChanged") == [
        {"modelId": mid, "version": 1, "status": status}
    ]
    weight = 2 if status == ModelStatus.VERIFIED else 0
    assert chain.events(rc, chain.market, "VerdictRecorded") == [
        {"modelId": mid, "version": 1, "status": status, "verifierWeight": weight}
    ]
    book = chain.market.functions.book(mid).call()
    assert (book[0], book[1]) == (weight, status != ModelStatus.VERIFIED)
    tally = {
        ModelStatus.VERIFIED: [2, 0, 0],
        ModelStatus.DISPUTED: [0, 2, 0],
        ModelStatus.METRICS_DISPUTED: [0, 0, 2],
    }[status]
    assert chain.validators.functions.tally(mid).call() == tally
    assert chain.seat(mid, a).says == status
    for val in (a, b):
        assert chain.release(mid, val)["forfeited"] == 0  # the majority loses nothing


def test_only_a_claim_made_before_the_round_opened_verifies(chain):
    """A seller who claims (or changes its claim) once a round is open, e.g. to match what validators
    reveal, gets MetricsDisputed from that round; without any claim a model cannot be Verified."""
    seller, a, b = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    late = chain.list_model(seller, claim=None)
    chain.stake_if_needed((a, b))
    for val in (a, b):
        chain.key(val, late)
    model_hash = chain.registry.functions.modelHash(late).call()
    salts = {val: chain.commit(val, late, model_hash, CLAIM)[1] for val in (a, b)}
    chain.travel(1)  # anvil may mine the next block in the same second
    chain.send(chain.registry.functions.claimMetrics(late, CLAIM), seller)  # after the round opened
    chain.to_reveals(late)
    for val in (a, b):
        chain.reveal(val, late, model_hash, CLAIM, salts[val])
    chain.to_settlement(late)
    chain.settle(late)
    assert chain.status(late) == ModelStatus.METRICS_DISPUTED
    unclaimed = chain.list_model(seller, claim=None, model_hash=b"\x12" * 32)
    chain.round(unclaimed, {a: (b"\x12" * 32, ZERO32), b: (b"\x12" * 32, ZERO32)})
    assert chain.status(unclaimed) == ModelStatus.METRICS_DISPUTED


def test_an_undecided_round_opens_another_and_its_validators_commit_again(chain):
    """Below the quorum (or with no majority) a round closes undecided; the next commit opens the next
    round, a validator counted in the undecided round commits again with its bond carried over, and
    the release rules look at the deciding round."""
    seller, a, b, c = chain.accounts[1], chain.accounts[3], chain.accounts[4], chain.accounts[5]
    mid = chain.list_model(seller)
    chain.stake_if_needed((a, b, c))
    good = chain.target(mid)
    bonds = seat_bonds(chain)
    rc = chain.round(mid, {a: good})  # weight 1 < quorum 2
    assert chain.events(rc, chain.validators, "RoundUndecided") == [
        {"modelId": mid, "round": 1, "revealedWeight": 1}
    ]
    assert chain.round_of(mid) == (2, 0, 0) and chain.status(mid) == ModelStatus.UNVERIFIED
    assert chain.validators.functions.tally(mid).call() == [0, 0, 0]
    chain.key(b, mid)
    chain.key(c, mid)
    rc = chain.round(mid, {b: good, c: (BAD_HASH, good[1])}, keyed=True)  # 1 against 1: no majority
    assert chain.events(rc, chain.validators, "RoundUndecided") == [
        {"modelId": mid, "round": 2, "revealedWeight": 2}
    ]
    rc = chain.round(mid, {a: good, b: good}, keyed=True)  # both counted before: they commit again
    assert chain.events(rc, chain.validators, "StatusChanged") == [
        {"modelId": mid, "version": 1, "status": ModelStatus.VERIFIED}
    ]
    assert chain.seat(mid, a) == (SeatState.REVEALED, 3, ModelStatus.VERIFIED, 1, bonds.commit)
    assert chain.stake_of(a).bonded == bonds.request + bonds.commit  # one commit bond, carried over
    for val in (a, b):
        assert chain.release(mid, val) == {
            "modelId": mid,
            "validator": val,
            "returned": bonds.request + bonds.commit,
            "forfeited": 0,
        }
    # c argued in round 2 (undecided) and sat out round 3, which decided: its request bond is forfeited
    assert chain.release(mid, c) == {
        "modelId": mid,
        "validator": c,
        "returned": bonds.commit,
        "forfeited": bonds.request,
    }


def test_leaving_an_undecided_round_before_the_next_decides_returns_the_bonds(chain):
    seller, a = chain.accounts[1], chain.accounts[3]
    mid = chain.list_model(seller)
    chain.stake(a)
    chain.round(mid, {a: chain.target(mid)})  # undecided: quorum 2
    bonds = seat_bonds(chain)
    assert chain.release(mid, a)["returned"] == bonds.request + bonds.commit
    chain.expect_revert(
        chain.validators.functions.commitAttestation(mid, b"\1" * 32), a, "ValidatorsNoKey"
    )
    chain.send(chain.validators.functions.requestUnstake(), a)


def test_stake_weight_decides_and_splitting_a_stake_gains_nothing(chain):
    """Weight is whole minimum stakes: one validator with 3 minimum stakes outweighs two with one each;
    the same 3 minimum stakes split over three accounts weigh the same 3, and 1.9 stakes weigh 1."""
    seller, whale, a, b = chain.accounts[1], chain.accounts[3], chain.accounts[4], chain.accounts[5]
    mid = chain.list_model(seller)
    chain.stake(whale, 3 * MIN)
    chain.stake(a, MIN + MIN * 9 // 10)
    chain.stake(b)
    good = chain.target(mid)
    chain.round(mid, {whale: (BAD_HASH, good[1]), a: good, b: good})
    assert chain.validators.functions.tally(mid).call() == [2, 3, 0]
    assert chain.status(mid) == ModelStatus.DISPUTED
    assert (
        chain.seat(mid, whale).weight == 3
        and chain.seat(mid, whale).commit_bond == seat_bonds(chain, 3).commit
    )
    assert chain.release(mid, a)["forfeited"] == seat_bonds(chain).commit


# ---- bonds, seats and leaving -----------------------------------------------------------------------


def test_an_expired_request_is_released_with_nothing_lost_and_can_be_made_again(chain):
    seller, a = chain.accounts[1], chain.accounts[3]
    mid = chain.list_model(seller)
    chain.stake(a)
    first = chain.request_key(a, mid)
    chain.travel(PARAMS["delivery_window"] + 1)
    second = chain.request_key(a, mid)  # made again after the window: the same seat, the same bond
    assert (
        chain.purchase(first).status == PurchaseStatus.EXPIRED and chain.stake_of(a).open_seats == 1
    )
    chain.expect_revert(chain.validators.functions.release(mid, a), a, "ValidatorsNothingToRelease")
    chain.travel(PARAMS["delivery_window"] + 1)
    assert chain.release(mid, a) == {
        "modelId": mid,
        "validator": a,
        "returned": PARAMS["request_bond"],
        "forfeited": 0,
    }
    assert chain.seat(mid, a).state == SeatState.NONE and chain.stake_of(a) == StakeInfo(
        MIN, 0, 0, 0
    )
    chain.expect_revert(
        chain.market.functions.deliverKey(second, a, b"\0" * 80),
        seller,
        "MarketplaceDeliveryWindowClosed",
    )
    third = chain.request_key(a, mid)  # a new seat
    chain.deliver(seller, third)
    assert chain.seat(mid, a).state == SeatState.KEYED


def test_a_key_held_through_the_deciding_round_without_a_commit_forfeits_the_request_bond(chain):
    seller, lazy, a, b = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    chain.stake_if_needed((lazy, a, b))
    chain.key(lazy, mid)
    chain.verified_by(mid, (a, b))
    assert chain.release(mid, lazy) == {
        "modelId": mid,
        "validator": lazy,
        "returned": 0,
        "forfeited": PARAMS["request_bond"],
    }
    assert chain.stake_of(lazy) == StakeInfo(MIN - PARAMS["request_bond"], 0, 0, 0)


def test_open_requests_are_bounded_and_bonded(chain):
    seller, a = chain.accounts[1], chain.accounts[3]
    limit = PARAMS["max_open_requests"]
    models = [chain.list_model(seller) for _ in range(limit + 1)]
    chain.stake(a)
    for mid in models[:limit]:
        chain.request_key(a, mid)
    assert chain.stake_of(a) == StakeInfo(MIN, limit * PARAMS["request_bond"], 0, limit)
    chain.expect_revert(
        chain.market.functions.requestValidatorKey(models[-1], b"\x22" * 32),
        a,
        "ValidatorsTooManyOpenRequests",
        validator=a,
        maxOpenRequests=limit,
    )


def test_a_commit_needs_free_stake_for_its_bond(chain):
    """Bonds come out of the free (unbonded) stake: a minimum stake bonded by key requests cannot also
    bond a commit, so one stake is not reused at full risk in every round at once."""
    tight = chain.variant(bond_bps=5000, request_bond=MIN // 4, max_open_requests=3)
    seller, a = chain.accounts[1], chain.accounts[3]
    models = [tight.list_model(seller) for _ in range(3)]
    tight.stake(a)
    for mid in models:
        tight.key(a, mid)
    free = MIN - 3 * (MIN // 4)
    tight.expect_revert(
        tight.validators.functions.commitAttestation(models[0], b"\1" * 32),
        a,
        "ValidatorsStakeBonded",
        validator=a,
        free=free,
        needed=MIN // 2,
    )
    tight.send(tight.validators.functions.stake(), a, value=MIN // 4)  # top up the free stake
    tight.commit(a, models[0], *tight.target(models[0]))
    assert tight.stake_of(a).bonded == MIN // 4 * 3 + MIN // 2


def test_a_validator_forfeited_to_nothing_can_stake_again(chain):
    """With bonds that add up to the whole minimum stake, an unrevealed commitment forfeits everything:
    the account is left with nothing, not stuck as a validator, and may stake again."""
    all_in = chain.variant(bond_bps=9000, request_bond=MIN // 10, quorum=1)
    seller, a = chain.accounts[1], chain.accounts[3]
    mid = all_in.list_model(seller)
    all_in.stake(a)
    all_in.key(a, mid)
    all_in.commit(a, mid, *all_in.target(mid))
    all_in.to_settlement(mid)
    assert all_in.release(mid, a) == {
        "modelId": mid,
        "validator": a,
        "returned": 0,
        "forfeited": MIN,
    }
    v = all_in.validators.functions
    assert all_in.stake_of(a) == StakeInfo(0, 0, 0, 0) and v.isActiveValidator(a).call() is False
    all_in.expect_revert(v.requestUnstake(), a, "ValidatorsNotStaked", validator=a)
    rc = all_in.stake(a)
    assert all_in.events(rc, all_in.validators, "Staked") == [
        {"validator": a, "amount": MIN, "total": MIN}
    ]
    assert (
        chain.balance(all_in.validators.address) == 2 * MIN
    )  # the new stake and the treasury's credit
    treasury = all_in.treasury
    rc = all_in.send(v.withdraw(), treasury)
    assert all_in.events(rc, all_in.validators, "Withdrawn") == [
        {"account": treasury, "amount": MIN}
    ]
    all_in.expect_revert(v.withdraw(), treasury, "ValidatorsNothingToWithdraw", account=treasury)
    assert chain.balance(all_in.validators.address) == MIN


def test_a_validator_below_one_minimum_stake_after_forfeits_cannot_commit_until_it_tops_up(chain):
    seller, a, b, c = chain.accounts[1], chain.accounts[3], chain.accounts[4], chain.accounts[5]
    first, second = chain.list_model(seller), chain.list_model(seller, model_hash=b"\x12" * 32)
    chain.stake_if_needed((a, b, c))
    chain.key(a, second)
    good = chain.target(first)
    chain.round(first, {a: (BAD_HASH, good[1]), b: good, c: good})
    chain.release(first, a)  # on the losing side: its commit bond is forfeited
    assert chain.stake_of(a).amount == MIN - seat_bonds(chain).commit
    v = chain.validators.functions
    chain.expect_revert(
        v.commitAttestation(second, b"\1" * 32),
        a,
        "ValidatorsStakeTooLow",
        stake=MIN - seat_bonds(chain).commit,
        minStake=MIN,
    )
    chain.send(v.stake(), a, value=seat_bonds(chain).commit)
    chain.commit(a, second, *chain.target(second))
