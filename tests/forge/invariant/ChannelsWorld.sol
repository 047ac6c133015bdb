// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Channels} from "../../../contracts/Channels.sol";
import {World} from "./World.sol";
import {Ghost} from "./Ghost.sol";
import {CampaignToken} from "./Actors.sol";

/// @notice The reference model of Channels (pay-per-call channels, issue 14 §3) beside the World: buyers
/// open channels on the World's models in the model's currency (ETH or the campaign's token), top them up,
/// sign vouchers that the model's owner or operator claims, and take the rest back after expiry; owners and
/// fee recipients withdraw what claims credited. Each action predicts its outcome from the ghost and the
/// World's models (owner, operator, currency) and fee, as World's actions do (Ghost).
contract ChannelsWorld is Ghost {
    struct GChannel {
        uint256 model;
        address buyer;
        address token;
        uint256 deposit;
        uint256 claimed;
        uint256 expiresAt;
        bool open;
    }

    World public immutable world;
    Channels public immutable channels;
    uint256[] internal _buyerKeys; // buyers sign vouchers with these
    GChannel[] internal _c; // index = channel id (0 unused)
    mapping(address => mapping(address => uint256)) public credited; // account => currency => amount
    mapping(address => uint256) public totalCredited; // per currency
    mapping(address => uint256) public held; // per currency: deposit - claimed over open channels
    mapping(address => uint256) public channelsIn;
    mapping(address => uint256) public channelsOut;
    uint256 internal _claims; // claim calls so far

    constructor(World world_, Channels channels_, uint256[] memory buyerKeys) {
        (world, channels) = (world_, channels_);
        _buyerKeys = buyerKeys;
        _c.push();
    }

    /// how 0-3: as the rules want (3: on a model priced in the token, when there is one); 4: in the other
    /// currency than the model's; 5: expiring now (refused). An amount seed divisible by 13 deposits nothing
    /// (refused).
    function open(uint256 buyerSeed, uint256 modelSeed, uint256 amountSeed, uint256 how) external {
        address buyer = _buyer(buyerSeed);
        uint256 id = how % 6 == 3 ? world.pickTokenModel(modelSeed) : world.pickModel(modelSeed);
        World.GModel memory m = world.model(id);
        how %= 6;
        address currency = how == 4 ? _other(m.payToken) : m.payToken;
        uint256 amount = amountSeed % 13 == 0 ? 0 : 1 + amountSeed % 10 ether;
        uint256 expiresAt = how == 5 ? block.timestamp : block.timestamp + 1 + (amountSeed >> 128) % 6 hours;
        bool ok = _exists(id) && how != 4 && how != 5 && amount != 0;
        bytes memory data = abi.encodeCall(Channels.openChannel, (id, currency, amount, uint64(expiresAt)));
        (bool done, bytes memory ret) = _call(buyer, address(channels), _fund(buyer, currency, amount), data);
        if (!_check(done, ok, "openChannel", ret)) return;
        if (abi.decode(ret, (uint256)) != _c.length) _fail("openChannel: channel ids are not consecutive from 1");
        _c.push(GChannel(id, buyer, currency, amount, 0, expiresAt, true));
        held[currency] += amount;
        channelsIn[currency] += amount;
        _reach(currency == address(0) ? bytes32("channel opened") : bytes32("token channel opened"));
    }

    /// Mostly by the channel's buyer; an amount seed divisible by 11 adds nothing (refused).
    function topUp(uint256 callerSeed, uint256 channelSeed, uint256 amountSeed) external {
        uint256 cid = _pick(channelSeed);
        GChannel storage c = _cc(cid);
        address caller = callerSeed % 5 == 0 || c.buyer == address(0) ? _buyer(callerSeed) : c.buyer;
        uint256 amount = amountSeed % 11 == 0 ? 0 : 1 + amountSeed % 1 ether;
        bool ok = c.open && caller == c.buyer && block.timestamp <= c.expiresAt && amount != 0;
        (bool done, bytes memory ret) = _call(
            caller, address(channels), _fund(caller, c.token, amount), abi.encodeCall(Channels.topUp, (cid, amount))
        );
        if (!_check(done, ok, "topUp", ret)) return;
        c.deposit += amount;
        held[c.token] += amount;
        channelsIn[c.token] += amount;
        _reach("channel topped up");
    }

    /// who 0: a buyer (no claimer); 1: the model's operator when it has one; else its owner. amount 0: the
    /// amount already claimed (nothing new); 1: above the deposit; else something new within it. A seed
    /// divisible by 7 signs with another buyer's key.
    function claim(uint256 who, uint256 channelSeed, uint256 amountSeed) external {
        // every third claim is an operator's, on a channel whose model has one (by the call count, not a
        // fuzzed input: left to the seeds, a campaign's operators claimed a handful of times, one in CI never)
        bool byOperator = ++_claims % 3 == 0;
        uint256 cid = byOperator ? _pickOperated(channelSeed) : _pick(channelSeed);
        GChannel storage c = _cc(cid);
        World.GModel memory m = world.model(c.model);
        if (byOperator) who = 1;
        address caller = who % 6 == 0 ? _buyer(who) : who % 6 == 1 && m.operator != address(0) ? m.operator : m.owner;
        if (caller == address(0)) caller = _buyer(who);
        uint256 k = amountSeed % 4;
        uint256 amount = k == 0
            ? c.claimed
            : k == 1 ? c.deposit + 1 + amountSeed % 1000 : c.claimed + 1 + amountSeed % (c.deposit - c.claimed + 1);
        bool forged = amountSeed % 7 == 0;
        bytes memory signature = _sign(cid, amount, forged ? _otherKey(c.buyer) : _keyOf(c.buyer));
        uint256 due = amount < c.deposit ? amount : c.deposit;
        bool ok = c.open && (caller == m.owner || caller == m.operator) && !forged && due > c.claimed;
        (bool done, bytes memory ret) =
            _call(caller, address(channels), 0, abi.encodeCall(Channels.claim, (cid, amount, signature)));
        if (!_check(done, ok, "claim", ret)) return;
        uint256 fresh = due - c.claimed;
        uint256 fee = (fresh * world.feeBps()) / 10_000;
        c.claimed = due;
        held[c.token] -= fresh;
        _credit(world.feeRecipient(), c.token, fee);
        _credit(m.owner, c.token, fresh - fee);
        if (block.timestamp > c.expiresAt) _reach("channel claimed after expiry");
        _reach(caller == m.operator ? bytes32("channel claimed by operator") : bytes32("channel claimed"));
    }

    /// Mostly the channel's buyer; with `wait`, once the channel has expired (the clock moves there).
    function reclaim(uint256 callerSeed, uint256 channelSeed, bool wait) external {
        uint256 cid = _pick(channelSeed);
        GChannel storage c = _cc(cid);
        address caller = callerSeed % 5 == 0 || c.buyer == address(0) ? _buyer(callerSeed) : c.buyer;
        if (wait && c.open && block.timestamp <= c.expiresAt) vm.warp(c.expiresAt + 1);
        bool ok = c.open && caller == c.buyer && block.timestamp > c.expiresAt;
        uint256 returned = c.deposit - c.claimed;
        uint256 before = _balance(c.token, caller);
        (bool done, bytes memory ret) = _call(caller, address(channels), 0, abi.encodeCall(Channels.reclaim, (cid)));
        if (!_check(done, ok, "reclaim", ret)) return;
        if (_balance(c.token, caller) != before + returned) _fail("reclaim returned another amount than unclaimed");
        c.open = false;
        held[c.token] -= returned;
        channelsOut[c.token] += returned;
        _reach(c.claimed != 0 ? bytes32("claimed channel reclaimed") : bytes32("channel reclaimed"));
    }

    /// Mostly an account of the World that claims credited (owners and fee recipients), else any; the
    /// EthRejecter's ETH withdrawal fails whole.
    function withdraw(uint256 who, bool inToken) external {
        address currency = inToken ? address(world.token()) : address(0);
        uint256 n = world.accountCount();
        address actor = world.accounts(who % n);
        for (uint256 i = 0; i < n && who % 4 != 0 && credited[actor][currency] == 0; i++) {
            actor = world.accounts((who % n + i) % n);
        }
        uint256 owed = credited[actor][currency];
        bool ok = owed != 0 && !(currency == address(0) && actor == address(world.rejecter()));
        uint256 before = _balance(currency, actor);
        (bool done, bytes memory ret) =
            _call(actor, address(channels), 0, abi.encodeCall(Channels.withdraw, (currency)));
        if (!_check(done, ok, "Channels.withdraw", ret)) return;
        if (_balance(currency, actor) != before + owed) _fail("Channels.withdraw paid another amount than credited");
        credited[actor][currency] = 0;
        totalCredited[currency] -= owed;
        channelsOut[currency] += owed;
        _reach(inToken ? bytes32("channel token withdrew") : bytes32("channel withdrew"));
    }

    // ---- views for the invariant test ----------------------------------------------------------

    function channelCount() external view returns (uint256) {
        return _c.length - 1;
    }

    function channelOf(uint256 cid) external view returns (GChannel memory) {
        return _c[cid];
    }

    // ---- internals -------------------------------------------------------------------------------

    /// The value to send for `amount` in `currency`: ETH as value; the token minted to the payer and
    /// approved for Channels, exactly.
    function _fund(address payer, address currency, uint256 amount) internal returns (uint256) {
        if (currency == address(0)) return amount;
        CampaignToken token = world.token(); // read before the prank, which applies to the next call only
        token.mint(payer, amount);
        vm.prank(payer);
        token.approve(address(channels), amount);
        return 0;
    }

    function _credit(address account, address currency, uint256 amount) internal {
        credited[account][currency] += amount;
        totalCredited[currency] += amount;
    }

    function _sign(uint256 cid, uint256 amount, uint256 key) internal view returns (bytes memory) {
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01", channels.domainSeparator(), keccak256(abi.encode(channels.VOUCHER_TYPEHASH(), cid, amount))
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _buyer(uint256 seed) internal view returns (address) {
        return vm.addr(_buyerKeys[seed % _buyerKeys.length]);
    }

    function _keyOf(address buyer) internal view returns (uint256) {
        for (uint256 i = 0; i < _buyerKeys.length; i++) {
            if (vm.addr(_buyerKeys[i]) == buyer) return _buyerKeys[i];
        }
        return _buyerKeys[0]; // no such channel: any key
    }

    function _otherKey(address buyer) internal view returns (uint256) {
        uint256 key = _keyOf(buyer);
        return key == _buyerKeys[0] ? _buyerKeys[1] : _buyerKeys[0];
    }

    function _other(address currency) internal view returns (address) {
        return currency == address(0) ? address(world.token()) : address(0);
    }

    function _balance(address currency, address account) internal view returns (uint256) {
        return currency == address(0) ? account.balance : world.token().balanceOf(account);
    }

    function _exists(uint256 id) internal view returns (bool) {
        return id != 0 && id <= world.modelCount();
    }

    /// The ghost channel `cid`, or an empty one for an id never opened.
    function _cc(uint256 cid) internal view returns (GChannel storage) {
        return _c[cid < _c.length ? cid : 0];
    }

    /// The first open channel from where `seed` lands whose model has an operator; `_pick(seed)` when
    /// none has.
    function _pickOperated(uint256 seed) internal view returns (uint256) {
        uint256 n = _c.length - 1;
        for (uint256 i = 0; i < n; i++) {
            uint256 cid = 1 + (seed % n + i) % n;
            if (_c[cid].open && world.model(_c[cid].model).operator != address(0)) return cid;
        }
        return _pick(seed);
    }

    /// Mostly an open channel (searched from a random place); now and then any id, an unknown one included.
    function _pick(uint256 seed) internal view returns (uint256) {
        uint256 n = _c.length - 1;
        if (n == 0 || seed % 9 == 0) return n + 1;
        uint256 start = seed % n;
        for (uint256 i = 0; i < n && seed % 4 != 0; i++) {
            uint256 cid = 1 + (start + i) % n;
            if (_c[cid].open) return cid;
        }
        return 1 + start;
    }
}
