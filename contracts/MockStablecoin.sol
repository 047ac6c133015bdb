// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @notice A test dollar for local chains: 6 decimals like USDC, EIP-2612 permits, and a faucet anyone may
/// call. `modex up` deploys it on its local chain only (node/deploy.py, param `stablecoin`) so that models
/// can be priced in a stablecoin there; it is worth nothing and must never be deployed on a public chain.
contract MockStablecoin is ERC20, ERC20Permit {
    error MockStablecoinMintTooLarge(uint256 amount, uint256 maxMint);

    /// The most one `mint` call may create: 1,000,000 mUSD.
    uint256 public constant MAX_MINT = 1_000_000 * 10 ** 6;

    constructor() ERC20("Modex Test Dollar", "mUSD") ERC20Permit("Modex Test Dollar") {}

    /// @notice The faucet: create `amount` (at most MAX_MINT) for `to`. Open to anyone, on purpose: this
    /// token exists only on local chains.
    function mint(address to, uint256 amount) external {
        if (amount > MAX_MINT) revert MockStablecoinMintTooLarge(amount, MAX_MINT);
        _mint(to, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
