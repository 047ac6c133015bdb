// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice What Channels reads from the ModelRegistry: a model's payment token, owner and operator.
interface IChannelsRegistry {
    /// @notice The token a model is paid in; address(0) = ETH.
    function paymentToken(uint256 modelId) external view returns (address);

    /// @notice The model token's owner (who is paid) and its operator (the seller's worker).
    function deliveryParties(uint256 modelId) external view returns (address owner, address operator);

    /// @notice The model token's owner (reverts for a model never listed).
    function ownerOf(uint256 modelId) external view returns (address);
}

/// @notice What Channels reads from the Marketplace: the platform fee, current at each claim.
interface IChannelsMarketplace {
    /// @notice The platform fee in basis points.
    function feeBps() external view returns (uint256);

    /// @notice Who is credited the platform fee.
    function feeRecipient() external view returns (address);
}

/// @notice Pay-per-call payment channels (after SingularityNET's MultiPartyEscrow): a buyer deposits ETH or
/// the model's ERC-20 for one model until an expiry; each call to the seller's service carries an EIP-712
/// voucher, signed by the buyer, for the cumulative amount owed so far; the model's owner or operator claims
/// the highest voucher on chain; after expiry the buyer takes back what was not claimed.
/// @dev Rules:
/// - A channel is paid in the model's payment token at opening (`registry.paymentToken`) and keeps that token.
/// - `claim` pays `min(cumulativeAmount, deposit) - claimed`: a voucher above the deposit pays the whole
///   deposit, and what it names beyond can be claimed with the same voucher after a top-up. A voucher at or
///   below what was already claimed pays nothing (`ChannelsNothingToClaim`), so a voucher is never paid twice.
/// - Grace: the seller should claim before `expiresAt`. After it, a claim still works until the buyer calls
///   `reclaim`, which returns `deposit - claimed` and closes the channel for good (first come, first served).
/// - Vouchers are plain ECDSA signatures by the buyer's key: ERC-1271 contract signatures can be revoked,
///   which would let a buyer take back calls already served.
/// - Payments to the seller and the platform are credited here and taken with `withdraw(token)`: a claim
///   never calls a token or a recipient, so an owner that rejects ETH or a token that blacklists the fee
///   recipient cannot block the seller's claim until the buyer reclaims. `reclaim` and `withdraw` pay the
///   caller only, so no third party can block them either.
/// - Deposits must arrive whole: a fee-on-transfer token is refused (`ChannelsTransferShortfall`).
contract Channels is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    error ChannelsZeroAddress();
    error ChannelsWrongToken(uint256 modelId, address token, address expected);
    error ChannelsZeroAmount();
    error ChannelsAmountTooLarge(uint256 amount, uint256 maxAmount);
    error ChannelsWrongPayment(uint256 sent, uint256 expected);
    error ChannelsTransferShortfall(address token, uint256 amount, uint256 received);
    error ChannelsBadExpiry(uint64 expiresAt, uint256 earliest);
    error ChannelsUnknownChannel(uint256 channelId);
    error ChannelsClosed(uint256 channelId);
    error ChannelsNotBuyer(uint256 channelId, address caller, address buyer);
    error ChannelsExpired(uint256 channelId, uint64 expiresAt);
    error ChannelsNotExpired(uint256 channelId, uint64 expiresAt);
    error ChannelsNotClaimer(uint256 channelId, address caller);
    error ChannelsBadSignature(uint256 channelId, address buyer);
    error ChannelsNothingToClaim(uint256 channelId, uint256 cumulativeAmount, uint256 claimed, uint256 deposit);
    error ChannelsNotModelOwner(uint256 modelId, address caller, address owner);
    error ChannelsNothingToWithdraw(address account, address token);
    error ChannelsTransferFailed(address account, uint256 amount);

    event ChannelOpened(
        uint256 indexed channelId,
        uint256 indexed modelId,
        address indexed buyer,
        address token,
        uint256 amount,
        uint64 expiresAt
    );
    event ChannelToppedUp(uint256 indexed channelId, uint256 amount, uint256 deposit);
    event ChannelExtended(uint256 indexed channelId, uint64 expiresAt);
    /// `paid` is credited to the model's owner, `fee` to the platform: together, the voucher's new part.
    event ChannelClaimed(uint256 indexed channelId, uint256 cumulativeAmount, uint256 paid, uint256 fee);
    event ChannelClosed(uint256 indexed channelId, uint256 returned);
    event CallPriceChanged(uint256 indexed modelId, uint256 price);
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    // solhint-disable-next-line gas-small-strings
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(uint256 channelId,uint256 cumulativeAmount)");
    uint256 public constant MAX_DEPOSIT = type(uint128).max;
    uint256 private constant BPS = 10_000;

    /// Three slots: who and until when; what for and in which token; the money.
    struct Channel {
        address buyer;
        uint64 expiresAt;
        bool open;
        address token; // address(0) = ETH
        uint96 modelId;
        uint128 deposit;
        uint128 claimed; // cumulative amount paid out so far (to the owner and the platform)
    }

    IChannelsRegistry private immutable _registry;
    IChannelsMarketplace private immutable _marketplace;
    // Starts at 1: channel id 0 means "none", and every openChannel pays the same for the counter.
    uint256 private _nextChannelId = 1;
    mapping(uint256 channelId => Channel) private _channels;
    mapping(uint256 modelId => uint256) private _callPrices;
    mapping(address account => mapping(address token => uint256)) private _credited;

    /// @param registry the ModelRegistry: payment token, owner and operator of each model.
    /// @param marketplace the Marketplace: its fee rate and fee recipient apply to every claim.
    constructor(IChannelsRegistry registry, IChannelsMarketplace marketplace) EIP712("Modex", "1") {
        if (address(registry) == address(0) || address(marketplace) == address(0)) revert ChannelsZeroAddress();
        _registry = registry;
        _marketplace = marketplace;
    }

    /// @notice Open a channel to pay for calls to `modelId`'s service, depositing `amount` until `expiresAt`.
    /// @param token the model's payment token (address(0): ETH, sent as msg.value); an ERC-20 deposit is
    /// pulled with transferFrom (approve first) and must arrive whole.
    /// @return channelId the new channel (ids run from 1). Emits {ChannelOpened}.
    function openChannel(uint256 modelId, address token, uint256 amount, uint64 expiresAt)
        external
        payable
        nonReentrant
        returns (uint256 channelId)
    {
        address expected = _registry.paymentToken(modelId);
        if (token != expected) revert ChannelsWrongToken(modelId, token, expected);
        if (expiresAt <= block.timestamp) revert ChannelsBadExpiry(expiresAt, block.timestamp + 1);
        _checkAmount(amount);
        channelId = _nextChannelId++;
        _channels[channelId] = Channel({
            buyer: msg.sender,
            expiresAt: expiresAt,
            open: true,
            token: token,
            modelId: uint96(modelId), // registry ids are sequential from 1: far below 2**96
            deposit: uint128(amount),
            claimed: 0
        });
        _receive(token, amount, msg.value);
        emit ChannelOpened(channelId, modelId, msg.sender, token, amount, expiresAt);
    }

    /// @notice Add `amount` to an open, unexpired channel's deposit. Buyer only. Emits {ChannelToppedUp}.
    function topUp(uint256 channelId, uint256 amount) external payable nonReentrant {
        Channel storage c = _buyersLiveChannel(channelId);
        _checkAmount(amount);
        uint256 deposit = c.deposit + amount;
        if (deposit > MAX_DEPOSIT) revert ChannelsAmountTooLarge(deposit, MAX_DEPOSIT);
        c.deposit = uint128(deposit);
        _receive(c.token, amount, msg.value);
        emit ChannelToppedUp(channelId, amount, deposit);
    }

    /// @notice Move an open channel's expiry later (also after it expired, while not reclaimed). Buyer only.
    /// Emits {ChannelExtended}.
    function extend(uint256 channelId, uint64 expiresAt) external {
        Channel storage c = _openChannel(channelId);
        if (msg.sender != c.buyer) revert ChannelsNotBuyer(channelId, msg.sender, c.buyer);
        uint256 earliest = c.expiresAt < block.timestamp ? block.timestamp : c.expiresAt;
        if (expiresAt <= earliest) revert ChannelsBadExpiry(expiresAt, earliest + 1);
        c.expiresAt = expiresAt;
        emit ChannelExtended(channelId, expiresAt);
    }

    /// @notice Claim the buyer's voucher for `cumulativeAmount`: credits `min(cumulativeAmount, deposit) -
    /// claimed` less the Marketplace's current fee to the model's current owner, and the fee to its fee
    /// recipient (take both with `withdraw`). By the model's owner or operator, while the channel is open:
    /// after expiry too, until the buyer reclaims. Emits {ChannelClaimed}.
    /// @param signature the buyer's 65-byte EIP-712 signature of Voucher(channelId, cumulativeAmount).
    function claim(uint256 channelId, uint256 cumulativeAmount, bytes calldata signature) external nonReentrant {
        Channel storage c = _openChannel(channelId);
        (address owner, address operator) = _registry.deliveryParties(c.modelId);
        if (msg.sender != owner && msg.sender != operator) revert ChannelsNotClaimer(channelId, msg.sender);
        _checkVoucher(c.buyer, channelId, cumulativeAmount, signature);
        uint256 deposit = c.deposit;
        uint256 claimed = c.claimed;
        uint256 due = cumulativeAmount < deposit ? cumulativeAmount : deposit;
        if (due <= claimed) revert ChannelsNothingToClaim(channelId, cumulativeAmount, claimed, deposit);
        c.claimed = uint128(due);
        (uint256 paid, uint256 fee) = _credit(owner, c.token, due - claimed);
        emit ChannelClaimed(channelId, cumulativeAmount, paid, fee);
    }

    /// @notice After expiry, return what was not claimed (`deposit - claimed`) to the buyer and close the
    /// channel: no claim after this. Buyer only. Emits {ChannelClosed}.
    function reclaim(uint256 channelId) external nonReentrant {
        Channel storage c = _openChannel(channelId);
        if (msg.sender != c.buyer) revert ChannelsNotBuyer(channelId, msg.sender, c.buyer);
        if (block.timestamp <= c.expiresAt) revert ChannelsNotExpired(channelId, c.expiresAt);
        c.open = false;
        uint256 returned = c.deposit - c.claimed;
        emit ChannelClosed(channelId, returned);
        if (returned != 0) _send(c.token, msg.sender, returned);
    }

    /// @notice Send the caller everything credited to it in `token` (address(0): ETH). Emits {Withdrawn}.
    function withdraw(address token) external nonReentrant {
        uint256 amount = _credited[msg.sender][token];
        if (amount == 0) revert ChannelsNothingToWithdraw(msg.sender, token);
        _credited[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, amount);
        _send(token, msg.sender, amount);
    }

    /// @notice Set the price of one call to `modelId`'s service, in its payment token's smallest unit (what
    /// each voucher must add). The model's owner only. Emits {CallPriceChanged}.
    function setCallPrice(uint256 modelId, uint256 price) external {
        address owner = _registry.ownerOf(modelId);
        if (msg.sender != owner) revert ChannelsNotModelOwner(modelId, msg.sender, owner);
        _callPrices[modelId] = price;
        emit CallPriceChanged(modelId, price);
    }

    /// @notice The price of one call to `modelId`'s service (0 if the owner never set one).
    function callPrice(uint256 modelId) external view returns (uint256) {
        return _callPrices[modelId];
    }

    /// @notice A channel as stored; reverts for an id never opened.
    function channel(uint256 channelId)
        external
        view
        returns (
            uint256 modelId,
            address buyer,
            address token,
            uint256 deposit,
            uint256 claimed,
            uint64 expiresAt,
            bool open
        )
    {
        Channel storage c = _existing(channelId);
        return (c.modelId, c.buyer, c.token, c.deposit, c.claimed, c.expiresAt, c.open);
    }

    /// @notice What `account` may withdraw in `token`.
    function credited(address account, address token) external view returns (uint256) {
        return _credited[account][token];
    }

    /// @notice The number of channels opened so far (ids run from 1 to this number).
    function channelCount() external view returns (uint256) {
        return _nextChannelId - 1;
    }

    /// @notice The EIP-712 domain separator vouchers are signed under ({name: "Modex", version: "1", chainId,
    /// verifyingContract: this contract}).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The registry and marketplace this contract reads.
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @notice The Marketplace whose fee applies to claims.
    function marketplace() external view returns (address) {
        return address(_marketplace);
    }

    /// @dev Reverts unless `signature` is `buyer`'s ECDSA signature of Voucher(channelId, cumulativeAmount).
    function _checkVoucher(address buyer, uint256 channelId, uint256 cumulativeAmount, bytes calldata signature)
        private
        view
    {
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount)));
        // slither-disable-next-line unused-return (the third value only details why a signature is malformed)
        (address signer, ECDSA.RecoverError failure,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (failure != ECDSA.RecoverError.NoError || signer != buyer) revert ChannelsBadSignature(channelId, buyer);
    }

    /// @dev Credits `amount` of `token`: the Marketplace's current fee to its fee recipient, the rest to `owner`.
    function _credit(address owner, address token, uint256 amount) private returns (uint256 paid, uint256 fee) {
        fee = amount * _marketplace.feeBps() / BPS;
        if (fee != 0) _credited[_marketplace.feeRecipient()][token] += fee;
        paid = amount - fee;
        _credited[owner][token] += paid;
    }

    function _checkAmount(uint256 amount) private pure {
        if (amount == 0) revert ChannelsZeroAmount();
        if (amount > MAX_DEPOSIT) revert ChannelsAmountTooLarge(amount, MAX_DEPOSIT);
    }

    /// @dev Takes `amount` of `token` from the caller: ETH exactly as the call's value (`sent`), an ERC-20 by
    /// transferFrom, refused unless this contract's balance grew by exactly `amount`.
    function _receive(address token, uint256 amount, uint256 sent) private {
        if (token == address(0)) {
            if (sent != amount) revert ChannelsWrongPayment(sent, amount);
            return;
        }
        if (sent != 0) revert ChannelsWrongPayment(sent, 0);
        IERC20 erc20 = IERC20(token);
        uint256 before = erc20.balanceOf(address(this));
        erc20.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = erc20.balanceOf(address(this)) - before;
        if (received != amount) revert ChannelsTransferShortfall(token, amount, received);
    }

    function _send(address token, address to, uint256 amount) private {
        if (token == address(0)) {
            (bool sent,) = to.call{value: amount}("");
            if (!sent) revert ChannelsTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    function _existing(uint256 channelId) private view returns (Channel storage c) {
        c = _channels[channelId];
        if (c.buyer == address(0)) revert ChannelsUnknownChannel(channelId);
    }

    function _openChannel(uint256 channelId) private view returns (Channel storage c) {
        c = _existing(channelId);
        if (!c.open) revert ChannelsClosed(channelId);
    }

    function _buyersLiveChannel(uint256 channelId) private view returns (Channel storage c) {
        c = _openChannel(channelId);
        if (msg.sender != c.buyer) revert ChannelsNotBuyer(channelId, msg.sender, c.buyer);
        if (block.timestamp > c.expiresAt) revert ChannelsExpired(channelId, c.expiresAt);
    }
}
