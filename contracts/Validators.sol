// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {Marketplace} from "./Marketplace.sol";

/// @notice Staked validators re-check listed models in commit–reveal rounds; the stake-weighted
/// majority of what they reveal settles a model as Verified, MetricsDisputed or Disputed.
/// @dev A validator's part in one model is a *seat*, opened when it asks the Marketplace for the
/// model's key (`keyRequested`, a request bond is taken from its free stake) and closed by `release`.
/// Only a seat whose key was delivered may commit; a commit bonds `bondBps` of a minimum stake per
/// unit of weight (weight = whole minimum stakes held) until the seat is released. A round opens with
/// the first commit on an unsettled model; reveals open when commits close, so nobody can copy a
/// reveal into a commit. After the reveal period anyone settles the round: when the revealed weight
/// reaches `quorum` and one outcome has more than half of it, that outcome is final; otherwise the
/// next commit opens a new round. `release` returns a seat's bonds, or gives them to the treasury:
/// the commit bond of an attestation on the losing side, and the bonds of a validator that held the
/// key and did not reveal in the deciding round (keys are delivered only while commits are open, so
/// every key holder could have). A validator with open seats cannot ask to unstake, so no bond leaves
/// before its round is settled and the seat released.
/// A validator (the cold wallet holding the stake) may name one attester (a hot key, as coldkeys and
/// hotkeys in Bittensor) with `setAttester`: it requests keys (`Marketplace.requestValidatorKeyFor`) and
/// commits and reveals (`commitAttestationFor`, `revealAttestationFor`) for that validator only. Seats,
/// weights, bonds, forfeits and rewards stay the validator's; the attester can never stake, unstake,
/// withdraw, claim to itself or change the attester.
/// Versions (ModelRegistry.publishVersion): validation runs in cycles, one per version validated. A
/// cycle attests one version, the latest when its first key was requested (`attestedVersion`); every
/// round compares reveals with that version's hash and claim (`ModelRegistry.attestationTargetOf`), so
/// a version published meanwhile neither disturbs the rounds nor inherits their outcome. Once a cycle
/// settles Verified, the next key request after the owner published a later version opens a new cycle
/// for the latest version ({ValidationOpened}), with seats, rounds and bonds of its own; any other
/// outcome is final (the Marketplace stops the model's sales). The functions that take a model id act
/// on its current cycle; `statusAt`, `attestationAt`, `verifierWeightAt` and `releaseAt` take a
/// version too, for the cycles before.
contract Validators is ReentrancyGuardTransient {
    error ValidatorsStakeTooLow(uint256 stake, uint256 minStake);
    error ValidatorsUnstakePending(address validator, uint256 unlockAt);
    error ValidatorsNotStaked(address validator);
    error ValidatorsUnstakeNotRequested(address validator);
    error ValidatorsStillLocked(address validator, uint256 unlockAt, uint256 now_);
    error ValidatorsOpenSeats(address validator, uint256 openSeats);
    error ValidatorsNotActive(address validator);
    error ValidatorsTooManyOpenRequests(address validator, uint256 maxOpenRequests);
    error ValidatorsStakeBonded(address validator, uint256 free, uint256 needed);
    error ValidatorsAlreadySettled(uint256 modelId, uint8 status);
    error ValidatorsAlreadyRequested(uint256 modelId, address validator);
    error ValidatorsNoKey(uint256 modelId, address validator);
    error ValidatorsZeroCommitment();
    error ValidatorsCommitClosed(uint256 modelId, uint256 commitEnd);
    error ValidatorsRoundNotSettled(uint256 modelId, uint256 revealEnd);
    error ValidatorsNothingToReveal(uint256 modelId, address validator);
    error ValidatorsRevealNotOpen(uint256 modelId, uint256 commitEnd);
    error ValidatorsRevealClosed(uint256 modelId, uint256 revealEnd);
    error ValidatorsRevealMismatch(uint256 modelId, address validator);
    error ValidatorsNoRound(uint256 modelId);
    error ValidatorsRevealOpen(uint256 modelId, uint256 revealEnd);
    error ValidatorsNothingToRelease(uint256 modelId, address validator);
    error ValidatorsSeatInUse(uint256 modelId, address validator, uint8 seatState);
    error ValidatorsOnlyMarketplace(address caller);
    error ValidatorsNothingToWithdraw(address account);
    error ValidatorsTransferFailed(address account, uint256 amount);
    error ValidatorsBadConfig(string what);
    error ValidatorsNotAttester(address validator, address caller);
    error ValidatorsAttesterIsValidator(address attester);
    error ValidatorsAttesterTaken(address attester, address validator);
    error ValidatorsIsAttester(address account, address validator);

    event Staked(address indexed validator, uint256 amount, uint256 total);
    event UnstakeRequested(address indexed validator, uint256 unlockAt);
    event Unstaked(address indexed validator, uint256 amount);
    event RoundOpened(uint256 indexed modelId, uint256 round, uint64 commitEnd, uint64 revealEnd);
    event AttestationCommitted(uint256 indexed modelId, address indexed validator, bytes32 commitment);
    /// @dev `matches`: the observed hash is the listed one. Whether the work digest is the seller's
    /// claim is `workDigest == ModelRegistry.claimedWorkDigest(modelId)`.
    event Attested(
        uint256 indexed modelId, address indexed validator, bytes32 observedHash, bytes32 workDigest, bool matches
    );
    event StatusChanged(uint256 indexed modelId, uint256 indexed version, uint8 status);
    /// @dev A validation cycle opened for `version` (the model's first key request, or the first after a
    /// later version than the Verified one was published).
    event ValidationOpened(uint256 indexed modelId, uint256 indexed version);
    event RoundUndecided(uint256 indexed modelId, uint256 round, uint256 revealedWeight);
    event SeatReleased(uint256 indexed modelId, address indexed validator, uint256 returned, uint256 forfeited);
    event Withdrawn(address indexed account, uint256 amount);
    /// @dev `attester` address(0): the validator attests itself again.
    event AttesterChanged(address indexed validator, address attester);

    uint8 public constant STATUS_UNVERIFIED = 0;
    uint8 public constant STATUS_VERIFIED = 1; // the majority reproduced the listed hash and the claimed digest
    uint8 public constant STATUS_DISPUTED = 2; // the majority found another hash (or could not read it)
    uint8 public constant STATUS_METRICS_DISPUTED = 3; // the listed hash, but not the claimed work digest

    uint8 public constant SEAT_NONE = 0;
    uint8 public constant SEAT_REQUESTED = 1; // key asked for, request bond held
    uint8 public constant SEAT_KEYED = 2; // key delivered
    uint8 public constant SEAT_COMMITTED = 3; // commitment stored, commit bond held
    uint8 public constant SEAT_REVEALED = 4; // attestation revealed and counted
    uint8 public constant SEAT_RELEASED = 5; // bonds returned or forfeited; the seat is closed for good

    struct StakeInfo {
        uint96 amount;
        uint96 bonded; // part of `amount` held by open seats (request and commit bonds)
        uint40 unlockAt; // 0 while active; set by requestUnstake
        uint16 openSeats; // seats not yet released
    }

    /// A cycle's current (or deciding) round and its tally, in one slot. `number` is 0 until the
    /// cycle's first key request, which sets it to 1 so that opening the round rewrites a warm slot.
    struct Round {
        uint24 number;
        uint40 commitEnd; // 0: no round open
        uint40 revealEnd;
        uint8 status;
        uint48 verifiedWeight; // revealed weight saying STATUS_VERIFIED
        uint48 metricsWeight; // ... STATUS_METRICS_DISPUTED
        uint48 hashWeight; // ... STATUS_DISPUTED
    }

    struct Seat {
        uint8 state;
        uint24 round; // the round it committed in
        uint8 says; // the status its revealed attestation argues for (0 before the reveal)
        uint32 weight; // whole minimum stakes held at commit
        uint40 requestedAt;
        uint96 commitBond;
    }

    /// Constructor parameters (see contracts/README.md for development and public-chain defaults).
    struct Config {
        uint256 minStake; // the least stake (wei) that lets an account request keys and attest
        uint256 quorum; // revealed weight (in minimum stakes) a round needs to decide
        uint256 commitPeriod; // seconds from a round's first commit to the end of commits
        uint256 revealPeriod; // seconds after commits close during which reveals are accepted
        uint256 unstakeDelay; // seconds between requestUnstake and unstake
        uint256 bondBps; // commit bond per unit of weight, in basis points of minStake
        uint256 requestBond; // wei bonded by each key request until its seat is released
        uint256 maxOpenRequests; // open seats a validator may hold at once
        address treasury; // credited with forfeited bonds
    }

    ModelRegistry private immutable _registry;
    Marketplace private immutable _marketplace;
    uint256 private immutable _minStake;
    uint256 private immutable _quorum;
    uint256 private immutable _commitPeriod;
    uint256 private immutable _revealPeriod;
    uint256 private immutable _unstakeDelay;
    uint256 private immutable _bondPerWeight;
    uint256 private immutable _bondBps;
    uint256 private immutable _requestBond;
    uint256 private immutable _maxOpenRequests;
    address private immutable _treasury;
    mapping(address validator => StakeInfo) private _stakes;
    mapping(uint256 modelId => mapping(uint256 version => Round)) private _rounds;
    mapping(uint256 modelId => mapping(uint256 version => mapping(address validator => Seat))) private _seats;
    mapping(uint256 modelId => mapping(uint256 version => mapping(address validator => bytes32))) private _commitments;
    mapping(address account => uint256) private _credited;
    mapping(address validator => address attester) private _attesterOf;
    mapping(address attester => address validator) private _validatorOf;
    // the version the current cycle attests; 0: version 1 (or no key requested yet)
    mapping(uint256 modelId => uint256) private _attestedVersions;

    /// @param registry the ModelRegistry whose listed hash and claimed work digest reveals are compared with.
    /// @param marketplace delivers the keys (it calls `keyRequested` / `keyDelivered`) and is told of
    /// each settled model (it must then `connectValidators(this)`).
    constructor(ModelRegistry registry, Marketplace marketplace, Config memory config) {
        if (address(registry) == address(0) || address(marketplace) == address(0) || config.treasury == address(0)) {
            revert ValidatorsBadConfig("zero address");
        }
        if (config.minStake == 0 || config.minStake > type(uint96).max) revert ValidatorsBadConfig("minStake");
        if (config.quorum == 0 || config.quorum > type(uint32).max) revert ValidatorsBadConfig("quorum");
        if (config.commitPeriod == 0 || config.commitPeriod > type(uint32).max) {
            revert ValidatorsBadConfig("commitPeriod");
        }
        if (config.revealPeriod == 0 || config.revealPeriod > type(uint32).max) {
            revert ValidatorsBadConfig("revealPeriod");
        }
        if (config.unstakeDelay > type(uint32).max) revert ValidatorsBadConfig("unstakeDelay");
        if (config.bondBps == 0 || config.bondBps > 10_000) revert ValidatorsBadConfig("bondBps");
        if (config.requestBond == 0 || config.requestBond > config.minStake) revert ValidatorsBadConfig("requestBond");
        if (config.maxOpenRequests == 0 || config.maxOpenRequests > type(uint16).max) {
            revert ValidatorsBadConfig("maxOpenRequests");
        }
        _registry = registry;
        _marketplace = marketplace;
        _minStake = config.minStake;
        _quorum = config.quorum;
        _commitPeriod = config.commitPeriod;
        _revealPeriod = config.revealPeriod;
        _unstakeDelay = config.unstakeDelay;
        _bondBps = config.bondBps;
        _bondPerWeight = (config.minStake * config.bondBps) / 10_000;
        _requestBond = config.requestBond;
        _maxOpenRequests = config.maxOpenRequests;
        _treasury = config.treasury;
    }

    // ---- stake ------------------------------------------------------------------------------

    /// @notice Add `msg.value` to the caller's stake; the total must reach `minStake`. Emits {Staked}.
    /// Refused to an attester (roles stay apart: its validator must name another attester first).
    function stake() external payable {
        address served = _validatorOf[msg.sender];
        if (served != address(0)) revert ValidatorsIsAttester(msg.sender, served);
        StakeInfo storage s = _stakes[msg.sender];
        if (s.unlockAt != 0) revert ValidatorsUnstakePending(msg.sender, s.unlockAt);
        uint256 total = s.amount + msg.value;
        if (total < _minStake || total > type(uint96).max) revert ValidatorsStakeTooLow(total, _minStake);
        s.amount = uint96(total);
        emit Staked(msg.sender, msg.value, total);
    }

    /// @notice Stop validating; the stake can be taken back with `unstake` after `unstakeDelay`.
    /// Refused while the caller holds open seats (key requests or attestations not yet released).
    /// Emits {UnstakeRequested}.
    function requestUnstake() external {
        StakeInfo storage s = _stakes[msg.sender];
        if (s.amount == 0) revert ValidatorsNotStaked(msg.sender);
        if (s.unlockAt != 0) revert ValidatorsUnstakePending(msg.sender, s.unlockAt);
        if (s.openSeats != 0) revert ValidatorsOpenSeats(msg.sender, s.openSeats);
        uint256 unlockAt = block.timestamp + _unstakeDelay;
        s.unlockAt = uint40(unlockAt);
        emit UnstakeRequested(msg.sender, unlockAt);
    }

    /// @notice Send the caller its whole stake back, once the delay has passed. Emits {Unstaked}.
    function unstake() external nonReentrant {
        StakeInfo memory s = _stakes[msg.sender];
        if (s.amount == 0) revert ValidatorsNotStaked(msg.sender);
        if (s.unlockAt == 0) revert ValidatorsUnstakeNotRequested(msg.sender);
        if (block.timestamp < s.unlockAt) revert ValidatorsStillLocked(msg.sender, s.unlockAt, block.timestamp);
        // No seat can be open: requestUnstake needs none and a leaving validator cannot request keys.
        delete _stakes[msg.sender];
        (bool ok,) = payable(msg.sender).call{value: s.amount}("");
        if (!ok) revert ValidatorsTransferFailed(msg.sender, s.amount);
        emit Unstaked(msg.sender, s.amount);
    }

    // ---- attester -------------------------------------------------------------------------

    /// @notice Name the hot key that attests for the caller (address(0): the caller attests itself).
    /// The caller must hold a stake to name one (anyone may clear theirs); the attester must hold no
    /// stake and attest for nobody else. Naming another attester revokes the old one at once.
    /// Emits {AttesterChanged}.
    function setAttester(address attester) external {
        address old = _attesterOf[msg.sender];
        if (attester != address(0)) {
            // A zero stake is the "never staked (or unstaked)" sentinel, not a balance compared for equality.
            // slither-disable-next-line incorrect-equality
            if (_stakes[msg.sender].amount == 0) revert ValidatorsNotStaked(msg.sender);
            if (_stakes[attester].amount != 0) revert ValidatorsAttesterIsValidator(attester);
            address served = _validatorOf[attester];
            if (served != address(0) && served != msg.sender) revert ValidatorsAttesterTaken(attester, served);
            _validatorOf[attester] = msg.sender;
        }
        if (old != address(0) && old != attester) delete _validatorOf[old];
        _attesterOf[msg.sender] = attester;
        emit AttesterChanged(msg.sender, attester);
    }

    /// @notice Whether `account` may request keys, commit and reveal for `validator`: the validator
    /// itself or the attester it named.
    function mayAttestFor(address validator, address account) public view returns (bool) {
        return account == validator || (account != address(0) && _attesterOf[validator] == account);
    }

    // ---- keys (called by the Marketplace) ---------------------------------------------------

    /// @notice Marketplace only, from `requestValidatorKey`: open `validator`'s seat on the model and
    /// bond `requestBond` of its free stake. A request made again after the old one expired undelivered
    /// keeps the seat and its bond. Refused for leaving or unstaked validators, settled models, while a
    /// round's commits are closed (see `keyDelivered`) and for validators at `maxOpenRequests`.
    function keyRequested(uint256 modelId, address validator) external {
        if (msg.sender != address(_marketplace)) revert ValidatorsOnlyMarketplace(msg.sender);
        if (!isActiveValidator(validator)) revert ValidatorsNotActive(validator);
        (uint256 version, Round memory r) = _cycleToJoin(modelId);
        _requireCommitsOpen(modelId, r);
        Seat storage seat = _seats[modelId][version][validator];
        uint8 state = seat.state;
        if (state == SEAT_REQUESTED) {
            seat.requestedAt = uint40(block.timestamp);
            return;
        }
        if (state != SEAT_NONE) revert ValidatorsAlreadyRequested(modelId, validator);
        StakeInfo storage s = _stakes[validator];
        if (s.openSeats >= _maxOpenRequests) revert ValidatorsTooManyOpenRequests(validator, _maxOpenRequests);
        _bond(s, validator, _requestBond);
        s.openSeats += 1;
        seat.state = SEAT_REQUESTED;
        seat.requestedAt = uint40(block.timestamp);
        if (r.number == 0) {
            // The cycle's first request: it now attests `version`.
            _rounds[modelId][version].number = 1;
            if (version != _currentVersion(modelId)) _attestedVersions[modelId] = version;
            emit ValidationOpened(modelId, version);
        }
    }

    /// @notice Marketplace only, from `deliverKey` of a validator's request: the seat now holds the key.
    /// Refused once the model is settled and while a round's commits are closed (until it is settled):
    /// every key delivered can then be used in the round that decides the model, so holding it through
    /// that round without a reveal always forfeits the request bond (a key that arrived after the commits
    /// closed used to be returned in full: a risk-free key for a refundable deposit).
    function keyDelivered(uint256 modelId, address validator) external {
        if (msg.sender != address(_marketplace)) revert ValidatorsOnlyMarketplace(msg.sender);
        uint256 version = _currentVersion(modelId);
        _requireCommitsOpen(modelId, _rounds[modelId][version]);
        Seat storage seat = _seats[modelId][version][validator];
        // The Marketplace delivers only a live request, and `release` closes one only after it expired.
        if (seat.state != SEAT_REQUESTED) revert ValidatorsSeatInUse(modelId, validator, seat.state);
        seat.state = SEAT_KEYED;
    }

    // ---- rounds -----------------------------------------------------------------------------

    /// @notice Commit to an attestation of a model whose key was delivered to the caller:
    /// `commitment == keccak256(abi.encode(block.chainid, address(this), modelId, validator,
    /// observedHash, workDigest, salt))`, `validator` the caller (or the one `commitAttestationFor` names). Opens a round when none is open. Bonds `bondBps` of a
    /// minimum stake per unit of the caller's weight. A validator whose attestation was counted in an
    /// undecided round commits again in the next. Emits {AttestationCommitted} (and {RoundOpened}).
    // The strict equalities below compare the seat and round state codes and the commitEnd == 0 "no round"
    // sentinel, never balances; weight is a floor on purpose (whole minimum stakes) before the bond is
    // computed from it.
    // slither-disable-start incorrect-equality,divide-before-multiply
    function commitAttestation(uint256 modelId, bytes32 commitment) external {
        _commit(msg.sender, modelId, commitment);
    }

    /// @notice `commitAttestation` by `validator`'s attester, for `validator` (the commitment names the
    /// validator, its seat and stake are bonded).
    function commitAttestationFor(address validator, uint256 modelId, bytes32 commitment) external {
        if (!mayAttestFor(validator, msg.sender)) revert ValidatorsNotAttester(validator, msg.sender);
        _commit(validator, modelId, commitment);
    }

    function _commit(address validator, uint256 modelId, bytes32 commitment) private {
        if (commitment == bytes32(0)) revert ValidatorsZeroCommitment();
        uint256 version = _currentVersion(modelId);
        Round memory r = _rounds[modelId][version];
        _requireCommitsOpen(modelId, r);
        Seat storage seat = _seats[modelId][version][validator];
        Seat memory current = seat;
        bool again = current.state == SEAT_REVEALED && current.round < r.number;
        if (current.state != SEAT_KEYED && !again) revert ValidatorsNoKey(modelId, validator);
        if (r.commitEnd == 0) {
            r.commitEnd = uint40(block.timestamp + _commitPeriod);
            r.revealEnd = uint40(r.commitEnd + _revealPeriod);
            _rounds[modelId][version] = r;
            emit RoundOpened(modelId, r.number, r.commitEnd, r.revealEnd);
        }

        StakeInfo storage s = _stakes[validator];
        uint256 weight = s.amount / _minStake;
        // Below one minimum stake only after forfeits: such a validator no longer counts.
        if (weight == 0) revert ValidatorsStakeTooLow(s.amount, _minStake);
        if (weight > type(uint32).max) weight = type(uint32).max;
        uint256 bond = weight * _bondPerWeight;
        if (again) {
            // The bond of the undecided round's attestation carries over.
            s.bonded -= current.commitBond;
        }
        _bond(s, validator, bond);
        seat.state = SEAT_COMMITTED;
        seat.round = r.number;
        seat.says = 0;
        seat.weight = uint32(weight);
        seat.commitBond = uint96(bond);
        _commitments[modelId][version][validator] = commitment;
        emit AttestationCommitted(modelId, validator, commitment);
    }

    // slither-disable-end incorrect-equality,divide-before-multiply

    /// @notice Open the caller's commitment in the current round, after commits closed and until the
    /// reveal period ends. It counts, with the caller's weight, for the status it argues for: Verified
    /// when `observedHash` is the listed hash and `workDigest` the seller's claim made before the round
    /// opened; MetricsDisputed for the listed hash with another digest (the reserved failure digest
    /// included); Disputed for another hash. Emits {Attested}.
    // slither-disable-start incorrect-equality
    function revealAttestation(uint256 modelId, bytes32 observedHash, bytes32 workDigest, bytes32 salt) external {
        _reveal(msg.sender, modelId, observedHash, workDigest, salt);
    }

    /// @notice `revealAttestation` by `validator`'s attester, for `validator` (the commitment named it).
    function revealAttestationFor(
        address validator,
        uint256 modelId,
        bytes32 observedHash,
        bytes32 workDigest,
        bytes32 salt
    ) external {
        if (!mayAttestFor(validator, msg.sender)) {
            revert ValidatorsNotAttester(validator, msg.sender);
        }
        _reveal(validator, modelId, observedHash, workDigest, salt);
    }

    function _reveal(address validator, uint256 modelId, bytes32 observedHash, bytes32 workDigest, bytes32 salt)
        private
    {
        uint256 version = _currentVersion(modelId);
        Round memory r = _rounds[modelId][version];
        Seat storage seat = _seats[modelId][version][validator];
        if (seat.state != SEAT_COMMITTED || seat.round != r.number || r.commitEnd == 0) {
            revert ValidatorsNothingToReveal(modelId, validator);
        }
        if (block.timestamp <= r.commitEnd) revert ValidatorsRevealNotOpen(modelId, r.commitEnd);
        if (block.timestamp > r.revealEnd) revert ValidatorsRevealClosed(modelId, r.revealEnd);
        bytes32 expected =
            keccak256(abi.encode(block.chainid, address(this), modelId, validator, observedHash, workDigest, salt));
        if (_commitments[modelId][version][validator] != expected) revert ValidatorsRevealMismatch(modelId, validator);

        (bytes32 listedHash, bytes32 claimedDigest, uint256 claimedAt) = _registry.attestationTargetOf(modelId, version);
        uint8 says;
        bool matches = observedHash == listedHash;
        if (!matches) {
            says = STATUS_DISPUTED;
            r.hashWeight += seat.weight;
        } else if (
            workDigest == claimedDigest && claimedDigest != bytes32(0)
                && claimedAt <= uint256(r.commitEnd) - _commitPeriod
        ) {
            says = STATUS_VERIFIED;
            r.verifiedWeight += seat.weight;
        } else {
            says = STATUS_METRICS_DISPUTED;
            r.metricsWeight += seat.weight;
        }
        _rounds[modelId][version] = r;
        seat.state = SEAT_REVEALED;
        seat.says = says;
        delete _commitments[modelId][version][validator];
        emit Attested(modelId, validator, observedHash, workDigest, matches);
    }

    // slither-disable-end incorrect-equality

    /// @notice After the reveal period, settle the model's round (anyone). With at least `quorum`
    /// revealed weight, an outcome holding more than half of it becomes the model's status for good and
    /// the Marketplace is told. Otherwise the round closes undecided and the next commit opens a new
    /// one. Emits {StatusChanged} or {RoundUndecided}.
    // slither-disable-start incorrect-equality
    function settle(uint256 modelId) external {
        uint256 version = _currentVersion(modelId);
        Round memory r = _rounds[modelId][version];
        if (r.status != STATUS_UNVERIFIED) revert ValidatorsAlreadySettled(modelId, r.status);
        if (r.commitEnd == 0) revert ValidatorsNoRound(modelId);
        if (block.timestamp <= r.revealEnd) revert ValidatorsRevealOpen(modelId, r.revealEnd);

        uint256 total = uint256(r.verifiedWeight) + r.metricsWeight + r.hashWeight;
        uint8 status = STATUS_UNVERIFIED;
        if (total >= _quorum) {
            if (2 * uint256(r.verifiedWeight) > total) status = STATUS_VERIFIED;
            else if (2 * uint256(r.metricsWeight) > total) status = STATUS_METRICS_DISPUTED;
            else if (2 * uint256(r.hashWeight) > total) status = STATUS_DISPUTED;
        }
        if (status == STATUS_UNVERIFIED) {
            emit RoundUndecided(modelId, r.number, total);
            _rounds[modelId][version] = Round({
                number: r.number + 1,
                commitEnd: 0,
                revealEnd: 0,
                status: STATUS_UNVERIFIED,
                verifiedWeight: 0,
                metricsWeight: 0,
                hashWeight: 0
            });
            return;
        }
        _rounds[modelId][version].status = status;
        emit StatusChanged(modelId, version, status);
        _marketplace.recordVerdict(modelId, version, status, r.verifiedWeight);
    }

    // slither-disable-end incorrect-equality

    /// @notice Close `validator`'s seat on the model (anyone may call) and return its bonds to its free
    /// stake, or forfeit them to the treasury:
    /// - a request never delivered: once it expired (the Marketplace's delivery window); nothing lost;
    /// - a delivered key never committed: once the model settled; its request bond is forfeited (it
    ///   arrived while commits were open, so the validator could have taken part);
    /// - a commitment never revealed: once its round's reveal period ended; both bonds forfeited;
    /// - a revealed attestation: once its round settled (or closed undecided); the commit bond is
    ///   forfeited when it argued against the outcome, and the request bond when it was counted in an
    ///   undecided round and then sat out the deciding one; otherwise everything is returned.
    /// Acts on the current cycle; `releaseAt` on the cycle of any version. Emits {SeatReleased}.
    function release(uint256 modelId, address validator) external {
        _release(modelId, _currentVersion(modelId), validator);
    }

    /// @notice `release` of `validator`'s seat in the cycle that attests `version` of the model.
    function releaseAt(uint256 modelId, uint256 version, address validator) external {
        _release(modelId, version, validator);
    }

    // slither-disable-start incorrect-equality
    function _release(uint256 modelId, uint256 version, address validator) private {
        Seat memory seat = _seats[modelId][version][validator];
        Round memory r = _rounds[modelId][version];
        bool settled = r.status != STATUS_UNVERIFIED;
        bool forfeitRequest = false;
        bool forfeitCommit = false;
        if (seat.state == SEAT_REQUESTED) {
            if (block.timestamp <= uint256(seat.requestedAt) + _marketplace.deliveryWindow()) {
                revert ValidatorsNothingToRelease(modelId, validator);
            }
        } else if (seat.state == SEAT_KEYED) {
            if (!settled) revert ValidatorsNothingToRelease(modelId, validator);
            // Keys are delivered only while commits are open (keyDelivered): this one could have been
            // committed in the deciding round.
            forfeitRequest = true;
        } else if (seat.state == SEAT_COMMITTED) {
            bool ended = seat.round < r.number || settled || (r.commitEnd != 0 && block.timestamp > r.revealEnd);
            if (!ended) revert ValidatorsNothingToRelease(modelId, validator);
            (forfeitRequest, forfeitCommit) = (true, true);
        } else if (seat.state == SEAT_REVEALED) {
            bool current = seat.round == r.number;
            if (current && !settled) revert ValidatorsNothingToRelease(modelId, validator);
            forfeitCommit = current && seat.says != r.status;
            // Counted in an undecided round, then held the key through the deciding one without a word.
            forfeitRequest = !current && settled;
        } else {
            revert ValidatorsNothingToRelease(modelId, validator);
        }

        uint256 bonds = _requestBond + (seat.state >= SEAT_COMMITTED ? seat.commitBond : 0);
        uint256 forfeited = (forfeitRequest ? _requestBond : 0) + (forfeitCommit ? seat.commitBond : 0);
        StakeInfo storage s = _stakes[validator];
        s.bonded -= uint96(bonds);
        s.amount -= uint96(forfeited);
        s.openSeats -= 1;
        if (forfeited != 0) _credited[_treasury] += forfeited;
        // An expired request may be made again; any other seat is closed for good (its key was delivered).
        if (seat.state == SEAT_REQUESTED) delete _seats[modelId][version][validator];
        else _seats[modelId][version][validator].state = SEAT_RELEASED;
        if (seat.state == SEAT_COMMITTED) delete _commitments[modelId][version][validator];
        emit SeatReleased(modelId, validator, bonds - forfeited, forfeited);
    }

    // slither-disable-end incorrect-equality

    /// @notice Send the caller what was credited to it here (the treasury's forfeited bonds).
    /// Emits {Withdrawn}.
    function withdraw() external nonReentrant {
        uint256 amount = _credited[msg.sender];
        if (amount == 0) revert ValidatorsNothingToWithdraw(msg.sender);
        _credited[msg.sender] = 0;
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert ValidatorsTransferFailed(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ---- views ------------------------------------------------------------------------------

    /// @notice Staked at least `minStake` and not leaving.
    function isActiveValidator(address account) public view returns (bool) {
        StakeInfo memory s = _stakes[account];
        // unlockAt == 0 is the "not leaving" sentinel, not a balance compared for equality.
        // slither-disable-next-line incorrect-equality
        return s.unlockAt == 0 && s.amount >= _minStake;
    }

    /// @notice The weight with which `account` revealed the listed hash and claimed digest in the round
    /// that verified the current cycle's version (0 for anyone else, and while it is not Verified).
    function verifierWeight(uint256 modelId, address account) external view returns (uint256) {
        return verifierWeightAt(modelId, _currentVersion(modelId), account);
    }

    /// @notice `verifierWeight` in the cycle that attests `version` (the Marketplace pays each Verified
    /// version's verifiers from its own reward book).
    function verifierWeightAt(uint256 modelId, uint256 version, address account) public view returns (uint256) {
        Round memory r = _rounds[modelId][version];
        Seat memory seat = _seats[modelId][version][account];
        if (r.status != STATUS_VERIFIED || seat.round != r.number || seat.says != STATUS_VERIFIED) return 0;
        return seat.weight;
    }

    /// @notice One of the validators whose attestations verified the current cycle's version.
    function isVerifier(uint256 modelId, address account) external view returns (bool) {
        return verifierWeightAt(modelId, _currentVersion(modelId), account) != 0;
    }

    /// @notice 0 unverified, 1 verified, 2 disputed, 3 metrics disputed: the status of the version the
    /// current cycle attests (`attestedVersion`); `statusAt` for any version.
    function status(uint256 modelId) external view returns (uint8) {
        return _rounds[modelId][_currentVersion(modelId)].status;
    }

    /// @notice The status of `version` of the model: what its cycle settled, 0 (unverified) while its
    /// cycle runs and for a version no cycle attested.
    function statusAt(uint256 modelId, uint256 version) external view returns (uint8) {
        return _rounds[modelId][version].status;
    }

    /// @notice The version of the model the current cycle attests, fixed by the cycle's first key
    /// request; 0 while no validator has asked for the key.
    function attestedVersion(uint256 modelId) external view returns (uint256) {
        uint256 version = _currentVersion(modelId);
        // Round number 0 is the "no key requested yet" sentinel, not a balance compared for equality.
        // slither-disable-next-line incorrect-equality
        if (_rounds[modelId][version].number == 0) return 0;
        return version;
    }

    /// @notice Whether a key request now opens a new cycle: the current one settled Verified and the
    /// owner has published a later version since.
    function opensNewCycle(uint256 modelId) public view returns (bool) {
        uint256 version = _currentVersion(modelId);
        return _rounds[modelId][version].status == STATUS_VERIFIED && _registry.versionCount(modelId) > version;
    }

    /// @notice Whether a key request of `validator` now joins a cycle in which it holds no seat (a new
    /// cycle, or the current one when its seats are all earlier cycles'): the Marketplace lets a
    /// validator whose key was delivered in an earlier cycle ask again then.
    function joinsWithoutSeat(uint256 modelId, address validator) external view returns (bool) {
        if (opensNewCycle(modelId)) return true;
        return _seats[modelId][_currentVersion(modelId)][validator].state == SEAT_NONE;
    }

    /// @notice The current cycle's current round (or the one that decided it) and its deadlines;
    /// commitEnd is 0 while no round is open (round 0: nobody has asked for the key yet).
    function roundOf(uint256 modelId) external view returns (uint256 round, uint64 commitEnd, uint64 revealEnd) {
        Round memory r = _rounds[modelId][_currentVersion(modelId)];
        return (r.number, r.commitEnd, r.revealEnd);
    }

    /// @notice Weight revealed so far in the current cycle's current (or deciding) round, per status
    /// argued for.
    function tally(uint256 modelId)
        external
        view
        returns (uint256 verified, uint256 disputed, uint256 metricsDisputed)
    {
        Round memory r = _rounds[modelId][_currentVersion(modelId)];
        return (r.verifiedWeight, r.hashWeight, r.metricsWeight);
    }

    /// @notice `validator`'s seat in the model's current cycle: one of the SEAT_* states, the round it
    /// committed in, the status its revealed attestation argues for (0 before a reveal), its weight and
    /// its commit bond.
    function attestationOf(uint256 modelId, address validator)
        external
        view
        returns (uint8 state, uint256 round, uint8 says, uint256 weight, uint256 commitBond)
    {
        return attestationAt(modelId, _currentVersion(modelId), validator);
    }

    /// @notice `attestationOf` in the cycle that attests `version`.
    function attestationAt(uint256 modelId, uint256 version, address validator)
        public
        view
        returns (uint8 state, uint256 round, uint8 says, uint256 weight, uint256 commitBond)
    {
        Seat memory seat = _seats[modelId][version][validator];
        return (seat.state, seat.round, seat.says, seat.weight, seat.commitBond);
    }

    /// @notice `validator`'s stored commitment in the current cycle's round (zero when none or once
    /// revealed).
    function commitmentOf(uint256 modelId, address validator) external view returns (bytes32) {
        return _commitments[modelId][_currentVersion(modelId)][validator];
    }

    /// @notice The stake, the part of it bonded by open seats, when it can be taken back (0 while
    /// active) and the number of open seats.
    function stakeOf(address validator)
        external
        view
        returns (uint256 amount, uint256 bonded, uint256 unlockAt, uint256 openSeats)
    {
        StakeInfo memory s = _stakes[validator];
        return (s.amount, s.bonded, s.unlockAt, s.openSeats);
    }

    /// @notice The attester `validator` named (address(0): the validator attests itself).
    function attesterOf(address validator) external view returns (address) {
        return _attesterOf[validator];
    }

    /// @notice The validator `attester` attests for (address(0): none).
    function validatorOf(address attester) external view returns (address) {
        return _validatorOf[attester];
    }

    /// @notice Wei that `account` can withdraw from this contract now.
    function credited(address account) external view returns (uint256) {
        return _credited[account];
    }

    /// @notice The constructor's configuration.
    function config() external view returns (Config memory) {
        return Config({
            minStake: _minStake,
            quorum: _quorum,
            commitPeriod: _commitPeriod,
            revealPeriod: _revealPeriod,
            unstakeDelay: _unstakeDelay,
            bondBps: _bondBps,
            requestBond: _requestBond,
            maxOpenRequests: _maxOpenRequests,
            treasury: _treasury
        });
    }

    function minStake() external view returns (uint256) {
        return _minStake;
    }

    function quorum() external view returns (uint256) {
        return _quorum;
    }

    function registry() external view returns (address) {
        return address(_registry);
    }

    function marketplace() external view returns (address) {
        return address(_marketplace);
    }

    /// @dev Refuses a settled model, and a round whose commits are closed: still revealing
    /// (ValidatorsCommitClosed) or waiting to be settled (ValidatorsRoundNotSettled).
    function _requireCommitsOpen(uint256 modelId, Round memory r) private view {
        if (r.status != STATUS_UNVERIFIED) revert ValidatorsAlreadySettled(modelId, r.status);
        if (r.commitEnd != 0 && block.timestamp > r.commitEnd) {
            if (block.timestamp > r.revealEnd) revert ValidatorsRoundNotSettled(modelId, r.revealEnd);
            revert ValidatorsCommitClosed(modelId, r.commitEnd);
        }
    }

    /// @dev The version the model's current cycle attests (1 before any key request).
    function _currentVersion(uint256 modelId) private view returns (uint256) {
        uint256 version = _attestedVersions[modelId];
        return version == 0 ? 1 : version;
    }

    /// @dev The cycle a key request joins, and its round: the current one; or, when no key was ever
    /// requested, the latest version's; or, when the current cycle settled Verified and a later version
    /// was published, a new one for the latest version (its round still empty: the caller opens it).
    function _cycleToJoin(uint256 modelId) private view returns (uint256 version, Round memory r) {
        version = _currentVersion(modelId);
        r = _rounds[modelId][version];
        // Round number 0 is the "no key requested yet" sentinel.
        // slither-disable-next-line incorrect-equality
        if (r.number != 0 && r.status != STATUS_VERIFIED) return (version, r);
        uint256 latest = _registry.versionCount(modelId);
        if (latest != version) (version, r) = (latest, _rounds[modelId][latest]);
    }

    /// @dev Hold `amount` of the validator's free (unbonded) stake.
    function _bond(StakeInfo storage s, address validator, uint256 amount) private {
        uint256 free = s.amount - s.bonded;
        if (free < amount) revert ValidatorsStakeBonded(validator, free, amount);
        s.bonded += uint96(amount);
    }
}
