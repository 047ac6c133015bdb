// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice An account that re-enters whoever pays it: on every ETH receipt it calls back into the payer's
/// value-moving functions (Marketplace.withdraw, Validators.unstake / withdraw), each of which must refuse
/// (ReentrancyGuardTransient), and it reads its own balance there while the transfer runs, which must
/// already be zero (state written before the call). The World counts what it saw.
contract ReenteringReceiver {
    Marketplace public immutable market;
    Validators public immutable validators;
    uint256 public receipts;
    uint256 public reentered; // re-entrant calls that went through (must stay 0)
    uint256 public staleReads; // a balance still showing during its own transfer (must stay 0)

    constructor(Marketplace market_, Validators validators_) {
        market = market_;
        validators = validators_;
    }

    receive() external payable {
        receipts += 1;
        if (msg.sender == address(market)) {
            if (market.credited(address(this)) != 0) staleReads += 1;
            try market.withdraw() {
                reentered += 1;
            } catch {}
        } else if (msg.sender == address(validators)) {
            (uint256 amount,,,) = validators.stakeOf(address(this)); // only unstake pays this account here
            if (amount != 0) staleReads += 1;
            try validators.unstake() {
                reentered += 1;
            } catch {}
            try validators.withdraw() {
                reentered += 1;
            } catch {}
        }
    }

    function onERC721Received(address, address, uint256, bytes calldata) external pure returns (bytes4) {
        return this.onERC721Received.selector;
    }
}

/// @notice An account that refuses ETH (and ERC-721 safe transfers: it has no onERC721Received).
/// Its withdrawals must fail as a whole and leave what it is owed credited.
contract EthRejecter {
    receive() external payable {
        revert("EthRejecter: no ETH");
    }
}

/// @notice The campaign's ERC-20: 6 decimals like the stablecoin `modex up` deploys, and a mint without a cap
/// (MockStablecoin caps one mint at 1,000,000 mUSD; the campaign's prices reach 2^80 base units).
contract CampaignToken is ERC20 {
    constructor() ERC20("Campaign Dollar", "cUSD") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
