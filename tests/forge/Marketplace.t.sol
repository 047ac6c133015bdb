// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {Suite} from "./lib/Suite.sol";
import {ModelRegistry} from "../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../contracts/Marketplace.sol";
import {Validators} from "../../contracts/Validators.sol";
import {Votes} from "../../contracts/Votes.sol";
import {EthRejecter} from "./invariant/Actors.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @notice Fuzz tests of every external function of Marketplace, on its arguments.
contract MarketplaceTest is SuiteTest {
    function testFuzz_constructor(uint256 window, uint256 challenge, uint256 feeBps, address recipient, uint256 share)
        public
    {
        bytes memory err;
        if (recipient == address(0)) err = abi.encodeWithSelector(Marketplace.MarketplaceZeroAddress.selector);
        else if (feeBps > 1000) err = abi.encodeWithSelector(Marketplace.MarketplaceFeeTooHigh.selector, feeBps, 1000);
        else if (window == 0 || window > type(uint32).max) err = _badConfig("deliveryWindow");
        else if (challenge > type(uint32).max) err = _badConfig("challengePeriod");
        else if (share > 10_000) err = _badConfig("validatorShareBps");
        bytes memory code = abi.encodePacked(
            type(Marketplace).creationCode, abi.encode(registry, window, challenge, feeBps, recipient, share, owner)
        );
        address made;
        assembly ("memory-safe") {
            made := create(0, add(code, 0x20), mload(code))
        }
        vm.assertEq(made != address(0), err.length == 0, "constructor accepts exactly the valid configurations");
        if (made == address(0)) return;
        Marketplace m = Marketplace(made);
        vm.assertEq(m.deliveryWindow(), window, "window");
        vm.assertEq(m.challengePeriod(), challenge, "challenge");
        vm.assertEq(m.feeBps(), feeBps, "fee");
        vm.assertEq(m.feeRecipient(), recipient, "recipient");
        vm.assertEq(m.validatorShareBps(), share, "share");
        vm.assertEq(m.registry(), address(registry), "registry");
        vm.assertEq(m.owner(), owner, "owner");
        vm.assertEq(m.nextPurchaseId(), 1, "ids start at 1");
    }

    function test_constructorRejectsAZeroRegistry() public {
        vm.expectRevert(Marketplace.MarketplaceZeroAddress.selector);
        new Marketplace(ModelRegistry(address(0)), 1, 1, 0, feeRecipient, 0, owner);
    }

    function testFuzz_buy(uint256 price, uint256 value, uint256 maxPrice, bytes32 key, bool active) public {
        price = bound(price, 0, 100 ether);
        value = value % 4 == 0 ? bound(value, 0, 200 ether) : price;
        maxPrice = maxPrice % 4 == 0 ? maxPrice : price;
        uint256 id = _list(price);
        vm.prank(seller);
        registry.setActive(id, active);
        bytes memory err;
        if (!active) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceModelInactive.selector, id);
        } else if (price > maxPrice) {
            err = abi.encodeWithSelector(Marketplace.MarketplacePriceAboveMax.selector, id, price, maxPrice);
        } else if (value != price) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceWrongPayment.selector, id, value, price);
        } else if (key == bytes32(0)) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceZeroBuyerKey.selector);
        }
        vm.deal(buyer, value);
        vm.prank(buyer);
        (bool done, bytes memory ret) =
            address(market).call{value: value}(abi.encodeCall(Marketplace.buy, (id, key, maxPrice)));
        if (err.length != 0) {
            vm.assertEq(ret, err, "buy's error");
            return;
        }
        vm.assertTrue(done, "valid buy");
        _afterBuy(abi.decode(ret, (uint256)), id, key, price);
    }

    function _afterBuy(uint256 pid, uint256 id, bytes32 key, uint256 price) internal {
        uint256 deadline = _pending(pid, buyer, id, price, false);
        vm.assertEq(address(market).balance, price, "escrow");
        vm.assertFalse(market.hasLicense(id, buyer), "no licence before delivery");
        // a second buy while pending, and after delivery, are refused
        vm.deal(buyer, 2 * price); // a pranked call's value comes from the pranked account
        _buyerBuyReverts(
            abi.encodeWithSelector(Marketplace.MarketplacePurchasePending.selector, pid, deadline), id, key, price
        );
        _deliver(pid);
        vm.assertTrue(market.hasLicense(id, buyer), "licence");
        _buyerBuyReverts(
            abi.encodeWithSelector(Marketplace.MarketplaceAlreadyLicensed.selector, id, buyer), id, key, price
        );
    }

    /// The buyer's buy of model `id` at `price` reverts with `expected`.
    function _buyerBuyReverts(bytes memory expected, uint256 id, bytes32 key, uint256 price) internal {
        vm.prank(buyer);
        _revertsWith(expected, address(market), price, abi.encodeCall(Marketplace.buy, (id, key, price)));
    }

    function test_buyRefusedForADisputedOrMissingModel() public {
        uint256 id = _listClaimed(PRICE);
        _dispute(id);
        vm.deal(buyer, PRICE);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceModelDisputed.selector, id));
        market.buy{value: PRICE}(id, KEY, PRICE);
        vm.prank(buyer);
        vm.expectRevert();
        market.buy(id + 1, KEY, 0);
    }

    function testFuzz_requestValidatorKey(uint256 stakeAmount, bytes32 key, bool active, uint256 later) public {
        uint256 id = _list(PRICE);
        vm.prank(seller);
        registry.setActive(id, active);
        stakeAmount = bound(stakeAmount, 0, 3 ether);
        if (stakeAmount >= p.validators.minStake) _stake(v1, stakeAmount);
        bytes memory err;
        if (key == bytes32(0)) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceZeroBuyerKey.selector);
        } else if (!active) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceModelInactive.selector, id);
        } else if (stakeAmount < p.validators.minStake) {
            err = abi.encodeWithSelector(Validators.ValidatorsNotActive.selector, v1);
        }
        vm.prank(v1);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.requestValidatorKey, (id, key)));
        if (err.length != 0) {
            vm.assertEq(ret, err, "requestValidatorKey's error");
            return;
        }
        vm.assertTrue(done, "valid request");
        uint256 pid = abi.decode(ret, (uint256));
        uint256 deadline = _pending(pid, v1, id, 0, true);
        (, uint256 bonded,, uint256 openSeats) = validators.stakeOf(v1);
        vm.assertEq(bonded, p.validators.requestBond, "request bond");
        vm.assertEq(openSeats, 1, "a seat");
        _renewal(id, key, pid, deadline, bound(later, 0, 2 * p.deliveryWindow));
    }

    /// Checks a fresh pending purchase; returns its deadline.
    function _pending(uint256 pid, address who, uint256 id, uint256 price, bool forValidator)
        internal
        view
        returns (uint256 deadline)
    {
        (address account, uint256 model, uint256 paid, uint256 deadline_, uint8 status, bool isValidators,,) =
            market.purchase(pid);
        vm.assertEq(account, who, "account");
        vm.assertEq(model, id, "model");
        vm.assertEq(paid, price, "price held");
        vm.assertEq(deadline_, block.timestamp + p.deliveryWindow, "deadline");
        vm.assertEq(status, PENDING, "pending");
        vm.assertEq(isValidators, forValidator, "whose");
        return deadline_;
    }

    /// Asking again while pending is refused; after the window it is a new purchase, the same seat and bond.
    function _renewal(uint256 id, bytes32 key, uint256 pid, uint256 deadline, uint256 later) internal {
        vm.warp(block.timestamp + later);
        vm.prank(v1);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.requestValidatorKey, (id, key)));
        vm.assertEq(done, block.timestamp > deadline, "renewed only after the window");
        if (!done) {
            vm.assertEq(
                ret, abi.encodeWithSelector(Marketplace.MarketplacePurchasePending.selector, pid, deadline), "pending"
            );
            return;
        }
        (,,,, uint8 oldStatus,,,) = market.purchase(pid);
        vm.assertEq(oldStatus, EXPIRED, "the old request expired");
        (, uint256 bonded,, uint256 openSeats) = validators.stakeOf(v1);
        vm.assertEq(bonded, p.validators.requestBond, "one bond");
        vm.assertEq(openSeats, 1, "one seat");
        _deliver(abi.decode(ret, (uint256)));
        vm.prank(v1);
        _revertsWith(
            abi.encodeWithSelector(Marketplace.MarketplaceAlreadyLicensed.selector, id, v1),
            address(market),
            abi.encodeCall(Marketplace.requestValidatorKey, (id, key))
        );
        vm.assertFalse(market.hasLicense(id, v1), "a validator's key is no licence");
    }

    function test_requestValidatorKeyWithoutValidators() public {
        Marketplace bare = new Marketplace(registry, 1 hours, 1 days, 0, feeRecipient, 0, owner);
        uint256 id = _list(PRICE);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotValidator.selector, address(this)));
        bare.requestValidatorKey(id, KEY);
        vm.assertEq(bare.pendingValidatorReward(id, v1), 0, "no validators: no reward");
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotVerifier.selector, id, address(this)));
        bare.claimValidatorReward(id);
    }

    /// Only the purchase's own account may be named; the key must be 80 bytes; only the owner or the
    /// operator delivers, within the window, never for a disputed model, once.
    function testFuzz_deliverKey(address named, uint256 keyLength, address caller, uint256 later) public {
        uint256 id = _list(PRICE);
        vm.prank(seller);
        registry.setOperator(id, operator);
        uint256 pid = _buy(buyer, id);
        (,,, uint256 deadline,,,,) = market.purchase(pid);
        named = named == address(0) || uint160(named) % 2 == 0 ? buyer : named;
        keyLength = keyLength % 3 == 0 ? bound(keyLength, 0, 200) : 80;
        caller = uint160(caller) % 3 == 0 ? seller : uint160(caller) % 3 == 1 ? operator : caller;
        later = later % 2 == 0 ? 0 : bound(later, 0, 2 * p.deliveryWindow);
        vm.warp(block.timestamp + later);
        bytes memory err;
        if (named != buyer) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceWrongBuyer.selector, pid, buyer, named);
        } else if (block.timestamp > deadline) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceDeliveryWindowClosed.selector, pid, deadline);
        } else if (caller != seller && caller != operator) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceNotDeliverer.selector, pid, caller);
        } else if (keyLength != 80) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceBadWrappedKey.selector, keyLength, 80);
        }
        vm.prank(caller);
        (bool done, bytes memory ret) =
            address(market).call(abi.encodeCall(Marketplace.deliverKey, (pid, named, new bytes(keyLength))));
        if (err.length != 0) {
            vm.assertEq(ret, err, "deliverKey's error");
            (,,,, uint8 still,,,) = market.purchase(pid);
            vm.assertEq(still, PENDING, "still pending, escrow untouched");
            return;
        }
        vm.assertTrue(done, "delivered");
        _delivered(pid);
    }

    function _delivered(uint256 pid) internal {
        (,,,, uint8 status,, uint256 deliveredAt, bool released) = market.purchase(pid);
        vm.assertEq(status, DELIVERED, "delivered");
        vm.assertEq(deliveredAt, block.timestamp, "deliveredAt");
        vm.assertFalse(released, "revenue held");
        vm.assertEq(market.credited(seller), 0, "nothing credited before the challenge period ends");
        vm.prank(seller);
        _revertsWith(
            abi.encodeWithSelector(Marketplace.MarketplaceNotPending.selector, pid, DELIVERED),
            address(market),
            abi.encodeCall(Marketplace.deliverKey, (pid, buyer, new bytes(80)))
        );
    }

    function testFuzz_deliverKeyOfAnUnknownPurchase(uint256 pid, address named) public {
        _revertsWith(
            abi.encodeWithSelector(Marketplace.MarketplaceUnknownPurchase.selector, pid),
            address(market),
            abi.encodeCall(Marketplace.deliverKey, (pid, named, new bytes(80)))
        );
    }

    /// After a reorg the same purchase id belongs to another buyer: the delivery the worker sent for the
    /// first buyer, mined again on the new chain, reverts and leaves the new buyer's escrow untouched.
    function testFuzz_reorgHandsAPurchaseIdToAnotherBuyer(address other) public {
        vm.assume(other != buyer && other != address(0) && other.code.length == 0 && other != address(vm));
        uint256 id = _list(PRICE);
        uint256 fork = vm.snapshotState();
        uint256 pid = _buy(buyer, id);
        vm.revertToState(fork); // the reorg: another buyer's purchase gets the same id
        vm.assertEq(_buy(other, id), pid, "same id, other buyer");
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceWrongBuyer.selector, pid, other, buyer));
        market.deliverKey(pid, buyer, new bytes(80)); // the old delivery, re-mined
        (address account,, uint256 price,, uint8 status,,,) = market.purchase(pid);
        vm.assertEq(account, other, "the new buyer's purchase");
        vm.assertEq(price, PRICE, "escrow untouched");
        vm.assertEq(status, PENDING, "still pending");
        vm.prank(seller);
        market.deliverKey(pid, other, new bytes(80)); // the worker then delivers to the right one
        vm.assertTrue(market.hasLicense(id, other), "the new buyer got the key");
    }

    function testFuzz_releaseRevenue(uint256 price, uint256 feeBps, uint256 later) public {
        price = bound(price, 0, 1000 ether);
        feeBps = bound(feeBps, 0, 1000);
        vm.prank(owner);
        market.setFeeBps(feeBps);
        uint256 id = _list(price);
        uint256 pid = _buy(buyer, id);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToRelease.selector, pid));
        market.releaseRevenue(pid); // pending
        _deliver(pid);
        uint256 challengeEnd = block.timestamp + p.challengePeriod;
        later = bound(later, 0, 2 * p.challengePeriod);
        vm.warp(block.timestamp + later);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.releaseRevenue, (pid)));
        if (price == 0) {
            vm.assertEq(
                ret, abi.encodeWithSelector(Marketplace.MarketplaceNothingToRelease.selector, pid), "free: nothing"
            );
            return;
        }
        if (block.timestamp <= challengeEnd) {
            vm.assertEq(
                ret, abi.encodeWithSelector(Marketplace.MarketplaceRevenueHeld.selector, pid, challengeEnd), "held"
            );
            return;
        }
        vm.assertTrue(done, "released");
        uint256 fee = (price * feeBps) / 10_000;
        vm.assertEq(market.credited(seller), price - fee, "seller: price less fee");
        vm.assertEq(market.credited(feeRecipient), fee, "platform: the fee (no verifiers)");
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToRelease.selector, pid));
        market.releaseRevenue(pid); // once
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotRefundable.selector, pid));
        market.refund(pid);
    }

    /// A verified model shares its fees with its verifiers in proportion to their weight.
    function testFuzz_releaseRevenueSharesWithVerifiers(uint256 price, uint256 extraStake) public {
        price = bound(price, 1, 1000 ether);
        extraStake = bound(extraStake, 0, 3);
        uint256 id = _listClaimed(price);
        _stake(v1, p.validators.minStake * (1 + extraStake)); // weight 1 + extraStake
        _verify(id);
        uint256 w1 = 1 + extraStake;
        vm.assertEq(validators.verifierWeight(id, v1), w1, "v1's weight");
        vm.assertEq(validators.verifierWeight(id, v2), 1, "v2's weight");
        (uint256 weight,,,) = market.book(id);
        vm.assertEq(weight, w1 + 1, "verifier weight in the book");
        vm.prank(v1);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToClaim.selector, id, v1));
        market.claimValidatorReward(id);
        uint256 pid = _buy(buyer, id);
        _deliver(pid);
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(pid);
        uint256 fee = (price * p.feeBps) / 10_000;
        uint256 perWeight = (fee * p.validatorShareBps) / 10_000 / (w1 + 1);
        vm.assertEq(market.pendingValidatorReward(id, v1), perWeight * w1, "v1's share");
        vm.assertEq(market.pendingValidatorReward(id, v2), perWeight, "v2's share");
        vm.assertEq(market.credited(feeRecipient), fee - perWeight * (w1 + 1), "platform keeps the rest and the dust");
        vm.assertEq(market.credited(seller), price - fee, "seller");
        if (perWeight != 0) {
            vm.prank(v1);
            market.claimValidatorReward(id);
            vm.assertEq(market.credited(v1), perWeight * w1, "claimed");
        }
        vm.prank(v3);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotVerifier.selector, id, v3));
        market.claimValidatorReward(id);
    }

    function testFuzz_refund(uint256 later, bool disputeFirst) public {
        uint256 id = _listClaimed(PRICE);
        uint256 pid = _buy(buyer, id);
        (,,, uint256 deadline,,,,) = market.purchase(pid);
        if (disputeFirst) _dispute(id);
        later = bound(later, 0, 2 * p.deliveryWindow);
        vm.warp(block.timestamp + later);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotBuyer.selector, pid, seller));
        market.refund(pid);
        vm.prank(buyer);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.refund, (pid)));
        bool ok = disputeFirst || block.timestamp > deadline;
        vm.assertEq(done, ok, "refund: after the window, or at once for a disputed model");
        if (!ok) {
            vm.assertEq(
                ret, abi.encodeWithSelector(Marketplace.MarketplaceDeliveryWindowOpen.selector, pid, deadline), "open"
            );
            return;
        }
        vm.assertEq(market.credited(buyer), PRICE, "refund credited");
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotPending.selector, pid, REFUNDED));
        market.refund(pid);
        // buying again supersedes the refunded purchase
        if (!disputeFirst) {
            uint256 again = _buy(buyer, id);
            (,,,, uint8 old,,,) = market.purchase(pid);
            vm.assertEq(old, REFUNDED, "superseded reads as refunded");
            vm.assertEq(again, pid + 1, "new id");
            vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotPending.selector, pid, REFUNDED));
            market.releaseRevenue(pid);
        }
    }

    /// A delivered purchase is refunded when its model is disputed within its challenge period (its vote
    /// dropped), and not when the dispute comes after it.
    function testFuzz_refundOfADeliveredPurchase(uint256 disputeAfter) public {
        uint256 id = _listClaimed(PRICE);
        uint256 pid = _buy(buyer, id);
        _deliver(pid);
        vm.prank(buyer);
        votes.vote(id, 4);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotRefundable.selector, pid));
        market.refund(pid);
        uint256 challengeEnd = block.timestamp + p.challengePeriod;
        // the dispute settles 2h (commit + reveal) after the round opens
        disputeAfter = bound(disputeAfter, 0, 2 * p.challengePeriod);
        vm.warp(block.timestamp + disputeAfter);
        _dispute(id);
        (,, uint256 disputedAt,) = market.book(id);
        vm.prank(buyer);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.refund, (pid)));
        vm.assertEq(done, disputedAt <= challengeEnd, "refunded iff disputed within the challenge period");
        if (!done) {
            vm.assertEq(
                ret, abi.encodeWithSelector(Marketplace.MarketplaceNotRefundable.selector, pid), "not refundable"
            );
            market.releaseRevenue(pid); // the seller is paid instead
            vm.assertEq(market.credited(seller), PRICE - (PRICE * p.feeBps) / 10_000, "paid");
            return;
        }
        vm.assertEq(market.credited(buyer), PRICE, "refunded");
        vm.assertFalse(market.hasLicense(id, buyer), "licence revoked");
        vm.assertEq(market.voteOf(id, buyer), 0, "vote dropped");
        (uint256 sum, uint256 weight, uint256 voters) = votes.scoreOf(id);
        vm.assertEq(sum + weight + voters, 0, "score emptied");
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToRelease.selector, pid));
        market.releaseRevenue(pid);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotPending.selector, pid, REFUNDED));
        market.deliverKey(pid, buyer, new bytes(80));
    }

    function test_refundRefusesValidatorPurchasesAndDisputedDeliveries() public {
        uint256 id = _listClaimed(PRICE);
        uint256 buyerPid = _buy(buyer, id);
        _stake(v3, 1 ether);
        vm.prank(v3);
        uint256 pid = market.requestValidatorKey(id, KEY);
        vm.prank(v3);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotBuyer.selector, pid, v3));
        market.refund(pid);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceUnknownPurchase.selector, 99));
        market.refund(99);
        _dispute(id);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceModelDisputed.selector, id));
        market.deliverKey(buyerPid, buyer, new bytes(80));
    }

    function testFuzz_withdraw(uint256 price) public {
        price = bound(price, 1, 1000 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNothingToWithdraw.selector, seller));
        market.withdraw();
        uint256 id = _list(price);
        uint256 pid = _buy(buyer, id);
        _deliver(pid);
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(pid);
        uint256 owed = market.credited(seller);
        uint256 before = seller.balance;
        vm.prank(seller);
        market.withdraw();
        vm.assertEq(seller.balance, before + owed, "paid what was credited");
        vm.assertEq(market.credited(seller), 0, "nothing left");
        vm.assertEq(address(market).balance, market.credited(feeRecipient), "only the fee remains");
    }

    function test_withdrawToAnAccountThatRefusesEthFailsWhole() public {
        EthRejecter rejecter = new EthRejecter();
        uint256 id = _list(PRICE);
        vm.prank(seller);
        registry.transferFrom(seller, address(rejecter), id);
        uint256 pid = _buy(buyer, id);
        vm.prank(address(rejecter));
        market.deliverKey(pid, buyer, new bytes(80));
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(pid);
        uint256 owed = market.credited(address(rejecter));
        vm.prank(address(rejecter));
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceTransferFailed.selector, address(rejecter), owed));
        market.withdraw();
        vm.assertEq(market.credited(address(rejecter)), owed, "still credited");
    }

    /// recordVerdict, recordVote (Marketplace), dropVote (Votes), keyRequested and keyDelivered
    /// (Validators): only the contract they trust may call them.
    function testFuzz_callsReservedToTheOtherContracts(address caller, uint256 id, uint8 status) public {
        vm.assume(caller != address(validators) && caller != address(votes) && caller != address(market));
        vm.assume(caller != address(vm));
        vm.startPrank(caller);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceOnlyValidators.selector, caller));
        market.recordVerdict(id, 1, status, 1);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceOnlyVotes.selector, caller));
        market.recordVote(id, caller, 5);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesOnlyMarketplace.selector, caller));
        votes.dropVote(id, 5, 1);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsOnlyMarketplace.selector, caller));
        validators.keyRequested(id, caller);
        vm.expectRevert(abi.encodeWithSelector(Validators.ValidatorsOnlyMarketplace.selector, caller));
        validators.keyDelivered(id, caller);
        vm.stopPrank();
    }

    function testFuzz_setFeeBps(uint256 bps, address caller) public {
        vm.prank(caller);
        (bool done, bytes memory ret) = address(market).call(abi.encodeCall(Marketplace.setFeeBps, (bps)));
        bool ok = caller == owner && bps <= 1000;
        vm.assertEq(done, ok, "owner only, at most MAX_FEE_BPS");
        if (caller != owner) {
            vm.assertEq(ret, abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, caller), "not owner");
        } else if (!ok) {
            vm.assertEq(ret, abi.encodeWithSelector(Marketplace.MarketplaceFeeTooHigh.selector, bps, 1000), "too high");
        }
        vm.assertEq(market.feeBps(), ok ? bps : p.feeBps, "fee");
    }

    function testFuzz_setFeeRecipient(address to, address caller) public {
        vm.prank(caller);
        (bool done,) = address(market).call(abi.encodeCall(Marketplace.setFeeRecipient, (to)));
        bool ok = caller == owner && to != address(0);
        vm.assertEq(done, ok, "owner only, not zero");
        vm.assertEq(market.feeRecipient(), ok ? to : feeRecipient, "recipient");
    }

    function testFuzz_connect(address caller, address target) public {
        Marketplace fresh = new Marketplace(registry, 1 hours, 1 days, 0, feeRecipient, 0, owner);
        vm.assertEq(fresh.validators(), address(0), "none yet");
        vm.assertEq(fresh.votes(), address(0), "none yet");
        vm.prank(caller);
        (bool done,) = address(fresh).call(abi.encodeCall(Marketplace.connectValidators, (Validators(target))));
        vm.assertEq(done, caller == owner && target != address(0), "connectValidators: owner, non-zero");
        vm.prank(caller);
        (done,) = address(fresh).call(abi.encodeCall(Marketplace.connectVotes, (Votes(target))));
        vm.assertEq(done, caller == owner && target != address(0), "connectVotes: owner, non-zero");
        // once only
        vm.startPrank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(Marketplace.MarketplaceValidatorsAlreadySet.selector, address(validators))
        );
        market.connectValidators(validators);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceVotesAlreadySet.selector, address(votes)));
        market.connectVotes(votes);
        vm.stopPrank();
        vm.assertEq(market.validators(), address(validators), "validators");
        vm.assertEq(market.votes(), address(votes), "votes");
    }

    function testFuzz_ownership(address to, address caller) public {
        vm.prank(caller);
        (bool done,) = address(market).call(abi.encodeWithSignature("transferOwnership(address)", to));
        vm.assertEq(done, caller == owner && to != address(0), "transferOwnership");
        address now_ = market.owner();
        vm.prank(caller);
        (done,) = address(market).call(abi.encodeWithSignature("renounceOwnership()"));
        vm.assertEq(done, caller == now_, "renounceOwnership: the owner only");
        if (done) vm.assertEq(market.owner(), address(0), "renounced");
    }

    /// Revenue of a delivery whose model was disputed within its challenge period is never released.
    function test_releaseRefusedWhenDisputedWithinTheChallengePeriod() public {
        uint256 id = _listClaimed(PRICE);
        uint256 pid = _buy(buyer, id);
        _deliver(pid);
        _dispute(id);
        vm.warp(block.timestamp + p.challengePeriod + 1);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceModelDisputed.selector, id));
        market.releaseRevenue(pid);
    }

    function test_ownerInputsMustNotBeZero() public {
        Marketplace fresh = new Marketplace(registry, 1 hours, 1 days, 0, feeRecipient, 0, owner);
        vm.startPrank(owner);
        vm.expectRevert(Marketplace.MarketplaceZeroAddress.selector);
        fresh.connectVotes(Votes(address(0)));
        vm.expectRevert(Marketplace.MarketplaceZeroAddress.selector);
        fresh.connectValidators(Validators(address(0)));
        vm.expectRevert(Marketplace.MarketplaceZeroAddress.selector);
        market.setFeeRecipient(address(0));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceUnknownPurchase.selector, 7));
        market.purchase(7);
    }

    function _badConfig(string memory what) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Marketplace.MarketplaceBadConfig.selector, what);
    }
}
