// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface ILensMarket {
    function credited(address account) external view returns (uint256);
    function purchase(uint256 purchaseId)
        external
        view
        returns (address account, uint256 modelId, uint256 price, uint256 deadline, uint8 status, bool forValidator);
    function hasLicense(uint256 modelId, address account) external view returns (bool);
    function pendingValidatorReward(uint256 modelId, address validator) external view returns (uint256);
}

interface ILensVotes {
    function scoreOf(uint256 modelId) external view returns (uint256 sum, uint256 count);
    function voteOf(uint256 modelId, address voter) external view returns (uint8);
}

interface ILensValidators {
    function credited(address account) external view returns (uint256);
    function stakeOf(address validator) external view returns (uint256 amount, uint256 unlockAt);
    function tally(uint256 modelId) external view returns (uint256 agree, uint256 disagree);
    function status(uint256 modelId) external view returns (uint8);
}

/// @notice Test helper (never deployed outside tests): everything the stateful test compares with its
/// model, read through the suite's public views in ONE eth_call instead of dozens of round trips.
contract Lens {
    /// @return out block.timestamp, the Marketplace's and Validators' ETH balances, then per account
    /// Marketplace.credited, Validators.credited and the stake (amount, unlockAt); then for purchase
    /// ids 1..lastPurchaseId the status; then per model scoreOf (sum, count), tally (agree, disagree),
    /// status, and per (model, account) Marketplace.hasLicense, Votes.voteOf and pendingValidatorReward.
    function read(
        ILensMarket market,
        ILensVotes votes,
        ILensValidators validators,
        address[] calldata accounts,
        uint256 lastPurchaseId,
        uint256[] calldata models
    ) external view returns (uint256[] memory out) {
        uint256 n = accounts.length;
        out = new uint256[](3 + 4 * n + lastPurchaseId + models.length * (5 + 3 * n));
        uint256 k;
        out[k++] = block.timestamp;
        out[k++] = address(market).balance;
        out[k++] = address(validators).balance;
        for (uint256 i = 0; i < n; ++i) {
            out[k++] = market.credited(accounts[i]);
            out[k++] = validators.credited(accounts[i]);
            (out[k], out[k + 1]) = validators.stakeOf(accounts[i]);
            k += 2;
        }
        for (uint256 id = 1; id <= lastPurchaseId; ++id) {
            (,,,, uint8 status,) = market.purchase(id);
            out[k++] = status;
        }
        for (uint256 j = 0; j < models.length; ++j) {
            uint256 m = models[j];
            (out[k], out[k + 1]) = votes.scoreOf(m);
            (out[k + 2], out[k + 3]) = validators.tally(m);
            out[k + 4] = validators.status(m);
            k += 5;
            for (uint256 i = 0; i < n; ++i) {
                out[k++] = market.hasLicense(m, accounts[i]) ? 1 : 0;
                out[k++] = votes.voteOf(m, accounts[i]);
                out[k++] = market.pendingValidatorReward(m, accounts[i]);
            }
        }
    }
}
