// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Marketplace} from "./Marketplace.sol";

/// @notice Recommendation votes: licence holders score a model 1..5; one live vote per (voter, model).
/// @dev Each voter's score is stored in its licence record in the Marketplace (`recordVote`, which also
/// checks the licence), so a first vote writes one fresh slot here (the model's sum/count), not two.
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

    /// @param marketplace the Marketplace whose licences decide who may vote (it must `connectVotes(this)`).
    constructor(Marketplace marketplace) {
        _marketplace = marketplace;
    }

    /// @notice Score a model you hold a licence for (1..5); voting again replaces your vote.
    /// Emits {Voted}.
    function vote(uint256 modelId, uint8 score) external {
        if (score == 0 || score > 5) revert VotesScoreOutOfRange(score);
        (bool licensed, uint8 previous) = _marketplace.recordVote(modelId, msg.sender, score);
        if (!licensed) revert VotesNoLicense(modelId, msg.sender);
        if (previous == score) {
            emit Voted(modelId, msg.sender, score);
            return;
        }
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
        return _marketplace.voteOf(modelId, voter);
    }

    function marketplace() external view returns (address) {
        return address(_marketplace);
    }
}
