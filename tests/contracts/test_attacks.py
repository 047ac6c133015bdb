"""One replay per attack of the audit of contracts/ (issue 13), against the contracts as they are now.

Each test names the finding it replays and what the exploit did on the old contracts (commit bd97680:
`attest(modelId, observedHash, metricsDigest)` in the clear, the first side to reach the quorum settles,
`slash`, revenue credited at delivery, a uint80 fee accumulator, `deliverKey(purchaseId, wrappedKey)`).
The same exploits, written against that interface, succeed on a `git worktree add /tmp/old bd97680`
copy; here each one fails as asserted. The suite parameters are the tests' (conftest.PARAMS: quorum 2)
unless a test deploys the development defaults (node.deploy.DEFAULT_PARAMS: quorum 1) or the documented
public-chain defaults (PUBLIC_PARAMS: quorum 5, one-day rounds, 1 ETH minimum stake).
"""

from __future__ import annotations

import os

import pytest
from conftest import BAD_HASH, BUYER_KEY, CLAIM, PARAMS, PRICE, WRAPPED, fee_split, seat_bonds

from node.deploy import DEFAULT_PARAMS, PUBLIC_PARAMS
from node.protocol import Book, ModelStatus, PurchaseStatus, SeatState

DEAD = bytes.fromhex("dead".rjust(64, "0"))  # the audit's "observed hash" of the colluders
REPRODUCED = b"\x44" * 32  # what honest validators compute for a model whose claim is false


def play(chain, model_id: int, says: dict) -> dict:
    """Key, commit and reveal for every validator in ``says``, checking at each stage that none of them
    can ask to leave (their seats are open); settle; return {validator: SeatReleased} after releasing."""
    for validator in says:
        chain.key(validator, model_id)
    salts = {v: chain.commit(v, model_id, *attestation)[1] for v, attestation in says.items()}
    assert_cannot_leave(chain, says)
    chain.to_reveals(model_id)
    for validator, attestation in says.items():
        chain.reveal(validator, model_id, *attestation, salts[validator])
    assert_cannot_leave(chain, says)
    chain.to_settlement(model_id)
    chain.settle(model_id)
    assert_cannot_leave(chain, says)  # settled, not yet released: the bonds are still held
    return {v: chain.release(model_id, v) for v in says}


def public_sale_and_validators(chain):
    """A suite at PUBLIC_PARAMS with one model (seller accounts[1]) sold and delivered to accounts[2],
    three validators of one minimum stake each and two honest ones of two: (suite, model, sale,
    the three, the two)."""
    pub = chain.variant(**PUBLIC_PARAMS)
    unit = PUBLIC_PARAMS["min_stake"]
    seller, buyer, three, two = (
        chain.accounts[1],
        chain.accounts[2],
        chain.accounts[3:6],
        chain.accounts[6:8],
    )
    mid = pub.list_model(seller)
    for v in three:
        pub.stake(v)
    for v in two:
        pub.stake(v, 2 * unit)
    sale = pub.buy(buyer, mid)
    pub.deliver(seller, sale)
    return pub, mid, sale, three, two


def assert_cannot_leave(chain, validators) -> None:
    for v in validators:
        chain.expect_revert(
            chain.validators.functions.requestUnstake(), v, "ValidatorsOpenSeats", validator=v
        )


# ---- H-1 ------------------------------------------------------------------------------------------


def test_h1_disputing_without_the_key_is_refused(chain):
    """H-1: three minimum stakes `attest(id, 0xdead, ...)` without ever asking for the key. Old: the model
    turned Disputed at the quorum (sales and deliveries reverted) and the stakes moved on to the next
    model. Now there is no `attest`: a commitment needs a seat whose key was delivered (ValidatorsNoKey),
    even at the development defaults where one minimum stake is a quorum."""
    dev = chain.variant(**DEFAULT_PARAMS)
    seller, buyer, colluders = chain.accounts[1], chain.accounts[2], chain.accounts[3:6]
    mid = dev.list_model(seller)
    assert "attest" not in {e["name"] for e in dev.validators.abi if e.get("type") == "function"}
    for c in colluders:
        dev.stake(c)
        commitment = dev.commitment(mid, c, DEAD, CLAIM, os.urandom(32))
        dev.expect_revert(
            dev.validators.functions.commitAttestation(mid, commitment),
            c,
            "ValidatorsNoKey",
            modelId=mid,
            validator=c,
        )
    assert dev.status(mid) == ModelStatus.UNVERIFIED and dev.round_of(mid) == (0, 0, 0)
    dev.deliver(seller, dev.buy(buyer, mid))  # sales go on
    assert dev.market.functions.hasLicense(mid, buyer).call() is True


def test_h1_colluders_with_keys_lose_to_the_honest_majority_at_the_public_defaults(chain):
    """H-1 with keys, at PUBLIC_PARAMS: three colluders (one minimum stake each) ask for the key and
    reveal 0xdead; two honest validators with two minimum stakes each reveal the listed hash and claim.
    Old: the colluders reached the quorum first, the model was Disputed for good and the honest validator
    slashed. Now the stake-weighted majority of what was revealed decides (4 against 3 of the quorum of
    5): Verified; nobody can ask to leave before its seat is released; the colluders forfeit their commit
    bonds, fall below one minimum stake and cannot go on to the next model."""
    pub, mid, sale, colluders, honest = public_sale_and_validators(chain)
    seller, unit, good = chain.accounts[1], PUBLIC_PARAMS["min_stake"], pub.target(mid)
    released = play(
        pub, mid, {**{c: (DEAD, CLAIM) for c in colluders}, **{h: good for h in honest}}
    )
    assert pub.status(mid) == ModelStatus.VERIFIED
    assert pub.validators.functions.tally(mid).call() == [4, 3, 0]
    bond = seat_bonds(pub).commit
    for c in colluders:
        assert released[c]["forfeited"] == bond
        assert pub.stake_of(c).amount == unit - bond
        assert pub.validators.functions.isActiveValidator(c).call() is False
    for h in honest:
        assert released[h]["forfeited"] == 0 and pub.stake_of(h).amount == 2 * unit
    assert pub.validators.functions.credited(pub.treasury).call() == 3 * bond
    following = pub.list_model(seller, model_hash=b"\x12" * 32)
    pub.expect_revert(
        pub.market.functions.requestValidatorKey(following, BUYER_KEY),
        colluders[0],
        "ValidatorsNotActive",
    )
    pub.release_revenue(sale)  # the seller is paid; the verifiers share the fee by weight
    assert pub.market.functions.pendingValidatorReward(mid, honest[0]).call() > 0
    assert pub.market.functions.pendingValidatorReward(mid, colluders[0]).call() == 0


def test_h1_reverse_a_sellers_validators_copying_its_claim_lose_and_buyers_are_refunded(chain):
    """H-1 reversed, at PUBLIC_PARAMS: a seller lists a model whose claimed work digest is false, and its
    own three validators copy `modelHash(id)` and `claimedWorkDigest(id)` from the chain instead of
    evaluating. Old: they verified the bogus model at the quorum and the honest validator was slashed.
    Now the honest majority's reproduced digest decides (MetricsDisputed), the copiers forfeit their
    commit bonds, and a buyer whose sale is still in its challenge period gets the price back."""
    pub, mid, sale, copiers, honest = public_sale_and_validators(chain)
    seller, buyer = chain.accounts[1], chain.accounts[2]
    copied = (
        pub.registry.functions.modelHash(mid).call(),
        pub.registry.functions.claimedWorkDigest(mid).call(),
    )
    model_hash = copied[0]
    released = play(
        pub,
        mid,
        {**dict.fromkeys(copiers, copied), **dict.fromkeys(honest, (model_hash, REPRODUCED))},
    )
    assert pub.status(mid) == ModelStatus.METRICS_DISPUTED
    assert pub.validators.functions.tally(mid).call() == [3, 0, 4]
    assert all(released[c]["forfeited"] == seat_bonds(pub).commit for c in copiers)
    assert all(released[h]["forfeited"] == 0 for h in honest)
    m = pub.market.functions
    pub.send(m.refund(sale), buyer)
    assert m.credited(buyer).call() == PRICE and m.credited(seller).call() == 0
    pub.travel(PUBLIC_PARAMS["challenge_period"] + 1)
    pub.expect_revert(m.releaseRevenue(sale), seller, "MarketplaceNothingToRelease")


def test_h1_at_the_dev_defaults_a_lone_stake_settles_but_an_equal_honest_stake_stops_it(chain):
    """H-1 at the development defaults (quorum 1, for demos and tests): a colluder holding a delivered
    key and revealing alone still settles a round (the deployment's choice, documented); against an
    honest validator of equal weight the round is undecided, and against more honest weight it loses
    its commit bond. Nothing is settled without a key, and nobody leaves with an open seat."""
    dev = chain.variant(**DEFAULT_PARAMS)
    seller, colluder, h1, h2 = (
        chain.accounts[1],
        chain.accounts[3],
        chain.accounts[4],
        chain.accounts[5],
    )
    alone, tied, outweighed = (
        dev.list_model(seller, model_hash=bytes([n]) * 32) for n in (1, 2, 3)
    )
    for v in (colluder, h1, h2):
        dev.stake(v)
    play(dev, alone, {colluder: (DEAD, CLAIM)})
    assert dev.status(alone) == ModelStatus.DISPUTED
    play(dev, tied, {colluder: (DEAD, CLAIM), h1: dev.target(tied)})
    assert dev.status(tied) == ModelStatus.UNVERIFIED and dev.round_of(tied).number == 2
    released = play(
        dev,
        outweighed,
        {colluder: (DEAD, CLAIM), h1: dev.target(outweighed), h2: dev.target(outweighed)},
    )
    assert dev.status(outweighed) == ModelStatus.VERIFIED
    assert released[colluder]["forfeited"] == seat_bonds(dev).commit


# ---- H-2 ------------------------------------------------------------------------------------------


def test_h2_keys_for_a_deposit_are_bounded_bonded_and_lock_the_stake(chain):
    """H-2: stake the minimum, `requestValidatorKey` on every model, `requestUnstake` at once. Old: the
    workers delivered every key and the whole stake came back after the delay. Now each request bonds
    `requestBond`, at most `maxOpenRequests` are open, `requestUnstake` is refused while any seat is
    open, and a delivered key that is not revealed in the deciding round forfeits its request bond
    (an unrevealed commitment forfeits the commit bond too)."""
    seller, harvester, a, b = (
        chain.accounts[1],
        chain.accounts[2],
        chain.accounts[3],
        chain.accounts[4],
    )
    limit = PARAMS["max_open_requests"]
    models = [chain.list_model(seller, model_hash=bytes([n + 1]) * 32) for n in range(limit + 1)]
    chain.stake(harvester)
    for mid in models[:limit]:
        chain.key(harvester, mid)  # the sellers' workers deliver each request
    chain.expect_revert(
        chain.market.functions.requestValidatorKey(models[limit], BUYER_KEY),
        harvester,
        "ValidatorsTooManyOpenRequests",
        maxOpenRequests=limit,
    )
    assert_cannot_leave(chain, [harvester])
    chain.verified_by(models[0], (a, b))  # the harvester holds the key and never commits
    for v in (a, b):
        chain.key(v, models[1])
    good = chain.target(models[1])
    chain.commit(harvester, models[1], *good)  # commits, never reveals
    chain.round(models[1], {a: good, b: good}, keyed=True)
    assert chain.status(models[1]) == ModelStatus.VERIFIED
    bonds = seat_bonds(chain)
    assert chain.release(models[0], harvester)["forfeited"] == bonds.request  # key held, no commit
    assert (
        chain.release(models[1], harvester)["forfeited"] == bonds.request + bonds.commit
    )  # no reveal
    assert chain.stake_of(harvester).open_seats == limit - 2
    assert_cannot_leave(chain, [harvester])  # two keys still held on unsettled models


def test_h2_no_key_is_delivered_once_a_rounds_commits_closed(chain):
    """H-2, the late key (found in this review of the new contracts): a validator that asks for the key
    after a round's commits closed, or whose request is answered only then, could not take part in
    that round, so the release rule spared its request bond: a key, risk-free, for a refundable
    deposit. Now a request is refused while a round's commits are closed (ValidatorsCommitClosed, or
    ValidatorsRoundNotSettled once its reveals ended), and so is the delivery of an earlier request
    until the round is settled undecided; a request never delivered is released with nothing lost.
    Failed before the fix: both were accepted and the late key's seat was released in full."""
    seller, a, b, late, slow = (
        chain.accounts[1],
        chain.accounts[3],
        chain.accounts[4],
        chain.accounts[5],
        chain.accounts[6],
    )
    mid = chain.list_model(seller)
    for v in (a, b, late, slow):
        chain.stake(v)
    for v in (a, b):
        chain.key(v, mid)
    good = chain.target(mid)
    salts = {v: chain.commit(v, mid, *good)[1] for v in (a, b)}
    answered_late = chain.request_key(slow, mid)  # asked while commits are open
    r = chain.round_of(mid)
    chain.travel_to(r.commit_end + 1)
    m = chain.market.functions
    ask, answer = m.requestValidatorKey(mid, BUYER_KEY), m.deliverKey(answered_late, slow, WRAPPED)
    chain.expect_revert_with(ask, late, "ValidatorsCommitClosed", (mid, r.commit_end))
    chain.expect_revert_with(answer, seller, "ValidatorsCommitClosed", (mid, r.commit_end))
    for v in (a, b):
        chain.reveal(v, mid, *good, salts[v])
    chain.travel_to(r.reveal_end + 1)
    chain.expect_revert_with(ask, late, "ValidatorsRoundNotSettled", (mid, r.reveal_end))
    chain.settle(mid)
    assert chain.status(mid) == ModelStatus.VERIFIED
    chain.expect_revert(answer, seller, "ValidatorsAlreadySettled")
    assert chain.seat(mid, slow).state == SeatState.REQUESTED
    chain.travel(PARAMS["delivery_window"] + 1)
    assert chain.release(mid, slow)["forfeited"] == 0  # it never got the key


def test_h2_after_an_undecided_round_a_waiting_request_is_delivered(chain):
    """The other side of the rule above: a request that waited through a round's reveals is delivered
    once that round closes undecided, in time for the next one."""
    seller, a, slow = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    chain.stake(a)
    chain.stake(slow)
    chain.key(a, mid)
    _, salt = chain.commit(a, mid, *chain.target(mid))
    waiting = chain.request_key(slow, mid)
    chain.to_reveals(mid)
    chain.expect_revert(
        chain.market.functions.deliverKey(waiting, slow, WRAPPED), seller, "ValidatorsCommitClosed"
    )
    chain.reveal(a, mid, *chain.target(mid), salt)
    chain.to_settlement(mid)
    chain.settle(mid)  # weight 1 < quorum 2: undecided
    chain.deliver(seller, waiting)
    assert chain.seat(mid, slow).state == SeatState.KEYED


# ---- M-1, M-2 -------------------------------------------------------------------------------------


def test_m1_attesting_needs_the_delivered_key_for_that_model(chain):
    """M-1: `attest(id, registry.modelHash(id), anything)` without a key made the caller a paid verifier.
    Now a commitment needs this model's key delivered to the caller: not before asking, not while the
    request is pending, not with another model's key (ValidatorsNoKey); and only a revealed
    attestation on the winning side in the deciding round earns a share of the fees."""
    seller, v, other = chain.accounts[1], chain.accounts[3], chain.accounts[4]
    mid, elsewhere = chain.list_model(seller), chain.list_model(seller, model_hash=b"\x12" * 32)
    chain.stake(v)
    commit = chain.validators.functions.commitAttestation(
        mid, chain.commitment(mid, v, *chain.target(mid), b"s" * 32)
    )
    chain.expect_revert(commit, v, "ValidatorsNoKey", modelId=mid, validator=v)
    pid = chain.request_key(v, mid)
    chain.expect_revert(commit, v, "ValidatorsNoKey")
    chain.key(v, elsewhere)
    chain.expect_revert(commit, v, "ValidatorsNoKey")
    chain.deliver(seller, pid)
    chain.send(commit, v)
    assert chain.seat(mid, v).state == SeatState.COMMITTED
    chain.expect_revert(
        chain.market.functions.claimValidatorReward(mid), v, "MarketplaceNotVerifier"
    )
    assert chain.validators.functions.isVerifier(mid, other).call() is False


def test_m2_attest_wrong_then_leave_at_once_is_refused_and_the_bond_forfeited(chain):
    """M-2: attest wrong, `requestUnstake` at once, leave before the slash. Now requestUnstake is refused
    from the key request until the seat is released, and the release after the settlement forfeits the
    commit bond of the losing side; what is left is all the validator can take back."""
    seller, wrong, a, b = chain.accounts[1], chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = chain.list_model(seller)
    for v in (wrong, a, b):
        chain.stake(v)
    good = chain.target(mid)
    released = play(chain, mid, {wrong: (BAD_HASH, good[1]), a: good, b: good})
    assert chain.status(mid) == ModelStatus.VERIFIED
    bond = seat_bonds(chain).commit
    assert released[wrong] == {
        "modelId": mid,
        "validator": wrong,
        "returned": PARAMS["request_bond"],
        "forfeited": bond,
    }
    v = chain.validators.functions
    chain.send(v.requestUnstake(), wrong)
    chain.travel(PARAMS["unstake_delay"] + 1)
    rc = chain.send(v.unstake(), wrong)
    assert chain.events(rc, chain.validators, "Unstaked") == [
        {"validator": wrong, "amount": PARAMS["min_stake"] - bond}
    ]


# ---- M-3 ------------------------------------------------------------------------------------------


def test_m3_junk_delivered_just_before_the_dispute_completes_is_refunded(chain):
    """M-3: the seller delivers junk bytes to every pending purchase just before a dispute completes.
    Old: the seller was credited at delivery and the buyers, now delivered, could not refund. Now the
    revenue is held for the challenge period: the dispute falls within it, the buyers refund the whole
    price, releaseRevenue is refused and the seller gets nothing."""
    seller, buyers, v1, v2 = (
        chain.accounts[1],
        chain.accounts[2:4],
        chain.accounts[4],
        chain.accounts[5],
    )
    mid = chain.list_model(seller)
    sales = [chain.buy(buyer, mid) for buyer in buyers]
    for v in (v1, v2):
        chain.stake(v)
        chain.key(v, mid)
    salts = {v: chain.commit(v, mid, BAD_HASH, CLAIM)[1] for v in (v1, v2)}
    chain.to_reveals(mid)
    for v in (v1, v2):
        chain.reveal(v, mid, BAD_HASH, CLAIM, salts[v])  # the seller sees where this is going
    m = chain.market.functions
    for sale, buyer in zip(sales, buyers, strict=True):
        chain.send(m.deliverKey(sale, buyer, os.urandom(80)), seller)  # 80 junk bytes
    chain.to_settlement(mid)
    chain.settle(mid)
    assert chain.status(mid) == ModelStatus.DISPUTED
    for sale, buyer in zip(sales, buyers, strict=True):
        assert chain.purchase(sale).status == PurchaseStatus.DELIVERED
        chain.send(m.refund(sale), buyer)
        assert m.credited(buyer).call() == PRICE
    chain.travel(PARAMS["challenge_period"] + 1)
    for sale in sales:
        chain.expect_revert(m.releaseRevenue(sale), seller, "MarketplaceNothingToRelease")
    chain.expect_revert(m.withdraw(), seller, "MarketplaceNothingToWithdraw")
    assert m.credited(chain.fee_recipient).call() == 0


# ---- M-4 ------------------------------------------------------------------------------------------


def test_m4_free_and_dust_purchases_do_not_move_the_score(chain):
    """M-4: set the price to 0, twenty accounts buy and vote 5, set the price back. Old: twenty votes of
    5 for the cost of gas. Now a licence bought at price 0 does not vote (VotesNoLicense), and votes
    are weighted by the price paid: twenty purchases at 1 wei voting 5 against one real purchase voting
    1 leave the mean at 1 + 80 / (0.1 ETH in wei)."""
    seller, real_buyer = chain.accounts[1], chain.accounts[2]
    sybils = [chain.new_account(eth=1) for _ in range(20)]
    free = chain.list_model(seller, price=0)
    dust = chain.list_model(seller, price=1, model_hash=b"\x12" * 32)
    v = chain.votes.functions
    for sybil in sybils:
        chain.deliver(seller, chain.buy(sybil, free, price=0))
        chain.expect_revert(v.vote(free, 5), sybil, "VotesNoLicense", modelId=free, voter=sybil)
        chain.deliver(seller, chain.buy(sybil, dust, price=1))
        chain.send(v.vote(dust, 5), sybil)
    assert v.scoreOf(free).call() == [0, 0, 0]
    chain.send(chain.registry.functions.setPrice(dust, PRICE), seller)
    chain.deliver(seller, chain.buy(real_buyer, dust))
    chain.send(v.vote(dust, 1), real_buyer)
    chain.deliver(seller, chain.buy(seller, dust))  # the owner's own licence
    chain.expect_revert(v.vote(dust, 5), seller, "VotesNoLicense")
    weighted_sum, weight, voters = v.scoreOf(dust).call()
    assert (weighted_sum, weight, voters) == (20 * 5 + PRICE, 20 + PRICE, 21)
    assert weighted_sum / weight < 1 + 1e-15 * 81


# ---- L-1, L-2 -------------------------------------------------------------------------------------


@pytest.mark.anvil
def test_l1_fees_beyond_2_to_the_80_wei_are_credited_and_withdrawn(anvil_chain):
    """L-1: the platform fee accumulated in a uint80; past 2**80 wei of fees every paid delivery
    reverted. Now each release credits a uint256 balance: eleven sales at MAX_PRICE with the fee at its
    10 % cap (1.1 * 2**80 wei of fees) are released, a twelfth is delivered, and everything is
    withdrawn. (anvil: the buyers need 1.2 million ETH each, set with anvil_setBalance.)"""
    chain = anvil_chain
    snap = chain.snapshot()
    try:
        seller = chain.accounts[1]
        max_price = chain.registry.functions.MAX_PRICE().call()
        chain.send(chain.market.functions.setFeeBps(1000), chain.deployer)
        mid = chain.list_model(seller, price=max_price)
        buyers = [chain.new_account(eth=2 * max_price // 10**18) for _ in range(12)]
        sales = []
        for buyer in buyers:
            sales.append(chain.buy(buyer, mid, price=max_price))
            chain.deliver(seller, sales[-1])
        for sale in sales[:11]:
            chain.release_revenue(sale)
        net, fee = fee_split(max_price, 1000)
        m = chain.market.functions
        assert m.credited(chain.fee_recipient).call() == 11 * fee > 2**80
        assert m.credited(seller).call() == 11 * net
        for who in (chain.fee_recipient, seller):
            chain.send(m.withdraw(), who)
        assert chain.balance(chain.market.address) == max_price  # the twelfth sale, held
        chain.release_revenue(sales[11])
        assert m.credited(chain.fee_recipient).call() == fee
    finally:
        chain.revert(snap)


def test_l2_key_requests_for_disputed_inactive_and_verified_models_are_refused(chain):
    """L-2: key requests were accepted for disputed and inactive models. Now an inactive model is refused
    by the Marketplace (MarketplaceModelInactive) and a settled one, disputed or verified, by Validators
    (ValidatorsAlreadySettled); a leaving validator is refused too (ValidatorsNotActive). No refused
    request opens a seat or bonds anything."""
    seller, (v1, v2, v3) = chain.accounts[1], chain.accounts[3:6]
    m = chain.market.functions
    inactive = chain.list_model(seller)
    chain.send(chain.registry.functions.setActive(inactive, False), seller)
    chain.stake(v3)
    chain.expect_revert(
        m.requestValidatorKey(inactive, BUYER_KEY), v3, "MarketplaceModelInactive", modelId=inactive
    )
    disputed = chain.list_model(seller, model_hash=b"\x12" * 32)
    chain.disputed_by(disputed, (v1, v2))
    verified = chain.list_model(seller, model_hash=b"\x13" * 32)
    chain.verified_by(verified, (v1, v2))
    for model, status in ((disputed, ModelStatus.DISPUTED), (verified, ModelStatus.VERIFIED)):
        request = m.requestValidatorKey(model, BUYER_KEY)
        chain.expect_revert_with(request, v3, "ValidatorsAlreadySettled", (model, status))
    unsettled = chain.list_model(seller, model_hash=b"\x14" * 32)
    chain.send(chain.validators.functions.requestUnstake(), v3)
    chain.expect_revert(
        m.requestValidatorKey(unsettled, BUYER_KEY), v3, "ValidatorsNotActive", validator=v3
    )
    assert chain.stake_of(v3).open_seats == 0 and chain.stake_of(v3).bonded == 0


# ---- copying, reorgs ------------------------------------------------------------------------------


def test_copying_another_validators_commitment_or_reveal_gains_nothing(chain):
    """Copying an attestation seen in the clear (the issue's Bittensor note; on the old contracts any
    `attest` could be copied from the mempool). A commitment binds its sender: a copied commitment
    cannot be revealed, a replayed reveal of someone else's preimage fails (ValidatorsRevealMismatch),
    and once reveals are public commits are closed (ValidatorsCommitClosed); the copier's seat forfeits
    both bonds when the reveal period ends."""
    seller, honest, copier, late = (
        chain.accounts[1],
        chain.accounts[3],
        chain.accounts[4],
        chain.accounts[5],
    )
    mid = chain.list_model(seller)
    for v in (honest, copier, late):
        chain.stake(v)
        chain.key(v, mid)
    good = chain.target(mid)
    rc, salt = chain.commit(honest, mid, *good)
    (committed,) = chain.events(rc, chain.validators, "AttestationCommitted")
    v = chain.validators.functions
    chain.send(
        v.commitAttestation(mid, committed["commitment"]), copier
    )  # the same bytes, another sender
    chain.to_reveals(mid)
    rc = chain.reveal(honest, mid, *good, salt)
    (seen,) = chain.events(rc, chain.validators, "Attested")
    chain.expect_revert(
        v.revealAttestation(mid, seen["observedHash"], seen["workDigest"], salt),
        copier,
        "ValidatorsRevealMismatch",
        modelId=mid,
        validator=copier,
    )
    chain.expect_revert(
        v.commitAttestation(mid, chain.commitment(mid, late, *good, salt)),
        late,
        "ValidatorsCommitClosed",
    )
    chain.to_settlement(mid)
    bonds = seat_bonds(chain)
    assert chain.release(mid, copier)["forfeited"] == bonds.request + bonds.commit


def test_a_delivery_wrapped_for_another_buyer_is_refused(chain):
    """The reorg case of the last review: after a reorg a purchase id can belong to another buyer, and
    the worker's delivery (wrapped for the old buyer) mined onto it would have charged the new buyer
    for a key it cannot unwrap. deliverKey names its buyer: a delivery for anyone else reverts
    MarketplaceWrongBuyer, the purchase stays pending with its price in escrow, and the right delivery
    goes through."""
    seller, old_buyer, new_buyer = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    mid = chain.list_model(seller)
    pid = chain.buy(new_buyer, mid)  # the id the worker had seen as old_buyer's before the reorg
    m = chain.market.functions
    stale = m.deliverKey(pid, old_buyer, WRAPPED)
    chain.expect_revert_with(stale, seller, "MarketplaceWrongBuyer", (pid, new_buyer, old_buyer))
    assert chain.purchase(pid).status == PurchaseStatus.PENDING
    assert (
        chain.balance(chain.market.address) == PRICE
        and m.hasLicense(mid, new_buyer).call() is False
    )
    chain.deliver(seller, pid)
    assert (
        m.hasLicense(mid, new_buyer).call() is True and m.hasLicense(mid, old_buyer).call() is False
    )
    assert Book.from_call(m.book(mid).call()).disputed is False
