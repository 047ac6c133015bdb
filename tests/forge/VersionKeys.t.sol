// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {ModelRegistry} from "../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../contracts/Marketplace.sol";

/// @notice Fuzz tests of Marketplace.deliverVersionKeys, versionKeyDelivered, entitledTo and
/// ModelRegistry.versionDelivery: a later version's key reaches a licence holder entitled by the update
/// window, once, and any bad entry refuses the whole batch.
contract VersionKeysTest is SuiteTest {
    bytes32 internal constant V2_HASH = keccak256("version 2 manifest");

    /// A model with a licence delivered to `buyer`, `delay` seconds later version 2, with `window`.
    function _published(uint256 window, uint256 delay) internal returns (uint256 id, uint256 deliveredAt) {
        id = _list(PRICE);
        _deliver(_buy(buyer, id));
        deliveredAt = block.timestamp;
        vm.prank(seller);
        registry.setUpdateWindow(id, window);
        vm.warp(block.timestamp + delay);
        vm.prank(seller);
        registry.publishVersion(id, V2_HASH, CID_V1);
    }

    function _batch(address account) internal pure returns (address[] memory accounts, bytes[] memory keys) {
        accounts = new address[](1);
        accounts[0] = account;
        keys = new bytes[](1);
        keys[0] = new bytes(80);
    }

    function _call(uint256 id, uint256 version, address[] memory accounts, bytes[] memory keys)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeCall(Marketplace.deliverVersionKeys, (id, version, accounts, keys));
    }

    function testFuzz_entitlementFollowsTheWindow(uint256 window, uint256 delay) public {
        delay = bound(delay, 0, 100 * 365 days);
        if (window % 3 == 0) window = type(uint256).max;
        (uint256 id, uint256 deliveredAt) = _published(window, delay);
        bool expected = window == type(uint256).max || delay <= window;
        vm.assertEq(market.entitledTo(id, 2, buyer), expected, "entitledTo");
        vm.assertTrue(market.entitledTo(id, 1, buyer), "version 1: any licence");
        (address[] memory accounts, bytes[] memory keys) = _batch(buyer);
        if (!expected) {
            bytes memory err = abi.encodeWithSelector(
                Marketplace.MarketplaceNotEntitled.selector, id, 2, buyer, deliveredAt, block.timestamp, window
            );
            vm.prank(seller);
            _revertsWith(err, address(market), _call(id, 2, accounts, keys));
            return;
        }
        vm.prank(seller);
        market.deliverVersionKeys(id, 2, accounts, keys);
        vm.assertTrue(market.versionKeyDelivered(id, 2, buyer), "delivered");
        vm.assertFalse(market.versionKeyDelivered(id, 3, buyer), "only that version");
        vm.prank(seller);
        _revertsWith(
            abi.encodeWithSelector(Marketplace.MarketplaceVersionKeyAlreadyDelivered.selector, id, 2, buyer),
            address(market),
            _call(id, 2, accounts, keys)
        );
    }

    function testFuzz_onlyTheOwnerOrOperatorDelivers(address caller) public {
        (uint256 id,) = _published(type(uint256).max, 1);
        vm.prank(seller);
        registry.setOperator(id, operator);
        (address[] memory accounts, bytes[] memory keys) = _batch(buyer);
        if (caller != seller && caller != operator) {
            vm.prank(caller);
            _revertsWith(
                abi.encodeWithSelector(Marketplace.MarketplaceNotVersionDeliverer.selector, id, caller),
                address(market),
                _call(id, 2, accounts, keys)
            );
            return;
        }
        vm.prank(caller);
        market.deliverVersionKeys(id, 2, accounts, keys);
        vm.assertTrue(market.versionKeyDelivered(id, 2, buyer), "delivered");
    }

    function testFuzz_badEntriesRefuseTheBatch(uint256 length, uint8 which) public {
        (uint256 id,) = _published(type(uint256).max, 1);
        (address[] memory accounts, bytes[] memory keys) = _batch(buyer);
        bytes memory err;
        vm.startPrank(seller);
        if (which % 5 == 0) {
            length = bound(length, 0, 200);
            vm.assume(length != 80);
            keys[0] = new bytes(length);
            err = abi.encodeWithSelector(Marketplace.MarketplaceBadWrappedKey.selector, length, 80);
        } else if (which % 5 == 1) {
            accounts[0] = v1; // no licence
            err = abi.encodeWithSelector(Marketplace.MarketplaceNoLicence.selector, id, v1);
        } else if (which % 5 == 2) {
            keys = new bytes[](2);
            err = abi.encodeWithSelector(Marketplace.MarketplaceBatchMismatch.selector, 1, 2);
        } else if (which % 5 == 3) {
            _revertsWith(
                abi.encodeWithSelector(Marketplace.MarketplaceNotNewVersion.selector, id, 1),
                address(market),
                _call(id, 1, accounts, keys)
            );
            err = abi.encodeWithSelector(ModelRegistry.ModelRegistryNoSuchVersion.selector, id, 3, 2);
            _revertsWith(err, address(market), _call(id, 3, accounts, keys));
            vm.stopPrank();
            return;
        } else {
            accounts = new address[](2);
            (accounts[0], accounts[1]) = (buyer, buyer);
            keys = new bytes[](2);
            (keys[0], keys[1]) = (new bytes(80), new bytes(80));
            err = abi.encodeWithSelector(Marketplace.MarketplaceVersionKeyAlreadyDelivered.selector, id, 2, buyer);
        }
        _revertsWith(err, address(market), _call(id, 2, accounts, keys));
        vm.stopPrank();
        vm.assertFalse(market.versionKeyDelivered(id, 2, buyer), "nothing delivered");
    }

    function test_aLicenceBoughtAfterTheVersionIsEntitledAndAnUnlicensedAccountIsNot() public {
        (uint256 id,) = _published(0, 10);
        vm.assertFalse(market.entitledTo(id, 2, buyer), "window 0: only the version bought");
        vm.assertFalse(market.entitledTo(id, 2, v1), "no licence");
        _deliver(_buy(v2, id));
        vm.assertTrue(market.entitledTo(id, 2, v2), "bought after version 2 was published");
        (address owner_, address operator_, uint256 publishedAt, uint256 window) = registry.versionDelivery(id, 1);
        vm.assertEq(owner_, seller, "owner");
        vm.assertEq(operator_, address(0), "operator");
        vm.assertEq(publishedAt, 0, "version 1's time is not stored");
        vm.assertEq(window, 0, "window");
    }
}
