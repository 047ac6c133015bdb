// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Suite} from "../lib/Suite.sol";
import {ModelRegistry} from "../../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {Votes} from "../../../contracts/Votes.sol";
import {ReenteringReceiver, EthRejecter, CampaignToken} from "./Actors.sol";
import {Ghost} from "./Ghost.sol";

/// @notice The campaign's world: the deployed suite, the actors, and a reference model ("ghost") of every
/// contract's state, written from the rules in the contracts' NatSpec and contracts/README.md.
/// @dev The actor handlers (Handlers.sol) are what forge calls; each picks its actor and calls one
/// action here. An action predicts from the ghost whether the call must succeed, makes it as the actor
/// (vm.prank), records a violation when the outcome differs, and on success moves the ghost the way
/// the rules say (never by reading the result back). Actions never revert: forge ignores an assertion
/// that fails inside a handler, so a broken property is recorded here and the invariant test fails on
/// `violations`. InvariantTest compares the ghost with the contracts' views after every call.
/// Money is kept per currency: ETH (address(0)) and the campaign's ERC-20 (`token`, 6 decimals), in which
/// a seller may price a model (sale and subscription) at any time; a purchase keeps the token it was paid in.
contract World is Ghost {
    uint8 internal constant PENDING = 1;
    uint8 internal constant DELIVERED = 2;
    uint8 internal constant REFUNDED = 3;
    uint8 internal constant EXPIRED = 4;
    uint8 internal constant VERIFIED = 1;
    uint8 internal constant DISPUTED = 2;
    uint8 internal constant METRICS_DISPUTED = 3;
    uint8 internal constant SEAT_NONE = 0;
    uint8 internal constant SEAT_REQUESTED = 1;
    uint8 internal constant SEAT_KEYED = 2;
    uint8 internal constant SEAT_COMMITTED = 3;
    uint8 internal constant SEAT_REVEALED = 4;
    uint8 internal constant SEAT_RELEASED = 5;
    uint256 public constant MAX_MODELS = 4;
    uint256 public constant MAX_VERSIONS = 4; // per model: publishVersion then claims metrics instead
    bytes32 internal constant FAILED = bytes32(type(uint256).max);
    bytes32 internal constant DEAD = bytes32(uint256(0xdead));

    ModelRegistry public registry;
    Marketplace public market;
    Validators public validators;
    Votes public votes;
    uint256 public deliveryWindow;
    uint256 public challengePeriod;
    uint256 public shareBps;
    uint256 public minStake;
    uint256 public quorum;
    uint256 public commitPeriod;
    uint256 public revealPeriod;
    uint256 public unstakeDelay;
    uint256 public bondPerWeight;
    uint256 public requestBond;
    uint256 public maxOpenRequests;
    address public treasury;

    // ---- actors ----------------------------------------------------------------------------
    address[] public buyers;
    address public honestSeller;
    address public colludingSeller; // lists bogus models; its colluding validators vouch for them
    address public operator;
    address[] public honestValidators;
    address public lazyValidator;
    address[] public colluders;
    address public leaver;
    address[] public owners; // who may hold the Marketplace's ownership
    ReenteringReceiver public reenterer;
    EthRejecter public rejecter;
    CampaignToken public token; // the ERC-20 models may be priced in
    address[] public accounts; // everyone who can be owed something (invariant sums)
    address[] public stakers; // everyone who can stake

    // ---- ghost: registry -------------------------------------------------------------------
    struct GModel {
        address owner;
        address operator;
        address approved;
        address seller; // who listed it (its honesty decides the truth)
        address payToken; // address(0): ETH; else `token`
        uint256 price;
        bool active;
        bytes32 listed; // this and the next four: the latest version's (as `_ver[id][versions]`)
        bytes32 trueHash; // what an honest validator computes from the content
        bytes32 trueDigest; // what an honest validator's evaluation gives (FAILED: it cannot run)
        bytes32 claimed;
        uint256 claimedAt;
        uint256 versions; // ModelRegistry.versionCount: 1 for the listing, + 1 per publishVersion
    }

    /// One version of a model (1: the listing): what ModelRegistry.attestationTargetOf answers for it, and
    /// what an honest validator finds in its content.
    struct GVersion {
        bytes32 listed;
        bytes32 trueHash;
        bytes32 trueDigest;
        bytes32 claimed;
        uint256 claimedAt;
    }

    uint256[] public modelIds;
    mapping(uint256 => GModel) internal _m;
    mapping(uint256 => mapping(uint256 => GVersion)) internal _ver; // model => version => its record
    mapping(address => mapping(address => bool)) internal _approvedForAll;

    // ---- ghost: marketplace ----------------------------------------------------------------
    struct GPurchase {
        address account;
        uint256 model;
        uint256 price;
        uint256 deadline;
        uint8 status;
        bool forValidator;
        bool ownerBought;
        bool released;
        uint8 vote;
        uint256 deliveredAt;
        uint256 payouts; // refunds + releases: at most one
        address deliveredTo;
        address token; // what it was paid in (address(0): ETH; always ETH for a validator's request)
    }

    /// Marketplace.book without its reward per weight, which is kept per version and currency
    /// (`rewardPerWeight`); `version`: the version the latest verdict is about (Marketplace.verdictVersion).
    struct GBook {
        uint256 verifierWeight;
        bool disputed;
        uint256 disputedAt;
        uint256 version;
    }

    struct GScore {
        uint256 weightedSum;
        uint256 weight;
        uint256 voters;
    }

    GPurchase[] internal _p; // index = purchase id (0 unused)
    mapping(uint256 => mapping(address => uint256)) public licencePid; // the live buyer purchase
    mapping(uint256 => mapping(address => uint256)) public requestPid; // the live validator request
    mapping(uint256 => GBook) internal _book;
    mapping(uint256 => GScore) internal _score;
    // model => version => currency => per weight: the fees shared while that version was the verdict's
    mapping(uint256 => mapping(uint256 => mapping(address => uint256))) public rewardPerWeight;
    // model => version => validator => currency => per weight claimed
    mapping(uint256 => mapping(uint256 => mapping(address => mapping(address => uint256)))) internal _rewardClaimed;
    mapping(address => mapping(address => uint256)) public marketCredited; // account => currency => amount
    // subscriptions (in the listing's currency): the owner's terms and each account's expiry
    mapping(uint256 => uint256) internal _subPrice;
    mapping(uint256 => uint256) internal _subPeriod;
    mapping(uint256 => mapping(address => uint256)) internal _subEnd;
    address public marketOwner;
    address public feeRecipient;
    uint256 public feeBps;

    // ---- ghost: validators -----------------------------------------------------------------
    struct GStake {
        uint256 amount;
        uint256 bonded;
        uint256 unlockAt;
        uint256 openSeats;
    }

    struct GRound {
        uint256 number;
        uint256 commitEnd;
        uint256 revealEnd;
        uint8 status;
        uint256 verifiedWeight;
        uint256 metricsWeight;
        uint256 hashWeight;
        bytes32 claimAtOpen; // the seller's claim the round's Verified reveals matched (made before it opened)
    }

    struct GSeat {
        uint8 state;
        uint256 round;
        uint8 says;
        uint256 weight;
        uint256 requestedAt;
        uint256 keyedAt;
        uint256 commitBond;
        bytes32 commitment;
        bytes32 observed; // what it committed to (for its reveal)
        bytes32 digest;
        bytes32 salt;
        bool keyDelivered; // a deliverKey to this validator for this model succeeded
        bool revealedOwn; // its last reveal opened its own commitment
    }

    /// Rounds and seats are per validation cycle: one per version validated (model => version => ...).
    /// The current cycle attests `cycleVersion` (0 before the model's first key request: version 1's
    /// round, still empty, is then the current one, as in Validators).
    mapping(address => GStake) internal _stake;
    mapping(uint256 => mapping(uint256 => GRound)) internal _round;
    mapping(uint256 => mapping(uint256 => mapping(address => GSeat))) internal _seat;
    mapping(uint256 => uint256) public cycleVersion;
    mapping(address => uint256) public validatorsCredited;

    // ---- ghost: money flows (Marketplace: per currency, address(0) = ETH) and the campaign ------
    mapping(address => uint256) public marketIn;
    mapping(address => uint256) public marketOut;
    uint256 public validatorsIn;
    uint256 public validatorsOut;
    mapping(address => uint256) public escrow; // pending purchases' prices
    mapping(address => uint256) public heldRevenue; // delivered, neither released nor refunded
    mapping(address => uint256) public unclaimedRewards; // verifier shares released but not claimed
    mapping(address => uint256) public totalMarketCredited;
    uint256 public totalStaked;
    uint256 public calls;

    constructor(
        Suite.Deployed memory d,
        Suite.Params memory p,
        address[] memory owners_,
        address[] memory buyers_,
        address[2] memory sellers_,
        address operator_,
        address[] memory honest_,
        address lazy_,
        address[] memory colluders_,
        address leaver_
    ) {
        (registry, market, validators, votes) = (d.registry, d.market, d.validators, d.votes);
        (deliveryWindow, challengePeriod, shareBps) = (p.deliveryWindow, p.challengePeriod, p.validatorShareBps);
        (minStake, quorum, commitPeriod, revealPeriod) =
        (p.validators.minStake, p.validators.quorum, p.validators.commitPeriod, p.validators.revealPeriod);
        (unstakeDelay, requestBond, maxOpenRequests, treasury) =
        (p.validators.unstakeDelay, p.validators.requestBond, p.validators.maxOpenRequests, p.validators.treasury);
        bondPerWeight = (p.validators.minStake * p.validators.bondBps) / 10_000;
        (marketOwner, feeRecipient, feeBps) = (p.owner, p.feeRecipient, p.feeBps);
        owners = owners_;
        buyers = buyers_;
        (honestSeller, colludingSeller, operator) = (sellers_[0], sellers_[1], operator_);
        honestValidators = honest_;
        lazyValidator = lazy_;
        colluders = colluders_;
        leaver = leaver_;
        reenterer = new ReenteringReceiver(d.market, d.validators);
        rejecter = new EthRejecter();
        token = new CampaignToken();
        _p.push(); // purchase ids start at 1

        for (uint256 i = 0; i < owners_.length; i++) {
            _addAccount(owners_[i]);
        }
        for (uint256 i = 0; i < buyers_.length; i++) {
            _addAccount(buyers_[i]);
        }
        _addAccount(sellers_[0]);
        _addAccount(sellers_[1]);
        _addAccount(operator_);
        _addAccount(p.feeRecipient);
        _addAccount(treasury);
        _addAccount(address(reenterer));
        _addAccount(address(rejecter));
        for (uint256 i = 0; i < honest_.length; i++) {
            _addStaker(honest_[i]);
        }
        _addStaker(lazy_);
        for (uint256 i = 0; i < colluders_.length; i++) {
            _addStaker(colluders_[i]);
        }
        _addStaker(leaver_);
        _addStaker(address(reenterer));
        _addStaker(address(rejecter));
    }

    // =========================================================================================
    // registry
    // =========================================================================================

    /// kind 0: honest listing; 1: a listed hash that is not the content's; 2: claimed metrics the
    /// content does not reproduce; 3: content whose evaluation cannot run (honest digest FAILED).
    function list(address seller, uint256 kind, uint256 price, uint256 cidSeed, bool claimNow) external {
        calls++;
        if (modelIds.length >= MAX_MODELS) {
            setPrice(seller, cidSeed, price);
            return;
        }
        uint256 id = registry.modelCount() + 1;
        string memory cid = _cid(cidSeed);
        bytes32 trueHash = keccak256(abi.encode("content", id));
        kind = seller == honestSeller ? 0 : kind % 4;
        bytes32 listed = kind == 1 ? keccak256(abi.encode("bogus", id)) : trueHash;
        if (cidSeed % 29 == 0) listed = bytes32(0);
        price = _price(price);
        bool ok = bytes(cid).length != 0 && bytes(cid).length <= 128 && listed != bytes32(0);
        (bool done, bytes memory ret) =
            _call(seller, address(registry), 0, abi.encodeCall(ModelRegistry.list, (listed, cid, price)));
        if (!_check(done, ok, "list", ret)) return;
        if (abi.decode(ret, (uint256)) != id) _fail("list: model ids are not consecutive from 1");
        modelIds.push(id);
        GModel storage m = _m[id];
        m.owner = seller;
        m.seller = seller;
        m.price = price;
        m.active = true;
        m.listed = listed;
        m.trueHash = trueHash;
        m.trueDigest = kind == 3 ? FAILED : keccak256(abi.encode("work", id));
        m.versions = 1;
        _ver[id][1] = GVersion(listed, trueHash, m.trueDigest, bytes32(0), 0);
        if (claimNow) _claimMetrics(seller, id, kind == 2 ? 1 : 0);
        if (seller == honestSeller) _setOperator(seller, id, operator); // its worker delivers
    }

    function setPrice(address actor, uint256 modelSeed, uint256 price) public {
        calls++;
        uint256 id = _model(modelSeed);
        price = _price(price);
        if (_asOwner(actor, id, abi.encodeCall(ModelRegistry.setPrice, (id, price)), "setPrice")) _m[id].price = price;
    }

    /// which 0: ETH; 1: the campaign's token; 2: an account with no code (refused: not a token).
    function setPaymentToken(address actor, uint256 modelSeed, uint256 which) external {
        calls++;
        uint256 id = _model(modelSeed);
        which %= 3;
        address to = which == 0 ? address(0) : which == 1 ? address(token) : honestSeller;
        bytes memory data = abi.encodeCall(ModelRegistry.setPaymentToken, (id, to));
        bool ok = _exists(id) && _m[id].owner == actor && which != 2;
        (bool done, bytes memory ret) = _call(actor, address(registry), 0, data);
        if (!_check(done, ok, "setPaymentToken", ret)) return;
        _m[id].payToken = to;
        _reach(to == address(0) ? bytes32("priced in ETH") : bytes32("priced in token"));
    }

    function setActive(address actor, uint256 modelSeed, bool active) external {
        calls++;
        uint256 id = _model(modelSeed);
        if (_asOwner(actor, id, abi.encodeCall(ModelRegistry.setActive, (id, active)), "setActive")) {
            _m[id].active = active;
        }
    }

    function setOperator(address actor, uint256 modelSeed, address op) external {
        calls++;
        _setOperator(actor, _model(modelSeed), op);
    }

    function _setOperator(address actor, uint256 id, address op) internal {
        if (_asOwner(actor, id, abi.encodeCall(ModelRegistry.setOperator, (id, op)), "setOperator")) {
            _m[id].operator = op;
        }
    }

    /// A registry call only the owner of model `id` may make (`data`), made by `actor`: true when it
    /// went through, which it must exactly when `actor` owns an existing model `id`.
    function _asOwner(address actor, uint256 id, bytes memory data, string memory what) internal returns (bool) {
        bool ok = _exists(id) && _m[id].owner == actor;
        (bool done, bytes memory ret) = _call(actor, address(registry), 0, data);
        return _check(done, ok, what, ret);
    }

    /// how 0: the digest of the content's own evaluation; 1: an inflated one; 2: zero; 3: FAILED.
    function claimMetrics(address actor, uint256 modelSeed, uint256 how) external {
        calls++;
        _claimMetrics(actor, _model(modelSeed), how);
    }

    function _claimMetrics(address actor, uint256 id, uint256 how) internal {
        how %= 4;
        bytes32 digest = how == 0
            ? _m[id].trueDigest
            : how == 1 ? keccak256(abi.encode("inflated", id)) : how == 2 ? bytes32(0) : FAILED;
        // A claim is final: only an unclaimed model takes one.
        bool ok = _exists(id) && _m[id].owner == actor && digest != bytes32(0) && digest != FAILED
            && _m[id].claimed == bytes32(0);
        (bool done, bytes memory ret) =
            _call(actor, address(registry), 0, abi.encodeCall(ModelRegistry.claimMetrics, (id, digest)));
        if (!_check(done, ok, "claimMetrics", ret)) return;
        // the latest version's claim
        (_m[id].claimed, _m[id].claimedAt) = (digest, block.timestamp);
        GVersion storage v = _ver[id][_m[id].versions];
        (v.claimed, v.claimedAt) = (digest, block.timestamp);
    }

    /// What an honest validator computes from the content of `version` of the model.
    function _content(uint256 id, uint256 version) internal pure returns (bytes32) {
        return keccak256(abi.encode("content", id, version));
    }

    /// A version published (`kind` as in `list`): the model's latest record and the version's own (no
    /// claim yet).
    function _published(uint256 id, uint256 version, bytes32 listed, uint256 kind) internal {
        bytes32 trueHash = _content(id, version);
        bytes32 trueDigest = kind == 3 ? FAILED : keccak256(abi.encode("work", id, version));
        GModel storage m = _m[id];
        (m.versions, m.listed, m.trueHash, m.trueDigest) = (version, listed, trueHash, trueDigest);
        (m.claimed, m.claimedAt) = (bytes32(0), 0);
        _ver[id][version] = GVersion(listed, trueHash, trueDigest, bytes32(0), 0);
    }

    /// The owner publishes the model's next version (ModelRegistry.publishVersion) with weights of its own:
    /// `kind` as in `list` for the lying seller's models (the honest seller's versions are honest), a
    /// zero hash or a bad CID now and then (refused); with `claimNow` the owner claims its metrics at
    /// once (`claimMetrics` how 0, or 1 for kind 2). Every other call aims at a model whose current
    /// cycle is Verified with no later version yet, so that the next key request opens a new cycle.
    /// A model at MAX_VERSIONS gets a claim instead.
    function publishVersion(address actor, uint256 modelSeed, uint256 kind, uint256 cidSeed, bool claimNow) external {
        calls++;
        uint256 id = calls % 2 == 0 ? _verifiedModel(modelSeed) : _model(modelSeed);
        if (_m[id].versions >= MAX_VERSIONS) {
            _claimMetrics(actor, id, kind);
            return;
        }
        uint256 version = _m[id].versions + 1;
        string memory cid = _cid(cidSeed);
        kind = _m[id].seller == honestSeller ? 0 : kind % 4;
        bytes32 listed = kind == 1 ? keccak256(abi.encode("bogus", id, version)) : _content(id, version);
        if (cidSeed % 29 == 0) listed = bytes32(0);
        bool ok = _exists(id) && _m[id].owner == actor && bytes(cid).length != 0 && bytes(cid).length <= 128
            && listed != bytes32(0);
        (bool done, bytes memory ret) =
            _call(actor, address(registry), 0, abi.encodeCall(ModelRegistry.publishVersion, (id, listed, cid)));
        if (!_check(done, ok, "publishVersion", ret)) return;
        if (abi.decode(ret, (uint256)) != version) _fail("publishVersion: versions are not consecutive from 2");
        _published(id, version, listed, kind);
        _reach(
            _round[id][_cv(id)].status == VERIFIED ? bytes32("version after verified") : bytes32("version published")
        );
        if (claimNow) _claimMetrics(actor, id, kind == 2 ? 1 : 0);
    }

    /// mode 0: transferFrom by the caller; 1: safeTransferFrom; 2: safeTransferFrom with data.
    function transferModel(address actor, uint256 modelSeed, address to, uint256 mode) external {
        calls++;
        uint256 id = _model(modelSeed);
        GModel storage m = _m[id];
        address from = m.owner;
        mode %= 3;
        bool authorised = actor == from || actor == m.approved || _approvedForAll[from][actor];
        bool ok = _exists(id) && authorised && to != address(0);
        if (mode != 0 && to == address(rejecter)) ok = false; // no onERC721Received
        bytes memory data = mode == 0
            ? abi.encodeWithSignature("transferFrom(address,address,uint256)", from, to, id)
            : mode == 1
                ? abi.encodeWithSignature("safeTransferFrom(address,address,uint256)", from, to, id)
                : abi.encodeWithSignature("safeTransferFrom(address,address,uint256,bytes)", from, to, id, "x");
        (bool done, bytes memory ret) = _call(actor, address(registry), 0, data);
        if (!_check(done, ok, "transferFrom", ret)) return;
        m.owner = to;
        m.approved = address(0);
        if (from != to) m.operator = address(0);
        _reach("model transferred");
    }

    function approve(address actor, uint256 modelSeed, address to) external {
        calls++;
        uint256 id = _model(modelSeed);
        bool ok = _exists(id) && (actor == _m[id].owner || _approvedForAll[_m[id].owner][actor]);
        (bool done, bytes memory ret) =
            _call(actor, address(registry), 0, abi.encodeWithSignature("approve(address,uint256)", to, id));
        if (_check(done, ok, "approve", ret)) _m[id].approved = to;
    }

    function setApprovalForAll(address actor, address op, bool approved) external {
        calls++;
        bool ok = op != address(0);
        (bool done, bytes memory ret) =
            _call(actor, address(registry), 0, abi.encodeWithSignature("setApprovalForAll(address,bool)", op, approved));
        if (_check(done, ok, "setApprovalForAll", ret)) _approvedForAll[actor][op] = approved;
    }

    // =========================================================================================
    // marketplace
    // =========================================================================================

    /// pay 0: the price (the common case); 1: one wei more (for a token price: any ETH at all); 2: maxPrice
    /// one below the price; 3, for a token price: an allowance one short of it.
    function buy(address buyer, uint256 modelSeed, uint256 pay, bool zeroKey) external {
        calls++;
        _buy(buyer, _model(modelSeed), pay, zeroKey);
    }

    function _buy(address buyer, uint256 id, uint256 pay, bool zeroKey) internal {
        uint256 price = _m[id].price;
        pay %= 8;
        bool short = pay == 3 && _m[id].payToken != address(0) && price != 0;
        bool ok = _buyable(buyer, id) && pay != 1 && !(pay == 2 && price != 0) && !zeroKey && !short;
        uint256 value = _fund(buyer, _m[id].payToken, short ? price - 1 : price, pay == 1);
        bytes memory data = abi.encodeCall(
            Marketplace.buy, (id, zeroKey ? bytes32(0) : _key(buyer), pay == 2 && price != 0 ? price - 1 : price)
        );
        (bool done, bytes memory ret) = _call(buyer, address(market), value, data);
        if (_check(done, ok, "buy", ret)) _bought(ret, buyer, id, price);
    }

    /// Whether `buyer` may buy model `id` now, paying right.
    function _buyable(address buyer, uint256 id) internal view returns (bool) {
        uint8 status = _p[licencePid[id][buyer]].status;
        return _exists(id) && _m[id].active && !_book[id].disputed && status != DELIVERED && status != PENDING;
    }

    /// A purchase went through: escrowed in the listing's currency.
    function _bought(bytes memory ret, address buyer, uint256 id, uint256 price) internal {
        address currency = _m[id].payToken;
        uint256 pid = _newPurchase(ret, buyer, id, price, false);
        _p[pid].ownerBought = buyer == _m[id].owner;
        _p[pid].token = currency;
        licencePid[id][buyer] = pid;
        if (market.purchaseToken(pid) != currency) _fail("buy: purchaseToken differs from the listing's token");
        marketIn[currency] += price;
        escrow[currency] += price;
        if (currency != address(0)) _reach(price == 0 ? bytes32("token buy free") : bytes32("token buy paid"));
        else _reach(price == 0 ? bytes32("buy free") : bytes32("buy paid"));
    }

    /// What `payer` sends as msg.value to pay `amount` in `currency`: ETH, the amount (plus one wei when
    /// `wrong`); for the token, none (one wei when `wrong`), after minting `amount` to the payer and
    /// approving the Marketplace for exactly that.
    function _fund(address payer, address currency, uint256 amount, bool wrong) internal returns (uint256 value) {
        if (currency == address(0)) return wrong ? amount + 1 : amount;
        token.mint(payer, amount);
        vm.prank(payer);
        token.approve(address(market), amount);
        return wrong ? 1 : 0;
    }

    function requestKey(address validator, uint256 modelSeed, bool zeroKey) external {
        calls++;
        _requestKey(validator, _model(modelSeed), zeroKey);
    }

    /// A key request joins the cycle `_cycleToJoin` names; the first request of a cycle opens it (the
    /// model's first, or the first after a Verified cycle once a later version was published).
    function _requestKey(address validator, uint256 id, bool zeroKey) internal {
        GPurchase storage live = _p[requestPid[id][validator]];
        uint256 version = _cycleToJoin(id);
        bool opensNew = _opensNewCycle(id);
        GSeat storage seat = _seat[id][version][validator];
        bool renewed = seat.state == SEAT_REQUESTED;
        bool ok = !zeroKey && _requestAllowed(validator, id, version, live, seat);
        bytes memory data =
            abi.encodeCall(Marketplace.requestValidatorKey, (id, zeroKey ? bytes32(0) : _key(validator)));
        (bool done, bytes memory ret) = _call(validator, address(market), 0, data);
        if (!_check(done, ok, "requestValidatorKey", ret)) return;
        // superseded: a pending one after its window, a delivered key by a request in a later cycle
        if (live.status == DELIVERED) _reach("delivered key replaced");
        if (live.status == PENDING || live.status == DELIVERED) live.status = EXPIRED;
        requestPid[id][validator] = _newPurchase(ret, validator, id, 0, true);
        seat.requestedAt = block.timestamp;
        GRound storage r = _round[id][version];
        if (r.number == 0) {
            r.number = 1;
            cycleVersion[id] = version;
            if (opensNew) _reach("new cycle opened");
            else if (version > 1) _reach("first cycle on a later version");
        }
        if (!renewed) {
            seat.state = SEAT_REQUESTED;
            _stake[validator].bonded += requestBond;
            _stake[validator].openSeats += 1;
        }
        _reach(renewed ? bytes32("key request renewed") : bytes32("key requested"));
    }

    /// Marketplace.requestValidatorKey (a delivered key is asked for again only when the request joins a
    /// cycle without a seat of the validator's), then Validators.keyRequested on the cycle it joins.
    function _requestAllowed(address validator, uint256 id, uint256 version, GPurchase storage live, GSeat storage seat)
        internal
        view
        returns (bool ok)
    {
        GStake storage s = _stake[validator];
        GRound storage r = _round[id][version];
        ok = _exists(id) && _m[id].active && !(live.status == DELIVERED && !_joinsWithoutSeat(id, validator))
            && !(live.status == PENDING && block.timestamp <= live.deadline);
        ok = ok && s.unlockAt == 0 && s.amount >= minStake && r.status == 0
            && (r.commitEnd == 0 || block.timestamp <= r.commitEnd);
        if (seat.state != SEAT_REQUESTED) {
            ok = ok && seat.state == SEAT_NONE && s.openSeats < maxOpenRequests && s.amount - s.bonded >= requestBond;
        }
    }

    /// how 0: to the purchase's own account (the worker's normal answer); 1: naming another account
    /// (a reorg handed the id to someone else); 2: a key of the wrong length.
    function deliverKey(address deliverer, uint256 purchaseSeed, uint256 how, address other) external {
        calls++;
        _deliverKey(deliverer, _pickPurchase(purchaseSeed, PENDING), how, other);
    }

    function _deliverKey(address deliverer, uint256 pid, uint256 how, address other) internal {
        GPurchase storage p = _pp(pid);
        how %= 3;
        address named = how == 1 ? other : p.account;
        bytes memory key = new bytes(how == 2 ? 79 : 80);
        key[0] = bytes1(uint8(pid));
        bool ok = named == p.account && how != 2 && _deliverable(pid, deliverer);
        (bool done, bytes memory ret) =
            _call(deliverer, address(market), 0, abi.encodeCall(Marketplace.deliverKey, (pid, named, key)));
        if (p.account != address(0) && named != p.account) {
            _reach("wrong buyer refused");
            bytes memory wanted =
                abi.encodeWithSelector(Marketplace.MarketplaceWrongBuyer.selector, pid, p.account, named);
            if (done || keccak256(ret) != keccak256(wanted)) {
                _fail("deliverKey to another account than the purchase's did not revert MarketplaceWrongBuyer");
            }
            return;
        }
        if (!_check(done, ok, "deliverKey", ret)) return;
        p.status = DELIVERED;
        p.deliveredAt = block.timestamp;
        p.deliveredTo = named;
        escrow[p.token] -= p.price;
        heldRevenue[p.token] += p.price;
        if (p.forValidator) {
            GSeat storage seat = _seat[p.model][_cv(p.model)][named];
            if (seat.state != SEAT_REQUESTED) _fail("deliverKey: a validator key delivered to a seat not requested");
            seat.state = SEAT_KEYED;
            seat.keyedAt = block.timestamp;
            seat.keyDelivered = true;
            _reach("validator key delivered");
        } else {
            _reach(deliverer == _m[p.model].operator ? bytes32("delivered by operator") : bytes32("delivered"));
        }
    }

    /// The seller's worker: the model's owner (or its operator, when it has one) answers a pending purchase.
    function workerDeliver(uint256 purchaseSeed, uint256 how, address other, bool viaOperator) external {
        calls++;
        _workerDeliver(_pickPurchase(purchaseSeed, PENDING), how, other, viaOperator);
    }

    function _workerDeliver(uint256 pid, uint256 how, address other, bool viaOperator) internal {
        GModel storage m = _m[_pp(pid).model];
        address deliverer = viaOperator && m.operator != address(0) ? m.operator : m.owner;
        if (deliverer == address(0)) deliverer = honestSeller;
        _deliverKey(deliverer, pid, how, other);
    }

    function _deliverable(uint256 pid, address deliverer) internal view returns (bool) {
        GPurchase storage p = _pp(pid);
        GModel storage m = _m[p.model];
        // a validator's key: its seat in the current cycle is the request (one left in an earlier cycle
        // takes no key: Validators.keyDelivered refuses it)
        bool seatAsks = !p.forValidator
            || (_commitsOpen(p.model) && _seat[p.model][_cv(p.model)][p.account].state == SEAT_REQUESTED);
        return _current(pid) && p.status == PENDING && !_book[p.model].disputed && block.timestamp <= p.deadline
            && (deliverer == m.owner || deliverer == m.operator) && seatAsks;
    }

    function releaseRevenue(address caller, uint256 purchaseSeed) external {
        calls++;
        _releaseRevenue(caller, _pickPurchase(purchaseSeed, DELIVERED));
    }

    function _releaseRevenue(address caller, uint256 pid) internal {
        GPurchase storage p = _pp(pid);
        uint256 challengeEnd = p.deliveredAt + challengePeriod;
        GBook storage b = _book[p.model];
        bool ok = _current(pid) && p.status == DELIVERED && !p.released && p.price != 0
            && block.timestamp > challengeEnd && !(b.disputed && b.disputedAt <= challengeEnd);
        address owner = _m[p.model].owner;
        (bool done, bytes memory ret) =
            _call(caller, address(market), 0, abi.encodeCall(Marketplace.releaseRevenue, (pid)));
        if (!_check(done, ok, "releaseRevenue", ret)) return;
        p.released = true;
        p.payouts += 1;
        heldRevenue[p.token] -= p.price;
        _payOut(p.model, owner, p.price, p.token);
        if (p.token != address(0)) _reach("token revenue released");
        else _reach(b.verifierWeight != 0 ? bytes32("revenue released, verified") : bytes32("revenue released"));
    }

    /// A released sale or a subscription, in `currency`: the fee (shared by weight with the verifiers of
    /// the version the latest verdict is about), the rest to `owner`.
    function _payOut(uint256 id, address owner, uint256 amount, address currency) internal {
        GBook storage b = _book[id];
        uint256 fee = (amount * feeBps) / 10_000;
        uint256 platform = fee;
        if (fee != 0 && b.verifierWeight != 0) {
            uint256 perWeight = (fee * shareBps) / 10_000 / b.verifierWeight;
            rewardPerWeight[id][b.version][currency] += perWeight;
            platform -= perWeight * b.verifierWeight;
            unclaimedRewards[currency] += perWeight * b.verifierWeight;
        }
        _credit(feeRecipient, platform, currency);
        _credit(owner, amount - fee, currency);
    }

    /// The owner offers (or, at price 0, withdraws) a subscription in the listing's currency; a period of
    /// 0 with a price is refused.
    function setSubscription(address actor, uint256 modelSeed, uint256 seed) external {
        calls++;
        uint256 id = _model(modelSeed);
        uint256 price = [uint256(0), 1, 1e15, 2 ** 80][seed % 4];
        uint256 period = seed % 5 == 0 ? 0 : 600 * (1 + (seed / 5) % 6);
        bool ok = _exists(id) && actor == _m[id].owner && price < 2 ** 80 && !(price != 0 && period == 0);
        (bool done, bytes memory ret) = _call(
            actor, address(registry), 0, abi.encodeCall(ModelRegistry.setSubscription, (id, price, uint32(period)))
        );
        if (!_check(done, ok, "setSubscription", ret)) return;
        (_subPrice[id], _subPeriod[id]) = (price, price == 0 ? 0 : period);
    }

    /// The owner of the model `modelSeed` picks (address(0) for none): sellers mostly act on their own.
    function ownerOfSeed(uint256 modelSeed) external view returns (address) {
        return _m[_model(modelSeed)].owner;
    }

    /// pay 1: one wei more (ETH; any ETH for a token price); 2: maxPrice one below the total; else the
    /// total, in the listing's currency. Paid to the owner at once.
    function subscribe(address account, uint256 modelSeed, uint256 periods, uint256 pay) external {
        calls++;
        uint256 id = calls % 3 == 0 ? _tokenModel(modelSeed, true) : _model(modelSeed);
        (periods, pay) = (periods % 4, pay % 4);
        uint256 total = periods * _subPrice[id];
        address currency = _m[id].payToken;
        bool ok = _exists(id) && _subPrice[id] != 0 && _m[id].active && !_book[id].disputed && periods != 0 && pay != 1
            && !(pay == 2 && total != 0);
        bytes memory data =
            abi.encodeCall(Marketplace.subscribe, (id, periods, pay == 2 && total != 0 ? total - 1 : total));
        (bool done, bytes memory ret) = _call(account, address(market), _fund(account, currency, total, pay == 1), data);
        if (_check(done, ok, "subscribe", ret)) _subscribed(account, id, periods, total);
    }

    /// A subscription went through: its expiry (checked against the contract's views) and the payment.
    function _subscribed(address account, uint256 id, uint256 periods, uint256 total) internal {
        uint256 current = _subEnd[id][account];
        if (current > block.timestamp) _reach("subscription extended");
        uint256 end = (current > block.timestamp ? current : block.timestamp) + periods * _subPeriod[id];
        _subEnd[id][account] = end;
        if (market.accessUntil(id, account) != end) _fail("subscribe: accessUntil differs from the rules");
        if (!market.hasAccess(id, account)) _fail("subscribe: no access after subscribing");
        address currency = _m[id].payToken;
        marketIn[currency] += total;
        _payOut(id, _m[id].owner, total, currency);
        _reach(currency != address(0) ? bytes32("token subscribed") : bytes32("subscribed"));
    }

    function refund(address caller, uint256 purchaseSeed) external {
        calls++;
        _refund(caller, _pickPurchase(purchaseSeed, purchaseSeed % 3 == 0 ? DELIVERED : PENDING));
    }

    function _refund(address caller, uint256 pid) internal {
        GPurchase storage p = _pp(pid);
        GBook storage b = _book[p.model];
        bool ok = _current(pid) && !p.forValidator && p.account == caller;
        if (p.status == PENDING) {
            ok = ok && (block.timestamp > p.deadline || b.disputed);
        } else if (p.status == DELIVERED) {
            ok = ok && !p.released && p.price != 0 && b.disputed && b.disputedAt <= p.deliveredAt + challengePeriod;
        } else {
            ok = false;
        }
        (bool done, bytes memory ret) = _call(caller, address(market), 0, abi.encodeCall(Marketplace.refund, (pid)));
        if (!_check(done, ok, "refund", ret)) return;
        if (p.status == DELIVERED) {
            _reach("delivered purchase refunded");
            if (p.vote != 0) {
                GScore storage sc = _score[p.model];
                sc.weightedSum -= p.vote * p.price;
                sc.weight -= p.price;
                sc.voters -= 1;
                p.vote = 0;
                _reach("refund dropped a vote");
            }
        } else {
            _reach(b.disputed ? bytes32("disputed pending refunded") : bytes32("late purchase refunded"));
        }
        if (p.status == PENDING) escrow[p.token] -= p.price;
        else heldRevenue[p.token] -= p.price;
        p.status = REFUNDED;
        p.payouts += 1;
        _credit(caller, p.price, p.token);
        if (p.token != address(0)) _reach("token purchase refunded");
    }

    function withdrawMarket(address actor) external {
        calls++;
        _withdrawMarket(actor);
    }

    function _withdrawMarket(address actor) internal {
        uint256 owed = marketCredited[actor][address(0)];
        bool ok = owed != 0 && actor != address(rejecter);
        uint256 before = actor.balance;
        uint256 reentered = reenterer.reentered();
        (bool done, bytes memory ret) = _call(actor, address(market), 0, abi.encodeWithSignature("withdraw()"));
        if (!_check(done, ok, "Marketplace.withdraw", ret)) return;
        if (actor.balance != before + owed) _fail("Marketplace.withdraw paid another amount than was credited");
        if (reenterer.reentered() != reentered) _fail("Marketplace.withdraw was re-entered");
        _debit(actor, owed, address(0));
        _reach(actor == address(reenterer) ? bytes32("reenterer withdrew") : bytes32("withdrew"));
    }

    /// `withdraw(token)`: everything credited in the campaign's token, to any account (the EthRejecter
    /// included: a token transfer does not call it).
    function withdrawMarketToken(address actor) external {
        calls++;
        _withdrawMarketToken(actor);
    }

    function _withdrawMarketToken(address actor) internal {
        uint256 owed = marketCredited[actor][address(token)];
        uint256 before = token.balanceOf(actor);
        (bool done, bytes memory ret) =
            _call(actor, address(market), 0, abi.encodeWithSignature("withdraw(address)", address(token)));
        if (!_check(done, owed != 0, "Marketplace.withdraw(token)", ret)) return;
        if (token.balanceOf(actor) != before + owed) _fail("Marketplace.withdraw(token) paid another amount");
        _debit(actor, owed, address(token));
        _reach("token withdrew");
    }

    /// inToken: the share of the sales in the campaign's token (`claimValidatorReward(id, token)`).
    /// versionSeed % 3 == 0: `claimValidatorRewardAt` a version (one that owes the validator when there
    /// is one, an earlier version than the latest verdict's among them); else the latest verdict's version.
    function claimReward(address validator, uint256 modelSeed, bool inToken, uint256 versionSeed) external {
        calls++;
        address currency = inToken ? address(token) : address(0);
        if (versionSeed % 3 == 0) {
            (uint256 at, uint256 version) = _owingAt(validator, modelSeed, currency, versionSeed);
            _claimReward(validator, at, version, currency, true);
            return;
        }
        uint256 id = calls % 3 == 0 ? _modelOwing(validator, modelSeed, currency) : _model(modelSeed);
        _claimReward(validator, id, _book[id].version, currency, false);
    }

    /// at: `claimValidatorRewardAt(validator, id, version, currency)`; else `claimValidatorReward`, which
    /// claims at the latest verdict's version (`version` is that one).
    function _claimReward(address validator, uint256 id, uint256 version, address currency, bool at) internal {
        uint256 owed = rewardOwedAt(id, version, validator, currency);
        bytes memory data = at
            ? abi.encodeCall(Marketplace.claimValidatorRewardAt, (validator, id, version, currency))
            : currency == address(0)
                ? abi.encodeWithSignature("claimValidatorReward(uint256)", id)
                : abi.encodeWithSignature("claimValidatorReward(uint256,address)", id, currency);
        (bool done, bytes memory ret) = _call(validator, address(market), 0, data);
        if (!_check(done, owed != 0, at ? "claimValidatorRewardAt" : "claimValidatorReward", ret)) return;
        _rewardClaimed[id][version][validator][currency] = rewardPerWeight[id][version][currency];
        unclaimedRewards[currency] -= owed;
        _credit(validator, owed, currency);
        if (version < _book[id].version) _reach("old version reward claimed");
        _reach(currency != address(0) ? bytes32("token reward claimed") : bytes32("validator reward claimed"));
    }

    function vote(address voter, uint256 modelSeed, uint8 score) external {
        calls++;
        _vote(voter, _model(modelSeed), score);
    }

    function _vote(address voter, uint256 id, uint8 score) internal {
        score = uint8(score % 7); // 0 and 6 are out of range
        GPurchase storage p = _p[licencePid[id][voter]];
        // vote weights are wei: a licence paid in a token holds no vote (Marketplace.recordVote)
        bool eligible = p.status == DELIVERED && !p.ownerBought && p.price != 0 && p.token == address(0);
        bool ok = score >= 1 && score <= 5 && eligible;
        (bool done, bytes memory ret) = _call(voter, address(votes), 0, abi.encodeCall(Votes.vote, (id, score)));
        if (!_check(done, ok, "vote", ret)) return;
        GScore storage sc = _score[id];
        if (p.vote == 0) {
            sc.weightedSum += score * p.price;
            sc.weight += p.price;
            sc.voters += 1;
        } else {
            sc.weightedSum = sc.weightedSum - p.vote * p.price + score * p.price;
        }
        p.vote = score;
        _reach("counted vote");
    }

    // ---- owner ---------------------------------------------------------------------------------

    function setFeeBps(address caller, uint256 bps) external {
        calls++;
        bps %= 1200; // above MAX_FEE_BPS (1000) now and then
        bool ok = caller == marketOwner && bps <= 1000;
        (bool done, bytes memory ret) = _call(caller, address(market), 0, abi.encodeCall(Marketplace.setFeeBps, (bps)));
        if (_check(done, ok, "setFeeBps", ret)) feeBps = bps;
    }

    function setFeeRecipient(address caller, address to) external {
        calls++;
        bool ok = caller == marketOwner && to != address(0);
        (bool done, bytes memory ret) =
            _call(caller, address(market), 0, abi.encodeCall(Marketplace.setFeeRecipient, (to)));
        if (_check(done, ok, "setFeeRecipient", ret)) feeRecipient = to;
    }

    function transferOwnership(address caller, address to) external {
        calls++;
        bool ok = caller == marketOwner && to != address(0);
        (bool done, bytes memory ret) =
            _call(caller, address(market), 0, abi.encodeWithSignature("transferOwnership(address)", to));
        if (_check(done, ok, "transferOwnership", ret)) marketOwner = to;
    }

    /// Calls that only the owner may make once (already made at deployment), or that only the owner may
    /// make at all, or that only the other contracts may make: each must revert for `caller`.
    function forbidden(address caller, uint256 which, uint256 modelSeed) external {
        calls++;
        uint256 id = _model(modelSeed);
        which %= 8;
        bytes memory data;
        address target = address(market);
        if (which == 0) {
            data = abi.encodeCall(Marketplace.connectValidators, (validators));
        } else if (which == 1) {
            data = abi.encodeCall(Marketplace.connectVotes, (votes));
        } else if (which == 2) {
            data = abi.encodeCall(Marketplace.recordVerdict, (id, 1, DISPUTED, 0));
        } else if (which == 3) {
            data = abi.encodeCall(Marketplace.recordVote, (id, caller, 5));
        } else if (which == 4) {
            (target, data) = (address(votes), abi.encodeCall(Votes.dropVote, (id, 5, 1)));
        } else if (which == 5) {
            (target, data) = (address(validators), abi.encodeCall(Validators.keyRequested, (id, caller)));
        } else if (which == 6) {
            (target, data) = (address(validators), abi.encodeCall(Validators.keyDelivered, (id, caller)));
        } else {
            data = abi.encodeWithSignature("renounceOwnership()");
        }
        bool ok = which == 7 && caller == marketOwner; // renouncing is the owner's right, never taken here
        if (ok) return;
        (bool done, bytes memory ret) = _call(caller, target, 0, data);
        if (done) _fail(string.concat("a restricted call went through: case ", vm.toString(which)));
    }

    // =========================================================================================
    // validators
    // =========================================================================================

    function stake(address validator, uint256 amount) external {
        calls++;
        _stakeFor(validator, amount);
    }

    function _stakeFor(address validator, uint256 amount) internal {
        GStake storage s = _stake[validator];
        amount = amount % 4 == 0 ? amount % minStake : minStake * (1 + amount % 3);
        bool ok = s.unlockAt == 0 && s.amount + amount >= minStake;
        (bool done, bytes memory ret) =
            _call(validator, address(validators), amount, abi.encodeCall(Validators.stake, ()));
        if (!_check(done, ok, "stake", ret)) return;
        s.amount += amount;
        totalStaked += amount;
        validatorsIn += amount;
        _reach("staked");
    }

    function requestUnstake(address validator) external {
        calls++;
        GStake storage s = _stake[validator];
        bool ok = s.amount != 0 && s.unlockAt == 0 && s.openSeats == 0;
        (bool done, bytes memory ret) =
            _call(validator, address(validators), 0, abi.encodeCall(Validators.requestUnstake, ()));
        if (s.openSeats != 0) {
            bytes memory wanted =
                abi.encodeWithSelector(Validators.ValidatorsOpenSeats.selector, validator, s.openSeats);
            if (done || (s.amount != 0 && s.unlockAt == 0 && keccak256(ret) != keccak256(wanted))) {
                _fail("requestUnstake with open seats was not refused with ValidatorsOpenSeats");
            }
            _reach("unstake refused: open seats");
            return;
        }
        if (!_check(done, ok, "requestUnstake", ret)) return;
        s.unlockAt = block.timestamp + unstakeDelay;
        _reach("unstake requested");
    }

    function unstake(address validator) external {
        calls++;
        _unstakeFor(validator);
    }

    function _unstakeFor(address validator) internal {
        GStake storage s = _stake[validator];
        bool ok = s.amount != 0 && s.unlockAt != 0 && block.timestamp >= s.unlockAt && validator != address(rejecter);
        uint256 before = validator.balance;
        (bool done, bytes memory ret) = _call(validator, address(validators), 0, abi.encodeCall(Validators.unstake, ()));
        if (!_check(done, ok, "unstake", ret)) return;
        if (s.bonded != 0 || s.openSeats != 0) _fail("unstake: a bonded stake left before its seats were released");
        if (validator.balance != before + s.amount) _fail("unstake paid another amount than the stake");
        validatorsOut += s.amount;
        totalStaked -= s.amount;
        delete _stake[validator];
        _reach("unstaked");
    }

    /// What `validator` commits to, by who it is: an honest validator what the content gives; the lazy
    /// one what it can copy from the chain; a colluder the listing's claims for its seller's models and
    /// 0xdead for the others. copy: a colluder commits another validator's stored commitment instead.
    struct CommitPlan {
        uint256 id;
        bytes32 observed;
        bytes32 digest;
        bytes32 salt;
        bytes32 c;
        bool copied;
        bool again;
        bool open;
        uint256 weight;
        uint256 bond;
        uint256 carried;
    }

    function commit(address validator, uint256 modelSeed, uint256 saltSeed, bool copy) external {
        calls++;
        _commit(validator, _pickSeat(validator, modelSeed, SEAT_KEYED), saltSeed, copy);
    }

    function _commit(address validator, uint256 id, uint256 saltSeed, bool copy) internal {
        CommitPlan memory k = _plan(validator, id, saltSeed, copy);
        GRound storage r = _round[k.id][_cv(k.id)];
        GSeat storage seat = _seat[k.id][_cv(k.id)][validator];
        GStake storage s = _stake[validator];
        bool ok = r.status == 0 && (seat.state == SEAT_KEYED || k.again) && (k.open || block.timestamp <= r.commitEnd)
            && k.weight != 0 && s.amount - (s.bonded - k.carried) >= k.bond;
        (bool done, bytes memory ret) =
            _call(validator, address(validators), 0, abi.encodeCall(Validators.commitAttestation, (k.id, k.c)));
        if (!seat.keyDelivered && done) _fail("commitAttestation without a delivered key went through");
        if (!seat.keyDelivered && _exists(k.id) && _commitsOpen(k.id)) {
            bytes memory wanted = abi.encodeWithSelector(Validators.ValidatorsNoKey.selector, k.id, validator);
            if (keccak256(ret) != keccak256(wanted)) _keylessReport(k.id, validator, ret);
            _reach("keyless commit refused");
        }
        if (!_check(done, ok, "commitAttestation", ret)) return;
        if (k.open) {
            r.commitEnd = block.timestamp + commitPeriod;
            r.revealEnd = r.commitEnd + revealPeriod;
        }
        s.bonded = s.bonded - k.carried + k.bond;
        seat.state = SEAT_COMMITTED;
        seat.round = r.number;
        seat.says = 0;
        seat.weight = k.weight;
        seat.commitBond = k.bond;
        seat.commitment = k.c;
        seat.observed = k.observed;
        seat.digest = k.digest;
        seat.salt = k.salt;
        _reach(k.copied ? bytes32("copied commitment") : k.again ? bytes32("committed again") : bytes32("committed"));
    }

    function _keylessReport(uint256 id, address validator, bytes memory ret) internal {
        (uint8 st, uint256 rd,,,) = validators.attestationOf(id, validator);
        uint256 state = _seat[id][_cv(id)][validator].state;
        _fail(
            string.concat(
                "commit without a key: not ValidatorsNoKey: ",
                vm.toString(ret),
                string.concat(" ghost state ", vm.toString(state), " contract state "),
                string.concat(
                    vm.toString(uint256(st)), " round ", vm.toString(rd), " validator ", vm.toString(validator)
                )
            )
        );
    }

    function _plan(address validator, uint256 id, uint256 saltSeed, bool copy)
        internal
        view
        returns (CommitPlan memory k)
    {
        k.id = id;
        GRound storage r = _round[id][_cv(id)];
        GSeat storage seat = _seat[id][_cv(id)][validator];
        (k.observed, k.digest) = _opinion(validator, id);
        k.salt = keccak256(abi.encode(saltSeed, validator, r.number));
        k.c = Suite.commitment(validators, id, validator, k.observed, k.digest, k.salt);
        if (copy) {
            // Its own reveal can never open this: the commitment binds the committer's address.
            for (uint256 i = 0; i < stakers.length && !k.copied; i++) {
                address victim = stakers[(saltSeed % stakers.length + i) % stakers.length];
                bytes32 theirs = victim == validator ? bytes32(0) : validators.commitmentOf(id, victim);
                if (theirs != bytes32(0)) (k.c, k.copied) = (theirs, true);
            }
        }
        k.again = seat.state == SEAT_REVEALED && seat.round < r.number;
        k.open = r.commitEnd == 0;
        k.weight = _stake[validator].amount / minStake;
        k.bond = k.weight * bondPerWeight;
        k.carried = k.again ? seat.commitBond : 0;
    }

    /// how 0: open its own commitment; 1: with another salt; 2: with the values an honest validator
    /// revealed (copying a reveal into its own seat).
    function reveal(address validator, uint256 modelSeed, uint256 how) external {
        calls++;
        _reveal(validator, _pickSeat(validator, modelSeed, SEAT_COMMITTED), how);
    }

    function _reveal(address validator, uint256 id, uint256 how) internal {
        GSeat storage seat = _seat[id][_cv(id)][validator];
        how %= 3;
        GVersion storage target = _ver[id][_cv(id)];
        bytes32 observed = how == 2 ? target.trueHash : seat.observed;
        bytes32 digest = how == 2 ? target.trueDigest : seat.digest;
        bytes32 salt = how == 1 ? keccak256(abi.encode(seat.salt)) : seat.salt;
        bool opens = Suite.commitment(validators, id, validator, observed, digest, salt) == seat.commitment;
        bool ok = opens && _revealOpen(id, seat);
        bytes memory data = abi.encodeCall(Validators.revealAttestation, (id, observed, digest, salt));
        (bool done, bytes memory ret) = _call(validator, address(validators), 0, data);
        if (done && !opens) _fail("revealAttestation accepted values that do not open the commitment");
        if (done && !seat.keyDelivered) _fail("an attestation was counted without a delivered key");
        if (!_check(done, ok, "revealAttestation", ret)) return;
        uint8 says = _count(id, seat.weight, observed, digest);
        seat.state = SEAT_REVEALED;
        seat.says = says;
        seat.commitment = bytes32(0);
        seat.revealedOwn = true;
        _reach(
            says == VERIFIED
                ? bytes32("revealed verified")
                : says == DISPUTED ? bytes32("revealed disputed") : bytes32("revealed metrics")
        );
    }

    function _revealOpen(uint256 id, GSeat storage seat) internal view returns (bool) {
        GRound storage r = _round[id][_cv(id)];
        return seat.state == SEAT_COMMITTED && seat.round == r.number && r.commitEnd != 0
            && block.timestamp > r.commitEnd && block.timestamp <= r.revealEnd;
    }

    /// Adds a reveal's weight to the status it argues for (contracts/README.md: Verified needs the listed
    /// hash and the claim made before the round opened, both of the version the cycle attests).
    function _count(uint256 id, uint256 weight, bytes32 observed, bytes32 digest) internal returns (uint8 says) {
        GVersion storage m = _ver[id][_cv(id)];
        GRound storage r = _round[id][_cv(id)];
        if (observed != m.listed) {
            r.hashWeight += weight;
            return DISPUTED;
        }
        if (digest == m.claimed && m.claimed != bytes32(0) && m.claimedAt <= r.commitEnd - commitPeriod) {
            // the claim counted: made no later than the round opened (the same second counts too)
            if (r.claimAtOpen == bytes32(0)) r.claimAtOpen = m.claimed;
            if (r.claimAtOpen != m.claimed) _fail("two different claims counted as Verified in one round");
            r.verifiedWeight += weight;
            return VERIFIED;
        }
        r.metricsWeight += weight;
        return METRICS_DISPUTED;
    }

    function settle(address caller, uint256 modelSeed) external {
        calls++;
        _settle(caller, _pickRound(modelSeed));
    }

    function _settle(address caller, uint256 id) internal {
        uint256 version = _cv(id);
        GRound storage r = _round[id][version];
        bool ok = r.status == 0 && r.commitEnd != 0 && block.timestamp > r.revealEnd;
        (bool done, bytes memory ret) = _call(caller, address(validators), 0, abi.encodeCall(Validators.settle, (id)));
        if (!_check(done, ok, "settle", ret)) return;
        uint256 total = r.verifiedWeight + r.metricsWeight + r.hashWeight;
        uint8 status;
        if (total >= quorum) {
            if (2 * r.verifiedWeight > total) status = VERIFIED;
            else if (2 * r.metricsWeight > total) status = METRICS_DISPUTED;
            else if (2 * r.hashWeight > total) status = DISPUTED;
        }
        if (status == 0) {
            (r.number, r.commitEnd, r.revealEnd) = (r.number + 1, 0, 0);
            (r.verifiedWeight, r.metricsWeight, r.hashWeight, r.claimAtOpen) = (0, 0, 0, bytes32(0));
            _reach("round undecided");
            return;
        }
        r.status = status;
        GBook storage b = _book[id];
        b.version = version;
        if (version > 1) _reach("later version verdict");
        if (status == VERIFIED) {
            b.verifierWeight = r.verifiedWeight;
            GVersion storage m = _ver[id][version];
            _reach(
                m.listed == m.trueHash && m.claimed == m.trueDigest
                    ? bytes32("verified truthful")
                    : bytes32("verified bogus")
            );
        } else {
            (b.verifierWeight, b.disputed, b.disputedAt) = (0, true, block.timestamp);
            _reach(status == DISPUTED ? bytes32("disputed") : bytes32("metrics disputed"));
        }
    }

    /// `validator`'s seat in an earlier cycle of the model when it holds one open there (`releaseAt`: a
    /// validator must close those too before it may leave); else its seat in the current cycle, by
    /// `release` or, with `at`, by `releaseAt` naming the current cycle's version.
    function release(address caller, uint256 modelSeed, address validator, bool at) external {
        calls++;
        uint256 id = _pickSeat(validator, modelSeed, 0);
        uint256 old = _oldSeat(id, validator);
        _release(caller, id, old != 0 ? old : _cv(id), validator, at || old != 0);
    }

    function _release(address caller, uint256 id, uint256 version, address validator, bool at) internal {
        GSeat storage seat = _seat[id][version][validator];
        (bool ok, uint256 bonds, uint256 forfeited) = _releasePlan(id, version, seat);
        bytes memory data = at
            ? abi.encodeCall(Validators.releaseAt, (id, version, validator))
            : abi.encodeCall(Validators.release, (id, validator));
        (bool done, bytes memory ret) = _call(caller, address(validators), 0, data);
        if (!_check(done, ok, at ? "releaseAt" : "release", ret)) return;
        if (version < _cv(id)) _reach("old seat released");
        GStake storage s = _stake[validator];
        s.bonded -= bonds;
        s.amount -= forfeited;
        totalStaked -= forfeited;
        s.openSeats -= 1;
        validatorsCredited[treasury] += forfeited;
        if (seat.state == SEAT_REQUESTED) {
            delete _seat[id][version][validator];
            _reach("expired request released");
        } else {
            seat.state = SEAT_RELEASED;
            seat.commitment = bytes32(0);
            _reach(forfeited != 0 ? bytes32("bond forfeited") : bytes32("bonds returned"));
        }
    }

    /// Validators.release's rules (its NatSpec), against the round of the seat's cycle (`version`): when
    /// a seat may close and which bonds it loses.
    function _releasePlan(uint256 id, uint256 version, GSeat storage seat)
        internal
        view
        returns (bool ok, uint256 bonds, uint256 forfeited)
    {
        GRound storage r = _round[id][version];
        bool settled = r.status != 0;
        bool forfeitRequest;
        bool forfeitCommit;
        uint8 state = seat.state;
        if (state == SEAT_REQUESTED) {
            ok = block.timestamp > seat.requestedAt + deliveryWindow;
        } else if (state == SEAT_KEYED) {
            ok = settled;
            forfeitRequest = true; // keys arrive only while commits are open: it could have taken part
        } else if (state == SEAT_COMMITTED) {
            ok = seat.round < r.number || settled || (r.commitEnd != 0 && block.timestamp > r.revealEnd);
            (forfeitRequest, forfeitCommit) = (true, true);
        } else if (state == SEAT_REVEALED) {
            bool current = seat.round == r.number;
            ok = !current || settled;
            forfeitCommit = current && seat.says != r.status;
            forfeitRequest = !current && settled;
        }
        bonds = requestBond + (state >= SEAT_COMMITTED ? seat.commitBond : 0);
        forfeited = (forfeitRequest ? requestBond : 0) + (forfeitCommit ? seat.commitBond : 0);
    }

    function withdrawValidators(address actor) external {
        calls++;
        uint256 owed = validatorsCredited[actor];
        uint256 before = actor.balance;
        (bool done, bytes memory ret) = _call(actor, address(validators), 0, abi.encodeCall(Validators.withdraw, ()));
        if (!_check(done, owed != 0, "Validators.withdraw", ret)) return;
        if (actor.balance != before + owed) _fail("Validators.withdraw paid another amount than was credited");
        validatorsCredited[actor] = 0;
        validatorsOut += owed;
        _reach("treasury withdrew");
    }

    function warp(uint256 secs) external {
        calls++;
        vm.warp(block.timestamp + secs);
    }

    /// One step of a validator's part in a model, whatever it is now: stake, ask for the key (the
    /// seller's worker answers it), commit, wait for the reveal period and reveal, settle, release its
    /// seat, claim its reward; a leaving validator waits out its delay and unstakes. A seat left open in
    /// an earlier cycle is released first (`releaseAt`); once the model's cycle is Verified and a later
    /// version is out, the next step asks for the key again (a new cycle); now and then it claims what a
    /// version owes it (`claimValidatorRewardAt`). The same checked actions as the single moves, in the
    /// order that carries a model to its verdict.
    function advance(address validator, uint256 modelSeed, uint256 saltSeed) external {
        calls++;
        GStake storage s = _stake[validator];
        if (s.unlockAt != 0) {
            if (block.timestamp < s.unlockAt) vm.warp(s.unlockAt);
            _unstakeFor(validator);
            return;
        }
        if (s.amount < minStake) {
            _stakeFor(validator, minStake * (1 + saltSeed % 2));
            return;
        }
        if (modelIds.length == 0) return;
        uint256 id = 1 + modelSeed % modelIds.length;
        if (_advanceOld(validator, id, saltSeed)) return;
        GSeat storage seat = _seat[id][_cv(id)][validator];
        GRound storage r = _round[id][_cv(id)];
        uint8 state = seat.state;
        // a new cycle: joined at once, or (half the time with a seat still open) after the release
        bool joins = _opensNewCycle(id) && (state == SEAT_RELEASED || saltSeed % 2 == 0);
        if (state == SEAT_NONE || joins) {
            _requestKey(validator, id, false);
            return;
        }
        if (state == SEAT_REQUESTED) {
            uint256 pid = requestPid[id][validator];
            if (_p[pid].status == PENDING && block.timestamp <= _p[pid].deadline && !_book[id].disputed) {
                if (!_commitsOpen(id) && r.status == 0) {
                    _advanceRound(validator, id); // no key while a round's commits are closed
                    return;
                }
                _workerDeliver(pid, 0, address(0), saltSeed % 2 == 0);
                return;
            }
            if (block.timestamp <= seat.requestedAt + deliveryWindow) vm.warp(seat.requestedAt + deliveryWindow + 1);
            _release(validator, id, _cv(id), validator, false);
            return;
        }
        if (r.status != 0 || state == SEAT_RELEASED) {
            if (state != SEAT_RELEASED) {
                _release(validator, id, _cv(id), validator, false);
                return;
            }
            _claimReward(validator, id, _book[id].version, saltSeed % 2 == 0 ? address(0) : address(token), false);
            return;
        }
        if (state == SEAT_KEYED || (state == SEAT_REVEALED && seat.round < r.number)) {
            if (r.commitEnd != 0 && block.timestamp > r.commitEnd) {
                _advanceRound(validator, id);
                return;
            }
            bool colluder = _isColluder(validator);
            // a colluder often waits for someone else to commit first, then copies that commitment
            // instead of making its own (its reveal can never open it)
            if (colluder && r.commitEnd == 0 && saltSeed % 2 == 0) return;
            _commit(validator, id, saltSeed, colluder && saltSeed % 3 != 0);
            return;
        }
        if (state == SEAT_COMMITTED && seat.round == r.number) {
            if (block.timestamp <= r.commitEnd) vm.warp(r.commitEnd + 1);
            if (block.timestamp <= r.revealEnd) {
                // now and then with a wrong salt, or with an honest validator's values (both must fail)
                _reveal(validator, id, saltSeed % 6 == 0 ? 1 : saltSeed % 6 == 1 ? 2 : 0);
                return;
            }
        }
        if (state == SEAT_COMMITTED && seat.round < r.number) {
            _release(validator, id, _cv(id), validator, false);
            return;
        }
        _advanceRound(validator, id);
    }

    /// `advance`'s steps outside the current cycle: release a seat left open in an earlier one (once its
    /// request expired, when it is a request: the earlier cycles are all Verified), or, one time in five,
    /// claim what a version before the latest verdict's still owes the validator (what the latest one
    /// owes is claimed once its seat is released). False when there was none to take.
    function _advanceOld(address validator, uint256 id, uint256 saltSeed) internal returns (bool) {
        uint256 old = _oldSeat(id, validator);
        if (old != 0) {
            GSeat storage seat = _seat[id][old][validator];
            uint256 expiry = seat.requestedAt + deliveryWindow;
            if (seat.state == SEAT_REQUESTED && block.timestamp <= expiry) vm.warp(expiry + 1);
            _release(validator, id, old, validator, true);
            return true;
        }
        if (saltSeed % 5 != 0) return false;
        address currency = saltSeed % 2 == 0 ? address(0) : address(token);
        for (uint256 v = 1; v < _book[id].version; v++) {
            if (rewardOwedAt(id, v, validator, currency) != 0) {
                _claimReward(validator, id, v, currency, true);
                return true;
            }
        }
        return false;
    }

    /// One step of a buyer's life with a model: buy it, have the seller's worker deliver (or take the
    /// money back when it does not or the model was disputed), vote, see the seller's revenue released
    /// once the challenge period is over, withdraw. The same checked actions as the single moves.
    function shop(address buyer, uint256 modelSeed, uint256 seed) external {
        calls++;
        if (modelIds.length == 0) return;
        uint256 id = 1 + modelSeed % modelIds.length;
        uint256 pid = licencePid[id][buyer];
        GPurchase storage p = _p[pid];
        if (pid == 0 || p.status == REFUNDED) {
            if (marketCredited[buyer][address(0)] != 0 && seed % 2 == 0) {
                _withdrawMarket(buyer);
                return;
            }
            if (marketCredited[buyer][address(token)] != 0 && seed % 3 == 0) {
                _withdrawMarketToken(buyer);
                return;
            }
            _buy(buyer, id, 0, false);
            return;
        }
        if (p.status == PENDING) {
            if (block.timestamp <= p.deadline && !_book[id].disputed && seed % 4 != 0) {
                _workerDeliver(pid, 0, address(0), seed % 3 == 0);
                return;
            }
            if (block.timestamp <= p.deadline && !_book[id].disputed) vm.warp(p.deadline + 1);
            _refund(buyer, pid);
            return;
        }
        GBook storage b = _book[id];
        if (b.disputed && !p.released && b.disputedAt <= p.deliveredAt + challengePeriod && seed % 2 == 0) {
            _refund(buyer, pid);
            return;
        }
        // a licence paid in a token holds no vote: its buyer tries now and then (refused) and moves on
        if (p.token == address(0) ? p.vote == 0 || seed % 3 == 0 : seed % 5 == 0) {
            _vote(buyer, id, uint8(1 + seed % 5));
            return;
        }
        if (!p.released && p.price != 0) {
            if (block.timestamp <= p.deliveredAt + challengePeriod) vm.warp(p.deliveredAt + challengePeriod + 1);
            _releaseRevenue(buyer, pid);
            return;
        }
        if (_m[id].payToken != address(0) && seed % 2 == 0) _withdrawMarketToken(_m[id].owner);
        else _withdrawMarket(_m[id].owner);
    }

    function _advanceRound(address validator, uint256 id) internal {
        GRound storage r = _round[id][_cv(id)];
        if (block.timestamp <= r.revealEnd) vm.warp(r.revealEnd + 1);
        _settle(validator, id);
    }

    // =========================================================================================
    // views for the invariant test
    // =========================================================================================

    function modelCount() external view returns (uint256) {
        return modelIds.length;
    }

    function purchaseCount() external view returns (uint256) {
        return _p.length - 1;
    }

    function accountCount() external view returns (uint256) {
        return accounts.length;
    }

    function stakerCount() external view returns (uint256) {
        return stakers.length;
    }

    function purchase(uint256 pid) external view returns (GPurchase memory) {
        return _p[pid];
    }

    function model(uint256 id) external view returns (GModel memory) {
        return _m[id];
    }

    function bookOf(uint256 id) external view returns (GBook memory) {
        return _book[id];
    }

    function scoreOf(uint256 id) external view returns (GScore memory) {
        return _score[id];
    }

    function stakeOf(address v) external view returns (GStake memory) {
        return _stake[v];
    }

    /// Version `version` of model `id` (1: the listing).
    function versionOf(uint256 id, uint256 version) external view returns (GVersion memory) {
        return _ver[id][version];
    }

    /// The version the model's current cycle attests (1 before any key request, as Validators counts).
    function currentVersion(uint256 id) external view returns (uint256) {
        return _cv(id);
    }

    /// The current cycle's round.
    function roundOf(uint256 id) external view returns (GRound memory) {
        return _round[id][_cv(id)];
    }

    /// The round of the cycle that attests `version` (number 0: no cycle attested it).
    function roundAt(uint256 id, uint256 version) external view returns (GRound memory) {
        return _round[id][version];
    }

    /// `v`'s seat in the current cycle.
    function seatOf(uint256 id, address v) external view returns (GSeat memory) {
        return _seat[id][_cv(id)][v];
    }

    /// `v`'s seat in the cycle that attests `version`.
    function seatAt(uint256 id, uint256 version, address v) external view returns (GSeat memory) {
        return _seat[id][version][v];
    }

    function opensNewCycle(uint256 id) external view returns (bool) {
        return _opensNewCycle(id);
    }

    /// What `v` may claim in `currency` as a verifier of the version the latest verdict is about.
    function rewardOwed(uint256 id, address v, address currency) public view returns (uint256) {
        return rewardOwedAt(id, _book[id].version, v, currency);
    }

    /// What `v` may claim in `currency` as a verifier of `version`.
    function rewardOwedAt(uint256 id, uint256 version, address v, address currency) public view returns (uint256) {
        return (rewardPerWeight[id][version][currency] - _rewardClaimed[id][version][v][currency])
            * verifierWeightAt(id, version, v);
    }

    /// The weight with which `v` revealed Verified in the round that verified the current cycle's version.
    function verifierWeight(uint256 id, address v) public view returns (uint256) {
        return verifierWeightAt(id, _cv(id), v);
    }

    /// The weight with which `v` revealed Verified in the round that verified `version` (0 otherwise).
    function verifierWeightAt(uint256 id, uint256 version, address v) public view returns (uint256) {
        GSeat storage seat = _seat[id][version][v];
        GRound storage r = _round[id][version];
        if (r.status != VERIFIED || seat.round != r.number || seat.says != VERIFIED) return 0;
        return seat.weight;
    }

    /// A model id as the actions pick one from a seed (`_model`), for the ChannelsWorld.
    function pickModel(uint256 seed) external view returns (uint256) {
        return _model(seed);
    }

    /// `_tokenModel(seed, false)`, for the ChannelsWorld.
    function pickTokenModel(uint256 seed) external view returns (uint256) {
        return _tokenModel(seed, false);
    }

    function isCurrent(uint256 pid) external view returns (bool) {
        return _current(pid);
    }

    // =========================================================================================
    // internals
    // =========================================================================================

    function _credit(address account, uint256 amount, address currency) internal {
        marketCredited[account][currency] += amount;
        totalMarketCredited[currency] += amount;
    }

    /// A withdrawal of `amount` in `currency` paid out to `account`.
    function _debit(address account, uint256 amount, address currency) internal {
        marketCredited[account][currency] -= amount;
        totalMarketCredited[currency] -= amount;
        marketOut[currency] += amount;
    }

    function _newPurchase(bytes memory ret, address account, uint256 id, uint256 price, bool forValidator)
        internal
        returns (uint256 pid)
    {
        pid = abi.decode(ret, (uint256));
        if (pid != _p.length) _fail("purchase ids are not consecutive from 1");
        GPurchase storage p = _p.push();
        p.account = account;
        p.model = id;
        p.price = price;
        p.status = PENDING;
        p.forValidator = forValidator;
        p.deadline = block.timestamp + deliveryWindow;
    }

    /// The ghost purchase `pid`, or an empty one for an id never given out.
    function _pp(uint256 pid) internal view returns (GPurchase storage) {
        return _p[pid < _p.length ? pid : 0];
    }

    /// The purchase is still the live one of its (model, account): not superseded by a later one.
    function _current(uint256 pid) internal view returns (bool) {
        if (pid == 0 || pid >= _p.length) return false;
        GPurchase storage p = _p[pid];
        return (p.forValidator ? requestPid : licencePid)[p.model][p.account] == pid;
    }

    function _key(address account) internal pure returns (bytes32) {
        return keccak256(abi.encode("X25519 public key", account));
    }

    function _isColluder(address validator) internal view returns (bool) {
        for (uint256 i = 0; i < colluders.length; i++) {
            if (validator == colluders[i]) return true;
        }
        return false;
    }

    /// What `validator` commits to about the version the model's current cycle attests.
    function _opinion(address validator, uint256 id) internal view returns (bytes32 observed, bytes32 digest) {
        GVersion storage m = _ver[id][_cv(id)];
        if (validator == lazyValidator) return (m.listed, m.claimed); // copied from the chain
        for (uint256 i = 0; i < colluders.length; i++) {
            if (validator == colluders[i]) {
                return _m[id].seller == colludingSeller ? (m.listed, m.claimed) : (DEAD, DEAD);
            }
        }
        return (m.trueHash, m.trueDigest);
    }

    /// Validators takes key requests, deliveries and commits only while no round's commits are closed
    /// and the model's current cycle is not settled.
    function _commitsOpen(uint256 id) internal view returns (bool) {
        GRound storage r = _round[id][_cv(id)];
        return r.status == 0 && (r.commitEnd == 0 || block.timestamp <= r.commitEnd);
    }

    /// The version the model's current cycle attests (Validators._currentVersion: 1 before any request).
    function _cv(uint256 id) internal view returns (uint256) {
        uint256 version = cycleVersion[id];
        return version == 0 ? 1 : version;
    }

    /// The current cycle was Verified and the owner has published a later version since.
    function _opensNewCycle(uint256 id) internal view returns (bool) {
        return _round[id][_cv(id)].status == VERIFIED && _m[id].versions > _cv(id);
    }

    /// Validators.joinsWithoutSeat: a request now opens a new cycle, or `validator` has no seat in the
    /// current one.
    function _joinsWithoutSeat(uint256 id, address validator) internal view returns (bool) {
        return _opensNewCycle(id) || _seat[id][_cv(id)][validator].state == SEAT_NONE;
    }

    /// The cycle a key request joins (Validators._cycleToJoin): the current one while it runs (or ended
    /// other than Verified); the latest version's when no key was ever requested or the current cycle
    /// is Verified (the current one itself when there is no later version: the request is refused).
    function _cycleToJoin(uint256 id) internal view returns (uint256 version) {
        version = _cv(id);
        GRound storage r = _round[id][version];
        if (r.number != 0 && r.status != VERIFIED) return version;
        if (_exists(id) && _m[id].versions != version) version = _m[id].versions;
    }

    /// The first earlier cycle than the current one in which `validator` holds an open seat (0: none).
    function _oldSeat(uint256 id, address validator) internal view returns (uint256) {
        uint256 current = _cv(id);
        for (uint256 v = 1; v < current; v++) {
            uint8 state = _seat[id][v][validator].state;
            if (state != SEAT_NONE && state != SEAT_RELEASED) return v;
        }
        return 0;
    }

    function _exists(uint256 id) internal view returns (bool) {
        return id != 0 && id <= modelIds.length;
    }

    /// A listed model most of the time; now and then one that does not exist (0 or the next id).
    function _model(uint256 seed) internal view returns (uint256) {
        uint256 n = modelIds.length;
        if (seed % 23 == 0) return seed % 2 == 0 ? 0 : n + 1;
        if (n == 0) return 1;
        return 1 + (seed % n);
    }

    /// The first model from where `seed` lands that is priced in the campaign's token (and, with
    /// `subscribable`, sells subscriptions); `_model(seed)` when there is none. Actions whose token path
    /// depends on such a model ask for one every third call (by the call count, not a fuzzed input: left
    /// to the fuzzer's seeds and the mix of listings, a campaign reached them a handful of times, and one
    /// in CI not at all).
    function _tokenModel(uint256 seed, bool subscribable) internal view returns (uint256) {
        uint256 n = modelIds.length;
        for (uint256 i = 0; i < n; i++) {
            uint256 id = 1 + (seed % n + i) % n;
            if (_m[id].payToken == address(token) && (!subscribable || _subPrice[id] != 0)) return id;
        }
        return _model(seed);
    }

    /// The first model from where `seed` lands whose current cycle is Verified, with no later version yet
    /// and room for one; `_model(seed)` when there is none.
    function _verifiedModel(uint256 seed) internal view returns (uint256) {
        uint256 n = modelIds.length;
        for (uint256 i = 0; i < n; i++) {
            uint256 id = 1 + (seed % n + i) % n;
            GModel storage m = _m[id];
            if (_round[id][_cv(id)].status == VERIFIED && m.versions == _cv(id) && m.versions < MAX_VERSIONS) {
                return id;
            }
        }
        return _model(seed);
    }

    /// The first (model, version) from where `seed` lands that owes `validator` a reward in `currency`,
    /// an earlier version than the latest verdict's first; else `_model(seed)` and a version from
    /// `versionSeed` (0 to MAX_VERSIONS + 1: a claim that must be refused).
    function _owingAt(address validator, uint256 seed, address currency, uint256 versionSeed)
        internal
        view
        returns (uint256 id, uint256 version)
    {
        uint256 n = modelIds.length;
        for (uint256 i = 0; i < n; i++) {
            id = 1 + (seed % n + i) % n;
            for (version = 1; version <= _m[id].versions; version++) {
                if (rewardOwedAt(id, version, validator, currency) != 0) return (id, version);
            }
        }
        return (_model(seed), (versionSeed / 3) % (MAX_VERSIONS + 2));
    }

    /// The first model from where `seed` lands that owes `validator` a reward in `currency`;
    /// `_model(seed)` when none does (a claim that must be refused).
    function _modelOwing(address validator, uint256 seed, address currency) internal view returns (uint256) {
        uint256 n = modelIds.length;
        for (uint256 i = 0; i < n; i++) {
            uint256 id = 1 + (seed % n + i) % n;
            if (rewardOwed(id, validator, currency) != 0) return id;
        }
        return _model(seed);
    }

    /// A known purchase id most of the time (recent ones more often); now and then an unknown one.
    function _purchase(uint256 seed) internal view returns (uint256) {
        uint256 n = _p.length - 1;
        if (n == 0 || seed % 19 == 0) return seed % 2 == 0 ? 0 : n + 1;
        if (seed % 3 == 0 && n > 4) return n - (seed / 3) % 4;
        return 1 + (seed % n);
    }

    /// Mostly a live purchase in `status` (searched from a random place), else any id.
    function _pickPurchase(uint256 seed, uint8 status) internal view returns (uint256) {
        uint256 n = _p.length - 1;
        if (n == 0 || seed % 4 == 0) return _purchase(seed);
        uint256 start = seed % n;
        for (uint256 i = 0; i < n; i++) {
            uint256 pid = 1 + (start + i) % n;
            if (_p[pid].status == status && _current(pid)) return pid;
        }
        return _purchase(seed);
    }

    /// Mostly a model where `validator`'s seat in the current cycle is in `state` (0: any open seat, one
    /// in an earlier cycle too; KEYED also takes a seat that may commit again), else any model.
    function _pickSeat(address validator, uint256 seed, uint8 state) internal view returns (uint256) {
        uint256 n = modelIds.length;
        if (n == 0 || seed % 4 == 0) return _model(seed);
        for (uint256 i = 0; i < n; i++) {
            uint256 id = 1 + (seed % n + i) % n;
            GSeat storage seat = _seat[id][_cv(id)][validator];
            bool again = seat.state == SEAT_REVEALED && seat.round < _round[id][_cv(id)].number;
            bool open = (seat.state != SEAT_NONE && seat.state != SEAT_RELEASED) || _oldSeat(id, validator) != 0;
            if (state == 0 ? open : seat.state == state || (state == SEAT_KEYED && again)) {
                return id;
            }
        }
        return _model(seed);
    }

    /// Mostly a model with a round open, else any model.
    function _pickRound(uint256 seed) internal view returns (uint256) {
        uint256 n = modelIds.length;
        if (n == 0 || seed % 4 == 0) return _model(seed);
        for (uint256 i = 0; i < n; i++) {
            uint256 id = 1 + (seed % n + i) % n;
            GRound storage r = _round[id][_cv(id)];
            if (r.commitEnd != 0 && r.status == 0) return id;
        }
        return _model(seed);
    }

    function _price(uint256 seed) internal pure returns (uint256) {
        uint256 k = seed % 8;
        if (k == 0) return 0;
        if (k == 1) return 1; // fee and shares round to zero
        return (seed % 5 + 1) * 0.1 ether + (seed % 997);
    }

    function _cid(uint256 seed) internal pure returns (string memory) {
        uint256 k = seed % 17;
        if (k == 0) return "";
        if (k == 1) return string(new bytes(129));
        if (k % 2 == 0) return "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"; // compact CIDv1
        return "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"; // stored as a string
    }

    function _addAccount(address a) internal {
        for (uint256 i = 0; i < accounts.length; i++) {
            if (accounts[i] == a) return;
        }
        accounts.push(a);
    }

    function _addStaker(address a) internal {
        stakers.push(a);
        _addAccount(a);
    }
}
