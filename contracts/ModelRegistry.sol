// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @notice One ERC-721 token per listed model; the token's owner is the seller and receives the revenue.
/// @dev Storage is laid out for a cheap `list`: a CIDv1 in base32 with a sha2-256 multihash (what every
/// Modex CID profile except kubo-v0 produces) is stored as its 32-byte digest plus a codec byte and
/// re-encoded by `metadataCid`; any other CID string is stored as is. The token's owner is kept in the
/// same slot as the model's price and flags (instead of OpenZeppelin's separate `_owners` slot), so
/// `list` writes one fresh slot less and a sale reads owner, price and state in one SLOAD.
/// Versions: the listing is version 1 and stays where `list` wrote it; each `publishVersion` adds a
/// `Version` record (versions 2, 3, ...), and `modelHash`, `metadataCid`, `claimedWorkDigest` and
/// `attestationTarget` answer for the latest. A listing that never publishes a version pays nothing for
/// them. Each version has its own claim (`claimMetrics` claims for the latest), so Validators can attest
/// one version (`attestationTargetOf`) without a claim or a hash carrying over to another.
contract ModelRegistry is ERC721 {
    error ModelRegistryNotOwner(uint256 modelId, address caller, address owner);
    error ModelRegistryZeroModelHash();
    error ModelRegistryEmptyCid();
    error ModelRegistryCidTooLong(uint256 length, uint256 maxLength);
    error ModelRegistryPriceTooHigh(uint256 price, uint256 maxPrice);
    error ModelRegistryBadWorkDigest(bytes32 workDigest);
    error ModelRegistryAlreadyClaimed(uint256 modelId, bytes32 workDigest);
    error ModelRegistryNotAToken(address token);
    error ModelRegistryBadPeriod(uint256 pricePerPeriod, uint32 periodSeconds);
    error ModelRegistryNoSuchVersion(uint256 modelId, uint256 version, uint256 versionCount);

    event ModelListed(
        uint256 indexed modelId, address indexed seller, bytes32 modelHash, string metadataCid, uint256 price
    );
    event PriceChanged(uint256 indexed modelId, uint256 price);
    event ActiveChanged(uint256 indexed modelId, bool active);
    event OperatorChanged(uint256 indexed modelId, address indexed operator);
    event MetricsClaimed(uint256 indexed modelId, bytes32 workDigest);
    event PaymentTokenChanged(uint256 indexed modelId, address token);
    event SubscriptionTermsChanged(uint256 indexed modelId, uint256 pricePerPeriod, uint32 periodSeconds);
    /// @dev Version 1 is the listing ({ModelListed}); this event announces versions 2, 3, ...
    event VersionPublished(uint256 indexed modelId, uint256 indexed version, bytes32 modelHash, string metadataCid);
    event UpdateWindowChanged(uint256 indexed modelId, uint256 seconds_);

    /// One storage slot per model with what a sale needs; `owner` is the ERC-721 owner (0: not listed).
    struct Listing {
        address owner;
        uint80 price; // in wei, or in the payment token's smallest unit
        uint8 cidCodec; // multicodec of a compact CIDv1 (1..0x7f); 0 = the CID string is stored as is
        uint8 flags; // FLAG_ACTIVE | FLAG_TOKEN
    }

    /// Time-limited access to the model's service, paid in the listing's token; price 0 = none offered.
    struct Subscription {
        uint128 pricePerPeriod;
        uint32 periodSeconds;
    }

    /// A version after the listing's (2, 3, ...): its hash, its metadata CID (compact as the listing's,
    /// or in `_versionCidStrings`) and its own work-digest claim, in three slots and a packed fourth.
    struct Version {
        bytes32 modelHash;
        bytes32 cidDigest;
        bytes32 claimedDigest;
        uint64 publishedAt;
        uint64 claimedAt; // 0: not claimed
        uint8 cidCodec;
    }

    uint256 public constant MAX_CID_LENGTH = 128;
    uint256 public constant MAX_PRICE = type(uint80).max; // ~1.2 million ETH
    /// The work digest a validator reveals when the model's declared evaluation cannot run; never a claim.
    bytes32 public constant FAILED_WORK_DIGEST = bytes32(type(uint256).max);
    bytes private constant BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
    uint8 private constant FLAG_ACTIVE = 1;
    uint8 private constant FLAG_TOKEN = 2; // priced in an ERC-20: `_paymentTokens` holds it

    mapping(uint256 modelId => Listing) private _listings;
    mapping(uint256 modelId => bytes32) private _modelHashes;
    mapping(uint256 modelId => bytes32) private _cidDigests;
    mapping(uint256 modelId => string) private _cidStrings;
    mapping(uint256 modelId => address) private _operators;
    mapping(address owner => uint256) private _tokenCounts; // ERC-721 balanceOf (OpenZeppelin's is bypassed)
    mapping(uint256 modelId => bytes32) private _claimedDigests;
    mapping(uint256 modelId => uint256) private _claimedAt;
    mapping(uint256 modelId => address) private _paymentTokens; // read only when FLAG_TOKEN is set
    mapping(uint256 modelId => Subscription) private _subscriptions;
    mapping(uint256 modelId => uint256) private _versionCounts; // 0 until a second version: the listing only
    mapping(uint256 modelId => mapping(uint256 version => Version)) private _versions; // version >= 2
    mapping(uint256 modelId => mapping(uint256 version => string)) private _versionCidStrings;
    mapping(uint256 modelId => uint256) private _updateWindows;
    // Starts at 1: id 0 means "no model", and a non-zero counter makes every list() pay the same.
    uint256 private _nextModelId = 1;

    constructor() ERC721("Modex Model", "MODEX") {}

    /// @notice List a model for sale and mint its token to the caller (the seller).
    /// @param modelHash sha256 of the model's canonical manifest (docs/formats.md §2).
    /// @param metadataCid IPFS CID of the listing's metadata JSON (docs/formats.md §6).
    /// @param price price in wei (at most MAX_PRICE); 0 makes the model free. A new listing is priced in
    /// ETH; `setPaymentToken` prices it in an ERC-20 instead.
    /// @return modelId the new token id. Emits {Transfer} and {ModelListed}.
    function list(bytes32 modelHash, string calldata metadataCid, uint256 price) external returns (uint256 modelId) {
        _checkContent(modelHash, metadataCid);
        if (price > MAX_PRICE) revert ModelRegistryPriceTooHigh(price, MAX_PRICE);

        modelId = _nextModelId++;
        (uint8 codec, bytes32 digest) = _compactCid(metadataCid);
        if (codec == 0) {
            _cidStrings[modelId] = metadataCid;
        } else {
            _cidDigests[modelId] = digest;
        }
        _modelHashes[modelId] = modelHash;
        _listings[modelId] = Listing({owner: address(0), price: uint80(price), cidCodec: codec, flags: FLAG_ACTIVE});
        _mint(msg.sender, modelId); // not _safeMint: the seller is msg.sender, which chose to call
        emit ModelListed(modelId, msg.sender, modelHash, metadataCid, price);
    }

    /// @notice Change a model's price (in its payment token's units); buyers protect themselves with
    /// `maxPrice`. Owner only.
    /// Emits {PriceChanged}.
    function setPrice(uint256 modelId, uint256 price) external {
        _checkModelOwner(modelId);
        if (price > MAX_PRICE) revert ModelRegistryPriceTooHigh(price, MAX_PRICE);
        _listings[modelId].price = uint80(price);
        emit PriceChanged(modelId, price);
    }

    /// @notice Open or close a model for sale (pending purchases can still be delivered). Owner only.
    /// Emits {ActiveChanged}.
    function setActive(uint256 modelId, bool active) external {
        _checkModelOwner(modelId);
        Listing storage l = _listings[modelId];
        l.flags = active ? l.flags | FLAG_ACTIVE : l.flags & ~FLAG_ACTIVE;
        emit ActiveChanged(modelId, active);
    }

    /// @notice Price the model (its sale and its subscription) in the ERC-20 `token` from now on;
    /// address(0) prices it in ETH. The amounts are not converted: set the price in the token's units
    /// with it. A purchase keeps the token it was paid in (its refund and revenue are in that token).
    /// Owner only. Emits {PaymentTokenChanged}.
    function setPaymentToken(uint256 modelId, address token) external {
        _checkModelOwner(modelId);
        if (token != address(0) && token.code.length == 0) revert ModelRegistryNotAToken(token);
        Listing storage l = _listings[modelId];
        _paymentTokens[modelId] = token;
        l.flags = token == address(0) ? l.flags & ~FLAG_TOKEN : l.flags | FLAG_TOKEN;
        emit PaymentTokenChanged(modelId, token);
    }

    /// @notice Offer time-limited access to the model's service: `pricePerPeriod` (in the payment
    /// token's units, at most MAX_PRICE) buys `periodSeconds` of it (`Marketplace.subscribe`); a price of
    /// 0 withdraws the offer (subscriptions already paid run to their end). Owner only.
    /// Emits {SubscriptionTermsChanged}.
    function setSubscription(uint256 modelId, uint256 pricePerPeriod, uint32 periodSeconds) external {
        _checkModelOwner(modelId);
        if (pricePerPeriod > MAX_PRICE) revert ModelRegistryPriceTooHigh(pricePerPeriod, MAX_PRICE);
        if (pricePerPeriod != 0 && periodSeconds == 0) revert ModelRegistryBadPeriod(pricePerPeriod, periodSeconds);
        _subscriptions[modelId] = Subscription(uint128(pricePerPeriod), pricePerPeriod == 0 ? 0 : periodSeconds);
        emit SubscriptionTermsChanged(modelId, pricePerPeriod, pricePerPeriod == 0 ? 0 : periodSeconds);
    }

    /// @notice Allow `operator` (the seller's worker) to deliver keys for this model; address(0) revokes.
    /// Cleared when the token changes hands. Owner only. Emits {OperatorChanged}.
    function setOperator(uint256 modelId, address operator) external {
        _checkModelOwner(modelId);
        _operators[modelId] = operator;
        emit OperatorChanged(modelId, operator);
    }

    /// @notice Publish new weights for a listed model (owner only): the next version, which `modelHash`,
    /// `metadataCid` and `attestationTarget` answer for from now on. Version 1 is the listing itself.
    /// The new version has no claim yet: `claimMetrics` right after, as after `list`. Buyers receive it
    /// by the listing's `updateWindow`; validation attests one version (see Validators).
    /// @param modelHash sha256 of the new version's canonical manifest (docs/formats.md §2).
    /// @param metadataCid IPFS CID of the new version's metadata JSON (docs/formats.md §6).
    /// @return version the new version's number (2, 3, ...). Emits {VersionPublished}.
    function publishVersion(uint256 modelId, bytes32 modelHash, string calldata metadataCid)
        external
        returns (uint256 version)
    {
        _checkModelOwner(modelId);
        _checkContent(modelHash, metadataCid);
        version = _versionCount(modelId) + 1;
        _versionCounts[modelId] = version;
        (uint8 codec, bytes32 digest) = _compactCid(metadataCid);
        Version storage v = _versions[modelId][version];
        v.modelHash = modelHash;
        v.publishedAt = uint64(block.timestamp);
        v.cidCodec = codec;
        if (codec == 0) {
            _versionCidStrings[modelId][version] = metadataCid;
        } else {
            v.cidDigest = digest;
        }
        emit VersionPublished(modelId, version, modelHash, metadataCid);
    }

    /// @notice How long after a purchase its buyer receives new versions (owner only): 0 = only the
    /// version bought; type(uint256).max = every version, forever. Applies to every licence of the
    /// model, past and future. Emits {UpdateWindowChanged}.
    function setUpdateWindow(uint256 modelId, uint256 seconds_) external {
        _checkModelOwner(modelId);
        _updateWindows[modelId] = seconds_;
        emit UpdateWindowChanged(modelId, seconds_);
    }

    /// @notice Owner only: record the work digest of the seller's own evaluation (the SHA-256 of the
    /// evaluation report on the listing's declared eval set, every example's output included; see
    /// docs/formats.md). Validators verify the model only when their majority reproduces it, and only
    /// a claim made no later than their round opened counts: make it right after `list`. A claim is
    /// final (a model Verified against one claim can never show another). The claim is the latest
    /// version's: each version is claimed once, for itself. Emits {MetricsClaimed}.
    function claimMetrics(uint256 modelId, bytes32 workDigest) external {
        _checkModelOwner(modelId);
        if (workDigest == bytes32(0) || workDigest == FAILED_WORK_DIGEST) {
            revert ModelRegistryBadWorkDigest(workDigest);
        }
        uint256 version = _versionCount(modelId);
        if (version == 1) {
            bytes32 claimed = _claimedDigests[modelId];
            if (claimed != bytes32(0)) revert ModelRegistryAlreadyClaimed(modelId, claimed);
            _claimedDigests[modelId] = workDigest;
            _claimedAt[modelId] = block.timestamp;
        } else {
            Version storage v = _versions[modelId][version];
            bytes32 claimed = v.claimedDigest;
            if (claimed != bytes32(0)) revert ModelRegistryAlreadyClaimed(modelId, claimed);
            v.claimedDigest = workDigest;
            v.claimedAt = uint64(block.timestamp);
        }
        emit MetricsClaimed(modelId, workDigest);
    }

    /// @notice The latest version's claimed work digest (zero if none).
    function claimedWorkDigest(uint256 modelId) external view returns (bytes32 workDigest) {
        _requireOwned(modelId);
        (, workDigest,) = attestationTargetOf(modelId, _versionCount(modelId));
    }

    /// @notice `attestationTargetOf` the latest version.
    function attestationTarget(uint256 modelId)
        external
        view
        returns (bytes32 modelHash_, bytes32 workDigest, uint256 claimedAt)
    {
        if (_modelHashes[modelId] == bytes32(0)) revert ERC721NonexistentToken(modelId); // list() refuses a zero hash
        return attestationTargetOf(modelId, _versionCount(modelId));
    }

    /// @notice What Validators compares a reveal about `version` with: its hash, its claimed work
    /// digest and when that was claimed (0 if never).
    function attestationTargetOf(uint256 modelId, uint256 version)
        public
        view
        returns (bytes32 modelHash_, bytes32 workDigest, uint256 claimedAt)
    {
        _checkVersion(modelId, version);
        if (version == 1) return (_modelHashes[modelId], _claimedDigests[modelId], _claimedAt[modelId]);
        Version storage v = _versions[modelId][version];
        return (v.modelHash, v.claimedDigest, v.claimedAt);
    }

    /// @notice sha256 of the latest version's canonical manifest (the listed one until a new version).
    function modelHash(uint256 modelId) external view returns (bytes32 hash) {
        hash = _modelHashes[modelId];
        if (hash == bytes32(0)) revert ERC721NonexistentToken(modelId); // list() refuses a zero hash
        uint256 version = _versionCounts[modelId];
        if (version != 0) hash = _versions[modelId][version].modelHash;
    }

    /// @notice The latest version's metadata JSON CID (as given to `list` until a new version).
    function metadataCid(uint256 modelId) public view returns (string memory) {
        _requireOwned(modelId);
        return _versionCid(modelId, _versionCount(modelId));
    }

    /// @notice The number of versions of a listed model (1: the listing only).
    function versionCount(uint256 modelId) external view returns (uint256) {
        _requireOwned(modelId);
        return _versionCount(modelId);
    }

    /// @notice One version: its model hash, its metadata CID and when it was published. Version 1 is
    /// the listing, whose time is not stored (`list` stays within its gas budget): 0 here, its
    /// {ModelListed} event's block has it.
    function versionOf(uint256 modelId, uint256 version)
        external
        view
        returns (bytes32 modelHash_, string memory metadataCid_, uint64 publishedAt)
    {
        _checkVersion(modelId, version);
        if (version == 1) return (_modelHashes[modelId], _versionCid(modelId, 1), 0);
        Version storage v = _versions[modelId][version];
        return (v.modelHash, _versionCid(modelId, version), v.publishedAt);
    }

    /// @notice How long after a purchase its buyer receives new versions (seconds; 0: only the version
    /// bought; type(uint256).max: forever).
    function updateWindow(uint256 modelId) external view returns (uint256) {
        _requireOwned(modelId);
        return _updateWindows[modelId];
    }

    /// @notice Current price, in wei or in the payment token's smallest unit.
    function price(uint256 modelId) external view returns (uint256) {
        _requireOwned(modelId);
        return _listings[modelId].price;
    }

    /// @notice Whether the model can be bought now.
    function isActive(uint256 modelId) external view returns (bool) {
        _requireOwned(modelId);
        return _listings[modelId].flags & FLAG_ACTIVE != 0;
    }

    /// @notice The ERC-20 the model is priced in (address(0): ETH).
    function paymentToken(uint256 modelId) external view returns (address) {
        _requireOwned(modelId);
        return _paymentTokens[modelId];
    }

    /// @notice The subscription offered (price per period in the payment token's units, period in
    /// seconds); (0, 0) when none is.
    function subscriptionTerms(uint256 modelId) external view returns (uint256 pricePerPeriod, uint32 periodSeconds) {
        _requireOwned(modelId);
        Subscription memory s = _subscriptions[modelId];
        return (s.pricePerPeriod, s.periodSeconds);
    }

    /// @notice The address allowed to deliver keys besides the owner (address(0) if none).
    function operatorOf(uint256 modelId) external view returns (address) {
        _requireOwned(modelId);
        return _operators[modelId];
    }

    /// @notice Price, availability and owner in one call.
    function saleTerms(uint256 modelId) external view returns (uint256 price_, bool active, address owner) {
        Listing memory l = _listings[modelId];
        if (l.owner == address(0)) revert ERC721NonexistentToken(modelId);
        return (l.price, l.flags & FLAG_ACTIVE != 0, l.owner);
    }

    /// @notice `saleTerms` and the payment token (address(0): ETH) in one call (what Marketplace.buy
    /// reads): a model priced in ETH costs one storage read, as before tokens.
    function saleTermsWithToken(uint256 modelId)
        external
        view
        returns (uint256 price_, bool active, address owner, address token)
    {
        Listing memory l = _listings[modelId];
        if (l.owner == address(0)) revert ERC721NonexistentToken(modelId);
        if (l.flags & FLAG_TOKEN != 0) token = _paymentTokens[modelId];
        return (l.price, l.flags & FLAG_ACTIVE != 0, l.owner, token);
    }

    /// @notice What Marketplace.subscribe reads: the subscription offered, availability, owner and token.
    function subscriptionSale(uint256 modelId)
        external
        view
        returns (uint256 pricePerPeriod, uint32 periodSeconds, bool active, address owner, address token)
    {
        Listing memory l = _listings[modelId];
        if (l.owner == address(0)) revert ERC721NonexistentToken(modelId);
        if (l.flags & FLAG_TOKEN != 0) token = _paymentTokens[modelId];
        Subscription memory s = _subscriptions[modelId];
        return (s.pricePerPeriod, s.periodSeconds, l.flags & FLAG_ACTIVE != 0, l.owner, token);
    }

    /// @notice What `Marketplace.deliverVersionKeys` checks a batch against, in one call: who may deliver
    /// (the owner and the operator), when `version` was published (0 for version 1, the listing) and the
    /// update window. Reverts {ModelRegistryNoSuchVersion} for a version the model does not have.
    function versionDelivery(uint256 modelId, uint256 version)
        external
        view
        returns (address owner, address operator, uint256 publishedAt, uint256 window)
    {
        _checkVersion(modelId, version);
        if (version != 1) publishedAt = _versions[modelId][version].publishedAt;
        return (_listings[modelId].owner, _operators[modelId], publishedAt, _updateWindows[modelId]);
    }

    /// @notice The owner (who is paid) and the operator (who may also deliver) in one call.
    function deliveryParties(uint256 modelId) external view returns (address owner, address operator) {
        return (_requireOwned(modelId), _operators[modelId]);
    }

    /// @notice The number of models listed so far (ids run from 1 to this number).
    function modelCount() external view returns (uint256) {
        return _nextModelId - 1;
    }

    /// @notice `ipfs://<metadataCid>`.
    function tokenURI(uint256 modelId) public view override returns (string memory) {
        return string.concat("ipfs://", metadataCid(modelId));
    }

    /// @notice ERC-721: the number of models `owner` holds.
    function balanceOf(address owner) public view override returns (uint256) {
        if (owner == address(0)) revert ERC721InvalidOwner(address(0));
        return _tokenCounts[owner];
    }

    function _ownerOf(uint256 tokenId) internal view override returns (address) {
        return _listings[tokenId].owner;
    }

    /// @dev OpenZeppelin's `_update` with the owner kept in the listing slot (tokens are never burnt:
    /// `to` is never 0 here). A new owner brings their own worker: the operator is cleared on every transfer.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        from = _listings[tokenId].owner;
        if (auth != address(0)) _checkAuthorized(from, auth, tokenId);
        if (from != address(0)) {
            _approve(address(0), tokenId, address(0), false);
            unchecked {
                _tokenCounts[from] -= 1;
            }
        }
        unchecked {
            _tokenCounts[to] += 1; // cannot overflow: at most one per token
        }
        _listings[tokenId].owner = to;
        emit Transfer(from, to, tokenId);
        if (from != address(0) && from != to && _operators[tokenId] != address(0)) {
            delete _operators[tokenId];
            emit OperatorChanged(tokenId, address(0));
        }
    }

    function _versionCount(uint256 modelId) private view returns (uint256) {
        uint256 count = _versionCounts[modelId];
        return count == 0 ? 1 : count;
    }

    /// @dev Refuses an unlisted model and a version it does not have.
    function _checkVersion(uint256 modelId, uint256 version) private view {
        _requireOwned(modelId);
        uint256 count = _versionCount(modelId);
        if (version == 0 || version > count) revert ModelRegistryNoSuchVersion(modelId, version, count);
    }

    function _versionCid(uint256 modelId, uint256 version) private view returns (string memory) {
        if (version == 1) {
            uint8 codec = _listings[modelId].cidCodec;
            if (codec == 0) return _cidStrings[modelId];
            return _encodeCid(codec, _cidDigests[modelId]);
        }
        Version storage v = _versions[modelId][version];
        if (v.cidCodec == 0) return _versionCidStrings[modelId][version];
        return _encodeCid(v.cidCodec, v.cidDigest);
    }

    /// @dev What `list` and `publishVersion` refuse: a zero hash, an empty or too long CID.
    function _checkContent(bytes32 modelHash_, string calldata metadataCid_) private pure {
        if (modelHash_ == bytes32(0)) revert ModelRegistryZeroModelHash();
        uint256 length = bytes(metadataCid_).length;
        if (length == 0) revert ModelRegistryEmptyCid();
        if (length > MAX_CID_LENGTH) revert ModelRegistryCidTooLong(length, MAX_CID_LENGTH);
    }

    function _checkModelOwner(uint256 modelId) private view {
        address owner = _requireOwned(modelId);
        if (owner != msg.sender) revert ModelRegistryNotOwner(modelId, msg.sender, owner);
    }

    /// @dev Decodes "b" + base32(0x01 codec 0x12 0x20 digest[32]) (59 characters); (0, 0) for anything else.
    /// The 290 bits split into the first 7 characters (prefix + 3 digest bits) and the other 51 (253
    /// digest bits + 2 zero padding bits), so each part fits one word. Assembly: the checked Solidity
    /// loop cost ~35k gas, this one ~3k.
    function _compactCid(string calldata cid) private pure returns (uint8 codec, bytes32 digest) {
        if (bytes(cid).length != 59 || bytes(cid)[0] != "b") return (0, 0);
        uint256 head;
        uint256 tail;
        uint256 valid;
        assembly ("memory-safe") {
            // a..z -> 0..25, 2..7 -> 26..31; ok = 0 for any other byte
            function value(c) -> v, ok {
                v := sub(c, 0x61)
                ok := lt(v, 26)
                if iszero(ok) {
                    v := sub(c, 0x18)
                    ok := lt(sub(c, 0x32), 6)
                }
            }
            let p := cid.offset
            valid := 1
            for { let i := 1 } lt(i, 8) { i := add(i, 1) } {
                let v, ok := value(byte(0, calldataload(add(p, i))))
                valid := and(valid, ok)
                head := or(shl(5, head), v)
            }
            for { let i := 8 } lt(i, 59) { i := add(i, 1) } {
                let v, ok := value(byte(0, calldataload(add(p, i))))
                valid := and(valid, ok)
                tail := or(shl(5, tail), v)
            }
        }
        uint256 prefix = head >> 3;
        codec = uint8(prefix >> 16);
        if (valid == 0 || tail & 3 != 0 || prefix & 0xff00ffff != 0x01001220 || codec == 0 || codec >= 0x80) {
            return (0, 0);
        }
        digest = bytes32(((head & 7) << 253) | (tail >> 2));
    }

    function _encodeCid(uint8 codec, bytes32 digest) private pure returns (string memory) {
        bytes memory out = new bytes(59);
        out[0] = "b";
        uint256 d = uint256(digest);
        uint256 head = (((0x01001220 | (uint256(codec) << 16))) << 3) | (d >> 253);
        uint256 tail = (d & ((1 << 253) - 1)) << 2;
        for (uint256 j = 0; j < 7; ++j) {
            out[1 + j] = BASE32[(head >> (5 * (6 - j))) & 31];
        }
        for (uint256 k = 0; k < 51; ++k) {
            out[8 + k] = BASE32[(tail >> (5 * (50 - k))) & 31];
        }
        return string(out);
    }
}
