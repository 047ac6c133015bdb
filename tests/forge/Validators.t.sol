// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {Suite} from "./lib/Suite.sol";
import {ModelRegistry} from "../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../contracts/Marketplace.sol";
import {Validators} from "../../contracts/Validators.sol";
import {EthRejecter} from "./invariant/Actors.sol";

/// @notice Fuzz tests of every external function of Validators, on its arguments.
contract ValidatorsTest is SuiteTest {
    bytes32 internal constant OTHER = keccak256("another hash");

    function testFuzz_constructor(Validators.Config memory c, bool zeroRegistry, bool zeroMarket) public {
        c.minStake = c.minStake % 3 == 0 ? c.minStake : bound(c.minStake, 1, 10 ether);
        c.quorum = c.quorum % 3 == 0 ? c.quorum : bound(c.quorum, 1, 10);
        c.commitPeriod = c.commitPeriod % 3 == 0 ? c.commitPeriod : bound(c.commitPeriod, 1, 1 weeks);
        c.revealPeriod = c.revealPeriod % 3 == 0 ? c.revealPeriod : bound(c.revealPeriod, 1, 1 weeks);
        c.unstakeDelay = c.unstakeDelay % 3 == 0 ? c.unstakeDelay : bound(c.unstakeDelay, 0, 1 weeks);
        c.bondBps = c.bondBps % 3 == 0 ? c.bondBps : bound(c.bondBps, 1, 10_000);
        c.requestBond =
            c.requestBond % 3 == 0 ? c.requestBond : bound(c.requestBond, 1, c.minStake == 0 ? 1 : c.minStake);
        c.maxOpenRequests = c.maxOpenRequests % 3 == 0 ? c.maxOpenRequests : bound(c.maxOpenRequests, 1, 100);
        ModelRegistry r = zeroRegistry ? ModelRegistry(address(0)) : registry;
        Marketplace m = zeroMarket ? Marketplace(address(0)) : market;
        string memory bad;
        if (zeroRegistry || zeroMarket || c.treasury == address(0)) bad = "zero address";
        else if (c.minStake == 0 || c.minStake > type(uint96).max) bad = "minStake";
        else if (c.quorum == 0 || c.quorum > type(uint32).max) bad = "quorum";
        else if (c.commitPeriod == 0 || c.commitPeriod > type(uint32).max) bad = "commitPeriod";
        else if (c.revealPeriod == 0 || c.revealPeriod > type(uint32).max) bad = "revealPeriod";
        else if (c.unstakeDelay > type(uint32).max) bad = "unstakeDelay";
        else if (c.bondBps == 0 || c.bondBps > 10_000) bad = "bondBps";
        else if (c.requestBond == 0 || c.requestBond > c.minStake) bad = "requestBond";
        else if (c.maxOpenRequests == 0 || c.maxOpenRequests > type(uint16).max) bad = "maxOpenRequests";
        if (bytes(bad).length != 0) {
            vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsBadConfig.selector, bad));
            new Validators(r, m, c);
            return;
        }
        Validators v = new Validators(r, m, c);
        Validators.Config memory got = v.config();
        vm.assertEq(keccak256(abi.encode(got)), keccak256(abi.encode(c)), "config kept");
        vm.assertEq(v.minStake(), c.minStake, "minStake");
        vm.assertEq(v.quorum(), c.quorum, "quorum");
        vm.assertEq(v.registry(), address(registry), "registry");
        vm.assertEq(v.marketplace(), address(market), "marketplace");
    }

    function testFuzz_stake(uint256 first, uint256 second) public {
        first = bound(first, 0, 10 ether);
        second = bound(second, 0, 10 ether);
        vm.deal(v1, first + second);
        vm.prank(v1);
        (bool done, bytes memory ret) = address(validators).call{value: first}(abi.encodeCall(Validators.stake, ()));
        vm.assertEq(done, first >= p.validators.minStake, "the first stake reaches minStake");
        if (!done) {
            vm.assertEq(
                ret,
                abi.encodeWithSelector(Validators.ValidatorsStakeTooLow.selector, first, p.validators.minStake),
                "low"
            );
            vm.assertFalse(validators.isActiveValidator(v1), "not a validator");
            return;
        }
        vm.prank(v1);
        validators.stake{value: second}(); // topping up: any amount
        (uint256 amount, uint256 bonded, uint256 unlockAt, uint256 seats) = validators.stakeOf(v1);
        vm.assertEq(amount, first + second, "stake");
        vm.assertEq(bonded + unlockAt + seats, 0, "nothing bonded, not leaving");
        vm.assertTrue(validators.isActiveValidator(v1), "active");
        vm.assertEq(address(validators).balance, first + second, "held");
        vm.prank(v1);
        validators.requestUnstake();
        vm.deal(v1, 1 ether);
        vm.prank(v1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Validators.ValidatorsUnstakePending.selector, v1, block.timestamp + p.validators.unstakeDelay
            )
        );
        validators.stake{value: 1 ether}();
    }

    function testFuzz_unstake(uint256 amount, uint256 later) public {
        amount = bound(amount, p.validators.minStake, 100 ether);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, v1));
        validators.requestUnstake();
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, v1));
        validators.unstake();
        _stake(v1, amount);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsUnstakeNotRequested.selector, v1));
        validators.unstake();
        vm.prank(v1);
        validators.requestUnstake();
        uint256 unlockAt = block.timestamp + p.validators.unstakeDelay;
        vm.assertFalse(validators.isActiveValidator(v1), "leaving");
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsUnstakePending.selector, v1, unlockAt));
        validators.requestUnstake();
        later = bound(later, 0, 2 * p.validators.unstakeDelay);
        vm.warp(block.timestamp + later);
        uint256 before = v1.balance;
        vm.prank(v1);
        (bool done, bytes memory ret) = address(validators).call(abi.encodeCall(Validators.unstake, ()));
        vm.assertEq(done, block.timestamp >= unlockAt, "after the delay");
        if (!done) {
            vm.assertEq(
                ret,
                abi.encodeWithSelector(Validators.ValidatorsStillLocked.selector, v1, unlockAt, block.timestamp),
                "locked"
            );
            return;
        }
        vm.assertEq(v1.balance, before + amount, "whole stake back");
        (uint256 left,,,) = validators.stakeOf(v1);
        vm.assertEq(left, 0, "gone");
    }

    function test_unstakeToAnAccountThatRefusesEthFailsWhole() public {
        EthRejecter rejecter = new EthRejecter();
        _stake(address(rejecter), 1 ether);
        vm.prank(address(rejecter));
        validators.requestUnstake();
        vm.warp(block.timestamp + p.validators.unstakeDelay);
        vm.prank(address(rejecter));
        vm.expectRevert(
            abi.encodeWithSelector(Validators.ValidatorsTransferFailed.selector, address(rejecter), 1 ether)
        );
        validators.unstake();
        (uint256 amount,,,) = validators.stakeOf(address(rejecter));
        vm.assertEq(amount, 1 ether, "still staked");
    }

    /// A validator cannot leave with open seats, and cannot hold more than maxOpenRequests.
    function test_openSeatsKeepTheStake() public {
        _stake(v1, 2 ether);
        for (uint256 i = 0; i < p.validators.maxOpenRequests; i++) {
            uint256 id = _list(PRICE);
            vm.prank(v1);
            market.requestValidatorKey(id, KEY);
        }
        uint256 extra = _list(PRICE);
        vm.prank(v1);
        vm.expectRevert(
            abi.encodeWithSelector(Validators.ValidatorsTooManyOpenRequests.selector, v1, p.validators.maxOpenRequests)
        );
        market.requestValidatorKey(extra, KEY);
        vm.prank(v1);
        vm.expectRevert(
            abi.encodeWithSelector(Validators.ValidatorsOpenSeats.selector, v1, p.validators.maxOpenRequests)
        );
        validators.requestUnstake();
    }

    /// Bonds come out of free stake: with a request bond of a whole minimum stake, a second seat does not fit.
    function test_bondsNeedFreeStake() public {
        Suite.Params memory q = Suite.params(owner, feeRecipient, treasury);
        q.validators.requestBond = q.validators.minStake;
        (Suite.Deployed memory d, uint256 a) = _deployOther(q);
        vm.prank(seller);
        uint256 b = d.registry.list(HASH, CID_V1, 0);
        vm.deal(v1, 1 ether);
        vm.startPrank(v1);
        d.validators.stake{value: 1 ether}();
        d.market.requestValidatorKey(a, KEY);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsStakeBonded.selector, v1, 0, 1 ether));
        d.market.requestValidatorKey(b, KEY);
        vm.stopPrank();
    }

    /// A stake below one minimum (after forfeits) no longer counts: its commits are refused.
    function test_commitNeedsAWholeMinimumStake() public {
        uint256 a = _listClaimed(PRICE);
        uint256 b = _listClaimed(PRICE);
        _keyed(v1, a);
        _keyed(v1, b);
        _commit(v1, a, HASH, DIGEST); // never revealed
        _toSettle(a);
        validators.release(a, v1); // forfeits both bonds: 1 - 0.25 ether left
        (uint256 amount,,,) = validators.stakeOf(v1);
        vm.assertLt(amount, p.validators.minStake, "below a minimum stake");
        vm.prank(v1);
        vm.expectRevert(
            abi.encodeWithSelector(Validators.ValidatorsStakeTooLow.selector, amount, p.validators.minStake)
        );
        validators.commitAttestation(b, SALT);
    }

    function testFuzz_commitAttestation(bytes32 commitment, bool keyed, uint256 later) public {
        uint256 id = _listClaimed(PRICE);
        _stake(v1, 1 ether);
        if (keyed) _keyed(v1, id);
        _keyed(v2, id);
        _commit(v2, id, HASH, DIGEST); // opens the round
        (, uint64 commitEnd, uint64 revealEnd) = validators.roundOf(id);
        later = bound(later, 0, 3 hours);
        vm.warp(block.timestamp + later);
        bytes memory err;
        if (commitment == bytes32(0)) {
            err = abi.encodeWithSelector(Validators.ValidatorsZeroCommitment.selector);
        } else if (block.timestamp > revealEnd) {
            err = abi.encodeWithSelector(Validators.ValidatorsRoundNotSettled.selector, id, revealEnd);
        } else if (block.timestamp > commitEnd) {
            err = abi.encodeWithSelector(Validators.ValidatorsCommitClosed.selector, id, commitEnd);
        } else if (!keyed) {
            err = abi.encodeWithSelector(Validators.ValidatorsNoKey.selector, id, v1);
        }
        vm.prank(v1);
        (bool done, bytes memory ret) =
            address(validators).call(abi.encodeCall(Validators.commitAttestation, (id, commitment)));
        if (err.length != 0) {
            vm.assertEq(ret, err, "commit's error");
            return;
        }
        vm.assertTrue(done, "committed");
        vm.assertEq(validators.commitmentOf(id, v1), commitment, "stored");
        _committedSeat(id);
    }

    function _committedSeat(uint256 id) internal view {
        (uint8 state, uint256 round,, uint256 weight, uint256 bond) = validators.attestationOf(id, v1);
        vm.assertEq(state, 3, "committed seat");
        vm.assertEq(round, 1, "round 1");
        vm.assertEq(weight, 1, "one minimum stake");
        vm.assertEq(bond, p.validators.minStake * p.validators.bondBps / 10_000, "commit bond");
    }

    function test_commitOnASettledModelOrWithoutStake() public {
        uint256 id = _listClaimed(PRICE);
        _verify(id);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAlreadySettled.selector, id, 1));
        validators.commitAttestation(id, SALT);
        _stake(v3, 1 ether);
        vm.prank(v3);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAlreadySettled.selector, id, 1));
        market.requestValidatorKey(id, KEY);
    }

    /// Only the committed values open a commitment; reveals count only in their window; what a reveal
    /// argues for: Verified (listed hash + the claim made before the round), MetricsDisputed (listed hash,
    /// another digest), Disputed (another hash).
    function testFuzz_revealAttestation(bytes32 observed, bytes32 digest, bytes32 salt, uint8 which, uint256 later)
        public
    {
        uint256 id = _listClaimed(PRICE);
        _keyed(v1, id);
        which = uint8(bound(which, 0, 3));
        if (which == 0) (observed, digest) = (HASH, DIGEST);
        else if (which == 1) observed = HASH;
        vm.assume(which != 1 || digest != DIGEST);
        vm.assume(which < 2 || observed != HASH);
        vm.prank(v1);
        validators.commitAttestation(id, Suite.commitment(validators, id, v1, observed, digest, salt));
        vm.warp(block.timestamp + bound(later, 0, 3 hours));
        vm.prank(v1);
        (bool done,) = address(validators)
            .call(abi.encodeCall(Validators.revealAttestation, (id, observed, digest, keccak256(abi.encode(salt)))));
        vm.assertFalse(done, "a wrong salt never opens it");
        _revealChecked(id, observed, digest, salt, which);
    }

    function _revealChecked(uint256 id, bytes32 observed, bytes32 digest, bytes32 salt, uint8 which) internal {
        (, uint64 commitEnd, uint64 revealEnd) = validators.roundOf(id);
        vm.prank(v1);
        (bool done, bytes memory ret) =
            address(validators).call(abi.encodeCall(Validators.revealAttestation, (id, observed, digest, salt)));
        bytes memory err;
        if (block.timestamp <= commitEnd) {
            err = abi.encodeWithSelector(Validators.ValidatorsRevealNotOpen.selector, id, commitEnd);
        } else if (block.timestamp > revealEnd) {
            err = abi.encodeWithSelector(Validators.ValidatorsRevealClosed.selector, id, revealEnd);
        }
        if (err.length != 0) {
            vm.assertEq(ret, err, "reveal's window");
            return;
        }
        vm.assertTrue(done, "revealed");
        (uint8 state,, uint8 says,,) = validators.attestationOf(id, v1);
        vm.assertEq(state, 4, "revealed seat");
        vm.assertEq(says, which == 0 ? 1 : which == 1 ? 3 : 2, "what it argues for");
        _countedOnce(id);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNothingToReveal.selector, id, v1));
        validators.revealAttestation(id, observed, digest, salt);
    }

    function _countedOnce(uint256 id) internal view {
        (uint256 verified, uint256 disputed, uint256 metrics) = validators.tally(id);
        vm.assertEq(verified + disputed + metrics, 1, "counted once, weight 1");
        vm.assertEq(validators.commitmentOf(id, v1), bytes32(0), "commitment spent");
    }

    function test_revealMismatchAndClaimAfterTheRoundOpened() public {
        uint256 id = _list(PRICE);
        _keyed(v1, id);
        _commit(v1, id, HASH, DIGEST);
        vm.warp(block.timestamp + 1);
        vm.prank(seller);
        registry.claimMetrics(id, DIGEST); // made after the round opened: it cannot verify this round
        _toReveal(id);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsRevealMismatch.selector, id, v1));
        validators.revealAttestation(id, HASH, OTHER, SALT);
        _reveal(v1, id, HASH, DIGEST);
        (,, uint8 says,,) = validators.attestationOf(id, v1);
        vm.assertEq(says, 3, "MetricsDisputed: the claim came after the round opened");
    }

    /// The stake-weighted majority of a quorum of revealed weight decides; otherwise a new round.
    function testFuzz_settle(uint8 w1, uint8 w2, uint8 w3, uint8 s1, uint8 s2, uint8 s3) public {
        uint256[3] memory w = [bound(w1, 0, 3), bound(w2, 0, 3), bound(w3, 0, 3)];
        uint8[3] memory says = [uint8(bound(s1, 1, 3)), uint8(bound(s2, 1, 3)), uint8(bound(s3, 1, 3))];
        _settleWith(w, says);
    }

    function _settleWith(uint256[3] memory w, uint8[3] memory says) internal {
        uint256 id = _listClaimed(PRICE);
        address[3] memory vs = [v1, v2, v3];
        uint256[4] memory tallyOf;
        for (uint256 i = 0; i < 3; i++) {
            if (w[i] == 0) continue;
            _stake(vs[i], w[i] * p.validators.minStake);
            _keyed(vs[i], id);
            (bytes32 h, bytes32 d) = _values(says[i]);
            _commit(vs[i], id, h, d);
        }
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNoRound.selector, id + 1));
        validators.settle(id + 1);
        if (w[0] + w[1] + w[2] == 0) return;
        _toReveal(id);
        for (uint256 i = 0; i < 3; i++) {
            if (w[i] == 0) continue;
            (bytes32 h, bytes32 d) = _values(says[i]);
            _reveal(vs[i], id, h, d);
            tallyOf[says[i]] += w[i];
        }
        (,, uint64 revealEnd) = validators.roundOf(id);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsRevealOpen.selector, id, revealEnd));
        validators.settle(id);
        _toSettle(id);
        validators.settle(id);
        _settled(id, vs, w, says, tallyOf);
    }

    function _settled(
        uint256 id,
        address[3] memory vs,
        uint256[3] memory w,
        uint8[3] memory says,
        uint256[4] memory tallyOf
    ) internal {
        uint256 total = tallyOf[1] + tallyOf[2] + tallyOf[3];
        uint8 expected;
        if (total >= p.validators.quorum) {
            for (uint8 s = 1; s <= 3; s++) {
                if (2 * tallyOf[s] > total) expected = s;
            }
        }
        vm.assertEq(validators.status(id), expected, "majority of a quorum");
        (uint256 round, uint64 commitEnd,) = validators.roundOf(id);
        if (expected == 0) {
            vm.assertEq(round, 2, "a new round");
            vm.assertEq(commitEnd, 0, "not open yet");
            return;
        }
        (uint256 verifierWeight, bool disputed,,) = market.book(id);
        vm.assertEq(disputed, expected != 1, "the Marketplace is told");
        vm.assertEq(verifierWeight, expected == 1 ? tallyOf[1] : 0, "verifier weight");
        for (uint256 i = 0; i < 3; i++) {
            vm.assertEq(validators.isVerifier(id, vs[i]), expected == 1 && w[i] != 0 && says[i] == 1, "verifiers");
        }
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAlreadySettled.selector, id, expected));
        validators.settle(id);
    }

    /// release: each seat state, its timing and what it forfeits.
    function testFuzz_release(uint8 path, uint256 later) public {
        uint256 id = _listClaimed(PRICE);
        path = uint8(bound(path, 0, 4));
        later = bound(later, 0, 3 hours);
        _stake(v1, 1 ether);
        uint256 commitBond = p.validators.minStake * p.validators.bondBps / 10_000;
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNothingToRelease.selector, id, v1));
        validators.release(id, v1); // no seat
        if (path == 0) {
            // a request never delivered: free once expired, nothing lost
            vm.prank(v1);
            market.requestValidatorKey(id, KEY);
            vm.warp(block.timestamp + later);
            bool expired = later > p.deliveryWindow;
            _release(id, v1, expired, 0);
            if (expired) {
                (uint8 state,,,,) = validators.attestationOf(id, v1);
                vm.assertEq(state, 0, "the seat is gone: it may ask again");
            }
            return;
        }
        _keyed(v1, id);
        if (path == 1) {
            // a key never used: its request bond is lost once the model settled
            _verifyWith(id, v2, v3);
            _release(id, v1, true, p.validators.requestBond);
            return;
        }
        _commit(v1, id, path == 4 ? OTHER : HASH, DIGEST);
        if (path == 2) {
            // committed, never revealed: both bonds, once the reveal period is over
            vm.warp(block.timestamp + later);
            (,, uint64 revealEnd) = validators.roundOf(id);
            _release(id, v1, block.timestamp > revealEnd, p.validators.requestBond + commitBond);
            return;
        }
        _keyed(v2, id);
        _commit(v2, id, HASH, DIGEST);
        _toReveal(id);
        _reveal(v1, id, path == 4 ? OTHER : HASH, DIGEST);
        _reveal(v2, id, HASH, DIGEST);
        _release(id, v1, false, 0); // not before the round settles
        _toSettle(id);
        validators.settle(id);
        // path 3: on the winning side, nothing lost; path 4: argued against the outcome (no majority:
        // undecided, the next round) - nothing lost either, its bond carries over if it commits again
        _release(id, v1, true, 0);
        vm.assertEq(validators.credited(treasury), 0, "no forfeit");
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNothingToRelease.selector, id, v1));
        validators.release(id, v1); // released once
    }

    /// v1, v2 and v3 get the key of model `id` and commit to the observed hashes given (with DIGEST); then
    /// the reveal period opens.
    function _threeCommitted(uint256 id, bytes32 observed1, bytes32 observed2, bytes32 observed3) internal {
        _keyed(v1, id);
        _keyed(v2, id);
        _keyed(v3, id);
        _commit(v1, id, observed1, DIGEST);
        _commit(v2, id, observed2, DIGEST);
        _commit(v3, id, observed3, DIGEST);
        _toReveal(id);
    }

    /// On the losing side of the deciding round, the commit bond goes to the treasury, which withdraws it.
    function test_loserForfeitsItsCommitBondAndTheTreasuryWithdraws() public {
        uint256 id = _listClaimed(PRICE);
        _stake(v1, 2 ether); // weight 2
        _threeCommitted(id, HASH, HASH, OTHER);
        _reveal(v1, id, HASH, DIGEST);
        _reveal(v2, id, HASH, DIGEST);
        _reveal(v3, id, OTHER, DIGEST);
        _toSettle(id);
        validators.settle(id);
        vm.assertEq(validators.status(id), 1, "verified 3 to 1");
        uint256 commitBond = p.validators.minStake * p.validators.bondBps / 10_000;
        _release(id, v3, true, commitBond);
        _release(id, v1, true, 0);
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNothingToWithdraw.selector, v1));
        validators.withdraw();
        uint256 before = treasury.balance;
        vm.prank(treasury);
        validators.withdraw();
        vm.assertEq(treasury.balance, before + commitBond, "treasury paid");
        vm.assertEq(validators.credited(treasury), 0, "nothing left");
        // v3 may now leave with what is left
        vm.prank(v3);
        validators.requestUnstake();
        vm.warp(block.timestamp + p.validators.unstakeDelay);
        before = v3.balance;
        vm.prank(v3);
        validators.unstake();
        vm.assertEq(v3.balance, before + 1 ether - commitBond, "the rest of its stake");
    }

    /// An undecided round: its attestations commit again in the next (bond carried over), and one that
    /// sits the deciding round out loses its request bond; a commitment never revealed loses both.
    function test_undecidedRoundThenAnother() public {
        uint256 id = _listClaimed(PRICE);
        _threeCommitted(id, HASH, OTHER, HASH);
        _reveal(v1, id, HASH, DIGEST);
        _reveal(v2, id, OTHER, DIGEST); // v3 does not reveal
        _toSettle(id);
        validators.settle(id); // 1 to 1 of quorum 2: no majority
        (uint256 round,,) = validators.roundOf(id);
        vm.assertEq(round, 2, "round 2");
        _release(id, v3, true, p.validators.requestBond + p.validators.minStake * p.validators.bondBps / 10_000);
        _commit(v1, id, HASH, DIGEST); // again, in round 2
        (, uint256 bondedBefore,,) = validators.stakeOf(v1);
        vm.assertEq(
            bondedBefore,
            p.validators.requestBond + p.validators.minStake * p.validators.bondBps / 10_000,
            "carried over"
        );
        _stake(vm.addr(0x44), 1 ether);
        _keyed(vm.addr(0x44), id);
        _commit(vm.addr(0x44), id, HASH, DIGEST);
        _toReveal(id);
        _reveal(v1, id, HASH, DIGEST);
        _reveal(vm.addr(0x44), id, HASH, DIGEST);
        _toSettle(id);
        validators.settle(id);
        vm.assertEq(validators.status(id), 1, "verified in round 2");
        // v2 was counted in round 1 and sat round 2 out: its request bond is lost
        _release(id, v2, true, p.validators.requestBond);
    }

    /// Versions: the first key request fixes the version the rounds attest. A version published
    /// meanwhile neither changes what reveals are compared with nor inherits the outcome.
    function test_aVersionPublishedDuringValidationDoesNotInheritIt() public {
        uint256 id = _listClaimed(PRICE);
        vm.assertEq(validators.attestedVersion(id), 0, "no key requested yet");
        _keyed(v1, id);
        vm.assertEq(validators.attestedVersion(id), 1, "the listing");
        _publishSecondVersion(id);
        _keyed(v2, id);
        _attestAndSettle(id, v1, v2, HASH, DIGEST);
        vm.assertEq(validators.status(id), 1, "version 1 verified against its own hash and claim");
        vm.assertEq(validators.attestedVersion(id), 1, "the status is version 1's");
        vm.assertEq(registry.versionCount(id), 2, "while version 2 is the latest");
    }

    /// A model whose second version is out before any key request is validated as that version.
    function test_theLatestVersionAtTheFirstRequestIsAttested() public {
        uint256 id = _listClaimed(PRICE);
        _publishSecondVersion(id);
        _keyed(v1, id);
        _keyed(v2, id);
        vm.assertEq(validators.attestedVersion(id), 2, "version 2");
        _attestAndSettle(id, v1, v2, HASH, DIGEST); // version 1's hash: not what is attested now
        vm.assertEq(validators.status(id), 2, "the old hash disputes version 2");
        uint256 next = _listClaimed(PRICE);
        _publishSecondVersion(next);
        _keyed(v1, next);
        _keyed(v2, next);
        _attestAndSettle(next, v1, v2, OTHER, OTHER);
        vm.assertEq(validators.status(next), 1, "version 2's hash and claim verify version 2");
    }

    /// Validation cycles: once a model is Verified, the next key request after a later version is
    /// published opens a new cycle that attests the latest version, with seats and rounds of its own;
    /// the old cycle's status, seats and rewards stay as they were, each kept by its version.
    function test_aVerifiedModelsNextVersionIsValidatedInItsOwnCycle() public {
        uint256 id = _listClaimed(PRICE);
        _verify(id);
        vm.assertEq(market.verdictVersion(id), 1, "the verdict is version 1's");
        uint256 share = _sellAndRelease(id);
        vm.assertEq(market.pendingValidatorRewardAt(id, 1, v1, address(0)), share, "v1 earns from version 1");
        vm.assertFalse(validators.opensNewCycle(id), "no later version yet");
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceAlreadyLicensed.selector, id, v1));
        market.requestValidatorKey(id, KEY);

        _publishSecondVersion(id);
        vm.assertTrue(validators.opensNewCycle(id), "version 2 awaits its cycle");
        vm.assertEq(validators.status(id), 1, "until a key request opens it, the current cycle is version 1's");
        vm.prank(v1);
        vm.expectEmit(true, true, true, true, address(validators));
        emit Validators.ValidationOpened(id, 2);
        uint256 pid = market.requestValidatorKey(id, KEY);
        _deliver(pid);
        vm.assertEq(validators.attestedVersion(id), 2, "the new cycle attests version 2");
        vm.assertEq(validators.status(id), 0, "version 2 is not validated yet");
        vm.assertEq(validators.statusAt(id, 1), 1, "version 1 stays Verified");
        vm.assertFalse(validators.opensNewCycle(id), "the cycle is open");
        (uint256 round,,) = validators.roundOf(id);
        vm.assertEq(round, 1, "the new cycle starts at round 1");
        (uint8 oldSeat,,,,) = validators.attestationAt(id, 1, v1);
        (uint8 newSeat,,,,) = validators.attestationOf(id, v1);
        vm.assertEq(oldSeat, validators.SEAT_REVEALED(), "the old seat is version 1's");
        vm.assertEq(newSeat, validators.SEAT_KEYED(), "a seat of its own in version 2's cycle");
        (,,, uint256 seats) = validators.stakeOf(v1);
        vm.assertEq(seats, 2, "both seats open");

        // The old seat is released at its version (its round is settled): everything returned.
        _revertsWith(
            abi.encodeWithSelector(Validators.ValidatorsNothingToRelease.selector, id, v3),
            address(validators),
            abi.encodeCall(Validators.release, (id, v3))
        );
        validators.releaseAt(id, 1, v1);
        (uint8 released,,,,) = validators.attestationAt(id, 1, v1);
        vm.assertEq(released, validators.SEAT_RELEASED(), "closed");

        // v3, who never saw version 1, and v2 validate version 2 with v1: its own hash and claim.
        _keyed(v3, id);
        _keyed(v2, id);
        _attest(id, v1, v3, OTHER, OTHER);
        vm.expectEmit(true, true, true, true, address(validators));
        emit Validators.StatusChanged(id, 2, 1);
        validators.settle(id);
        vm.assertEq(validators.statusAt(id, 2), 1, "version 2 Verified");
        vm.assertEq(market.verdictVersion(id), 2, "the book follows version 2");
        vm.assertEq(validators.verifierWeightAt(id, 2, v3), 1, "v3 verified version 2");
        vm.assertEq(validators.verifierWeightAt(id, 1, v3), 0, "and not version 1");
        vm.assertEq(validators.verifierWeight(id, v2), 0, "v2 held the key and did not attest");

        // Fees now go to version 2's verifiers; version 1's keep what they earned, claimed at version 1.
        uint256 share2 = _sellAndRelease(id);
        vm.assertEq(market.pendingValidatorReward(id, v3, address(0)), share2, "v3 earns from version 2");
        vm.assertEq(market.pendingValidatorRewardAt(id, 1, v1, address(0)), share, "v1 kept version 1's");
        vm.assertEq(market.pendingValidatorRewardAt(id, 1, v2, address(0)), share, "so did v2");
        vm.assertEq(market.pendingValidatorReward(id, v1, address(0)), share2, "v1 verified both");
        market.claimValidatorRewardAt(v2, id, 1, address(0));
        vm.assertEq(market.credited(v2), share, "credited to the validator");
        vm.assertEq(market.pendingValidatorRewardAt(id, 1, v2, address(0)), 0, "once");
        vm.prank(v2);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotVerifier.selector, id, v2));
        market.claimValidatorReward(id);
        _release(id, v2, true, p.validators.requestBond); // keyed, never committed in the deciding round
    }

    /// Any outcome but Verified is final: a later version opens no new cycle.
    function test_noNewCycleAfterADispute() public {
        uint256 id = _listClaimed(PRICE);
        _dispute(id);
        _publishSecondVersion(id);
        vm.assertFalse(validators.opensNewCycle(id), "disputed for good");
        _stake(v3, p.validators.minStake);
        vm.prank(v3);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAlreadySettled.selector, id, 2));
        market.requestValidatorKey(id, KEY);
        vm.assertEq(validators.attestedVersion(id), 1, "still version 1's cycle");
    }

    /// A request left undelivered in the old cycle expires; its seat is released at its version, and
    /// the validator asks again in the new cycle.
    function test_aRequestLeftInTheOldCycleIsReleasedAtItsVersion() public {
        uint256 id = _listClaimed(PRICE);
        _keyed(v1, id);
        _keyed(v2, id);
        _stake(v3, p.validators.minStake);
        vm.prank(v3);
        uint256 late = market.requestValidatorKey(id, KEY);
        _attestAndSettle(id, v1, v2, HASH, DIGEST);
        _publishSecondVersion(id);
        _keyed(v1, id); // opens version 2's cycle
        vm.prank(seller);
        vm.expectRevert(
            abi.encodeWithSelector(Marketplace.MarketplaceDeliveryWindowClosed.selector, late, 1_000_000 + 1 hours)
        );
        market.deliverKey(late, v3, new bytes(80));
        validators.releaseAt(id, 1, v3);
        (,,, uint256 seats) = validators.stakeOf(v3);
        vm.assertEq(seats, 0, "the old request's seat is closed");
        vm.prank(v3);
        market.requestValidatorKey(id, KEY); // and v3 asks again, in version 2's cycle
        (uint8 state,,,,) = validators.attestationOf(id, v3);
        vm.assertEq(state, validators.SEAT_REQUESTED(), "a request in the new cycle");
    }

    /// A sale to `buyer`-like account, delivered and released after the challenge period: the verifiers'
    /// share per unit of weight.
    function _sellAndRelease(uint256 id) internal returns (uint256 perWeight) {
        address someone = vm.addr(uint256(keccak256(abi.encode("buyer", id, block.timestamp))));
        uint256 pid = _buy(someone, id);
        _deliver(pid);
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(pid);
        (uint256 weight,,,) = market.book(id);
        perWeight = PRICE * p.feeBps / 10_000 * p.validatorShareBps / 10_000 / weight;
    }

    /// Version 2 of the model: hash OTHER, claimed digest OTHER.
    function _publishSecondVersion(uint256 id) internal {
        vm.startPrank(seller);
        registry.publishVersion(id, OTHER, CID_V0);
        registry.claimMetrics(id, OTHER);
        vm.stopPrank();
    }

    function test_zeroCommitment() public {
        uint256 id = _listClaimed(PRICE);
        _keyed(v1, id);
        vm.prank(v1);
        vm.expectRevert(Validators.ValidatorsZeroCommitment.selector);
        validators.commitAttestation(id, bytes32(0));
    }

    /// A weight is whole minimum stakes, capped at 2**32 - 1 (a 1-wei minimum makes that reachable).
    function test_weightIsCapped() public {
        Suite.Params memory q = Suite.params(owner, feeRecipient, treasury);
        (q.validators.minStake, q.validators.requestBond) = (1, 1);
        (Suite.Deployed memory d, uint256 id) = _deployOther(q);
        vm.deal(v1, 2 ** 33);
        vm.startPrank(v1);
        d.validators.stake{value: 2 ** 33}();
        uint256 pid = d.market.requestValidatorKey(id, KEY);
        vm.stopPrank();
        vm.prank(seller);
        d.market.deliverKey(pid, v1, new bytes(80));
        vm.prank(v1);
        d.validators.commitAttestation(id, SALT);
        (,,, uint256 weight,) = d.validators.attestationOf(id, v1);
        vm.assertEq(weight, type(uint32).max, "capped");
    }

    /// The treasury's withdrawal fails whole when it refuses ETH (and the forfeits stay credited).
    function test_treasuryThatRefusesEth() public {
        EthRejecter rejecter = new EthRejecter();
        (Suite.Deployed memory d, uint256 id) = _deployOther(Suite.params(owner, feeRecipient, address(rejecter)));
        vm.deal(v1, 1 ether);
        vm.startPrank(v1);
        d.validators.stake{value: 1 ether}();
        uint256 pid = d.market.requestValidatorKey(id, KEY);
        vm.stopPrank();
        vm.prank(seller);
        d.market.deliverKey(pid, v1, new bytes(80));
        vm.prank(v1);
        d.validators.commitAttestation(id, SALT); // never revealed: both bonds forfeited
        (,, uint64 revealEnd) = d.validators.roundOf(id);
        vm.warp(uint256(revealEnd) + 1);
        d.validators.release(id, v1);
        uint256 owed = d.validators.credited(address(rejecter));
        vm.assertGt(owed, 0, "forfeits credited");
        vm.prank(address(rejecter));
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsTransferFailed.selector, address(rejecter), owed));
        d.validators.withdraw();
        vm.assertEq(d.validators.credited(address(rejecter)), owed, "still credited");
    }

    /// keyRequested / keyDelivered refuse what the Marketplace never asks (checked with this test
    /// contract standing in for the Marketplace): a second request once the key was delivered, and a
    /// delivery to a seat that was not requested.
    function test_seatChecksBehindTheMarketplace() public {
        Validators alone = new Validators(registry, Marketplace(address(this)), p.validators);
        uint256 id = _list(PRICE);
        vm.deal(v1, 1 ether);
        vm.prank(v1);
        alone.stake{value: 1 ether}();
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsSeatInUse.selector, id, v1, 0));
        alone.keyDelivered(id, v1);
        alone.keyRequested(id, v1);
        alone.keyRequested(id, v1); // a renewed request keeps the seat
        alone.keyDelivered(id, v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAlreadyRequested.selector, id, v1));
        alone.keyRequested(id, v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsSeatInUse.selector, id, v1, 2));
        alone.keyDelivered(id, v1);
    }

    // ---- attesters (setAttester: the validator's hot key) --------------------------------

    address internal hot = vm.addr(0x40);
    address internal hot2 = vm.addr(0x41);

    event AttesterChanged(address indexed validator, address attester);

    function _nameAttester(address v, address attester) internal {
        vm.expectEmit(true, true, true, true, address(validators));
        emit AttesterChanged(v, attester);
        vm.prank(v);
        validators.setAttester(attester);
        vm.assertEq(validators.attesterOf(v), attester, "attesterOf");
    }

    /// The attester asks for the key, commits and reveals for its validator; the seat, the weight, the
    /// bonds and the reward are the validator's, and the reward is credited to it, never to the attester.
    function test_theAttesterCommitsAndRevealsForItsValidator() public {
        uint256 id = _listClaimed(PRICE);
        _stake(v1, p.validators.minStake);
        _nameAttester(v1, hot);
        vm.assertEq(validators.validatorOf(hot), v1, "validatorOf");
        vm.prank(hot);
        uint256 pid = market.requestValidatorKeyFor(v1, id, KEY);
        (address account,,,,,,,) = market.purchase(pid);
        vm.assertEq(account, v1, "the request is the validator's");
        _deliver(pid);
        bytes32 c = Suite.commitment(validators, id, v1, HASH, DIGEST, SALT);
        vm.prank(hot);
        validators.commitAttestationFor(v1, id, c);
        (uint8 state,,,, uint256 bond) = validators.attestationOf(id, v1);
        vm.assertEq(state, 3, "the validator's seat committed");
        (, uint256 bonded,,) = validators.stakeOf(v1);
        vm.assertEq(bonded, p.validators.requestBond + bond, "the validator's stake is bonded");
        _keyed(v2, id);
        _commit(v2, id, HASH, DIGEST);
        _toReveal(id);
        vm.prank(hot);
        validators.revealAttestationFor(v1, id, HASH, DIGEST, SALT);
        _reveal(v2, id, HASH, DIGEST);
        _toSettle(id);
        validators.settle(id);
        vm.assertEq(validators.verifierWeight(id, v1), 1, "the validator verified");
        vm.assertEq(validators.verifierWeight(id, hot), 0, "the attester did not");
        uint256 sale = _buy(buyer, id);
        _deliver(sale);
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(sale);
        uint256 reward = market.pendingValidatorReward(id, v1);
        vm.assertGt(reward, 0, "a reward to claim");
        vm.prank(hot);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotVerifier.selector, id, hot));
        market.claimValidatorReward(id); // never to itself
        vm.prank(hot);
        market.claimValidatorRewardFor(v1, id, address(0));
        vm.assertEq(market.credited(v1), reward, "credited to the validator");
        vm.assertEq(market.credited(hot), 0, "nothing to the attester");
        validators.release(id, v1);
        (uint256 amount,,,) = validators.stakeOf(v1);
        vm.assertEq(amount, p.validators.minStake, "the bonds back to the validator's stake");
    }

    /// The attester can never unstake, withdraw, stake in its own name or change the attester.
    function test_theAttesterCannotTouchTheStake() public {
        _stake(v1, p.validators.minStake);
        _nameAttester(v1, hot);
        vm.startPrank(hot);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, hot));
        validators.requestUnstake();
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, hot));
        validators.unstake();
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNothingToWithdraw.selector, hot));
        validators.withdraw();
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToWithdraw.selector, hot));
        market.withdraw();
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, hot));
        validators.setAttester(hot2);
        vm.stopPrank();
        vm.deal(hot, 1 ether);
        vm.prank(hot);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsIsAttester.selector, hot, v1));
        validators.stake{value: 1 ether}();
        vm.assertEq(validators.attesterOf(v1), hot, "unchanged");
        (uint256 amount,, uint256 unlockAt,) = validators.stakeOf(v1);
        vm.assertEq(amount, p.validators.minStake, "the validator's stake untouched");
        vm.assertEq(unlockAt, 0, "not leaving");
        vm.prank(v1);
        validators.requestUnstake(); // the validator still can
    }

    /// A staked address (the caller's own included) cannot be named; an attester serves one validator;
    /// naming one needs a stake.
    function test_whoCanBeNamed() public {
        _stake(v1, p.validators.minStake);
        _stake(v2, p.validators.minStake);
        vm.startPrank(v1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAttesterIsValidator.selector, v2));
        validators.setAttester(v2);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAttesterIsValidator.selector, v1));
        validators.setAttester(v1);
        vm.stopPrank();
        _nameAttester(v1, hot);
        _nameAttester(v1, hot); // naming it again changes nothing
        vm.prank(v2);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsAttesterTaken.selector, hot, v1));
        validators.setAttester(hot);
        vm.prank(v3);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotStaked.selector, v3));
        validators.setAttester(hot2);
    }

    /// A new attester (or none) revokes the old one at once, which another validator may then name.
    function test_changingTheAttesterRevokesTheOld() public {
        uint256 id = _listClaimed(PRICE);
        _stake(v1, p.validators.minStake);
        _nameAttester(v1, hot);
        _nameAttester(v1, hot2);
        vm.assertEq(validators.validatorOf(hot), address(0), "the old one serves nobody");
        vm.prank(hot);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotAttester.selector, v1, hot));
        market.requestValidatorKeyFor(v1, id, KEY);
        vm.prank(hot2);
        uint256 pid = market.requestValidatorKeyFor(v1, id, KEY);
        _deliver(pid);
        bytes32 c = Suite.commitment(validators, id, v1, HASH, DIGEST, SALT);
        vm.prank(hot);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotAttester.selector, v1, hot));
        validators.commitAttestationFor(v1, id, c);
        vm.prank(hot2);
        validators.commitAttestationFor(v1, id, c);
        _nameAttester(v1, address(0));
        vm.assertEq(validators.validatorOf(hot2), address(0), "cleared");
        _toReveal(id);
        vm.prank(hot2);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsNotAttester.selector, v1, hot2));
        validators.revealAttestationFor(v1, id, HASH, DIGEST, SALT);
        vm.prank(v1);
        validators.revealAttestationFor(v1, id, HASH, DIGEST, SALT); // the validator itself always may
        _stake(v2, p.validators.minStake);
        _nameAttester(v2, hot);
    }

    function test_requestValidatorKeyForWithoutValidators() public {
        Marketplace bare = new Marketplace(registry, 1 hours, 1 days, 0, feeRecipient, 0, owner);
        uint256 id = _list(PRICE);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotValidator.selector, v1));
        bare.requestValidatorKeyFor(v1, id, KEY);
    }

    /// Nobody but the validator and its attester acts for it.
    function testFuzz_onlyTheAttesterActsFor(address caller) public {
        vm.assume(caller != v1 && caller != hot);
        uint256 id = _listClaimed(PRICE);
        _stake(v1, p.validators.minStake);
        _nameAttester(v1, hot);
        vm.assertFalse(validators.mayAttestFor(v1, caller), "not the attester");
        vm.assertTrue(validators.mayAttestFor(v1, hot) && validators.mayAttestFor(v1, v1), "the attester, itself");
        vm.assertFalse(validators.mayAttestFor(v2, address(0)), "nobody, for one without an attester");
        bytes memory err = abi.encodeWithSelector(Validators.ValidatorsNotAttester.selector, v1, caller);
        vm.startPrank(caller);
        _revertsWith(err, address(market), abi.encodeCall(Marketplace.requestValidatorKeyFor, (v1, id, KEY)));
        _revertsWith(err, address(validators), abi.encodeCall(Validators.commitAttestationFor, (v1, id, SALT)));
        _revertsWith(
            err, address(validators), abi.encodeCall(Validators.revealAttestationFor, (v1, id, HASH, DIGEST, SALT))
        );
        vm.stopPrank();
    }

    function _release(uint256 id, address v, bool ok, uint256 forfeited) internal {
        (uint256 amount, uint256 bonded,, uint256 seats) = validators.stakeOf(v);
        uint256 credited = validators.credited(treasury);
        (bool done, bytes memory ret) = address(validators).call(abi.encodeCall(Validators.release, (id, v)));
        vm.assertEq(done, ok, "release allowed");
        if (!ok) {
            vm.assertEq(ret, abi.encodeWithSelector(Validators.ValidatorsNothingToRelease.selector, id, v), "not yet");
            return;
        }
        vm.assertEq(validators.credited(treasury) - credited, forfeited, "to the treasury");
        _released(v, amount - forfeited, bonded, seats - 1);
    }

    function _released(address v, uint256 amount, uint256 bondedBefore, uint256 seats) internal view {
        (uint256 amount2, uint256 bonded2,, uint256 seats2) = validators.stakeOf(v);
        vm.assertEq(amount2, amount, "stake less what was forfeited");
        vm.assertLt(bonded2, bondedBefore, "bonds freed");
        vm.assertEq(seats2, seats, "seat closed");
    }

    function _values(uint8 says) internal pure returns (bytes32, bytes32) {
        if (says == 1) return (HASH, DIGEST);
        if (says == 3) return (HASH, OTHER);
        return (OTHER, DIGEST);
    }
}
