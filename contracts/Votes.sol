// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Marketplace} from "./Marketplace.sol";

/// @notice Recommendation votes: buyers score a model 1..5, one live vote per licence, weighted by the
/// price paid for it.
/// @dev Only a licence bought at a price above 0 from someone other than the model's owner votes
/// (`Marketplace.recordVote` checks, and keeps the voter's score in its licence record). Weighting by
/// price means a seller who buys its own model through other accounts to vote for it pays the
/// platform fee on every unit of weight it adds; one vote at a price of 1 wei weighs almost nothing.
/// The mean score is weightedSum / weight.
contract Votes {
    error VotesScoreOutOfRange(uint8 score);
    error VotesNoLicense(uint256 modelId, address voter);
    error VotesOnlyMarketplace(address caller);

    event Voted(uint256 indexed modelId, address indexed voter, uint8 score);
    event VoteDropped(uint256 indexed modelId, uint8 score, uint256 weight);

    struct Score {
        uint112 weightedSum; // sum of score * weight
        uint112 weight; // sum of the weights (wei paid) of the live votes
        uint32 voters;
    }

    Marketplace private immutable _marketplace;
    mapping(uint256 modelId => Score) private _scores;

    /// @param marketplace the Marketplace whose licences decide who may vote (it must `connectVotes(this)`).
    constructor(Marketplace marketplace) {
        _marketplace = marketplace;
    }

    /// @notice Score a model you bought (1..5); voting again replaces your vote. Emits {Voted}.
    function vote(uint256 modelId, uint8 score) external {
        if (score == 0 || score > 5) revert VotesScoreOutOfRange(score);
        (uint256 weight, uint8 previous) = _marketplace.recordVote(modelId, msg.sender, score);
        if (weight == 0) revert VotesNoLicense(modelId, msg.sender);
        if (previous != score) {
            Score storage s = _scores[modelId];
            // Checked: weights are wei actually paid, far below 2**112.
            if (previous == 0) {
                s.weightedSum += uint112(score * weight);
                s.weight += uint112(weight);
                s.voters += 1;
            } else {
                s.weightedSum = uint112(s.weightedSum - previous * weight + score * weight);
            }
        }
        emit Voted(modelId, msg.sender, score);
    }

    /// @notice Marketplace only: a licence holder was refunded, its vote no longer counts.
    /// Emits {VoteDropped}.
    function dropVote(uint256 modelId, uint8 score, uint256 weight) external {
        if (msg.sender != address(_marketplace)) revert VotesOnlyMarketplace(msg.sender);
        Score storage s = _scores[modelId];
        s.weightedSum -= uint112(score * weight);
        s.weight -= uint112(weight);
        s.voters -= 1;
        emit VoteDropped(modelId, score, weight);
    }

    /// @notice The weighted sum of the live scores, their total weight (wei paid) and the number of
    /// voters; the mean score is weightedSum / weight.
    function scoreOf(uint256 modelId) external view returns (uint256 weightedSum, uint256 weight, uint256 voters) {
        Score memory s = _scores[modelId];
        return (s.weightedSum, s.weight, s.voters);
    }

    /// @notice `voter`'s live score for the model (0 if none).
    function voteOf(uint256 modelId, address voter) external view returns (uint8) {
        return _marketplace.voteOf(modelId, voter);
    }

    function marketplace() external view returns (address) {
        return address(_marketplace);
    }
}
