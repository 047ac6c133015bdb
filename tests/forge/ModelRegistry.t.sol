// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {ModelRegistry} from "../../contracts/ModelRegistry.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice Fuzz tests of every external function of ModelRegistry, on its arguments.
contract ModelRegistryTest is SuiteTest {
    bytes internal constant B32 = "abcdefghijklmnopqrstuvwxyz234567";

    function testFuzz_list(bytes32 hash, bytes memory cid, uint256 price, address who) public {
        vm.assume(who != address(0) && who.code.length == 0 && who != address(vm));
        bool ok = hash != bytes32(0) && cid.length != 0 && cid.length <= 128 && price <= registry.MAX_PRICE();
        vm.prank(who);
        (bool done, bytes memory ret) =
            address(registry).call(abi.encodeCall(ModelRegistry.list, (hash, string(cid), price)));
        vm.assertEq(done, ok, "list accepts exactly the valid listings");
        if (!ok) {
            bytes memory want = hash == bytes32(0)
                ? abi.encodeWithSelector(ModelRegistry.ModelRegistryZeroModelHash.selector)
                : cid.length == 0
                    ? abi.encodeWithSelector(ModelRegistry.ModelRegistryEmptyCid.selector)
                    : cid.length > 128
                        ? abi.encodeWithSelector(ModelRegistry.ModelRegistryCidTooLong.selector, cid.length, 128)
                        : abi.encodeWithSelector(
                            ModelRegistry.ModelRegistryPriceTooHigh.selector, price, registry.MAX_PRICE()
                        );
            vm.assertEq(ret, want, "list's error");
            return;
        }
        uint256 id = abi.decode(ret, (uint256));
        vm.assertEq(id, 1, "first id");
        vm.assertEq(registry.modelCount(), 1, "count");
        vm.assertEq(registry.ownerOf(id), who, "owner");
        vm.assertEq(registry.balanceOf(who), 1, "balance");
        vm.assertEq(registry.modelHash(id), hash, "hash");
        vm.assertEq(registry.metadataCid(id), string(cid), "any CID string comes back as given");
        vm.assertEq(registry.tokenURI(id), string.concat("ipfs://", string(cid)), "tokenURI");
        vm.assertEq(registry.price(id), price, "price");
        vm.assertTrue(registry.isActive(id), "active");
        vm.assertEq(registry.operatorOf(id), address(0), "operator");
        vm.assertEq(registry.claimedWorkDigest(id), bytes32(0), "no claim yet");
    }

    /// A CIDv1 in base32 with a sha2-256 multihash is stored compactly and re-encoded exactly.
    function testFuzz_listCompactCid(bytes32 digest, uint8 codec) public {
        codec = uint8(bound(codec, 1, 0x7f));
        string memory cid = _cidV1(codec, digest);
        vm.prank(seller);
        uint256 id = registry.list(HASH, cid, 0);
        vm.assertEq(registry.metadataCid(id), cid, "compact CID round trip");
    }

    /// Strings that look like a CIDv1 but are not one the compact form holds are kept as given.
    function testFuzz_listCidLookalikes(bytes32 digest, uint8 codec, uint8 at, uint8 with) public {
        codec = uint8(bound(codec, 0x80, 0xff));
        bytes memory cid = bytes(_cidV1(1, digest));
        uint256 b = bound(with, 0, 0x59);
        cid[bound(at, 1, 58)] = bytes1(uint8(b >= 0x32 ? b + 6 : b)); // outside base32's alphabet (a-z, 2-7)
        vm.prank(seller);
        uint256 id = registry.list(HASH, string(cid), 0);
        vm.assertEq(registry.metadataCid(id), string(cid), "non-base32 lookalike kept");
        string memory big = _cidV1(codec, digest); // codec >= 0x80 needs a 2-byte varint: not compact
        vm.prank(seller);
        id = registry.list(HASH, big, 0);
        vm.assertEq(registry.metadataCid(id), big, "large codec kept");
    }

    function testFuzz_setPrice(uint256 price, address caller) public {
        uint256 id = _list(PRICE);
        bool ok = caller == seller && price <= registry.MAX_PRICE();
        vm.prank(caller);
        (bool done,) = address(registry).call(abi.encodeCall(ModelRegistry.setPrice, (id, price)));
        vm.assertEq(done, ok, "setPrice: owner only, at most MAX_PRICE");
        vm.assertEq(registry.price(id), ok ? price : PRICE, "price");
        if (caller != seller) {
            vm.prank(caller);
            _revertsWith(
                abi.encodeWithSelector(ModelRegistry.ModelRegistryNotOwner.selector, id, caller, seller),
                address(registry),
                abi.encodeCall(ModelRegistry.setPrice, (id, 0))
            );
        }
    }

    function testFuzz_setActive(bool active, address caller) public {
        uint256 id = _list(PRICE);
        vm.prank(caller);
        (bool done,) = address(registry).call(abi.encodeCall(ModelRegistry.setActive, (id, active)));
        vm.assertEq(done, caller == seller, "setActive: owner only");
        (, bool isActive,) = registry.saleTerms(id);
        vm.assertEq(isActive, caller == seller ? active : true, "active");
    }

    function testFuzz_setOperator(address op, address caller) public {
        uint256 id = _list(PRICE);
        vm.prank(caller);
        (bool done,) = address(registry).call(abi.encodeCall(ModelRegistry.setOperator, (id, op)));
        vm.assertEq(done, caller == seller, "setOperator: owner only");
        (address o, address operatorNow) = registry.deliveryParties(id);
        vm.assertEq(o, seller, "owner");
        vm.assertEq(operatorNow, caller == seller ? op : address(0), "operator");
    }

    function testFuzz_claimMetrics(bytes32 digest, address caller) public {
        uint256 id = _list(PRICE);
        bool ok = caller == seller && digest != bytes32(0) && digest != registry.FAILED_WORK_DIGEST();
        vm.prank(caller);
        (bool done, bytes memory ret) = address(registry).call(abi.encodeCall(ModelRegistry.claimMetrics, (id, digest)));
        vm.assertEq(done, ok, "claimMetrics: owner only, not 0 nor the failure digest");
        if (caller == seller && !ok) {
            vm.assertEq(ret, abi.encodeWithSelector(ModelRegistry.ModelRegistryBadWorkDigest.selector, digest), "error");
        }
        (bytes32 h, bytes32 d, uint256 at) = registry.attestationTarget(id);
        vm.assertEq(h, HASH, "target hash");
        vm.assertEq(d, ok ? digest : bytes32(0), "claimed digest");
        vm.assertEq(at, ok ? block.timestamp : 0, "claimedAt");
        vm.assertEq(registry.claimedWorkDigest(id), d, "claimedWorkDigest");
    }

    /// transferFrom and both safeTransferFrom: by the owner, an approved account or an operator for all;
    /// a new owner brings its own worker (the model's operator is cleared).
    function testFuzz_transfers(address to, address spender, uint8 how) public {
        vm.assume(to != address(0) && to.code.length == 0 && to != address(vm) && spender != address(0));
        uint256 id = _list(PRICE);
        vm.prank(seller);
        registry.setOperator(id, operator);
        how = uint8(bound(how, 0, 3));
        if (how == 1) {
            vm.prank(seller);
            registry.approve(spender, id);
            vm.assertEq(registry.getApproved(id), spender, "approved");
        } else if (how == 2) {
            vm.prank(seller);
            registry.setApprovalForAll(spender, true);
            vm.assertTrue(registry.isApprovedForAll(seller, spender), "approved for all");
        }
        address by = how == 0 ? seller : spender;
        if (how == 3 && spender != seller) {
            vm.prank(spender); // neither owner nor approved
            (bool done,) =
                address(registry).call(abi.encodeWithSignature("transferFrom(address,address,uint256)", seller, to, id));
            vm.assertFalse(done, "a stranger cannot move the token");
            return;
        }
        vm.prank(by);
        if (uint256(keccak256(abi.encode(to))) % 2 == 0) registry.transferFrom(seller, to, id);
        else registry.safeTransferFrom(seller, to, id, "");
        vm.assertEq(registry.ownerOf(id), to, "new owner");
        vm.assertEq(registry.getApproved(id), address(0), "approval cleared");
        vm.assertEq(
            registry.operatorOf(id), to == seller ? operator : address(0), "operator cleared on a change of hands"
        );
        vm.assertEq(registry.balanceOf(to), 1, "receiver balance");
        if (to != seller) vm.assertEq(registry.balanceOf(seller), 0, "sender balance");
    }

    function test_safeTransferToAContractWithoutReceiverReverts() public {
        uint256 id = _list(PRICE);
        vm.prank(seller);
        (bool done,) = address(registry)
            .call(abi.encodeWithSignature("safeTransferFrom(address,address,uint256)", seller, address(market), id));
        vm.assertFalse(done, "no onERC721Received");
    }

    function testFuzz_viewsOfAMissingModelRevert(uint256 id) public {
        vm.assume(id != 1);
        _list(PRICE);
        bytes memory missing = abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, id);
        bytes[8] memory calls_ = [
            abi.encodeCall(ModelRegistry.modelHash, (id)),
            abi.encodeCall(ModelRegistry.metadataCid, (id)),
            abi.encodeCall(ModelRegistry.price, (id)),
            abi.encodeCall(ModelRegistry.isActive, (id)),
            abi.encodeCall(ModelRegistry.operatorOf, (id)),
            abi.encodeCall(ModelRegistry.saleTerms, (id)),
            abi.encodeCall(ModelRegistry.deliveryParties, (id)),
            abi.encodeCall(ModelRegistry.attestationTarget, (id))
        ];
        for (uint256 i = 0; i < calls_.length; i++) {
            _revertsWith(missing, address(registry), calls_[i]);
        }
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.claimedWorkDigest, (id)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.versionCount, (id)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.versionOf, (id, 1)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.attestationTargetOf, (id, 1)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.updateWindow, (id)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.tokenURI, (id)));
        vm.prank(seller);
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.setPrice, (id, 1)));
        vm.prank(seller);
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.publishVersion, (id, HASH, CID_V1)));
    }

    function test_setPriceAboveTheMaximum() public {
        uint256 id = _list(PRICE);
        uint256 max = registry.MAX_PRICE();
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.ModelRegistryPriceTooHigh.selector, max + 1, max));
        registry.setPrice(id, max + 1);
    }

    function test_balanceOfZeroReverts() public {
        _revertsWith(
            abi.encodeWithSelector(IERC721Errors.ERC721InvalidOwner.selector, address(0)),
            address(registry),
            abi.encodeCall(registry.balanceOf, (address(0)))
        );
        vm.assertEq(registry.name(), "Modex Model", "name");
        vm.assertEq(registry.symbol(), "MODEX", "symbol");
        vm.assertTrue(registry.supportsInterface(0x80ac58cd), "ERC-721");
    }

    /// publishVersion: owner only, the listing's content checks; versions count from 2 and the latest
    /// answers modelHash, metadataCid, tokenURI and attestationTarget; the listing stays version 1.
    function testFuzz_publishVersion(bytes32 hash, bytes memory cid, address stranger, bool asOwner) public {
        address caller = asOwner ? seller : stranger;
        uint256 id = _listClaimed(PRICE);
        bool ok = caller == seller && hash != bytes32(0) && cid.length != 0 && cid.length <= 128;
        vm.warp(2_000_000);
        vm.prank(caller);
        (bool done, bytes memory ret) =
            address(registry).call(abi.encodeCall(ModelRegistry.publishVersion, (id, hash, string(cid))));
        vm.assertEq(done, ok, "publishVersion: the owner's valid versions only");
        if (!ok) {
            bytes memory want = caller != seller
                ? abi.encodeWithSelector(ModelRegistry.ModelRegistryNotOwner.selector, id, caller, seller)
                : hash == bytes32(0)
                    ? abi.encodeWithSelector(ModelRegistry.ModelRegistryZeroModelHash.selector)
                    : cid.length == 0
                        ? abi.encodeWithSelector(ModelRegistry.ModelRegistryEmptyCid.selector)
                        : abi.encodeWithSelector(ModelRegistry.ModelRegistryCidTooLong.selector, cid.length, 128);
            vm.assertEq(ret, want, "publishVersion's error");
            vm.assertEq(registry.versionCount(id), 1, "still the listing only");
            vm.assertEq(registry.modelHash(id), HASH, "still the listed hash");
            return;
        }
        vm.assertEq(abi.decode(ret, (uint256)), 2, "the first new version is 2");
        _checkSecondVersion(id, hash, string(cid));
    }

    /// After a listing (HASH, CID_V1, claim DIGEST) published `hash` and `cid` as version 2 at 2,000,000.
    function _checkSecondVersion(uint256 id, bytes32 hash, string memory cid) internal view {
        vm.assertEq(registry.versionCount(id), 2, "count");
        vm.assertEq(registry.modelHash(id), hash, "modelHash answers for the latest");
        vm.assertEq(registry.metadataCid(id), cid, "metadataCid answers for the latest");
        vm.assertEq(registry.tokenURI(id), string.concat("ipfs://", cid), "tokenURI");
        (bytes32 h, string memory c, uint64 at) = registry.versionOf(id, 2);
        vm.assertEq(h, hash, "version 2's hash");
        vm.assertEq(c, cid, "version 2's CID");
        vm.assertEq(at, 2_000_000, "version 2's time");
        (h, c, at) = registry.versionOf(id, 1);
        vm.assertEq(h, HASH, "version 1 is the listing");
        vm.assertEq(c, CID_V1, "version 1's CID");
        vm.assertEq(at, 0, "the listing's time is its event's");
        (bytes32 th, bytes32 td, uint256 tat) = registry.attestationTarget(id);
        vm.assertEq(th, hash, "target: the latest hash");
        vm.assertEq(td, bytes32(0), "a new version has no claim yet");
        vm.assertEq(tat, 0, "nor a claim time");
        vm.assertEq(registry.claimedWorkDigest(id), bytes32(0), "claimedWorkDigest: the latest's");
        (th, td,) = registry.attestationTargetOf(id, 1);
        vm.assertEq(th, HASH, "version 1's target keeps its hash");
        vm.assertEq(td, DIGEST, "and its claim");
    }

    function test_publishVersionEmitsAndCounts() public {
        uint256 id = _list(PRICE);
        string memory compact = _cidV1(0x55, keccak256("v3 metadata"));
        vm.startPrank(seller);
        vm.expectEmit(true, true, false, true, address(registry));
        emit ModelRegistry.VersionPublished(id, 2, keccak256("v2"), CID_V0);
        vm.assertEq(registry.publishVersion(id, keccak256("v2"), CID_V0), 2, "v2");
        vm.assertEq(registry.publishVersion(id, keccak256("v3"), compact), 3, "v3");
        vm.stopPrank();
        vm.assertEq(registry.versionCount(id), 3, "three versions");
        vm.assertEq(registry.metadataCid(id), compact, "a compact CID round trip");
        (bytes32 h, string memory c,) = registry.versionOf(id, 2);
        vm.assertEq(h, keccak256("v2"), "v2 hash");
        vm.assertEq(c, CID_V0, "v2 CID kept as given");
        uint256 other = _list(PRICE);
        vm.assertEq(registry.versionCount(other), 1, "another model's versions are its own");
        vm.assertEq(registry.modelHash(other), HASH, "and its hash");
    }

    /// Each version is claimed once, for itself: a claim never carries over to the next version.
    function test_eachVersionHasItsOwnClaim() public {
        uint256 id = _listClaimed(PRICE);
        uint256 listedClaimAt = block.timestamp;
        vm.prank(seller);
        registry.publishVersion(id, keccak256("v2"), CID_V0);
        vm.warp(block.timestamp + 100);
        bytes32 second = keccak256("v2 report");
        vm.prank(seller);
        registry.claimMetrics(id, second);
        vm.assertEq(registry.claimedWorkDigest(id), second, "v2's claim");
        (bytes32 h, bytes32 d, uint256 at) = registry.attestationTargetOf(id, 2);
        vm.assertEq(h, keccak256("v2"), "v2 hash");
        vm.assertEq(d, second, "v2 claim");
        vm.assertEq(at, block.timestamp, "v2 claim time");
        (, d, at) = registry.attestationTargetOf(id, 1);
        vm.assertEq(d, DIGEST, "v1 keeps its claim");
        vm.assertEq(at, listedClaimAt, "and its time");
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.ModelRegistryAlreadyClaimed.selector, id, second));
        registry.claimMetrics(id, DIGEST);
    }

    function testFuzz_noSuchVersion(uint256 version) public {
        uint256 id = _list(PRICE);
        vm.prank(seller);
        registry.publishVersion(id, keccak256("v2"), CID_V0);
        vm.assume(version == 0 || version > 2);
        bytes memory want = abi.encodeWithSelector(ModelRegistry.ModelRegistryNoSuchVersion.selector, id, version, 2);
        _revertsWith(want, address(registry), abi.encodeCall(ModelRegistry.versionOf, (id, version)));
        _revertsWith(want, address(registry), abi.encodeCall(ModelRegistry.attestationTargetOf, (id, version)));
    }

    function testFuzz_setUpdateWindow(uint256 window, address stranger, bool asOwner) public {
        address caller = asOwner ? seller : stranger;
        uint256 id = _list(PRICE);
        vm.assertEq(registry.updateWindow(id), 0, "default: only the version bought");
        if (caller == seller) {
            vm.expectEmit(true, false, false, true, address(registry));
            emit ModelRegistry.UpdateWindowChanged(id, window);
        }
        vm.prank(caller);
        (bool done, bytes memory ret) =
            address(registry).call(abi.encodeCall(ModelRegistry.setUpdateWindow, (id, window)));
        vm.assertEq(done, caller == seller, "setUpdateWindow: owner only");
        if (!done) {
            vm.assertEq(
                ret, abi.encodeWithSelector(ModelRegistry.ModelRegistryNotOwner.selector, id, caller, seller), "error"
            );
        }
        vm.assertEq(registry.updateWindow(id), caller == seller ? window : 0, "window");
    }

    /// "b" + base32(0x01 codec 0x12 0x20 digest), lower case, no padding (59 characters).
    function _cidV1(uint8 codec, bytes32 digest) internal pure returns (string memory) {
        bytes memory raw = abi.encodePacked(uint8(1), codec, uint8(0x12), uint8(0x20), digest);
        bytes memory out = new bytes(59);
        out[0] = "b";
        uint256 buffer;
        uint256 bits;
        uint256 j = 1;
        for (uint256 i = 0; i < raw.length; i++) {
            buffer = (buffer << 8) | uint8(raw[i]);
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                out[j++] = B32[(buffer >> bits) & 31];
            }
        }
        if (bits > 0) out[j++] = B32[(buffer << (5 - bits)) & 31];
        return string(out);
    }
}
