// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @notice What forge-std's Test gives these tests, kept to what they use: the cheatcode handle, `bound`,
/// and the functions forge 1.7.1 calls on an invariant test to learn which contracts, functions and
/// senders to fuzz (the same names and return types as forge-std's StdInvariant).
abstract contract TestBase {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    address[] private _targetedContracts;
    FuzzSelector[] private _targetedSelectors;
    address[] private _targetedSenders;

    /// @dev forge lists only contracts that answer IS_TEST (as forge-std's Test does).
    function IS_TEST() external pure returns (bool) {
        return true;
    }

    function targetContracts() external view returns (address[] memory) {
        return _targetedContracts;
    }

    function targetSelectors() external view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    function targetSenders() external view returns (address[] memory) {
        return _targetedSenders;
    }

    function _targetContract(address target) internal {
        _targetedContracts.push(target);
    }

    /// Adds `selectors` to those fuzzed on `target` (only they are called on it once any is listed).
    function _addSelectors(address target, bytes4[] memory selectors) internal {
        for (uint256 i = 0; i < _targetedSelectors.length; i++) {
            if (_targetedSelectors[i].addr != target) continue;
            for (uint256 j = 0; j < selectors.length; j++) {
                _targetedSelectors[i].selectors.push(selectors[j]);
            }
            return;
        }
        _targetedSelectors.push(FuzzSelector({addr: target, selectors: selectors}));
    }

    function _targetSender(address sender) internal {
        _targetedSenders.push(sender);
    }

    /// @dev `x` mapped into [lo, hi] (inclusive), uniformly enough for fuzzing; keeps small values as they are
    /// when they already fit, so the fuzzer's edge values (0, 1, hi) stay reachable.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo;
        if (size == type(uint256).max) return x;
        return lo + (x % (size + 1));
    }
}
