// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {Votes} from "../../../contracts/Votes.sol";

/// @notice Test helper (never deployed outside tests): everything the stateful test compares with its
/// model, read through the suite's public views in ONE eth_call instead of hundreds of round trips.
contract Lens {
    uint256 private constant PER_ACCOUNT = 6;
    uint256 private constant PER_PURCHASE = 3;
    uint256 private constant PER_MODEL = 14;
    uint256 private constant PER_MODEL_ACCOUNT = 9;

    Marketplace private immutable _market;
    Votes private immutable _votes;
    Validators private immutable _validators;

    constructor(Marketplace market, Votes votes, Validators validators) {
        (_market, _votes, _validators) = (market, votes, validators);
    }

    /// @return out block.timestamp, the Marketplace's and Validators' ETH balances; per account
    /// Marketplace.credited, Validators.credited, stakeOf (4); per purchase id 1..lastPurchaseId status,
    /// deliveredAt, released; per model scoreOf (3), tally (3), status, roundOf (3), book (4), and per
    /// (model, account) hasLicense, voteOf, pendingValidatorReward, attestationOf (5) and whether a
    /// commitment is stored.
    function read(address[] calldata accounts, uint256 lastPurchaseId, uint256[] calldata models)
        external
        view
        returns (uint256[] memory out)
    {
        uint256 n = accounts.length;
        out = new uint256[](
            3 + PER_ACCOUNT * n + PER_PURCHASE * lastPurchaseId + models.length * (PER_MODEL + PER_MODEL_ACCOUNT * n)
        );
        uint256 k;
        out[k++] = block.timestamp;
        out[k++] = address(_market).balance;
        out[k++] = address(_validators).balance;
        for (uint256 i = 0; i < n; ++i) {
            out[k++] = _market.credited(accounts[i]);
            out[k++] = _validators.credited(accounts[i]);
            (out[k], out[k + 1], out[k + 2], out[k + 3]) = _validators.stakeOf(accounts[i]);
            k += 4;
        }
        for (uint256 id = 1; id <= lastPurchaseId; ++id) {
            (,,,, uint8 status,, uint256 deliveredAt, bool released) = _market.purchase(id);
            out[k++] = status;
            out[k++] = deliveredAt;
            out[k++] = released ? 1 : 0;
        }
        for (uint256 j = 0; j < models.length; ++j) {
            k = _model(out, k, models[j]);
            for (uint256 i = 0; i < n; ++i) {
                k = _seat(out, k, models[j], accounts[i]);
            }
        }
    }

    function _model(uint256[] memory out, uint256 k, uint256 m) private view returns (uint256) {
        (out[k], out[k + 1], out[k + 2]) = _votes.scoreOf(m);
        (out[k + 3], out[k + 4], out[k + 5]) = _validators.tally(m);
        out[k + 6] = _validators.status(m);
        uint64 commitEnd;
        uint64 revealEnd;
        (out[k + 7], commitEnd, revealEnd) = _validators.roundOf(m);
        (out[k + 8], out[k + 9]) = (commitEnd, revealEnd);
        bool disputed;
        (out[k + 10], disputed, out[k + 12], out[k + 13]) = _market.book(m);
        out[k + 11] = disputed ? 1 : 0;
        return k + PER_MODEL;
    }

    function _seat(uint256[] memory out, uint256 k, uint256 m, address a) private view returns (uint256) {
        out[k] = _market.hasLicense(m, a) ? 1 : 0;
        out[k + 1] = _votes.voteOf(m, a);
        out[k + 2] = _market.pendingValidatorReward(m, a);
        uint8 state;
        uint8 says;
        (state, out[k + 4], says, out[k + 6], out[k + 7]) = _validators.attestationOf(m, a);
        (out[k + 3], out[k + 5]) = (state, says);
        out[k + 8] = _validators.commitmentOf(m, a) != bytes32(0) ? 1 : 0;
        return k + PER_MODEL_ACCOUNT;
    }
}
