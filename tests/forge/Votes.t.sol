// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {Votes} from "../../contracts/Votes.sol";

/// @notice Fuzz tests of Votes: who may vote, and how a vote weighs (the price paid for the licence).
contract VotesTest is SuiteTest {
    function testFuzz_vote(uint8 score, uint8 again, uint256 price) public {
        price = bound(price, 1, 100 ether);
        uint256 id = _list(price);
        _deliver(_buy(buyer, id));
        vm.prank(buyer);
        (bool done, bytes memory ret) = address(votes).call(abi.encodeCall(Votes.vote, (id, score)));
        vm.assertEq(done, score >= 1 && score <= 5, "scores 1..5");
        if (!done) {
            vm.assertEq(ret, abi.encodeWithSelector(Votes.VotesScoreOutOfRange.selector, score), "range");
            return;
        }
        (uint256 sum, uint256 weight, uint256 voters) = votes.scoreOf(id);
        vm.assertEq(sum, score * price, "weighted by the price paid");
        vm.assertEq(weight, price, "weight");
        vm.assertEq(voters, 1, "one voter");
        vm.assertEq(votes.voteOf(id, buyer), score, "voteOf");
        again = uint8(bound(again, 1, 5));
        vm.prank(buyer);
        votes.vote(id, again); // replaces
        (sum, weight, voters) = votes.scoreOf(id);
        vm.assertEq(sum, again * price, "replaced");
        vm.assertEq(weight, price, "same weight");
        vm.assertEq(voters, 1, "still one voter");
        vm.assertEq(votes.marketplace(), address(market), "marketplace");
    }

    /// No vote without a licence, with a free licence, or with one the model's owner bought.
    function testFuzz_voteNeedsAPaidLicenceFromSomeoneElse(uint8 who, uint256 price) public {
        price = price % 3 == 0 ? 0 : bound(price, 1, 10 ether);
        uint256 id = _list(price);
        who = uint8(bound(who, 0, 2));
        address voter = who == 0 ? seller : buyer;
        if (who != 2) _deliver(_buy(voter, id)); // who 2: a buyer without a licence
        bool counts = who == 1 && price != 0;
        vm.prank(voter);
        (bool done, bytes memory ret) = address(votes).call(abi.encodeCall(Votes.vote, (id, 5)));
        vm.assertEq(done, counts, "only paid licences bought from someone else vote");
        if (!done) vm.assertEq(ret, abi.encodeWithSelector(Votes.VotesNoLicense.selector, id, voter), "no licence");
    }

    /// A review counts its score exactly as a vote does (same weight, replaces the live vote) and needs
    /// the same licence; an empty CID or a score out of range is refused first.
    function testFuzz_review(uint8 score, uint256 price, bool votedFirst) public {
        price = bound(price, 1, 100 ether);
        uint256 id = _list(price);
        _deliver(_buy(buyer, id));
        if (votedFirst) {
            vm.prank(buyer);
            votes.vote(id, 1);
        }
        vm.prank(buyer);
        (bool done, bytes memory ret) = address(votes).call(abi.encodeCall(Votes.review, (id, score, CID_V1)));
        vm.assertEq(done, score >= 1 && score <= 5, "scores 1..5");
        if (!done) {
            return vm.assertEq(ret, abi.encodeWithSelector(Votes.VotesScoreOutOfRange.selector, score), "range");
        }
        (uint256 sum, uint256 weight, uint256 voters) = votes.scoreOf(id);
        vm.assertEq(sum, score * price, "weighted as a vote, replacing it");
        vm.assertEq(weight, price, "weight");
        vm.assertEq(voters, 1, "one voter");
        vm.assertEq(votes.voteOf(id, buyer), score, "the review's score is the live vote");
        _revertsWith(
            abi.encodeWithSelector(Votes.VotesEmptyCid.selector),
            address(votes),
            abi.encodeCall(Votes.review, (id, 3, ""))
        );
    }

    function test_reviewEmitsAndNeedsAVotingLicence() public {
        uint256 id = _list(PRICE);
        _deliver(_buy(buyer, id));
        vm.expectEmit(true, true, true, true, address(votes));
        emit Votes.Reviewed(id, buyer, 4, CID_V1);
        vm.prank(buyer);
        votes.review(id, 4, CID_V1);
        _deliver(_buy(seller, id)); // the owner's own licence holds no vote, hence no review
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesNoLicense.selector, id, seller));
        votes.review(id, 5, CID_V1);
    }

    /// Reports and feedback need access: a delivered licence or a live subscription.
    function testFuzz_accessGatesReportAndFeedback(uint8 how) public {
        uint256 id = _list(PRICE);
        how = uint8(bound(how, 0, 3)); // 0 nothing, 1 licence, 2 live subscription, 3 lapsed subscription
        if (how == 1) _deliver(_buy(buyer, id));
        if (how >= 2) {
            vm.prank(seller);
            registry.setSubscription(id, 1e15, 1 days);
            vm.deal(buyer, 1e15);
            vm.prank(buyer);
            market.subscribe{value: 1e15}(id, 1, 1e15);
            if (how == 3) vm.warp(block.timestamp + 1 days);
        }
        bool access = how == 1 || how == 2;
        bytes memory denied = abi.encodeWithSelector(Votes.VotesNoAccess.selector, id, buyer);
        vm.prank(buyer);
        (bool done, bytes memory ret) = address(votes).call(abi.encodeCall(Votes.report, (id, CID_V0)));
        vm.assertEq(done, access, "report needs access");
        if (!done) vm.assertEq(ret, denied, "report refused");
        vm.prank(buyer);
        (done, ret) = address(votes).call(abi.encodeCall(Votes.sendFeedback, (id, CID_V1)));
        vm.assertEq(done, access, "feedback needs access");
        if (!done) vm.assertEq(ret, denied, "feedback refused");
        vm.assertEq(votes.feedbackSender(id, CID_V1), access ? buyer : address(0), "sender recorded");
    }

    function test_reportEmitsAndRefusesAnEmptyCid() public {
        uint256 id = _list(PRICE);
        _deliver(_buy(buyer, id));
        vm.expectEmit(true, true, true, true, address(votes));
        emit Votes.Reported(id, buyer, CID_V0);
        vm.prank(buyer);
        votes.report(id, CID_V0);
        _revertsWith(
            abi.encodeWithSelector(Votes.VotesEmptyCid.selector), address(votes), abi.encodeCall(Votes.report, (id, ""))
        );
    }

    /// A feedback item is anchored once, withdrawn once, and only by its sender.
    function test_feedbackAnchorAndWithdraw() public {
        uint256 id = _list(PRICE);
        _deliver(_buy(buyer, id));
        address other = vm.addr(0x0DD);
        _deliver(_buy(other, id));
        _revertsWith(
            abi.encodeWithSelector(Votes.VotesEmptyCid.selector),
            address(votes),
            abi.encodeCall(Votes.sendFeedback, (id, ""))
        );
        vm.expectEmit(true, true, true, true, address(votes));
        emit Votes.FeedbackSent(id, buyer, CID_V1);
        vm.prank(buyer);
        votes.sendFeedback(id, CID_V1);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesFeedbackAlreadySent.selector, id, CID_V1, buyer));
        votes.sendFeedback(id, CID_V1);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesNotFeedbackSender.selector, id, CID_V1, other));
        votes.withdrawFeedback(id, CID_V1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesNotFeedbackSender.selector, id, CID_V0, buyer));
        votes.withdrawFeedback(id, CID_V0); // never sent
        vm.assertFalse(votes.feedbackWithdrawn(id, CID_V1), "not withdrawn yet");
        vm.expectEmit(true, true, true, true, address(votes));
        emit Votes.FeedbackWithdrawn(id, buyer, CID_V1);
        vm.prank(buyer);
        votes.withdrawFeedback(id, CID_V1);
        vm.assertTrue(votes.feedbackWithdrawn(id, CID_V1), "withdrawn");
        vm.assertEq(votes.feedbackSender(id, CID_V1), buyer, "its sender stays on record");
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesFeedbackAlreadyWithdrawn.selector, id, CID_V1));
        votes.withdrawFeedback(id, CID_V1);
    }
}
