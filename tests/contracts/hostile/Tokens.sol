// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only ERC-20s that misbehave the ways real tokens do, for the Marketplace's token paths.
/// Each has an open `mint` so that a test can fund its buyers.

/// @notice Keeps 1 % of every transfer (a fee on transfer): the receiver gets less than was sent.
contract FeeOnTransferToken is ERC20 {
    constructor() ERC20("Fee Token", "FEE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) return super._update(from, to, value);
        uint256 fee = value / 100;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @notice USDT-style: `transfer`, `transferFrom` and `approve` return nothing (a plain `IERC20` call to
/// them reverts when decoding the missing bool; SafeERC20 accepts them).
contract NoBoolToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) external {
        require(allowance[from][msg.sender] >= amount, "NoBoolToken: allowance");
        allowance[from][msg.sender] -= amount;
        _move(from, to, amount);
    }

    function _move(address from, address to, uint256 amount) private {
        require(balanceOf[from] >= amount, "NoBoolToken: balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// @notice Works until `setBroken(true)`; then every transfer reverts (a paused or blacklisting token).
contract RevertingToken is ERC20 {
    bool public broken;

    constructor() ERC20("Broken Token", "BRK") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBroken(bool broken_) external {
        broken = broken_;
    }

    function _update(address from, address to, uint256 value) internal override {
        require(!broken, "RevertingToken: broken");
        super._update(from, to, value);
    }
}

/// @notice Calls `target` with `data` from inside every transfer between two accounts (as an ERC-777 hook
/// or a malicious token would), then either swallows the callee's revert or propagates it.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public data;
    bool public propagate;
    uint256 public attempts;
    bool public lastOk;
    bytes public lastResult;

    constructor() ERC20("Reentrant Token", "REE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice On the next transfers, call `target_` with `data_` (address(0) stops it).
    function setReentry(address target_, bytes calldata data_, bool propagate_) external {
        (target, data, propagate) = (target_, data_, propagate_);
    }

    /// @notice Act as this token (e.g. to hold a Marketplace credit and withdraw it).
    function exec(address to, bytes calldata call) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(call);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target == address(0) || from == address(0) || to == address(0)) return;
        attempts += 1;
        (bool ok, bytes memory ret) = target.call(data);
        (lastOk, lastResult) = (ok, ret);
        if (!ok && propagate) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
