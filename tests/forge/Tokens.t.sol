// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SuiteTest} from "./lib/SuiteTest.sol";
import {ModelRegistry} from "../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../contracts/Marketplace.sol";
import {MockStablecoin} from "../../contracts/MockStablecoin.sol";
import {Votes} from "../../contracts/Votes.sol";
import {FeeOnTransferToken} from "../contracts/hostile/Tokens.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice Prices in an ERC-20, permits and subscriptions (issue 14 §1, §2): every new function of
/// ModelRegistry and Marketplace on its arguments, each revert by its exact error.
contract TokensTest is SuiteTest {
    MockStablecoin internal usd;
    uint256 internal constant USD = 25e6;
    uint256 internal constant BUYER_PK = 0xB0B;
    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    function setUp() public override {
        super.setUp();
        usd = new MockStablecoin();
    }

    function _tokenModel(uint256 price) internal returns (uint256 id) {
        id = _list(price);
        vm.prank(seller);
        registry.setPaymentToken(id, address(usd));
    }

    function _fund(address who, uint256 amount) internal {
        usd.mint(who, amount);
        vm.prank(who);
        usd.approve(address(market), amount);
    }

    function _buyToken(address who, uint256 id) internal returns (uint256 pid) {
        uint256 price = registry.price(id);
        _fund(who, price);
        vm.prank(who);
        pid = market.buy(id, KEY, price);
    }

    function test_setPaymentToken() public {
        uint256 id = _list(USD);
        _revertsWith(
            abi.encodeWithSelector(ModelRegistry.ModelRegistryNotOwner.selector, id, address(this), seller),
            address(registry),
            abi.encodeCall(ModelRegistry.setPaymentToken, (id, address(usd)))
        );
        vm.startPrank(seller);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.ModelRegistryNotAToken.selector, buyer));
        registry.setPaymentToken(id, buyer);
        registry.setPaymentToken(id, address(usd));
        registry.setActive(id, false);
        vm.stopPrank();
        (uint256 price, bool active, address owner_, address token) = registry.saleTermsWithToken(id);
        vm.assertEq(price, USD, "price");
        vm.assertFalse(active, "inactive");
        vm.assertEq(owner_, seller, "owner");
        vm.assertEq(token, address(usd), "token kept beside the active flag");
        vm.assertEq(registry.paymentToken(id), address(usd), "paymentToken");
        vm.startPrank(seller);
        registry.setActive(id, true);
        registry.setPaymentToken(id, address(0));
        vm.stopPrank();
        (,,, token) = registry.saleTermsWithToken(id);
        vm.assertEq(token, address(0), "back to ETH");
        vm.assertTrue(registry.isActive(id), "active again");
        bytes memory missing = abi.encodeWithSelector(IERC721Errors.ERC721NonexistentToken.selector, 99);
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.saleTermsWithToken, (99)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.subscriptionSale, (99)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.paymentToken, (99)));
        _revertsWith(missing, address(registry), abi.encodeCall(ModelRegistry.subscriptionTerms, (99)));
    }

    function testFuzz_setSubscription(uint256 price, uint32 period) public {
        uint256 id = _list(1);
        bytes memory err;
        if (price > type(uint80).max) {
            err = abi.encodeWithSelector(ModelRegistry.ModelRegistryPriceTooHigh.selector, price, type(uint80).max);
        } else if (price != 0 && period == 0) {
            err = abi.encodeWithSelector(ModelRegistry.ModelRegistryBadPeriod.selector, price, period);
        }
        vm.prank(seller);
        (bool ok, bytes memory ret) =
            address(registry).call(abi.encodeCall(ModelRegistry.setSubscription, (id, price, period)));
        vm.assertEq(ok, err.length == 0, "accepts exactly the valid terms");
        if (!ok) return vm.assertEq(ret, err, "revert data");
        (uint256 stored, uint32 storedPeriod) = registry.subscriptionTerms(id);
        vm.assertEq(stored, price, "price");
        vm.assertEq(storedPeriod, price == 0 ? 0 : period, "period (none without a price)");
    }

    function testFuzz_buyInAToken(uint256 price, uint256 value, uint256 maxPrice) public {
        price = bound(price, 0, 1e12);
        value = value % 4 == 0 ? bound(value, 1, 1 ether) : 0;
        maxPrice = maxPrice % 4 == 0 ? maxPrice : price;
        uint256 id = _tokenModel(price);
        _fund(buyer, price);
        vm.deal(buyer, value);
        bytes memory err;
        if (price > maxPrice) {
            err = abi.encodeWithSelector(
                Marketplace.MarketplaceTokenPriceAboveMax.selector, id, address(usd), price, maxPrice
            );
        } else if (value != 0) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceEthSentForToken.selector, id, address(usd), value);
        }
        vm.prank(buyer);
        (bool ok, bytes memory ret) =
            address(market).call{value: value}(abi.encodeCall(Marketplace.buy, (id, KEY, maxPrice)));
        vm.assertEq(ok, err.length == 0, "buys exactly when paid in the token alone");
        if (!ok) return vm.assertEq(ret, err, "revert data");
        uint256 pid = abi.decode(ret, (uint256));
        vm.assertEq(market.purchaseToken(pid), address(usd), "token recorded");
        vm.assertEq(usd.balanceOf(address(market)), price, "price held");
    }

    function test_tokenSaleReleaseRefundWithdrawAndRewards() public {
        uint256 id = _tokenModel(USD);
        vm.prank(seller);
        registry.claimMetrics(id, DIGEST);
        _verify(id);
        uint256 sold = _buyToken(buyer, id);
        uint256 late = _buyToken(v3, id);
        vm.prank(seller);
        registry.setPaymentToken(id, address(0)); // fixed at buy time: changes nothing below
        _deliver(sold);
        vm.warp(block.timestamp + p.deliveryWindow + 1);
        vm.prank(v3);
        market.refund(late);
        vm.assertEq(market.credited(v3, address(usd)), USD, "refund in the token");
        vm.warp(block.timestamp + p.challengePeriod + 1);
        market.releaseRevenue(sold);
        uint256 fee = (USD * p.feeBps) / 10_000;
        vm.assertEq(market.credited(seller, address(usd)), USD - fee, "revenue in the token");
        vm.assertEq(market.credited(seller), 0, "no ETH");
        uint256 perWeight = market.rewardPerWeight(id, address(usd));
        vm.assertGt(perWeight, 0, "verifiers share the token fee");
        vm.assertEq(market.pendingValidatorReward(id, seller, address(usd)), 0, "not a verifier");
        uint256 reward = market.pendingValidatorReward(id, v1, address(usd));
        vm.prank(v1);
        market.claimValidatorReward(id, address(usd));
        vm.assertEq(market.credited(v1, address(usd)), reward, "reward credited");
        vm.prank(seller);
        market.withdraw(address(usd));
        vm.assertEq(usd.balanceOf(seller), USD - fee, "withdrawn");
        _revertsWith(
            abi.encodeWithSelector(Marketplace.MarketplaceNothingToWithdraw.selector, address(this)),
            address(market),
            abi.encodeWithSignature("withdraw(address)", address(usd))
        );
        // a licence paid in a token does not vote
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Votes.VotesNoLicense.selector, id, buyer));
        votes.vote(id, 5);
    }

    function test_aFreeTokenModelPullsNothing() public {
        uint256 id = _tokenModel(0);
        vm.prank(buyer);
        uint256 pid = market.buy(id, KEY, 0);
        vm.assertEq(market.purchaseToken(pid), address(usd), "token recorded");
    }

    function test_aFeeOnTransferTokenIsRefused() public {
        FeeOnTransferToken fee = new FeeOnTransferToken();
        uint256 id = _list(1000);
        vm.prank(seller);
        registry.setPaymentToken(id, address(fee));
        fee.mint(buyer, 1000);
        vm.startPrank(buyer);
        fee.approve(address(market), 1000);
        vm.expectRevert(
            abi.encodeWithSelector(Marketplace.MarketplaceTokenAmountMismatch.selector, address(fee), 1000, 990)
        );
        market.buy(id, KEY, 1000);
        vm.stopPrank();
    }

    function _permit(uint256 pk, uint256 value, uint256 deadline) internal view returns (uint8, bytes32, bytes32) {
        address holder = vm.addr(pk);
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, holder, address(market), value, usd.nonces(holder), deadline));
        return vm.sign(pk, keccak256(abi.encodePacked("\x19\x01", usd.DOMAIN_SEPARATOR(), structHash)));
    }

    function test_buyWithPermit() public {
        uint256 id = _tokenModel(USD);
        uint256 deadline = block.timestamp + 1 hours;
        usd.mint(buyer, 2 * USD);
        (uint8 v, bytes32 r, bytes32 s) = _permit(BUYER_PK, USD, deadline);
        vm.prank(buyer);
        uint256 pid = market.buyWithPermit(id, KEY, USD, deadline, v, r, s);
        vm.assertEq(market.purchaseToken(pid), address(usd), "bought");

        // a permit front-run from the mempool: the allowance is there, the purchase goes through
        uint256 other = _tokenModel(USD);
        (v, r, s) = _permit(BUYER_PK, USD, deadline);
        usd.permit(buyer, address(market), USD, deadline, v, r, s);
        vm.prank(buyer);
        market.buyWithPermit(other, KEY, USD, deadline, v, r, s);
        vm.assertEq(usd.balanceOf(buyer), 0, "both paid");

        uint256 third = _tokenModel(USD);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplacePermitFailed.selector, address(usd), 0, USD));
        market.buyWithPermit(third, KEY, USD, deadline, v, r, s);
        uint256 inEth = _list(USD);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceNotPricedInToken.selector, inEth));
        market.buyWithPermit(inEth, KEY, USD, deadline, v, r, s);
    }

    function testFuzz_subscribe(uint256 periods, uint256 maxPrice, uint256 value, uint8 state) public {
        uint256 perPeriod = 1e15;
        uint32 period = 1 days;
        uint256 id = _list(1);
        vm.prank(seller);
        registry.setSubscription(id, state % 8 == 1 ? 0 : perPeriod, period);
        if (state % 8 == 2) {
            vm.prank(seller);
            registry.setActive(id, false);
        }
        periods = periods % 4 == 0 ? periods : bound(periods, 0, 400);
        uint256 total = periods < 2 ** 64 ? periods * perPeriod : 0;
        maxPrice = maxPrice % 4 == 0 ? maxPrice : total;
        value = value % 4 == 0 ? bound(value, 0, 1000 ether) : total;
        bytes memory err;
        if (state % 8 == 1) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceNoSubscription.selector, id);
        } else if (state % 8 == 2) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceModelInactive.selector, id);
        } else if (periods == 0 || periods > type(uint64).max || block.timestamp + periods * period > type(uint64).max)
        {
            err = abi.encodeWithSelector(Marketplace.MarketplaceBadPeriods.selector, periods);
        } else if (total > maxPrice) {
            err = abi.encodeWithSelector(Marketplace.MarketplacePriceAboveMax.selector, id, total, maxPrice);
        } else if (value != total) {
            err = abi.encodeWithSelector(Marketplace.MarketplaceWrongPayment.selector, id, value, total);
        }
        vm.deal(buyer, value);
        vm.prank(buyer);
        (bool ok, bytes memory ret) =
            address(market).call{value: value}(abi.encodeCall(Marketplace.subscribe, (id, periods, maxPrice)));
        vm.assertEq(ok, err.length == 0, "subscribes exactly when the terms are met");
        if (!ok) return vm.assertEq(ret, err, "revert data");
        vm.assertEq(market.accessUntil(id, buyer), block.timestamp + periods * period, "from now");
        vm.assertTrue(market.hasAccess(id, buyer), "access");
        uint256 fee = (total * p.feeBps) / 10_000;
        vm.assertEq(market.credited(seller), total - fee, "owner paid at once");
    }

    function test_subscriptionsExtendExpireAndStopWhenDisputed() public {
        uint256 id = _tokenModel(USD);
        vm.prank(seller);
        registry.setSubscription(id, 1e6, 1 days);
        _fund(buyer, 10e6);
        vm.startPrank(buyer);
        uint64 first = market.subscribe(id, 2, 2e6);
        uint64 extended = market.subscribe(id, 3, 3e6);
        vm.stopPrank();
        vm.assertEq(extended, first + 3 days, "extended from the expiry");
        vm.warp(uint256(extended));
        vm.assertFalse(market.hasAccess(id, buyer), "ended");
        vm.warp(uint256(extended) + 5 days);
        vm.prank(buyer);
        vm.assertEq(market.subscribe(id, 1, 1e6), block.timestamp + 1 days, "renewed from now");
        vm.assertEq(usd.balanceOf(address(market)), 6e6, "paid in the token");
        vm.deal(buyer, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceEthSentForToken.selector, id, address(usd), 1));
        market.subscribe{value: 1}(id, 1, 1e6);
        vm.prank(seller);
        registry.claimMetrics(id, DIGEST);
        _dispute(id);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Marketplace.MarketplaceModelDisputed.selector, id));
        market.subscribe(id, 1, 1e6);
    }

    function test_theStablecoinsFaucetIsCapped() public {
        vm.assertEq(usd.decimals(), 6, "6 decimals");
        vm.assertEq(usd.symbol(), "mUSD", "symbol");
        usd.mint(buyer, usd.MAX_MINT());
        vm.expectRevert(abi.encodeWithSelector(MockStablecoin.MockStablecoinMintTooLarge.selector, 1e12 + 1, 1e12));
        usd.mint(buyer, 1e12 + 1);
    }
}
