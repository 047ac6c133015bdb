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
///
/// Beside the score: a review (the score counted as `vote` counts it, with the CID of a signed review
/// document), a report by an account with access to the model (a licence or a live subscription,
/// `Marketplace.hasAccess`), and the on-chain anchor of private feedback: the CID of an item encrypted
/// to the seller, sent by an account with access and withdrawable only by its sender. The documents
/// themselves live in IPFS; only their CIDs are here.
contract Votes {
    error VotesScoreOutOfRange(uint8 score);
    error VotesNoLicense(uint256 modelId, address voter);
    error VotesOnlyMarketplace(address caller);
    error VotesNoAccess(uint256 modelId, address account);
    error VotesEmptyCid();
    error VotesFeedbackAlreadySent(uint256 modelId, string itemCid, address sender);
    error VotesNotFeedbackSender(uint256 modelId, string itemCid, address caller);
    error VotesFeedbackAlreadyWithdrawn(uint256 modelId, string itemCid);

    event Voted(uint256 indexed modelId, address indexed voter, uint8 score);
    event VoteDropped(uint256 indexed modelId, uint8 score, uint256 weight);
    event Reviewed(uint256 indexed modelId, address indexed reviewer, uint8 score, string reviewCid);
    event Reported(uint256 indexed modelId, address indexed reporter, string reasonCid);
    event FeedbackSent(uint256 indexed modelId, address indexed sender, string itemCid);
    event FeedbackWithdrawn(uint256 indexed modelId, address indexed sender, string itemCid);

    struct Score {
        uint112 weightedSum; // sum of score * weight
        uint112 weight; // sum of the weights (wei paid) of the live votes
        uint32 voters;
    }

    struct Feedback {
        address sender;
        bool withdrawn;
    }

    Marketplace private immutable _marketplace;
    mapping(uint256 modelId => Score) private _scores;
    mapping(uint256 modelId => mapping(bytes32 itemCidHash => Feedback)) private _feedback;

    /// @param marketplace the Marketplace whose licences decide who may vote (it must `connectVotes(this)`).
    constructor(Marketplace marketplace) {
        _marketplace = marketplace;
    }

    /// @notice Score a model you bought (1..5); voting again replaces your vote. Emits {Voted}.
    function vote(uint256 modelId, uint8 score) external {
        _count(modelId, score);
        emit Voted(modelId, msg.sender, score);
    }

    /// @notice Review a model you bought: the score (1..5) counts exactly as `vote` counts it (and
    /// replaces your live vote); `reviewCid` names the review document signed by you (IPFS).
    /// Emits {Reviewed}.
    function review(uint256 modelId, uint8 score, string calldata reviewCid) external {
        if (bytes(reviewCid).length == 0) revert VotesEmptyCid();
        _count(modelId, score);
        emit Reviewed(modelId, msg.sender, score, reviewCid);
    }

    /// @notice Report a model you have access to (a licence or a live subscription); `reasonCid`
    /// names the reason document (IPFS). Emits {Reported}.
    function report(uint256 modelId, string calldata reasonCid) external {
        if (bytes(reasonCid).length == 0) revert VotesEmptyCid();
        _requireAccess(modelId);
        emit Reported(modelId, msg.sender, reasonCid);
    }

    /// @notice Anchor a private feedback item (ciphertext for the seller, in IPFS) for a model you
    /// have access to; each item CID is anchored once per model. Emits {FeedbackSent}.
    function sendFeedback(uint256 modelId, string calldata itemCid) external {
        if (bytes(itemCid).length == 0) revert VotesEmptyCid();
        _requireAccess(modelId);
        Feedback storage item = _feedback[modelId][keccak256(bytes(itemCid))];
        if (item.sender != address(0)) revert VotesFeedbackAlreadySent(modelId, itemCid, item.sender);
        item.sender = msg.sender;
        emit FeedbackSent(modelId, msg.sender, itemCid);
    }

    /// @notice Its sender only: withdraw consent to a feedback item (the seller's loop skips it).
    /// Emits {FeedbackWithdrawn}.
    function withdrawFeedback(uint256 modelId, string calldata itemCid) external {
        Feedback storage item = _feedback[modelId][keccak256(bytes(itemCid))];
        if (item.sender != msg.sender) revert VotesNotFeedbackSender(modelId, itemCid, msg.sender);
        if (item.withdrawn) revert VotesFeedbackAlreadyWithdrawn(modelId, itemCid);
        item.withdrawn = true;
        emit FeedbackWithdrawn(modelId, msg.sender, itemCid);
    }

    /// @notice Who anchored the feedback item (the zero address: nobody).
    function feedbackSender(uint256 modelId, string calldata itemCid) external view returns (address) {
        return _feedback[modelId][keccak256(bytes(itemCid))].sender;
    }

    /// @notice Whether the feedback item's sender withdrew it.
    function feedbackWithdrawn(uint256 modelId, string calldata itemCid) external view returns (bool) {
        return _feedback[modelId][keccak256(bytes(itemCid))].withdrawn;
    }

    /// The one path a score takes (`vote` and `review`): the licence rule, then the running sums.
    function _count(uint256 modelId, uint8 score) private {
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
    }

    function _requireAccess(uint256 modelId) private view {
        if (!_marketplace.hasAccess(modelId, msg.sender)) revert VotesNoAccess(modelId, msg.sender);
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
