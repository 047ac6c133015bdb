// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "../lib/Vm.sol";

/// @notice What every reference model of the campaign (World, ChannelsWorld) does around a contract call:
/// make it as an actor, compare the outcome with the rules' prediction, record a violation instead of
/// reverting (forge ignores an assertion that fails inside a handler), and count the outcomes reached.
abstract contract Ghost {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public violations;
    string public firstViolation;
    mapping(bytes32 => uint256) public reached; // how often each interesting outcome happened
    bytes32[] public reachedNames;

    function reachedCount() external view returns (uint256) {
        return reachedNames.length;
    }

    function _call(address actor, address target, uint256 value, bytes memory data)
        internal
        returns (bool done, bytes memory ret)
    {
        if (value != 0) vm.deal(actor, actor.balance + value);
        vm.prank(actor);
        (done, ret) = target.call{value: value}(data);
    }

    /// Whether the call went through as the model predicted; records a violation when not.
    function _check(bool done, bool expected, string memory what, bytes memory ret) internal returns (bool) {
        if (done != expected) {
            _fail(
                string.concat(
                    what,
                    done
                        ? ": went through, the rules say it must revert"
                        : ": reverted, the rules say it must go through: ",
                    done ? "" : vm.toString(ret)
                )
            );
        }
        return done && expected;
    }

    function _fail(string memory why) internal {
        if (violations == 0) firstViolation = why;
        violations += 1;
    }

    function _reach(bytes32 what) internal {
        if (reached[what] == 0) reachedNames.push(what);
        reached[what] += 1;
    }
}
