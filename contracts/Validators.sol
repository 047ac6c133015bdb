// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {Marketplace} from "./Marketplace.sol";

/// @notice Staked validators attest model hashes; a quorum settles a model as Verified or Disputed.
/// @dev Each staked validator attests a model at most once, and only while it is unsettled. When
/// `quorum` attestations agree with the listed modelHash the model is Verified (those validators are
/// its verifiers and share its sales fees through the Marketplace); when `quorum` disagree it is
/// Disputed (the Marketplace stops selling it). Attestations on the losing side can then be slashed by
/// anyone: `slashBps` of the validator's stake goes to the treasury's withdrawable balance here.
contract Validators is ReentrancyGuardTransient {
    error ValidatorsStakeTooLow(uint256 stake, uint256 minStake);
    error ValidatorsUnstakePending(address validator, uint256 unlockAt);
    error ValidatorsNotStaked(address validator);
    error ValidatorsUnstakeNotRequested(address validator);
    error ValidatorsStillLocked(address validator, uint256 unlockAt, uint256 now_);
    error ValidatorsNotActive(address validator);
    error ValidatorsAlreadyAttested(uint256 modelId, address validator);
    error ValidatorsAlreadySettled(uint256 modelId, uint8 status);
    error ValidatorsNotSettled(uint256 modelId);
    error ValidatorsNotSlashable(uint256 modelId, address validator);
    error ValidatorsNothingToWithdraw(address account);
    error ValidatorsTransferFailed(address account, uint256 amount);
    error ValidatorsBadConfig(string what);

    event Staked(address indexed validator, uint256 amount, uint256 total);
    event UnstakeRequested(address indexed validator, uint256 unlockAt);
    event Unstaked(address indexed validator, uint256 amount);
    event Attested(
        uint256 indexed modelId, address indexed validator, bytes32 observedHash, bytes32 metricsDigest, bool matches
    );
    event StatusChanged(uint256 indexed modelId, uint8 status);
    event Slashed(uint256 indexed modelId, address indexed validator, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    uint8 public constant STATUS_UNVERIFIED = 0;
    uint8 public constant STATUS_VERIFIED = 1;
    uint8 public constant STATUS_DISPUTED = 2;

    struct StakeInfo {
        uint96 amount;
        uint40 unlockAt; // 0 while active; set by requestUnstake
    }

    struct Tally {
        uint32 agree;
        uint32 disagree;
        uint8 status;
    }

    struct Attestation {
        bool attested;
        bool matches;
        bool slashed;
    }

    ModelRegistry private immutable _registry;
    Marketplace private immutable _marketplace;
    uint256 private immutable _minStake;
    uint256 private immutable _quorum;
    uint256 private immutable _unstakeDelay;
    uint256 private immutable _slashBps;
    address private immutable _treasury;
    mapping(address validator => StakeInfo) private _stakes;
    mapping(uint256 modelId => Tally) private _tallies;
    mapping(uint256 modelId => mapping(address validator => Attestation)) private _attestations;
    mapping(address account => uint256) private _credited;

    /// @param registry the ModelRegistry whose modelHash attestations are compared with.
    /// @param marketplace told of each settled model (it must then `connectValidators(this)`).
    /// @param minStake the least stake (wei) that lets an account attest and request keys.
    /// @param quorum attestations on one side that settle a model.
    /// @param unstakeDelay seconds between `requestUnstake` and `unstake` (the window to slash in).
    /// @param slashBps basis points of the stake taken from a validator on the losing side.
    /// @param treasury credited with slashed stake.
    constructor(
        ModelRegistry registry,
        Marketplace marketplace,
        uint256 minStake,
        uint256 quorum,
        uint256 unstakeDelay,
        uint256 slashBps,
        address treasury
    ) {
        if (address(registry) == address(0) || address(marketplace) == address(0) || treasury == address(0)) {
            revert ValidatorsBadConfig("zero address");
        }
        if (minStake == 0 || minStake > type(uint96).max) revert ValidatorsBadConfig("minStake");
        if (quorum == 0 || quorum > type(uint32).max) revert ValidatorsBadConfig("quorum");
        if (unstakeDelay > type(uint32).max) revert ValidatorsBadConfig("unstakeDelay");
        if (slashBps > 10_000) revert ValidatorsBadConfig("slashBps");
        _registry = registry;
        _marketplace = marketplace;
        _minStake = minStake;
        _quorum = quorum;
        _unstakeDelay = unstakeDelay;
        _slashBps = slashBps;
        _treasury = treasury;
    }

    /// @notice Add `msg.value` to the caller's stake; the total must reach `minStake`. Emits {Staked}.
    function stake() external payable {
        StakeInfo storage s = _stakes[msg.sender];
        if (s.unlockAt != 0) revert ValidatorsUnstakePending(msg.sender, s.unlockAt);
        uint256 total = s.amount + msg.value;
        if (total < _minStake || total > type(uint96).max) revert ValidatorsStakeTooLow(total, _minStake);
        s.amount = uint96(total);
        emit Staked(msg.sender, msg.value, total);
    }

    /// @notice Stop validating; the stake can be taken back with `unstake` after `unstakeDelay`.
    /// Emits {UnstakeRequested}.
    function requestUnstake() external {
        StakeInfo storage s = _stakes[msg.sender];
        if (s.amount == 0) revert ValidatorsNotStaked(msg.sender);
        if (s.unlockAt != 0) revert ValidatorsUnstakePending(msg.sender, s.unlockAt);
        uint256 unlockAt = block.timestamp + _unstakeDelay;
        s.unlockAt = uint40(unlockAt);
        emit UnstakeRequested(msg.sender, unlockAt);
    }

    /// @notice Send the caller's whole remaining stake back, once the delay has passed. Emits {Unstaked}.
    function unstake() external nonReentrant {
        StakeInfo memory s = _stakes[msg.sender];
        if (s.amount == 0) revert ValidatorsNotStaked(msg.sender);
        if (s.unlockAt == 0) revert ValidatorsUnstakeNotRequested(msg.sender);
        if (block.timestamp < s.unlockAt) revert ValidatorsStillLocked(msg.sender, s.unlockAt, block.timestamp);
        delete _stakes[msg.sender];
        (bool ok,) = payable(msg.sender).call{value: s.amount}("");
        if (!ok) revert ValidatorsTransferFailed(msg.sender, s.amount);
        emit Unstaked(msg.sender, s.amount);
    }

    /// @notice Report the hash the caller computed for a listed model (and a digest of its metrics).
    /// Active validators only, once per model, while the model is unsettled. Emits {Attested}, and
    /// {StatusChanged} when this attestation completes a quorum.
    function attest(uint256 modelId, bytes32 observedHash, bytes32 metricsDigest) external {
        if (!isActiveValidator(msg.sender)) revert ValidatorsNotActive(msg.sender);
        Tally memory t = _tallies[modelId];
        if (t.status != STATUS_UNVERIFIED) revert ValidatorsAlreadySettled(modelId, t.status);
        Attestation storage a = _attestations[modelId][msg.sender];
        if (a.attested) revert ValidatorsAlreadyAttested(modelId, msg.sender);
        bool matches = _registry.modelHash(modelId) == observedHash;

        a.attested = true;
        a.matches = matches;
        // A tally cannot overflow: it stops at quorum, which fits uint32.
        unchecked {
            if (matches) ++t.agree;
            else ++t.disagree;
        }
        uint8 status = STATUS_UNVERIFIED;
        if (t.agree >= _quorum) status = STATUS_VERIFIED;
        else if (t.disagree >= _quorum) status = STATUS_DISPUTED;
        t.status = status;
        _tallies[modelId] = t;
        emit Attested(modelId, msg.sender, observedHash, metricsDigest, matches);
        if (status != STATUS_UNVERIFIED) {
            emit StatusChanged(modelId, status);
            _marketplace.recordVerdict(modelId, status == STATUS_VERIFIED, _quorum);
        }
    }

    /// @notice Slash a validator whose attestation is on the losing side of a settled model (anyone may
    /// call). Takes `slashBps` of its current stake, once per (model, validator); a stake slashed to
    /// nothing is cleared (the account may stake again at once). Emits {Slashed}.
    function slash(uint256 modelId, address validator) external {
        uint8 status = _tallies[modelId].status;
        if (status == STATUS_UNVERIFIED) revert ValidatorsNotSettled(modelId);
        Attestation storage a = _attestations[modelId][validator];
        if (!a.attested || a.slashed || a.matches == (status == STATUS_VERIFIED)) {
            revert ValidatorsNotSlashable(modelId, validator);
        }
        a.slashed = true;
        StakeInfo storage s = _stakes[validator];
        uint256 amount = (uint256(s.amount) * _slashBps) / 10_000;
        uint96 left = s.amount - uint96(amount);
        // Nothing left (slashBps 10,000): no stake to wait for, so the account is no longer "leaving"
        // (a kept unlockAt with amount 0 would make stake() refuse it forever and unstake() have nothing).
        if (left == 0) delete _stakes[validator];
        else s.amount = left;
        _credited[_treasury] += amount;
        emit Slashed(modelId, validator, amount);
    }

    /// @notice Send the caller what was credited to it here (the treasury's slashed stake).
    /// Emits {Withdrawn}.
    function withdraw() external nonReentrant {
        uint256 amount = _credited[msg.sender];
        if (amount == 0) revert ValidatorsNothingToWithdraw(msg.sender);
        _credited[msg.sender] = 0;
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert ValidatorsTransferFailed(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Staked at least `minStake` and not leaving.
    function isActiveValidator(address account) public view returns (bool) {
        StakeInfo memory s = _stakes[account];
        // unlockAt == 0 is the "not leaving" sentinel, not a balance compared for equality.
        // slither-disable-next-line incorrect-equality
        return s.unlockAt == 0 && s.amount >= _minStake;
    }

    /// @notice One of the validators whose agreeing attestations verified the model.
    function isVerifier(uint256 modelId, address account) external view returns (bool) {
        Attestation memory a = _attestations[modelId][account];
        return a.matches && _tallies[modelId].status == STATUS_VERIFIED;
    }

    /// @notice 0 = unverified, 1 = verified, 2 = disputed.
    function status(uint256 modelId) external view returns (uint8) {
        return _tallies[modelId].status;
    }

    /// @notice Attestations so far that agree / disagree with the listed modelHash.
    function tally(uint256 modelId) external view returns (uint256 agree, uint256 disagree) {
        Tally memory t = _tallies[modelId];
        return (t.agree, t.disagree);
    }

    function attestationOf(uint256 modelId, address validator)
        external
        view
        returns (bool attested, bool matches, bool slashed)
    {
        Attestation memory a = _attestations[modelId][validator];
        return (a.attested, a.matches, a.slashed);
    }

    /// @notice The stake and, once requested, when it can be taken back (0 while active).
    function stakeOf(address validator) external view returns (uint256 amount, uint256 unlockAt) {
        StakeInfo memory s = _stakes[validator];
        return (s.amount, s.unlockAt);
    }

    /// @notice Wei that `account` can withdraw from this contract now.
    function credited(address account) external view returns (uint256) {
        return _credited[account];
    }

    function minStake() external view returns (uint256) {
        return _minStake;
    }

    function quorum() external view returns (uint256) {
        return _quorum;
    }

    function unstakeDelay() external view returns (uint256) {
        return _unstakeDelay;
    }

    function slashBps() external view returns (uint256) {
        return _slashBps;
    }

    function treasury() external view returns (address) {
        return _treasury;
    }

    function registry() external view returns (address) {
        return address(_registry);
    }

    function marketplace() external view returns (address) {
        return address(_marketplace);
    }
}
