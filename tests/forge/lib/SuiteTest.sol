// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./TestBase.sol";
import {Suite} from "./Suite.sol";
import {ModelRegistry} from "../../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {Votes} from "../../../contracts/Votes.sol";

/// @notice The suite deployed with Suite.params, and the steps the fuzz tests build on.
abstract contract SuiteTest is TestBase {
    ModelRegistry internal registry;
    Marketplace internal market;
    Validators internal validators;
    Votes internal votes;
    Suite.Params internal p;

    address internal owner = vm.addr(0xA11CE);
    address internal feeRecipient = vm.addr(0xFEE);
    address internal treasury = vm.addr(0x7EA5);
    address internal seller = vm.addr(0x5E11);
    address internal buyer = vm.addr(0xB0B);
    address internal operator = vm.addr(0x0FE);
    address internal v1 = vm.addr(0x11);
    address internal v2 = vm.addr(0x22);
    address internal v3 = vm.addr(0x33);

    string internal constant CID_V1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    string internal constant CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    bytes32 internal constant HASH = keccak256("model manifest");
    bytes32 internal constant DIGEST = keccak256("evaluation report");
    bytes32 internal constant KEY = keccak256("buyer X25519 key");
    uint256 internal constant PRICE = 1 ether;
    // Marketplace.STATUS_* (literals: reading the contract's constants between a prank and its call
    // would spend the prank)
    uint8 internal constant PENDING = 1;
    uint8 internal constant DELIVERED = 2;
    uint8 internal constant REFUNDED = 3;
    uint8 internal constant EXPIRED = 4;
    bytes32 internal constant SALT = keccak256("salt");

    function setUp() public virtual {
        vm.warp(1_000_000);
        p = Suite.params(owner, feeRecipient, treasury);
        vm.startPrank(owner);
        Suite.Deployed memory d = Suite.deploy(p);
        vm.stopPrank();
        (registry, market, validators, votes) = (d.registry, d.market, d.validators, d.votes);
    }

    /// Another suite, with other parameters (deployed by the owner), and one model listed on it.
    function _deployOther(Suite.Params memory q) internal returns (Suite.Deployed memory d, uint256 id) {
        vm.startPrank(owner);
        d = Suite.deploy(q);
        vm.stopPrank();
        vm.prank(seller);
        id = d.registry.list(HASH, CID_V1, 0);
    }

    function _list(uint256 price) internal returns (uint256 id) {
        vm.prank(seller);
        id = registry.list(HASH, CID_V1, price);
    }

    function _listClaimed(uint256 price) internal returns (uint256 id) {
        id = _list(price);
        vm.prank(seller);
        registry.claimMetrics(id, DIGEST);
    }

    function _buy(address who, uint256 id) internal returns (uint256 pid) {
        uint256 price = registry.price(id);
        vm.deal(who, who.balance + price);
        vm.prank(who);
        pid = market.buy{value: price}(id, KEY, price);
    }

    function _deliver(uint256 pid) internal {
        (address account, uint256 id,,,,,,) = market.purchase(pid);
        vm.prank(registry.ownerOf(id));
        market.deliverKey(pid, account, new bytes(80));
    }

    function _stake(address v, uint256 amount) internal {
        vm.deal(v, v.balance + amount);
        vm.prank(v);
        validators.stake{value: amount}();
    }

    /// Staked (one minimum stake), key asked for and delivered.
    function _keyed(address v, uint256 id) internal {
        (uint256 amount,,,) = validators.stakeOf(v);
        if (amount == 0) _stake(v, p.validators.minStake);
        vm.prank(v);
        uint256 pid = market.requestValidatorKey(id, keccak256(abi.encode(v)));
        _deliver(pid);
    }

    function _commit(address v, uint256 id, bytes32 observed, bytes32 digest) internal {
        bytes32 c = Suite.commitment(validators, id, v, observed, digest, SALT);
        vm.prank(v);
        validators.commitAttestation(id, c);
    }

    function _reveal(address v, uint256 id, bytes32 observed, bytes32 digest) internal {
        vm.prank(v);
        validators.revealAttestation(id, observed, digest, SALT);
    }

    function _toReveal(uint256 id) internal {
        (, uint64 commitEnd,) = validators.roundOf(id);
        vm.warp(uint256(commitEnd) + 1);
    }

    function _toSettle(uint256 id) internal {
        (,, uint64 revealEnd) = validators.roundOf(id);
        vm.warp(uint256(revealEnd) + 1);
    }

    /// Two validators (quorum 2) verify the model: listed hash and claimed digest.
    function _verify(uint256 id) internal {
        _verifyWith(id, v1, v2);
    }

    function _verifyWith(uint256 id, address a, address b) internal {
        _keyed(a, id);
        _keyed(b, id);
        _attestAndSettle(id, a, b, HASH, DIGEST);
    }

    /// `a` and `b` (keys delivered) commit to and reveal (`observed`, `digest`); the round settles.
    function _attestAndSettle(uint256 id, address a, address b, bytes32 observed, bytes32 digest) internal {
        _attest(id, a, b, observed, digest);
        validators.settle(id);
    }

    /// `a` and `b` (keys delivered) commit to and reveal (`observed`, `digest`); the clock is then past
    /// the reveal period, the round ready to settle.
    function _attest(uint256 id, address a, address b, bytes32 observed, bytes32 digest) internal {
        _commit(a, id, observed, digest);
        _commit(b, id, observed, digest);
        _toReveal(id);
        _reveal(a, id, observed, digest);
        _reveal(b, id, observed, digest);
        _toSettle(id);
    }

    /// Two validators (quorum 2) find another hash: the model is Disputed.
    function _dispute(uint256 id) internal {
        _keyed(v1, id);
        _keyed(v2, id);
        _commit(v1, id, bytes32(uint256(0xdead)), DIGEST);
        _commit(v2, id, bytes32(uint256(0xdead)), DIGEST);
        _toReveal(id);
        _reveal(v1, id, bytes32(uint256(0xdead)), DIGEST);
        _reveal(v2, id, bytes32(uint256(0xdead)), DIGEST);
        _toSettle(id);
        validators.settle(id);
    }

    function _revertsWith(bytes memory expected, address target, bytes memory data) internal {
        _revertsWith(expected, target, 0, data);
    }

    function _revertsWith(bytes memory expected, address target, uint256 value, bytes memory data) internal {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        vm.assertFalse(ok, "expected a revert");
        vm.assertEq(ret, expected, "revert data");
    }
}
