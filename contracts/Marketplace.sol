// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {Validators} from "./Validators.sol";

/// @notice Escrow for model sales: the price is held until the seller's worker delivers the wrapped key.
/// @dev A purchase is two slots: `_purchases[id]` (who, which model) and the access record keyed by
/// (model, account), which is also the licence `hasLicense` reads. A staked validator gets a key the
/// same way at price 0 (`requestValidatorKey`), in a separate access table that grants no licence.
/// For gas: the platform's accrued fees sit in the fee-config slot (already non-zero, so a sale never
/// pays for a fresh balance slot of the fee recipient; `withdraw` pays them to the recipient), and a
/// licence holder's vote score is kept in its licence record (Votes asks `recordVote`).
contract Marketplace is Ownable, ReentrancyGuardTransient {
    error MarketplaceModelInactive(uint256 modelId);
    error MarketplaceModelDisputed(uint256 modelId);
    error MarketplacePriceAboveMax(uint256 modelId, uint256 price, uint256 maxPrice);
    error MarketplaceWrongPayment(uint256 modelId, uint256 sent, uint256 price);
    error MarketplaceZeroBuyerKey();
    error MarketplaceAlreadyLicensed(uint256 modelId, address account);
    error MarketplacePurchasePending(uint256 purchaseId, uint256 deadline);
    error MarketplaceNotValidator(address account);
    error MarketplaceUnknownPurchase(uint256 purchaseId);
    error MarketplaceNotPending(uint256 purchaseId, uint8 status);
    error MarketplaceNotDeliverer(uint256 purchaseId, address caller);
    error MarketplaceDeliveryWindowClosed(uint256 purchaseId, uint256 deadline);
    error MarketplaceDeliveryWindowOpen(uint256 purchaseId, uint256 deadline);
    error MarketplaceBadWrappedKey(uint256 length, uint256 expected);
    error MarketplaceNotBuyer(uint256 purchaseId, address caller);
    error MarketplaceNothingToWithdraw(address account);
    error MarketplaceTransferFailed(address account, uint256 amount);
    error MarketplaceFeeTooHigh(uint256 feeBps, uint256 maxFeeBps);
    error MarketplaceZeroAddress();
    error MarketplaceValidatorsAlreadySet(address validators);
    error MarketplaceOnlyValidators(address caller);
    error MarketplaceNotVerifier(uint256 modelId, address account);
    error MarketplaceNothingToClaim(uint256 modelId, address account);
    error MarketplaceBadConfig(string what);
    error MarketplaceVotesAlreadySet(address votes);
    error MarketplaceOnlyVotes(address caller);

    event Purchased(
        uint256 indexed purchaseId, uint256 indexed modelId, address indexed buyer, uint256 price, bytes32 buyerKey
    );
    event ValidatorKeyRequested(uint256 indexed purchaseId, uint256 indexed modelId, address indexed validator);
    event KeyDelivered(uint256 indexed purchaseId, bytes wrappedKey);
    event Refunded(uint256 indexed purchaseId, address indexed buyer, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event FeeChanged(uint256 feeBps);
    event FeeRecipientChanged(address indexed feeRecipient);
    event ValidatorsConnected(address indexed validators);
    event VotesConnected(address indexed votes);
    event VerdictRecorded(uint256 indexed modelId, bool verified, uint256 verifiers);
    event ValidatorRewardClaimed(uint256 indexed modelId, address indexed validator, uint256 amount);

    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_PENDING = 1;
    uint8 public constant STATUS_DELIVERED = 2;
    uint8 public constant STATUS_REFUNDED = 3; // a buyer's purchase refunded (after the window, or disputed model)
    uint8 public constant STATUS_EXPIRED = 4; // a validator's request replaced after its window
    uint256 public constant MAX_FEE_BPS = 1000;
    uint256 public constant WRAPPED_KEY_LENGTH = 80; // HPKE enc(32) || ciphertext(48), DESIGN.md 4.3

    struct Purchase {
        address account;
        uint88 modelId;
        bool forValidator;
    }

    /// The live purchase of one (model, account); a buyer's delivered one is the licence.
    struct Access {
        uint64 purchaseId;
        uint96 price;
        uint40 deadline;
        uint8 status;
        uint8 vote; // the licence holder's live score in Votes (0: none)
    }

    /// What the marketplace knows about a model's validation (told by Validators).
    struct Book {
        uint32 verifiers;
        bool disputed;
        uint216 rewardPerVerifier; // cumulative wei owed to each verifier of the model
    }

    struct FeeConfig {
        address recipient;
        uint16 feeBps;
        uint80 accrued; // platform fees not yet withdrawn by `recipient` (part of credited(recipient))
    }

    ModelRegistry private immutable _registry;
    uint256 private immutable _deliveryWindow;
    uint256 private immutable _validatorShareBps;
    Validators private _validators;
    address private _votes;
    FeeConfig private _fee;
    // Starts at 1 so that purchase id 0 means "none" and every buy() pays the same for the counter.
    uint64 private _nextPurchaseId = 1;
    mapping(uint256 purchaseId => Purchase) private _purchases;
    mapping(uint256 modelId => mapping(address buyer => Access)) private _licences;
    mapping(uint256 modelId => mapping(address validator => Access)) private _validatorAccess;
    mapping(uint256 modelId => Book) private _books;
    mapping(uint256 modelId => mapping(address validator => uint256)) private _rewardClaimed;
    mapping(address account => uint256) private _credited;

    /// @param registry the ModelRegistry whose tokens are sold.
    /// @param deliveryWindow seconds a seller has to deliver before the buyer may take a refund.
    /// @param feeBps platform fee in basis points of each sale (at most MAX_FEE_BPS).
    /// @param feeRecipient who is credited the platform fee.
    /// @param validatorShareBps share of the fee (basis points of the fee) paid to a model's verifiers.
    /// @param initialOwner who may change the fee and connect the Validators contract once.
    constructor(
        ModelRegistry registry,
        uint256 deliveryWindow,
        uint256 feeBps,
        address feeRecipient,
        uint256 validatorShareBps,
        address initialOwner
    ) Ownable(initialOwner) {
        if (address(registry) == address(0) || feeRecipient == address(0)) revert MarketplaceZeroAddress();
        if (feeBps > MAX_FEE_BPS) revert MarketplaceFeeTooHigh(feeBps, MAX_FEE_BPS);
        if (deliveryWindow == 0 || deliveryWindow > type(uint32).max) revert MarketplaceBadConfig("deliveryWindow");
        if (validatorShareBps > 10_000) revert MarketplaceBadConfig("validatorShareBps");
        _registry = registry;
        _deliveryWindow = deliveryWindow;
        _validatorShareBps = validatorShareBps;
        _fee = FeeConfig({recipient: feeRecipient, feeBps: uint16(feeBps), accrued: 0});
    }

    /// @notice Buy a licence: pay exactly the price into escrow until the key is delivered.
    /// @param buyerKey the buyer's X25519 public key (DESIGN.md 4.3) the key is wrapped to.
    /// @param maxPrice the most the buyer accepts to pay (guards against a price raised in the same block).
    /// @return purchaseId Emits {Purchased}.
    function buy(uint256 modelId, bytes32 buyerKey, uint256 maxPrice)
        external
        payable
        returns (uint256 purchaseId)
    {
        (uint256 price, bool active) = _registry.saleTerms(modelId);
        if (!active) revert MarketplaceModelInactive(modelId);
        if (price > maxPrice) revert MarketplacePriceAboveMax(modelId, price, maxPrice);
        if (msg.value != price) revert MarketplaceWrongPayment(modelId, msg.value, price);
        if (buyerKey == bytes32(0)) revert MarketplaceZeroBuyerKey();
        if (_books[modelId].disputed) revert MarketplaceModelDisputed(modelId);
        Access storage access = _licences[modelId][msg.sender];
        uint8 status = access.status;
        if (status == STATUS_DELIVERED) revert MarketplaceAlreadyLicensed(modelId, msg.sender);
        if (status == STATUS_PENDING) revert MarketplacePurchasePending(access.purchaseId, access.deadline);

        purchaseId = _open(access, modelId, price, false);
        emit Purchased(purchaseId, modelId, msg.sender, price, buyerKey);
    }

    /// @notice A staked validator asks for a model's key at no cost, to re-hash and attest it.
    /// The seller's worker sees the same {Purchased} event (price 0) and answers with `deliverKey`.
    /// The delivery grants no licence (`hasLicense` stays false), so validators do not vote by it.
    /// A request left undelivered past the window may be made again (the old one becomes EXPIRED).
    /// @return purchaseId Emits {Purchased} and {ValidatorKeyRequested}.
    function requestValidatorKey(uint256 modelId, bytes32 validatorKey) external returns (uint256 purchaseId) {
        Validators validators = _validators;
        if (address(validators) == address(0) || !validators.isActiveValidator(msg.sender)) {
            revert MarketplaceNotValidator(msg.sender);
        }
        if (validatorKey == bytes32(0)) revert MarketplaceZeroBuyerKey();
        // Called only for its revert on a model that does not exist; the terms do not apply (price 0).
        // slither-disable-next-line unused-return
        _registry.saleTerms(modelId);
        Access storage access = _validatorAccess[modelId][msg.sender];
        uint8 status = access.status;
        if (status == STATUS_DELIVERED) revert MarketplaceAlreadyLicensed(modelId, msg.sender);
        if (status == STATUS_PENDING && block.timestamp <= access.deadline) {
            revert MarketplacePurchasePending(access.purchaseId, access.deadline);
        }

        purchaseId = _open(access, modelId, 0, true);
        emit Purchased(purchaseId, modelId, msg.sender, 0, validatorKey);
        emit ValidatorKeyRequested(purchaseId, modelId, msg.sender);
    }

    /// @notice Deliver the buyer's wrapped content key; releases the escrow to the model's current owner
    /// (less the fee). Callable once, by the owner or operator, until the deadline, and never for a model
    /// the validators disputed (its buyers may refund at once instead).
    /// @param wrappedKey HPKE enc || ciphertext, exactly WRAPPED_KEY_LENGTH bytes (DESIGN.md 4.3).
    /// Emits {KeyDelivered}.
    function deliverKey(uint256 purchaseId, bytes calldata wrappedKey) external {
        Purchase memory p = _purchases[purchaseId];
        Access storage access = _accessOf(p, purchaseId);
        uint8 status = access.status;
        if (status != STATUS_PENDING) revert MarketplaceNotPending(purchaseId, status);
        // The model's book is read once here: the dispute check and the fee share both need it.
        Book storage b = _books[p.modelId];
        (bool disputed, uint256 verifiers) = (b.disputed, b.verifiers);
        if (disputed) revert MarketplaceModelDisputed(p.modelId);
        uint256 deadline = access.deadline;
        if (block.timestamp > deadline) revert MarketplaceDeliveryWindowClosed(purchaseId, deadline);
        (address owner, address operator) = _registry.deliveryParties(p.modelId);
        if (msg.sender != owner && msg.sender != operator) revert MarketplaceNotDeliverer(purchaseId, msg.sender);
        if (wrappedKey.length != WRAPPED_KEY_LENGTH) {
            revert MarketplaceBadWrappedKey(wrappedKey.length, WRAPPED_KEY_LENGTH);
        }

        access.status = STATUS_DELIVERED;
        uint256 price = access.price;
        if (price != 0) _settle(b, verifiers, owner, price);
        emit KeyDelivered(purchaseId, wrappedKey);
    }

    /// @notice Take the money back for a purchase that was not delivered within the window, or at once
    /// when the validators disputed the model (buyer only). The amount is credited; `withdraw` sends it.
    /// Emits {Refunded}.
    function refund(uint256 purchaseId) external {
        Purchase memory p = _purchases[purchaseId];
        Access storage access = _accessOf(p, purchaseId);
        if (p.forValidator || p.account != msg.sender) revert MarketplaceNotBuyer(purchaseId, msg.sender);
        uint8 status = access.status;
        if (status != STATUS_PENDING) revert MarketplaceNotPending(purchaseId, status);
        uint256 deadline = access.deadline;
        // A model the validators disputed can no longer be delivered: its buyers need not wait.
        if (block.timestamp <= deadline && !_books[p.modelId].disputed) {
            revert MarketplaceDeliveryWindowOpen(purchaseId, deadline);
        }

        access.status = STATUS_REFUNDED;
        uint256 amount = access.price;
        _credited[msg.sender] += amount;
        emit Refunded(purchaseId, msg.sender, amount);
    }

    /// @notice Send the caller everything credited to them (sales, fees, refunds, rewards).
    /// If the transfer fails the whole call reverts and the balance stays credited. Emits {Withdrawn}.
    function withdraw() external nonReentrant {
        uint256 amount = _credited[msg.sender];
        FeeConfig memory fee = _fee;
        if (fee.recipient == msg.sender && fee.accrued != 0) {
            amount += fee.accrued;
            _fee.accrued = 0;
        }
        if (amount == 0) revert MarketplaceNothingToWithdraw(msg.sender);
        _credited[msg.sender] = 0;
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert MarketplaceTransferFailed(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Move a verifier's share of the model's sales fees into their withdrawable balance.
    /// Emits {ValidatorRewardClaimed}.
    function claimValidatorReward(uint256 modelId) external {
        Validators validators = _validators;
        if (address(validators) == address(0) || !validators.isVerifier(modelId, msg.sender)) {
            revert MarketplaceNotVerifier(modelId, msg.sender);
        }
        uint256 total = _books[modelId].rewardPerVerifier;
        uint256 amount = total - _rewardClaimed[modelId][msg.sender];
        if (amount == 0) revert MarketplaceNothingToClaim(modelId, msg.sender);
        _rewardClaimed[modelId][msg.sender] = total;
        _credited[msg.sender] += amount;
        emit ValidatorRewardClaimed(modelId, msg.sender, amount);
    }

    /// @notice Called by the Validators contract when a model settles: verified models share their fees
    /// with `verifiers` validators; disputed models cannot be bought, their pending purchases cannot be
    /// delivered and their buyers may refund at once. Emits {VerdictRecorded}.
    function recordVerdict(uint256 modelId, bool verified, uint256 verifiers) external {
        if (msg.sender != address(_validators)) revert MarketplaceOnlyValidators(msg.sender);
        Book storage book = _books[modelId];
        if (verified) book.verifiers = uint32(verifiers);
        else book.disputed = true;
        emit VerdictRecorded(modelId, verified, verifiers);
    }

    /// @notice Called by the Votes contract: store `voter`'s score for the model in its licence record.
    /// @return licensed whether `voter` holds a licence (nothing is stored otherwise).
    /// @return previous the score it replaces (0 if none).
    function recordVote(uint256 modelId, address voter, uint8 score) external returns (bool licensed, uint8 previous) {
        if (msg.sender != _votes) revert MarketplaceOnlyVotes(msg.sender);
        Access storage access = _licences[modelId][voter];
        if (access.status != STATUS_DELIVERED) return (false, 0);
        previous = access.vote;
        if (previous != score) access.vote = score;
        return (true, previous);
    }

    /// @notice Owner, once: the Votes contract allowed to call `recordVote`. Emits {VotesConnected}.
    function connectVotes(address votes) external onlyOwner {
        if (_votes != address(0)) revert MarketplaceVotesAlreadySet(_votes);
        if (votes == address(0)) revert MarketplaceZeroAddress();
        _votes = votes;
        emit VotesConnected(votes);
    }

    /// @notice Owner, once: the Validators contract (it and the Marketplace refer to each other).
    /// Emits {ValidatorsConnected}.
    function connectValidators(Validators validators) external onlyOwner {
        if (address(_validators) != address(0)) revert MarketplaceValidatorsAlreadySet(address(_validators));
        if (address(validators) == address(0)) revert MarketplaceZeroAddress();
        _validators = validators;
        emit ValidatorsConnected(address(validators));
    }

    /// @notice Owner: the platform fee for deliveries from now on (at most MAX_FEE_BPS). Emits {FeeChanged}.
    function setFeeBps(uint256 feeBps_) external onlyOwner {
        if (feeBps_ > MAX_FEE_BPS) revert MarketplaceFeeTooHigh(feeBps_, MAX_FEE_BPS);
        _fee.feeBps = uint16(feeBps_);
        emit FeeChanged(feeBps_);
    }

    /// @notice Owner: who is credited the platform fee from now on. Emits {FeeRecipientChanged}.
    /// Fees accrued so far stay with the previous recipient (credited to it).
    function setFeeRecipient(address feeRecipient_) external onlyOwner {
        if (feeRecipient_ == address(0)) revert MarketplaceZeroAddress();
        FeeConfig memory fee = _fee;
        if (fee.accrued != 0) _credited[fee.recipient] += fee.accrued;
        _fee = FeeConfig({recipient: feeRecipient_, feeBps: fee.feeBps, accrued: 0});
        emit FeeRecipientChanged(feeRecipient_);
    }

    /// @notice True once a key was delivered to `account` for a purchase it paid (not for validator keys).
    function hasLicense(uint256 modelId, address account) external view returns (bool) {
        return _licences[modelId][account].status == STATUS_DELIVERED;
    }

    /// @notice A purchase as stored: status is one of the STATUS_* constants.
    function purchase(uint256 purchaseId)
        external
        view
        returns (address account, uint256 modelId, uint256 price, uint256 deadline, uint8 status, bool forValidator)
    {
        Purchase memory p = _purchases[purchaseId];
        if (p.account == address(0)) revert MarketplaceUnknownPurchase(purchaseId);
        Access memory access = p.forValidator ? _validatorAccess[p.modelId][p.account] : _licences[p.modelId][p.account];
        if (access.purchaseId != purchaseId) {
            // Superseded by a later purchase of the same (model, account): that only happens after a
            // refund (buyers) or an expired request (validators). Its price is gone from storage.
            return (p.account, p.modelId, 0, 0, p.forValidator ? STATUS_EXPIRED : STATUS_REFUNDED, p.forValidator);
        }
        return (p.account, p.modelId, access.price, access.deadline, access.status, p.forValidator);
    }

    /// @notice Wei that `account` can withdraw now.
    function credited(address account) external view returns (uint256 amount) {
        amount = _credited[account];
        if (account == _fee.recipient) amount += _fee.accrued;
    }

    /// @notice The licence holder's live vote score for the model (0 if none), as Votes recorded it.
    function voteOf(uint256 modelId, address voter) external view returns (uint8) {
        return _licences[modelId][voter].vote;
    }

    function votes() external view returns (address) {
        return _votes;
    }

    /// @notice Wei a verifier of `modelId` can claim now (0 for anyone else).
    function pendingValidatorReward(uint256 modelId, address validator) external view returns (uint256) {
        Validators validators = _validators;
        if (address(validators) == address(0) || !validators.isVerifier(modelId, validator)) return 0;
        return _books[modelId].rewardPerVerifier - _rewardClaimed[modelId][validator];
    }

    /// @notice The validation outcome Validators reported, and the cumulative reward per verifier.
    function book(uint256 modelId) external view returns (uint256 verifiers, bool disputed, uint256 rewardPerVerifier) {
        Book memory b = _books[modelId];
        return (b.verifiers, b.disputed, b.rewardPerVerifier);
    }

    function registry() external view returns (address) {
        return address(_registry);
    }

    function validators() external view returns (address) {
        return address(_validators);
    }

    function deliveryWindow() external view returns (uint256) {
        return _deliveryWindow;
    }

    function feeBps() external view returns (uint256) {
        return _fee.feeBps;
    }

    function feeRecipient() external view returns (address) {
        return _fee.recipient;
    }

    function validatorShareBps() external view returns (uint256) {
        return _validatorShareBps;
    }

    /// @notice The id the next purchase will get.
    function nextPurchaseId() external view returns (uint256) {
        return _nextPurchaseId;
    }

    function _open(Access storage access, uint256 modelId, uint256 price, bool forValidator)
        private
        returns (uint256 purchaseId)
    {
        purchaseId = _nextPurchaseId++;
        uint256 deadline = block.timestamp + _deliveryWindow;
        access.purchaseId = uint64(purchaseId);
        access.price = uint96(price); // the registry caps prices at uint96
        access.deadline = uint40(deadline);
        access.status = STATUS_PENDING;
        _purchases[purchaseId] = Purchase({account: msg.sender, modelId: uint88(modelId), forValidator: forValidator});
    }

    function _accessOf(Purchase memory p, uint256 purchaseId) private view returns (Access storage access) {
        if (p.account == address(0)) revert MarketplaceUnknownPurchase(purchaseId);
        access = p.forValidator ? _validatorAccess[p.modelId][p.account] : _licences[p.modelId][p.account];
        if (access.purchaseId != purchaseId) {
            revert MarketplaceNotPending(purchaseId, p.forValidator ? STATUS_EXPIRED : STATUS_REFUNDED);
        }
    }

    /// @dev Splits a delivered sale: fee to the recipient, a share of it to the verifiers, the rest to the owner.
    // The divisions round down on purpose: fee first (what the buyer was quoted), then an equal
    // per-verifier share of it; the dust stays with the platform, so nothing is ever over-credited.
    // slither-disable-start divide-before-multiply
    function _settle(Book storage b, uint256 verifiers, address owner, uint256 price) private {
        FeeConfig memory fee = _fee;
        uint256 feeAmount = (price * fee.feeBps) / 10_000;
        if (feeAmount != 0) {
            uint256 platformAmount = feeAmount;
            if (verifiers != 0) {
                uint256 perVerifier = (feeAmount * _validatorShareBps) / 10_000 / verifiers;
                if (perVerifier != 0) {
                    b.rewardPerVerifier += uint216(perVerifier);
                    // Rounding dust stays with the platform.
                    platformAmount -= perVerifier * verifiers;
                }
            }
            _fee.accrued = fee.accrued + uint80(platformAmount); // checked: reverts past ~1.2 million ETH unpaid

        }
        _credited[owner] += price - feeAmount;
    }
    // slither-disable-end divide-before-multiply
}
