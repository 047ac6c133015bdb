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
}
