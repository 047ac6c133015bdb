// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {Validators} from "./Validators.sol";
import {Votes} from "./Votes.sol";

/// @notice Escrow for model sales: the price is held until the seller's worker delivers the wrapped key,
/// and the seller's revenue is then held for a challenge period, during which a dispute refunds the buyer.
/// Prices are in ETH or in the ERC-20 the listing names (`ModelRegistry.paymentToken`); a purchase keeps
/// the token it was paid in, and every balance (escrow, credits, verifiers' rewards) is kept per token.
/// Subscriptions sell time-limited access to the model's service, paid to the owner at once.
/// @dev A purchase is two slots: `_purchases[id]` (who, which model) and the access record keyed by
/// (model, account), which is also the licence `hasLicense` reads. A staked validator gets a key the
/// same way at price 0 (`requestValidatorKey`), in a separate access table that grants no licence; the
/// Validators contract is told of each such request and delivery (its seats and bonds). A licence
/// holder's vote score is kept in its licence record (Votes asks `recordVote`).
contract Marketplace is Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

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
    error MarketplaceWrongBuyer(uint256 purchaseId, address expected, address given);
    error MarketplaceNotDeliverer(uint256 purchaseId, address caller);
    error MarketplaceDeliveryWindowClosed(uint256 purchaseId, uint256 deadline);
    error MarketplaceDeliveryWindowOpen(uint256 purchaseId, uint256 deadline);
    error MarketplaceBadWrappedKey(uint256 length, uint256 expected);
    error MarketplaceNotBuyer(uint256 purchaseId, address caller);
    error MarketplaceNotRefundable(uint256 purchaseId);
    error MarketplaceNothingToRelease(uint256 purchaseId);
    error MarketplaceRevenueHeld(uint256 purchaseId, uint256 challengeEnd);
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
    error MarketplaceTokenPriceAboveMax(uint256 modelId, address token, uint256 price, uint256 maxPrice);
    error MarketplaceEthSentForToken(uint256 modelId, address token, uint256 sent);
    error MarketplaceTokenAmountMismatch(address token, uint256 expected, uint256 received);
    error MarketplaceNotPricedInToken(uint256 modelId);
    error MarketplacePermitFailed(address token, uint256 allowance, uint256 needed);
    error MarketplaceNoSubscription(uint256 modelId);
    error MarketplaceBadPeriods(uint256 periods);
    error MarketplaceNotNewVersion(uint256 modelId, uint256 version);
    error MarketplaceNotVersionDeliverer(uint256 modelId, address caller);
    error MarketplaceBatchMismatch(uint256 accounts, uint256 wrappedKeys);
    error MarketplaceNoLicence(uint256 modelId, address account);
    error MarketplaceNotEntitled(
        uint256 modelId, uint256 version, address account, uint256 deliveredAt, uint256 publishedAt, uint256 window
    );
    error MarketplaceVersionKeyAlreadyDelivered(uint256 modelId, uint256 version, address account);

    /// `token` is what the price was paid in (address(0): ETH; always 0 for a validator's request).
    event Purchased(
        uint256 indexed purchaseId,
        uint256 indexed modelId,
        address indexed buyer,
        uint256 price,
        bytes32 buyerKey,
        address token
    );
    event ValidatorKeyRequested(uint256 indexed purchaseId, uint256 indexed modelId, address indexed validator);
    event KeyDelivered(uint256 indexed purchaseId, bytes wrappedKey);
    event Refunded(uint256 indexed purchaseId, address indexed buyer, uint256 amount, address token);
    event RevenueReleased(
        uint256 indexed purchaseId, address indexed owner, uint256 amount, uint256 fee, address token
    );
    event Withdrawn(address indexed account, uint256 amount, address indexed token);
    event FeeChanged(uint256 feeBps);
    event FeeRecipientChanged(address indexed feeRecipient);
    event ValidatorsConnected(address indexed validators);
    event VotesConnected(address indexed votes);
    event VerdictRecorded(uint256 indexed modelId, uint256 indexed version, uint8 status, uint256 verifierWeight);
    event ValidatorRewardClaimed(uint256 indexed modelId, address indexed validator, uint256 amount, address token);
    event Subscribed(uint256 indexed modelId, address indexed account, uint64 expiresAt);
    /// A later version's content key (2, 3, ...) wrapped to the licence holder's purchase key (docs/formats.md).
    event VersionKeyDelivered(
        uint256 indexed modelId, uint256 indexed version, address indexed account, bytes wrappedKey
    );

    uint8 public constant STATUS_NONE = 0;
    uint8 public constant STATUS_PENDING = 1;
    uint8 public constant STATUS_DELIVERED = 2; // the licence (a buyer's) or the key (a validator's)
    uint8 public constant STATUS_REFUNDED = 3; // a buyer's purchase refunded (never delivered, or disputed in time)
    // a validator's request replaced: after its window, or by its request in a later validation cycle
    uint8 public constant STATUS_EXPIRED = 4;
    uint256 public constant MAX_FEE_BPS = 1000;
    uint256 public constant WRAPPED_KEY_LENGTH = 80; // HPKE enc(32) || ciphertext(48), docs/formats.md
    uint8 private constant VALIDATORS_VERIFIED = 1; // Validators.STATUS_VERIFIED

    struct Purchase {
        address account;
        uint88 modelId;
        bool forValidator;
    }

    /// The live purchase of one (model, account); a buyer's delivered one is the licence.
    struct Access {
        uint56 purchaseId;
        bool paidInToken; // the price is in `_purchaseTokens[purchaseId]`, not in wei
        uint80 price; // the registry caps prices at uint80
        uint40 deadline; // delivery deadline
        uint40 deliveredAt; // 0 until delivered; the challenge period runs from here
        uint8 status;
        uint8 vote; // the licence holder's live score in Votes (0: none)
        bool ownerBought; // bought by the model's owner: its vote does not count
        bool released; // the seller's revenue was paid out (releaseRevenue)
    }

    /// What the marketplace knows about a model's validation (told by Validators): its latest verdict.
    struct Book {
        uint48 verifierWeight; // total weight of the validators that verified `version`
        bool disputed; // a version settled as anything but Verified
        uint40 disputedAt;
        uint64 version; // the version the latest verdict is about; its verifiers share the fees
    }

    ModelRegistry private immutable _registry;
    uint256 private immutable _deliveryWindow;
    uint256 private immutable _challengePeriod;
    uint256 private immutable _validatorShareBps;
    Validators private _validators;
    Votes private _votes;
    address private _feeRecipient;
    uint16 private _feeBps;
    // Starts at 1 so that purchase id 0 means "none" and every buy() pays the same for the counter.
    uint64 private _nextPurchaseId = 1;
    mapping(uint256 purchaseId => Purchase) private _purchases;
    mapping(uint256 modelId => mapping(address buyer => Access)) private _licences;
    mapping(uint256 modelId => mapping(address validator => Access)) private _validatorAccess;
    mapping(uint256 modelId => Book) private _books;
    // cumulative amount owed per unit of verifier weight of each Verified version, per token (address(0): wei)
    mapping(uint256 modelId => mapping(uint256 version => mapping(address token => uint256))) private _rewardPerWeight;
    // what each verifier of a version has claimed, per unit of weight and token
    mapping(
        uint256 modelId => mapping(uint256 version => mapping(address validator => mapping(address token => uint256)))
    ) private _rewardClaimed;
    mapping(address account => mapping(address token => uint256)) private _credited;
    // the ERC-20 a purchase was paid in, fixed at buy time (absent: ETH)
    mapping(uint256 purchaseId => address) private _purchaseTokens;
    mapping(uint256 modelId => mapping(address account => uint64)) private _subscriptionEnds;
    // Which licences received a later version's key: bit (purchaseId % 256) of word (purchaseId / 256), so
    // that holders whose purchases are close share a slot. A licence's purchase id never changes once
    // delivered: it cannot be bought again, and a refund of it means a disputed model, which no one can buy.
    mapping(uint256 modelId => mapping(uint256 version => mapping(uint256 word => uint256))) private
        _versionKeysDelivered;

    /// @param registry the ModelRegistry whose tokens are sold.
    /// @param deliveryWindow seconds a seller has to deliver before the buyer may take a refund.
    /// @param challengePeriod seconds a delivered sale's revenue is held; a dispute within it refunds the buyer.
    /// @param feeBps platform fee in basis points of each sale (at most MAX_FEE_BPS).
    /// @param feeRecipient who is credited the platform fee.
    /// @param validatorShareBps share of the fee (basis points of the fee) paid to a model's verifiers.
    /// @param initialOwner who may change the fee and connect the Validators and Votes contracts once.
    constructor(
        ModelRegistry registry,
        uint256 deliveryWindow,
        uint256 challengePeriod,
        uint256 feeBps,
        address feeRecipient,
        uint256 validatorShareBps,
        address initialOwner
    ) Ownable(initialOwner) {
        if (address(registry) == address(0) || feeRecipient == address(0)) {
            revert MarketplaceZeroAddress();
        }
        if (feeBps > MAX_FEE_BPS) revert MarketplaceFeeTooHigh(feeBps, MAX_FEE_BPS);
        if (deliveryWindow == 0 || deliveryWindow > type(uint32).max) revert MarketplaceBadConfig("deliveryWindow");
        if (challengePeriod > type(uint32).max) revert MarketplaceBadConfig("challengePeriod");
        if (validatorShareBps > 10_000) revert MarketplaceBadConfig("validatorShareBps");
        _registry = registry;
        _deliveryWindow = deliveryWindow;
        _challengePeriod = challengePeriod;
        _validatorShareBps = validatorShareBps;
        _feeRecipient = feeRecipient;
        _feeBps = uint16(feeBps);
    }

    /// @notice Buy a licence: pay exactly the price into escrow until the key is delivered. A model priced
    /// in ETH takes the price as msg.value; one priced in an ERC-20 takes no ETH and pulls the price from
    /// the buyer (approve the Marketplace first, or use `buyWithPermit`). A token that delivers less than
    /// the price (a fee on transfer) is refused.
    /// @param buyerKey the buyer's X25519 public key (docs/formats.md) the key is wrapped to.
    /// @param maxPrice the most the buyer accepts to pay (guards against a price raised in the same block).
    /// @return purchaseId Emits {Purchased}.
    function buy(uint256 modelId, bytes32 buyerKey, uint256 maxPrice)
        external
        payable
        nonReentrant
        returns (uint256 purchaseId)
    {
        return _buy(modelId, buyerKey, maxPrice);
    }

    /// @notice `buy` for a model priced in an EIP-2612 token, approving the Marketplace in the same
    /// transaction with the buyer's permit signature for `maxPrice` (spender: this contract). A permit
    /// someone copied from the mempool and submitted first only sets the same allowance: the purchase then
    /// goes through with it.
    /// @return purchaseId Emits {Purchased}.
    function buyWithPermit(
        uint256 modelId,
        bytes32 buyerKey,
        uint256 maxPrice,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 purchaseId) {
        address token = _registry.paymentToken(modelId);
        if (token == address(0)) revert MarketplaceNotPricedInToken(modelId);
        try IERC20Permit(token).permit(msg.sender, address(this), maxPrice, deadline, v, r, s) {
            return _buy(modelId, buyerKey, maxPrice);
        } catch {
            uint256 allowance = IERC20(token).allowance(msg.sender, address(this));
            if (allowance < maxPrice) revert MarketplacePermitFailed(token, allowance, maxPrice);
        }
        return _buy(modelId, buyerKey, maxPrice);
    }

    /// @notice Subscribe to the model's service for `periods` periods of the owner's terms
    /// (`ModelRegistry.subscriptionTerms`), paid in the listing's token (ETH as msg.value, an ERC-20
    /// pulled like `buy`'s); the access runs from the later of now and the current expiry. The payment is
    /// credited to the model's owner at once, less the fee: a subscription grants calls to the running
    /// service, not a key, so there is nothing to deliver or hold (contracts/README.md).
    /// @param maxPrice the most the caller accepts to pay in all (periods x price per period).
    /// @return expiresAt when the access ends. Emits {Subscribed}.
    function subscribe(uint256 modelId, uint256 periods, uint256 maxPrice)
        external
        payable
        nonReentrant
        returns (uint64 expiresAt)
    {
        (uint256 pricePerPeriod, uint32 periodSeconds, bool active, address owner, address token) =
            _registry.subscriptionSale(modelId);
        if (pricePerPeriod == 0) revert MarketplaceNoSubscription(modelId);
        if (!active) revert MarketplaceModelInactive(modelId);
        if (_books[modelId].disputed) revert MarketplaceModelDisputed(modelId);
        if (periods == 0 || periods > type(uint64).max) revert MarketplaceBadPeriods(periods);
        uint256 from = _subscriptionEnds[modelId][msg.sender];
        if (from < block.timestamp) from = block.timestamp;
        uint256 end = from + periods * periodSeconds; // < 2^64 + 2^64 * 2^32: no overflow
        if (end > type(uint64).max) revert MarketplaceBadPeriods(periods);
        uint256 total = periods * pricePerPeriod; // < 2^64 * 2^128: no overflow
        _checkPayment(modelId, token, total, maxPrice);

        expiresAt = uint64(end);
        _subscriptionEnds[modelId][msg.sender] = expiresAt;
        _payOut(modelId, token, owner, total);
        emit Subscribed(modelId, msg.sender, expiresAt);
        if (token != address(0)) _pull(token, total);
    }

    /// @notice A staked validator asks for a model's key at no cost, to re-check it in a validation round.
    /// The Validators contract bonds part of its stake for the request (and refuses leaving validators,
    /// settled models and too many open requests). The seller's worker sees the same {Purchased} event
    /// (price 0) and answers with `deliverKey`. The delivery grants no licence. A request left undelivered
    /// past the window may be made again (the old one becomes EXPIRED).
    /// @return purchaseId Emits {Purchased} and {ValidatorKeyRequested}.
    function requestValidatorKey(uint256 modelId, bytes32 validatorKey) external returns (uint256 purchaseId) {
        Validators validators = _validators;
        if (address(validators) == address(0)) revert MarketplaceNotValidator(msg.sender);
        return _requestValidatorKey(validators, msg.sender, modelId, validatorKey);
    }

    /// @notice `requestValidatorKey` by `validator`'s attester (`Validators.setAttester`), for `validator`:
    /// the request, its bond and the key's seat are the validator's; the key is wrapped to `validatorKey`
    /// (the attester's X25519 key).
    function requestValidatorKeyFor(address validator, uint256 modelId, bytes32 validatorKey)
        external
        returns (uint256 purchaseId)
    {
        Validators validators = _validators;
        if (address(validators) == address(0)) revert MarketplaceNotValidator(validator);
        if (!validators.mayAttestFor(validator, msg.sender)) {
            revert Validators.ValidatorsNotAttester(validator, msg.sender);
        }
        return _requestValidatorKey(validators, validator, modelId, validatorKey);
    }

    /// @notice Deliver the wrapped content key to the purchase's buyer (or validator). Callable once, by
    /// the model's owner or operator, until the deadline, and never for a model the validators disputed
    /// (its buyers may refund at once instead). The price stays held for the challenge period
    /// (`releaseRevenue`).
    /// @param buyer the account the key was wrapped for: reverts {MarketplaceWrongBuyer} when the purchase
    /// is not that account's (after a reorg a purchase id may belong to someone else).
    /// @param wrappedKey HPKE enc || ciphertext, exactly WRAPPED_KEY_LENGTH bytes (docs/formats.md).
    /// Emits {KeyDelivered}.
    function deliverKey(uint256 purchaseId, address buyer, bytes calldata wrappedKey) external {
        Purchase memory p = _purchases[purchaseId];
        if (p.account != buyer) {
            if (p.account == address(0)) revert MarketplaceUnknownPurchase(purchaseId);
            revert MarketplaceWrongBuyer(purchaseId, p.account, buyer);
        }
        Access storage access = _accessOf(p, purchaseId);
        uint8 status = access.status;
        if (status != STATUS_PENDING) revert MarketplaceNotPending(purchaseId, status);
        if (_books[p.modelId].disputed) revert MarketplaceModelDisputed(p.modelId);
        uint256 deadline = access.deadline;
        if (block.timestamp > deadline) revert MarketplaceDeliveryWindowClosed(purchaseId, deadline);
        (address owner, address operator) = _registry.deliveryParties(p.modelId);
        if (msg.sender != owner && msg.sender != operator) revert MarketplaceNotDeliverer(purchaseId, msg.sender);
        if (wrappedKey.length != WRAPPED_KEY_LENGTH) {
            revert MarketplaceBadWrappedKey(wrappedKey.length, WRAPPED_KEY_LENGTH);
        }

        access.status = STATUS_DELIVERED;
        access.deliveredAt = uint40(block.timestamp);
        emit KeyDelivered(purchaseId, wrappedKey);
        if (p.forValidator) _validators.keyDelivered(p.modelId, buyer);
    }

    /// @notice Deliver a later version's content key to licence holders entitled to it, by the model's
    /// owner or operator: each account holds a delivered licence (a validator's key is no licence) bought
    /// no more than the model's `updateWindow` before the version was published (type(uint256).max:
    /// forever), and has not received this version's key yet. Any bad entry reverts the whole batch.
    /// @param version 2 .. versionCount (version 1's key is the purchase's, `deliverKey`).
    /// @param wrappedKeys each account's key, HPKE enc || ciphertext to its purchase key, exactly
    /// WRAPPED_KEY_LENGTH bytes (docs/formats.md). Emits {VersionKeyDelivered} per account.
    function deliverVersionKeys(
        uint256 modelId,
        uint256 version,
        address[] calldata accounts,
        bytes[] calldata wrappedKeys
    ) external {
        if (version < 2) revert MarketplaceNotNewVersion(modelId, version);
        (address owner, address operator, uint256 publishedAt, uint256 window) =
            _registry.versionDelivery(modelId, version);
        if (msg.sender != owner && msg.sender != operator) revert MarketplaceNotVersionDeliverer(modelId, msg.sender);
        uint256 count = accounts.length;
        if (wrappedKeys.length != count) revert MarketplaceBatchMismatch(count, wrappedKeys.length);
        for (uint256 i = 0; i < count; ++i) {
            bytes calldata wrappedKey = wrappedKeys[i];
            if (wrappedKey.length != WRAPPED_KEY_LENGTH) {
                revert MarketplaceBadWrappedKey(wrappedKey.length, WRAPPED_KEY_LENGTH);
            }
            _markVersionKey(modelId, version, accounts[i], publishedAt, window);
            emit VersionKeyDelivered(modelId, version, accounts[i], wrappedKey);
        }
    }

    /// @notice Pay out a delivered sale once its challenge period is over (anyone may call): the price
    /// less the fee to the model's current owner, the fee to the platform and the model's verifiers.
    /// Refused while the period runs and for a sale whose model was disputed within it (its buyer is
    /// refunded instead). Emits {RevenueReleased}.
    function releaseRevenue(uint256 purchaseId) external {
        Purchase memory p = _purchases[purchaseId];
        Access storage access = _accessOf(p, purchaseId);
        if (access.status != STATUS_DELIVERED || access.released || access.price == 0) {
            revert MarketplaceNothingToRelease(purchaseId);
        }
        uint256 challengeEnd = uint256(access.deliveredAt) + _challengePeriod;
        if (block.timestamp <= challengeEnd) revert MarketplaceRevenueHeld(purchaseId, challengeEnd);
        Book storage b = _books[p.modelId];
        if (_disputedBy(b, challengeEnd)) revert MarketplaceModelDisputed(p.modelId);

        access.released = true;
        address owner = _registry.ownerOf(p.modelId);
        address token = access.paidInToken ? _purchaseTokens[purchaseId] : address(0);
        (uint256 amount, uint256 fee) = _payOut(p.modelId, token, owner, access.price);
        emit RevenueReleased(purchaseId, owner, amount, fee, token);
    }

    /// @notice Take the money back (buyer only; credited, `withdraw` sends it) for a purchase that was
    /// not delivered within the window, a pending one of a model the validators disputed (at once), or a
    /// delivered one whose model was disputed within its challenge period, while its revenue is held
    /// (the licence and its vote are revoked). Emits {Refunded}.
    function refund(uint256 purchaseId) external {
        Purchase memory p = _purchases[purchaseId];
        Access storage access = _accessOf(p, purchaseId);
        if (p.forValidator || p.account != msg.sender) revert MarketplaceNotBuyer(purchaseId, msg.sender);
        Access memory a = access;
        Book storage b = _books[p.modelId];
        if (a.status == STATUS_PENDING) {
            // A model the validators disputed can no longer be delivered: its buyers need not wait.
            if (block.timestamp <= a.deadline && !b.disputed) {
                revert MarketplaceDeliveryWindowOpen(purchaseId, a.deadline);
            }
        } else if (a.status == STATUS_DELIVERED) {
            if (a.released || a.price == 0 || !_disputedBy(b, uint256(a.deliveredAt) + _challengePeriod)) {
                revert MarketplaceNotRefundable(purchaseId);
            }
            if (a.vote != 0) {
                access.vote = 0;
                _votes.dropVote(p.modelId, a.vote, a.price);
            }
        } else {
            revert MarketplaceNotPending(purchaseId, a.status);
        }

        access.status = STATUS_REFUNDED;
        address token = a.paidInToken ? _purchaseTokens[purchaseId] : address(0);
        _credited[msg.sender][token] += a.price;
        emit Refunded(purchaseId, msg.sender, a.price, token);
    }

    /// @notice Send the caller all the ETH credited to them (sales, fees, refunds, rewards): `withdraw(0)`.
    function withdraw() external nonReentrant {
        _withdraw(address(0));
    }

    /// @notice Send the caller everything credited to them in `token` (address(0): ETH). If the transfer
    /// fails the whole call reverts and the balance stays credited. Emits {Withdrawn}.
    function withdraw(address token) external nonReentrant {
        _withdraw(token);
    }

    /// @notice Move a verifier's share of the model's ETH sales fees into their withdrawable balance:
    /// `claimValidatorReward(modelId, 0)`.
    function claimValidatorReward(uint256 modelId) external {
        _claimValidatorReward(modelId, _books[modelId].version, msg.sender, address(0));
    }

    /// @notice Move a verifier's share of the model's sales fees in `token` (address(0): ETH) into their
    /// withdrawable balance, in proportion to the weight it verified with: the verifiers of the version
    /// the latest verdict is about (`verdictVersion`; `claimValidatorRewardAt` for an earlier one).
    /// Emits {ValidatorRewardClaimed}.
    function claimValidatorReward(uint256 modelId, address token) external {
        _claimValidatorReward(modelId, _books[modelId].version, msg.sender, token);
    }

    /// @notice `claimValidatorReward` for `validator` (its attester's agent claims this way): the reward
    /// is credited to the validator, never to the caller. Anyone may call it.
    function claimValidatorRewardFor(address validator, uint256 modelId, address token) external {
        _claimValidatorReward(modelId, _books[modelId].version, validator, token);
    }

    /// @notice `claimValidatorRewardFor` a verifier of `version`: what the fees paid its verifiers while
    /// it was the latest Verified version. Credited to the validator; anyone may call it.
    function claimValidatorRewardAt(address validator, uint256 modelId, uint256 version, address token) external {
        _claimValidatorReward(modelId, version, validator, token);
    }

    /// @notice Called by the Validators contract when a validation cycle settles: a Verified version
    /// shares the model's fees with its verifiers by weight from then on; any other outcome stops sales
    /// and deliveries, and lets the buyers of pending purchases, and of deliveries still in their
    /// challenge period, refund. Emits {VerdictRecorded}.
    function recordVerdict(uint256 modelId, uint256 version, uint8 status, uint256 verifierWeight) external {
        if (msg.sender != address(_validators)) revert MarketplaceOnlyValidators(msg.sender);
        Book storage b = _books[modelId];
        b.version = uint64(version); // one publishVersion transaction per version: 2^64 is out of reach
        if (status == VALIDATORS_VERIFIED) {
            b.verifierWeight = uint48(verifierWeight); // Validators tallies weights in uint48
        } else {
            b.verifierWeight = 0;
            b.disputed = true;
            b.disputedAt = uint40(block.timestamp);
        }
        emit VerdictRecorded(modelId, version, status, verifierWeight);
    }

    /// @notice Called by the Votes contract: store `voter`'s score for the model in its licence record.
    /// @return weight the vote's weight: the price paid for a licence bought from someone else; 0 when
    /// `voter` holds no such licence (nothing is stored then).
    /// @return previous the score it replaces (0 if none).
    function recordVote(uint256 modelId, address voter, uint8 score) external returns (uint256 weight, uint8 previous) {
        if (msg.sender != address(_votes)) revert MarketplaceOnlyVotes(msg.sender);
        Access storage access = _licences[modelId][voter];
        // Weights are wei: a licence paid in a token has no common unit with them (contracts/README.md).
        if (access.status != STATUS_DELIVERED || access.ownerBought || access.price == 0 || access.paidInToken) {
            return (0, 0);
        }
        previous = access.vote;
        if (previous != score) access.vote = score;
        return (access.price, previous);
    }

    /// @notice Owner, once: the Votes contract allowed to call `recordVote`. Emits {VotesConnected}.
    function connectVotes(Votes votes_) external onlyOwner {
        if (address(_votes) != address(0)) revert MarketplaceVotesAlreadySet(address(_votes));
        if (address(votes_) == address(0)) revert MarketplaceZeroAddress();
        _votes = votes_;
        emit VotesConnected(address(votes_));
    }

    /// @notice Owner, once: the Validators contract (it and the Marketplace refer to each other).
    /// Emits {ValidatorsConnected}.
    function connectValidators(Validators validators_) external onlyOwner {
        if (address(_validators) != address(0)) revert MarketplaceValidatorsAlreadySet(address(_validators));
        if (address(validators_) == address(0)) revert MarketplaceZeroAddress();
        _validators = validators_;
        emit ValidatorsConnected(address(validators_));
    }

    /// @notice Owner: the platform fee for revenue released from now on (at most MAX_FEE_BPS).
    /// Emits {FeeChanged}.
    function setFeeBps(uint256 feeBps_) external onlyOwner {
        if (feeBps_ > MAX_FEE_BPS) revert MarketplaceFeeTooHigh(feeBps_, MAX_FEE_BPS);
        _feeBps = uint16(feeBps_);
        emit FeeChanged(feeBps_);
    }

    /// @notice Owner: who is credited the platform fee from now on (fees credited so far stay with the
    /// previous recipient). Emits {FeeRecipientChanged}.
    function setFeeRecipient(address feeRecipient_) external onlyOwner {
        if (feeRecipient_ == address(0)) revert MarketplaceZeroAddress();
        _feeRecipient = feeRecipient_;
        emit FeeRecipientChanged(feeRecipient_);
    }

    /// @notice True once a key was delivered to `account` for a purchase it paid (not for validator keys)
    /// and not refunded since.
    function hasLicense(uint256 modelId, address account) external view returns (bool) {
        return _licences[modelId][account].status == STATUS_DELIVERED;
    }

    /// @notice A purchase as stored: status is one of the STATUS_* constants; `deliveredAt` is 0 until
    /// delivered, and `released` says whether the seller's revenue was paid out.
    function purchase(uint256 purchaseId)
        external
        view
        returns (
            address account,
            uint256 modelId,
            uint256 price,
            uint256 deadline,
            uint8 status,
            bool forValidator,
            uint256 deliveredAt,
            bool released
        )
    {
        Purchase memory p = _purchases[purchaseId];
        if (p.account == address(0)) revert MarketplaceUnknownPurchase(purchaseId);
        Access memory a = p.forValidator ? _validatorAccess[p.modelId][p.account] : _licences[p.modelId][p.account];
        if (a.purchaseId != purchaseId) {
            // Superseded by a later purchase of the same (model, account): that only happens after a
            // refund (buyers) or an expired request (validators). Its price is gone from storage.
            return
                (
                    p.account,
                    p.modelId,
                    0,
                    0,
                    p.forValidator ? STATUS_EXPIRED : STATUS_REFUNDED,
                    p.forValidator,
                    0,
                    false
                );
        }
        return (p.account, p.modelId, a.price, a.deadline, a.status, p.forValidator, a.deliveredAt, a.released);
    }

    /// @notice Whether `account` received the key of `version` (2, 3, ...) through `deliverVersionKeys`.
    function versionKeyDelivered(uint256 modelId, uint256 version, address account) external view returns (bool) {
        uint256 purchaseId = _licences[modelId][account].purchaseId;
        return _versionKeysDelivered[modelId][version][purchaseId >> 8] & (1 << (purchaseId & 0xff)) != 0;
    }

    /// @notice Whether `account` holds a licence entitled to `version`: delivered no more than the
    /// model's update window before the version was published (version 1: any licence).
    function entitledTo(uint256 modelId, uint256 version, address account) external view returns (bool) {
        Access storage licence = _licences[modelId][account];
        if (licence.status != STATUS_DELIVERED) return false;
        // slither-disable-next-line unused-return (who may deliver does not matter to entitlement)
        (,, uint256 publishedAt, uint256 window) = _registry.versionDelivery(modelId, version);
        return _within(licence.deliveredAt, publishedAt, window);
    }

    /// @notice Wei that `account` can withdraw now.
    function credited(address account) external view returns (uint256) {
        return _credited[account][address(0)];
    }

    /// @notice What `account` can withdraw now in `token` (address(0): wei).
    function credited(address account, address token) external view returns (uint256) {
        return _credited[account][token];
    }

    /// @notice The token purchase `purchaseId` was paid in (address(0): ETH, or no such purchase).
    function purchaseToken(uint256 purchaseId) external view returns (address) {
        return _purchaseTokens[purchaseId];
    }

    /// @notice When `account`'s subscription to the model's service ends (0: never subscribed).
    function accessUntil(uint256 modelId, address account) public view returns (uint64) {
        return _subscriptionEnds[modelId][account];
    }

    /// @notice Whether `account` may use the model's service now: it holds a licence, or a subscription
    /// that has not ended.
    function hasAccess(uint256 modelId, address account) external view returns (bool) {
        return
            _licences[modelId][account].status == STATUS_DELIVERED
                || block.timestamp < _subscriptionEnds[modelId][account];
    }

    /// @notice The licence holder's live vote score for the model (0 if none), as Votes recorded it.
    function voteOf(uint256 modelId, address voter) external view returns (uint8) {
        return _licences[modelId][voter].vote;
    }

    /// @notice Wei a verifier of the version the model's latest verdict is about can claim now (0 for
    /// anyone else).
    function pendingValidatorReward(uint256 modelId, address validator) external view returns (uint256) {
        return pendingValidatorRewardAt(modelId, _books[modelId].version, validator, address(0));
    }

    /// @notice What a verifier of the version the model's latest verdict is about can claim now in
    /// `token` (address(0): wei; 0 for anyone else).
    function pendingValidatorReward(uint256 modelId, address validator, address token) external view returns (uint256) {
        return pendingValidatorRewardAt(modelId, _books[modelId].version, validator, token);
    }

    /// @notice What a verifier of `version` of the model can claim now in `token` (0 for anyone else).
    function pendingValidatorRewardAt(uint256 modelId, uint256 version, address validator, address token)
        public
        view
        returns (uint256)
    {
        uint256 weight = _verifierWeight(modelId, version, validator);
        if (weight == 0) return 0;
        return (_rewardPerWeight[modelId][version][token] - _rewardClaimed[modelId][version][validator][token]) * weight;
    }

    /// @notice The cumulative reward per unit of verifier weight of the model's sales in `token`, for
    /// the verifiers of the version the latest verdict is about.
    function rewardPerWeight(uint256 modelId, address token) external view returns (uint256) {
        return _rewardPerWeight[modelId][_books[modelId].version][token];
    }

    /// @notice The validation outcome Validators reported last, and the cumulative reward per unit of
    /// weight of its ETH sales (`rewardPerWeight(modelId, token)` for a token's); `verdictVersion` is
    /// the version it is about.
    function book(uint256 modelId)
        external
        view
        returns (uint256 verifierWeight, bool disputed, uint256 disputedAt, uint256 rewardPerWeight_)
    {
        Book memory b = _books[modelId];
        return (b.verifierWeight, b.disputed, b.disputedAt, _rewardPerWeight[modelId][b.version][address(0)]);
    }

    /// @notice The version the model's latest verdict is about (0: none yet).
    function verdictVersion(uint256 modelId) external view returns (uint256) {
        return _books[modelId].version;
    }

    function votes() external view returns (address) {
        return address(_votes);
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

    function challengePeriod() external view returns (uint256) {
        return _challengePeriod;
    }

    function feeBps() external view returns (uint256) {
        return _feeBps;
    }

    function feeRecipient() external view returns (address) {
        return _feeRecipient;
    }

    function validatorShareBps() external view returns (uint256) {
        return _validatorShareBps;
    }

    /// @notice The id the next purchase will get.
    function nextPurchaseId() external view returns (uint256) {
        return _nextPurchaseId;
    }

    /// @dev `buy` and `buyWithPermit` after the permit: checks, the purchase written, then the ERC-20 pulled.
    function _buy(uint256 modelId, bytes32 buyerKey, uint256 maxPrice) private returns (uint256 purchaseId) {
        (uint256 price, bool active, address owner, address token) = _registry.saleTermsWithToken(modelId);
        if (!active) revert MarketplaceModelInactive(modelId);
        _checkPayment(modelId, token, price, maxPrice);
        if (buyerKey == bytes32(0)) revert MarketplaceZeroBuyerKey();
        if (_books[modelId].disputed) revert MarketplaceModelDisputed(modelId);
        Access storage access = _licences[modelId][msg.sender];
        uint8 status = access.status;
        if (status == STATUS_DELIVERED) revert MarketplaceAlreadyLicensed(modelId, msg.sender);
        if (status == STATUS_PENDING) revert MarketplacePurchasePending(access.purchaseId, access.deadline);

        purchaseId = _open(msg.sender, modelId, price, false, msg.sender == owner, token);
        emit Purchased(purchaseId, modelId, msg.sender, price, buyerKey, token);
        if (token != address(0)) _pull(token, price);
    }

    /// @dev The price is within `maxPrice` and paid in the listing's currency: exactly `amount` of ETH, or
    /// no ETH for a token (pulled afterwards).
    function _checkPayment(uint256 modelId, address token, uint256 amount, uint256 maxPrice) private view {
        if (token == address(0)) {
            if (amount > maxPrice) revert MarketplacePriceAboveMax(modelId, amount, maxPrice);
            if (msg.value != amount) revert MarketplaceWrongPayment(modelId, msg.value, amount);
        } else {
            if (amount > maxPrice) revert MarketplaceTokenPriceAboveMax(modelId, token, amount, maxPrice);
            if (msg.value != 0) revert MarketplaceEthSentForToken(modelId, token, msg.value);
        }
    }

    /// @dev Takes `amount` of `token` from msg.sender, refusing a token that delivers anything else (a fee
    /// on transfer, a rebase): what the Marketplace holds must equal what it owes, per token.
    function _pull(address token, uint256 amount) private {
        if (amount == 0) return;
        IERC20 erc20 = IERC20(token);
        uint256 before = erc20.balanceOf(address(this));
        erc20.safeTransferFrom(msg.sender, address(this), amount);
        uint256 balance = erc20.balanceOf(address(this));
        if (balance != before + amount) {
            revert MarketplaceTokenAmountMismatch(token, amount, balance > before ? balance - before : 0);
        }
    }

    function _withdraw(address token) private {
        uint256 amount = _credited[msg.sender][token];
        if (amount == 0) revert MarketplaceNothingToWithdraw(msg.sender);
        _credited[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, amount, token);
        if (token == address(0)) {
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert MarketplaceTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    function _claimValidatorReward(uint256 modelId, uint256 version, address validator, address token) private {
        uint256 amount = pendingValidatorRewardAt(modelId, version, validator, token);
        if (amount == 0) {
            if (_verifierWeight(modelId, version, validator) == 0) revert MarketplaceNotVerifier(modelId, validator);
            revert MarketplaceNothingToClaim(modelId, validator);
        }
        _rewardClaimed[modelId][version][validator][token] = _rewardPerWeight[modelId][version][token];
        _credited[validator][token] += amount;
        emit ValidatorRewardClaimed(modelId, validator, amount, token);
    }

    /// @dev A key request of `validator` (checked by the caller: itself or its attester).
    function _requestValidatorKey(Validators validators, address validator, uint256 modelId, bytes32 validatorKey)
        private
        returns (uint256 purchaseId)
    {
        if (validatorKey == bytes32(0)) revert MarketplaceZeroBuyerKey();
        if (!_registry.isActive(modelId)) revert MarketplaceModelInactive(modelId);
        Access storage access = _validatorAccess[modelId][validator];
        uint8 status = access.status;
        // A key delivered in an earlier cycle: this request is for the later version a new cycle attests.
        if (status == STATUS_DELIVERED && !validators.joinsWithoutSeat(modelId, validator)) {
            revert MarketplaceAlreadyLicensed(modelId, validator);
        }
        if (status == STATUS_PENDING && block.timestamp <= access.deadline) {
            revert MarketplacePurchasePending(access.purchaseId, access.deadline);
        }

        purchaseId = _open(validator, modelId, 0, true, false, address(0));
        emit Purchased(purchaseId, modelId, validator, 0, validatorKey, address(0));
        emit ValidatorKeyRequested(purchaseId, modelId, validator);
        validators.keyRequested(modelId, validator);
    }

    /// @dev A new pending purchase by `account`, its access record written whole: a new purchase of the
    /// same (model, account) starts clean. `token` (address(0): ETH) is recorded for the refund and release.
    function _open(address account, uint256 modelId, uint256 price, bool forValidator, bool ownerBought, address token)
        private
        returns (uint256 purchaseId)
    {
        purchaseId = _nextPurchaseId++;
        Access memory fresh = Access({
            purchaseId: uint56(purchaseId),
            paidInToken: token != address(0),
            price: uint80(price),
            deadline: uint40(block.timestamp + _deliveryWindow),
            deliveredAt: 0,
            status: STATUS_PENDING,
            vote: 0,
            ownerBought: ownerBought,
            released: false
        });
        if (forValidator) _validatorAccess[modelId][account] = fresh;
        else _licences[modelId][account] = fresh;
        _purchases[purchaseId] = Purchase({account: account, modelId: uint88(modelId), forValidator: forValidator});
        if (token != address(0)) _purchaseTokens[purchaseId] = token;
    }

    function _accessOf(Purchase memory p, uint256 purchaseId) private view returns (Access storage access) {
        if (p.account == address(0)) revert MarketplaceUnknownPurchase(purchaseId);
        access = p.forValidator ? _validatorAccess[p.modelId][p.account] : _licences[p.modelId][p.account];
        if (access.purchaseId != purchaseId) {
            revert MarketplaceNotPending(purchaseId, p.forValidator ? STATUS_EXPIRED : STATUS_REFUNDED);
        }
    }

    /// @dev `deliverVersionKeys`' checks of one account (a delivered licence, entitled, not served yet),
    /// then its bit for `version` set.
    function _markVersionKey(uint256 modelId, uint256 version, address account, uint256 publishedAt, uint256 window)
        private
    {
        Access storage licence = _licences[modelId][account];
        if (licence.status != STATUS_DELIVERED) revert MarketplaceNoLicence(modelId, account);
        uint256 deliveredAt = licence.deliveredAt;
        if (!_within(deliveredAt, publishedAt, window)) {
            revert MarketplaceNotEntitled(modelId, version, account, deliveredAt, publishedAt, window);
        }
        uint256 purchaseId = licence.purchaseId;
        mapping(uint256 word => uint256) storage delivered = _versionKeysDelivered[modelId][version];
        uint256 bits = delivered[purchaseId >> 8];
        uint256 bit = 1 << (purchaseId & 0xff);
        if (bits & bit != 0) revert MarketplaceVersionKeyAlreadyDelivered(modelId, version, account);
        delivered[purchaseId >> 8] = bits | bit;
    }

    /// @dev Whether a version published at `publishedAt` falls within `window` seconds of a licence
    /// delivered at `deliveredAt` (written so that a window of type(uint256).max cannot overflow).
    function _within(uint256 deliveredAt, uint256 publishedAt, uint256 window) private pure returns (bool) {
        return publishedAt <= deliveredAt || publishedAt - deliveredAt <= window;
    }

    /// @dev Whether the validators disputed the model no later than `challengeEnd`.
    function _disputedBy(Book storage b, uint256 challengeEnd) private view returns (bool) {
        return b.disputed && b.disputedAt <= challengeEnd;
    }

    function _verifierWeight(uint256 modelId, uint256 version, address validator) private view returns (uint256) {
        Validators validators = _validators;
        if (address(validators) == address(0)) return 0;
        return validators.verifierWeightAt(modelId, version, validator);
    }

    /// @dev Splits a released sale: fee to the recipient, a share of it to the verifiers by weight, the
    /// rest to the owner. Returns (owner's amount, fee).
    // The divisions round down on purpose: fee first (what the buyer was quoted), then an equal share
    // per unit of verifier weight; the dust stays with the platform, so nothing is ever over-credited.
    // slither-disable-start divide-before-multiply
    function _payOut(uint256 modelId, address token, address owner, uint256 price)
        private
        returns (uint256 amount, uint256 fee)
    {
        fee = (price * _feeBps) / 10_000;
        uint256 platformAmount = fee;
        Book memory b = _books[modelId];
        uint256 weight = b.verifierWeight;
        if (fee != 0 && weight != 0) {
            uint256 perWeight = (fee * _validatorShareBps) / 10_000 / weight;
            if (perWeight != 0) {
                _rewardPerWeight[modelId][b.version][token] += perWeight;
                platformAmount -= perWeight * weight;
            }
        }
        if (platformAmount != 0) _credited[_feeRecipient][token] += platformAmount;
        amount = price - fee;
        _credited[owner][token] += amount;
    }
    // slither-disable-end divide-before-multiply
}
