// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Marketplace} from "./Marketplace.sol";

/// @notice Recommendation votes: licence holders score a model 1..5; one live vote per (voter, model).
contract Votes {
    error VotesScoreOutOfRange(uint8 score);
    error VotesNoLicense(uint256 modelId, address voter);

    event Voted(uint256 indexed modelId, address indexed voter, uint8 score);

    struct Score {
        uint128 sum;
        uint128 count;
    }

    Marketplace private immutable _marketplace;
    mapping(uint256 modelId => Score) private _scores;
    mapping(uint256 modelId => mapping(address voter => uint8)) private _votes;

    /// @param marketplace the Marketplace whose `hasLicense` decides who may vote.
    constructor(Marketplace marketplace) {
        _marketplace = marketplace;
    }

    /// @notice Score a model you hold a licence for (1..5); voting again replaces your vote.
    /// Emits {Voted}.
    function vote(uint256 modelId, uint8 score) external {
        if (score == 0 || score > 5) revert VotesScoreOutOfRange(score);
        if (!_marketplace.hasLicense(modelId, msg.sender)) revert VotesNoLicense(modelId, msg.sender);
        uint8 previous = _votes[modelId][msg.sender];
        if (previous == score) {
            emit Voted(modelId, msg.sender, score);
            return;
        }
        _votes[modelId][msg.sender] = score;
        Score storage s = _scores[modelId];
        // Sums of at most 5 per voter cannot overflow uint128; previous was added before it is removed.
        unchecked {
            if (previous == 0) {
                s.sum += score;
                s.count += 1;
            } else {
                s.sum = s.sum - previous + score;
            }
        }
        emit Voted(modelId, msg.sender, score);
    }

    /// @notice Sum and number of live votes; the mean score is sum / count.
    function scoreOf(uint256 modelId) external view returns (uint256 sum, uint256 count) {
        Score memory s = _scores[modelId];
        return (s.sum, s.count);
    }

    /// @notice `voter`'s live score for the model (0 if none).
    function voteOf(uint256 modelId, address voter) external view returns (uint8) {
        return _votes[modelId][voter];
    }

    function marketplace() external view returns (address) {
        return address(_marketplace);
    }
}
