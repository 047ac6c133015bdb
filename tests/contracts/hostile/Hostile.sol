// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A test-only account that misbehaves on receiving ETH: it can reject it, or call back into
/// a contract (re-entry) and either swallow or propagate the result. It acts through `exec`.
contract Hostile {
    address private immutable _owner;
    bool public acceptEth = true;
    address public reentryTarget;
    bytes public reentryData;
    bool public propagate;
    uint256 public received;
    uint256 public reentryAttempts;
    bool public lastReentryOk;
    bytes public lastReentryResult;

    constructor() {
        _owner = msg.sender;
    }

    function setAcceptEth(bool accept) external {
        acceptEth = accept;
    }

    /// @notice On the next receipts of ETH, call `target` with `data`; revert with its error if `propagate_`.
    function setReentry(address target, bytes calldata data, bool propagate_) external {
        reentryTarget = target;
        reentryData = data;
        propagate = propagate_;
    }

    /// @notice Act as this contract: call `target` with `data` and `value` (forwarding any revert).
    function exec(address target, bytes calldata data, uint256 value) external payable returns (bytes memory) {
        require(msg.sender == _owner, "Hostile: not owner");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        require(acceptEth, "Hostile: rejecting ETH");
        received += msg.value;
        if (reentryTarget != address(0)) {
            reentryAttempts += 1;
            (bool ok, bytes memory ret) = reentryTarget.call(reentryData);
            lastReentryOk = ok;
            lastReentryResult = ret;
            if (!ok && propagate) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
    }
}
