// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {SuiteTest} from "./lib/SuiteTest.sol";
import {Channels, IChannelsMarketplace, IChannelsRegistry} from "../../contracts/Channels.sol";

/// @notice The cheatcode that signs a digest (not in lib/Vm.sol, which lists only what the other suites use).
interface VmSign {
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
}

/// @notice What the test tokens below share: anyone may mint; approve (its bool, if any, is not read).
interface ChannelsMintable {
    function mint(address to, uint256 amount) external;

    function approve(address spender, uint256 amount) external;
}

/// @notice A plain ERC-20 anyone can mint (6 decimals, a stablecoin's).
contract ChannelsTestToken is ERC20 {
    constructor() ERC20("Test Dollar", "TUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

/// @notice Keeps 1 % of every transfer: a deposit would arrive short.
contract ChannelsFeeToken is ChannelsTestToken {
    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 cut = value / 100;
            super._update(from, address(0), cut);
            value -= cut;
        }
        super._update(from, to, value);
    }
}

/// @notice USDT's shape: transfer and transferFrom return nothing.
contract ChannelsNoBoolToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transfer(address to, uint256 amount) external {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
    }

    function transferFrom(address from, address to, uint256 amount) external {
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// @notice Calls back into Channels from transferFrom (set `data` to the call to try).
contract ChannelsReenteringToken is ChannelsTestToken {
    address public target;
    bytes public data;
    bool public reentered;
    bytes public refusal;

    function arm(address target_, bytes calldata data_) external {
        (target, data) = (target_, data_);
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (target != address(0)) {
            (reentered, refusal) = target.call(data);
        }
        return super.transferFrom(from, to, value);
    }
}

/// @notice An account that refuses ETH (a contract without receive).
contract ChannelsEthRefuser {
    function forward(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        require(ok, "call failed");
        return ret;
    }
}

/// @notice Payment channels: lifecycle in ETH and ERC-20, who may claim, vouchers, fees, hostile tokens.
contract ChannelsTest is SuiteTest {
    VmSign internal constant signer = VmSign(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant BUYER_KEY = 0xB0B;
    uint256 internal constant STRANGER_KEY = 0x57A;
    uint256 internal constant DEPOSIT = 1 ether;
    uint64 internal constant DAY = 1 days;

    Channels internal channels;
    ChannelsTestToken internal usd;
    uint256 internal model; // priced in ETH
    uint256 internal usdModel; // priced in `usd`

    function setUp() public override {
        super.setUp();
        channels = new Channels(IChannelsRegistry(address(registry)), IChannelsMarketplace(address(market)));
        usd = new ChannelsTestToken();
        model = _list(PRICE);
        usdModel = _tokenModel(address(usd));
        vm.prank(seller);
        registry.setOperator(usdModel, operator);
    }

    // -- helpers ---------------------------------------------------------------------------------

    function _tokenModel(address token) internal returns (uint256 id) {
        id = _list(PRICE);
        vm.prank(seller);
        registry.setPaymentToken(id, token);
    }

    function _expiry() internal view returns (uint64) {
        return uint64(block.timestamp) + DAY;
    }

    function _openEth(uint256 amount) internal returns (uint256 id) {
        vm.deal(buyer, buyer.balance + amount);
        vm.prank(buyer);
        id = channels.openChannel{value: amount}(model, address(0), amount, _expiry());
    }

    /// Gives the buyer `amount` of `token`, approved to Channels.
    function _fund(address token, uint256 amount) internal {
        ChannelsMintable(token).mint(buyer, amount);
        vm.prank(buyer);
        ChannelsMintable(token).approve(address(channels), amount);
    }

    function _openUsd(uint256 amount) internal returns (uint256 id) {
        _fund(address(usd), amount);
        vm.prank(buyer);
        id = channels.openChannel(usdModel, address(usd), amount, _expiry());
    }

    function _voucher(uint256 key, uint256 id, uint256 cumulative) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(abi.encode(channels.VOUCHER_TYPEHASH(), id, cumulative));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", channels.domainSeparator(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = signer.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _claim(address who, uint256 id, uint256 cumulative) internal {
        bytes memory sig = _voucher(BUYER_KEY, id, cumulative);
        vm.prank(who);
        channels.claim(id, cumulative, sig);
    }

    function _claimed(uint256 id) internal view returns (uint256 claimed) {
        (,,,, claimed,,) = channels.channel(id);
    }

    function _fee(uint256 amount) internal view returns (uint256) {
        return amount * market.feeBps() / 10_000;
    }

    // -- lifecycle -------------------------------------------------------------------------------

    function test_ethLifecycle() public {
        uint64 expiry = _expiry();
        uint256 id = _openEth(DEPOSIT);
        vm.assertEq(id, 1, "ids from 1");
        vm.assertEq(channels.channelCount(), 1, "count");
        (uint256 m, address b, address t, uint256 dep, uint256 cl, uint64 exp, bool open) = channels.channel(id);
        vm.assertEq(m, model, "model");
        vm.assertEq(b, buyer, "buyer");
        vm.assertEq(t, address(0), "ETH");
        vm.assertEq(dep, DEPOSIT, "deposit");
        vm.assertEq(cl, 0, "nothing claimed");
        vm.assertEq(exp, expiry, "expiry");
        vm.assertTrue(open, "open");
        vm.assertEq(address(channels).balance, DEPOSIT, "held");

        _claim(seller, id, 0.3 ether);
        vm.assertEq(_claimed(id), 0.3 ether, "claimed");
        uint256 fee = _fee(0.3 ether);
        vm.assertEq(channels.credited(seller, address(0)), 0.3 ether - fee, "seller credited, less the fee");
        vm.assertEq(channels.credited(feeRecipient, address(0)), fee, "fee credited");

        vm.warp(uint256(expiry) + 1);
        uint256 before = buyer.balance;
        vm.prank(buyer);
        channels.reclaim(id);
        vm.assertEq(buyer.balance - before, 0.7 ether, "the rest returned");
        (,,,,,, open) = channels.channel(id);
        vm.assertFalse(open, "closed");

        before = seller.balance;
        vm.prank(seller);
        channels.withdraw(address(0));
        vm.assertEq(seller.balance - before, 0.3 ether - fee, "seller withdrew");
        vm.prank(feeRecipient);
        channels.withdraw(address(0));
        vm.assertEq(address(channels).balance, 0, "nothing left behind");
    }

    function test_erc20Lifecycle() public {
        uint256 id = _openUsd(100e6);
        vm.assertEq(usd.balanceOf(address(channels)), 100e6, "pulled");
        _fund(address(usd), 50e6);
        vm.startPrank(buyer);
        channels.topUp(id, 50e6);
        channels.extend(id, _expiry() + DAY);
        vm.stopPrank();
        (,,, uint256 dep,, uint64 exp,) = channels.channel(id);
        vm.assertEq(dep, 150e6, "topped up");
        vm.assertEq(exp, _expiry() + DAY, "extended");

        _claim(operator, id, 40e6); // by the operator: still paid to the owner
        _claim(seller, id, 120e6);
        uint256 fee = _fee(40e6) + _fee(80e6);
        vm.assertEq(channels.credited(seller, address(usd)), 120e6 - fee, "owner credited in the token");
        vm.assertEq(channels.credited(operator, address(usd)), 0, "operator is not paid");
        vm.assertEq(channels.credited(feeRecipient, address(usd)), fee, "fee in the token");

        vm.warp(uint256(exp) + 1);
        vm.prank(buyer);
        channels.reclaim(id);
        vm.assertEq(usd.balanceOf(buyer), 30e6, "the unclaimed rest");
        vm.prank(seller);
        channels.withdraw(address(usd));
        vm.assertEq(usd.balanceOf(seller), 120e6 - fee, "seller's tokens");
    }

    /// The seller's grace: after expiry a claim still works, until the buyer reclaims.
    function test_claimAfterExpiryUntilReclaim() public {
        uint256 id = _openEth(DEPOSIT);
        vm.warp(uint256(_expiry()) + 2 * DAY);
        _claim(seller, id, 0.5 ether);
        vm.assertEq(_claimed(id), 0.5 ether, "late claim paid");
        vm.prank(buyer);
        channels.reclaim(id);
        bytes memory sig = _voucher(BUYER_KEY, id, 0.9 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsClosed.selector, id));
        channels.claim(id, 0.9 ether, sig);
    }

    function test_reclaimBeforeExpiryRefused() public {
        uint64 expiry = _expiry();
        uint256 id = _openEth(DEPOSIT);
        vm.warp(expiry); // the last second of the channel
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotExpired.selector, id, expiry));
        channels.reclaim(id);
        vm.warp(uint256(expiry) + 1);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotBuyer.selector, id, seller, buyer));
        channels.reclaim(id);
    }

    function test_reclaimOfAFullyClaimedChannelSendsNothing() public {
        uint256 id = _openEth(DEPOSIT);
        _claim(seller, id, DEPOSIT);
        vm.warp(uint256(_expiry()) + 1);
        uint256 before = buyer.balance;
        vm.prank(buyer);
        channels.reclaim(id);
        vm.assertEq(buyer.balance, before, "nothing to return");
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsClosed.selector, id));
        channels.reclaim(id);
    }

    // -- vouchers --------------------------------------------------------------------------------

    function test_wrongSignerRefused() public {
        uint256 id = _openEth(DEPOSIT);
        bytes memory sig = _voucher(STRANGER_KEY, id, 0.1 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsBadSignature.selector, id, buyer));
        channels.claim(id, 0.1 ether, sig);
        // a voucher for another amount, or another channel, is another signature
        uint256 other = _openEth(DEPOSIT);
        sig = _voucher(BUYER_KEY, other, 0.1 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsBadSignature.selector, id, buyer));
        channels.claim(id, 0.1 ether, sig);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsBadSignature.selector, id, buyer));
        channels.claim(id, 0.1 ether, hex"1234"); // malformed
    }

    function test_replayedOrLowerVoucherPaysNothing() public {
        uint256 id = _openEth(DEPOSIT);
        _claim(seller, id, 0.4 ether);
        bytes memory again = _voucher(BUYER_KEY, id, 0.4 ether);
        vm.prank(seller);
        vm.expectRevert(
            abi.encodeWithSelector(Channels.ChannelsNothingToClaim.selector, id, 0.4 ether, 0.4 ether, DEPOSIT)
        );
        channels.claim(id, 0.4 ether, again);
        bytes memory lower = _voucher(BUYER_KEY, id, 0.2 ether);
        vm.prank(seller);
        vm.expectRevert(
            abi.encodeWithSelector(Channels.ChannelsNothingToClaim.selector, id, 0.2 ether, 0.4 ether, DEPOSIT)
        );
        channels.claim(id, 0.2 ether, lower);
        vm.assertEq(_claimed(id), 0.4 ether, "unchanged");
    }

    /// A voucher above the deposit pays the deposit; after a top-up, the same voucher pays the rest it names.
    function test_voucherAboveTheDepositIsCapped() public {
        uint256 id = _openEth(DEPOSIT);
        _claim(seller, id, 3 ether);
        vm.assertEq(_claimed(id), DEPOSIT, "capped at the deposit");
        bytes memory sig = _voucher(BUYER_KEY, id, 3 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNothingToClaim.selector, id, 3 ether, DEPOSIT, DEPOSIT));
        channels.claim(id, 3 ether, sig);
        vm.deal(buyer, 5 ether);
        vm.prank(buyer);
        channels.topUp{value: 5 ether}(id, 5 ether);
        _claim(seller, id, 3 ether);
        vm.assertEq(_claimed(id), 3 ether, "the voucher's full amount once covered");
        uint256 fee = _fee(DEPOSIT) + _fee(2 ether);
        vm.assertEq(channels.credited(seller, address(0)), 3 ether - fee, "paid what the voucher names");
    }

    function test_claimByNonOwnerRefused() public {
        uint256 id = _openEth(DEPOSIT);
        bytes memory sig = _voucher(BUYER_KEY, id, 0.1 ether);
        for (uint256 i = 0; i < 3; i++) {
            address who = [buyer, operator, feeRecipient][i]; // model's operator is not set: operator refused
            vm.prank(who);
            vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotClaimer.selector, id, who));
            channels.claim(id, 0.1 ether, sig);
        }
    }

    /// The owner at claim time is paid: a model sold with a channel open pays its new owner; the old
    /// owner's operator is cleared on transfer.
    function test_claimPaysTheCurrentOwner() public {
        uint256 id = _openUsd(10e6);
        address newOwner = vm.addr(0x0E2);
        vm.prank(seller);
        registry.transferFrom(seller, newOwner, usdModel);
        bytes memory sig = _voucher(BUYER_KEY, id, 1e6);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotClaimer.selector, id, operator));
        channels.claim(id, 1e6, sig);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotClaimer.selector, id, seller));
        channels.claim(id, 1e6, sig);
        _claim(newOwner, id, 1e6);
        vm.assertEq(channels.credited(newOwner, address(usd)), 1e6 - _fee(1e6), "new owner paid");
    }

    // -- fees ------------------------------------------------------------------------------------

    /// The fee is the Marketplace's at claim time, credited to its fee recipient at claim time.
    function test_feeSplitFollowsTheMarketplace() public {
        uint256 id = _openEth(DEPOSIT);
        _claim(seller, id, 0.2 ether);
        vm.assertEq(channels.credited(feeRecipient, address(0)), 0.005 ether, "2.5 %");
        address newRecipient = vm.addr(0xFEE2);
        vm.startPrank(owner);
        market.setFeeBps(1000);
        market.setFeeRecipient(newRecipient);
        vm.stopPrank();
        vm.recordLogs();
        _claim(seller, id, 0.6 ether);
        vm.assertEq(channels.credited(newRecipient, address(0)), 0.04 ether, "10 % of the new 0.4");
        vm.assertEq(channels.credited(seller, address(0)), 0.195 ether + 0.36 ether, "the rest to the owner");
        bytes memory data = vm.getRecordedLogs()[0].data;
        vm.assertEq(data, abi.encode(0.6 ether, 0.36 ether, 0.04 ether), "ChannelClaimed(cumulative, paid, fee)");
        vm.prank(owner);
        market.setFeeBps(0);
        _claim(seller, id, 0.7 ether);
        vm.assertEq(channels.credited(newRecipient, address(0)), 0.04 ether, "no fee at 0 bps");
        vm.assertEq(channels.credited(seller, address(0)), 0.655 ether, "all of it to the owner");
    }

    // -- opening, topping up, extending ----------------------------------------------------------

    function test_openRefusals() public {
        uint64 expiry = _expiry();
        vm.deal(buyer, 10 ether);
        vm.startPrank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsWrongToken.selector, model, address(usd), address(0)));
        channels.openChannel(model, address(usd), 1, expiry);
        vm.expectRevert(
            abi.encodeWithSelector(Channels.ChannelsWrongToken.selector, usdModel, address(0), address(usd))
        );
        channels.openChannel{value: 1}(usdModel, address(0), 1, expiry);
        vm.expectRevert(
            abi.encodeWithSelector(Channels.ChannelsBadExpiry.selector, uint64(block.timestamp), block.timestamp + 1)
        );
        channels.openChannel{value: 1}(model, address(0), 1, uint64(block.timestamp));
        vm.expectRevert(Channels.ChannelsZeroAmount.selector);
        channels.openChannel(model, address(0), 0, expiry);
        uint256 huge = uint256(type(uint128).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsAmountTooLarge.selector, huge, type(uint128).max));
        channels.openChannel(model, address(0), huge, expiry);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsWrongPayment.selector, 2, 1));
        channels.openChannel{value: 2}(model, address(0), 1, expiry);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsWrongPayment.selector, 1, 0));
        channels.openChannel{value: 1}(usdModel, address(usd), 1, expiry);
        vm.expectRevert(abi.encodeWithSignature("ERC721NonexistentToken(uint256)", 999));
        channels.openChannel{value: 1}(999, address(0), 1, expiry);
        vm.stopPrank();
        vm.assertEq(channels.channelCount(), 0, "none opened");
    }

    function test_topUpAndExtendRules() public {
        uint256 id = _openEth(DEPOSIT);
        uint64 expiry = _expiry();
        vm.deal(seller, 1 ether);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotBuyer.selector, id, seller, buyer));
        channels.topUp{value: 1}(id, 1);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotBuyer.selector, id, seller, buyer));
        channels.extend(id, expiry + 1);
        vm.startPrank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsBadExpiry.selector, expiry, expiry + 1));
        channels.extend(id, expiry); // not later
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsUnknownChannel.selector, 7));
        channels.topUp(7, 1);
        vm.warp(uint256(expiry) + 10);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsExpired.selector, id, expiry));
        channels.topUp(id, 1);
        // an expired channel not yet reclaimed can be extended, from now on
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsBadExpiry.selector, expiry + 5, uint256(expiry) + 11));
        channels.extend(id, expiry + 5);
        channels.extend(id, expiry + DAY);
        vm.deal(buyer, 1 ether);
        channels.topUp{value: 1 ether}(id, 1 ether);
        vm.stopPrank();
        (,,, uint256 dep,,,) = channels.channel(id);
        vm.assertEq(dep, 2 ether, "topped up after extending");
    }

    function test_depositNeverAboveTheCap() public {
        uint256 id = _openUsd(type(uint128).max);
        _fund(address(usd), 1);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(
                Channels.ChannelsAmountTooLarge.selector, uint256(type(uint128).max) + 1, type(uint128).max
            )
        );
        channels.topUp(id, 1);
    }

    // -- hostile tokens and recipients -----------------------------------------------------------

    function test_feeOnTransferDepositRefused() public {
        ChannelsFeeToken fot = new ChannelsFeeToken();
        uint256 id = _tokenModel(address(fot));
        _fund(address(fot), 100e6);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsTransferShortfall.selector, address(fot), 100e6, 99e6));
        channels.openChannel(id, address(fot), 100e6, _expiry());
    }

    function test_noBoolTokenWorks() public {
        ChannelsNoBoolToken usdt = new ChannelsNoBoolToken();
        uint256 id = _tokenModel(address(usdt));
        _fund(address(usdt), 100e6);
        vm.prank(buyer);
        uint256 ch = channels.openChannel(id, address(usdt), 100e6, _expiry());
        _claim(seller, ch, 60e6);
        vm.prank(seller);
        channels.withdraw(address(usdt));
        vm.assertEq(usdt.balanceOf(seller), 60e6 - _fee(60e6), "withdrawn without a bool");
        vm.warp(uint256(_expiry()) + 1);
        vm.prank(buyer);
        channels.reclaim(ch);
        vm.assertEq(usdt.balanceOf(buyer), 40e6, "reclaimed without a bool");
    }

    function test_reenteringTokenIsStopped() public {
        ChannelsReenteringToken evil = new ChannelsReenteringToken();
        uint256 id = _tokenModel(address(evil));
        _fund(address(evil), 100e6);
        evil.arm(address(channels), abi.encodeCall(Channels.withdraw, (address(evil))));
        vm.prank(buyer);
        channels.openChannel(id, address(evil), 10e6, _expiry());
        vm.assertFalse(evil.reentered(), "re-entry refused");
        vm.assertEq(evil.refusal(), abi.encodeWithSignature("ReentrancyGuardReentrantCall()"), "by the guard");
    }

    /// An owner that refuses ETH keeps its credit; nobody else is blocked (claims credit, reclaim pays
    /// the buyer).
    function test_ownerRefusingEthBlocksNobody() public {
        ChannelsEthRefuser refuser = new ChannelsEthRefuser();
        vm.prank(seller);
        registry.transferFrom(seller, address(refuser), model);
        uint256 id = _openEth(DEPOSIT);
        _claim(address(refuser), id, 0.5 ether);
        uint256 credit = channels.credited(address(refuser), address(0));
        vm.assertEq(credit, 0.5 ether - _fee(0.5 ether), "credited");
        vm.expectRevert(); // the refuser's own withdrawal fails, inside its call
        refuser.forward(address(channels), abi.encodeCall(Channels.withdraw, (address(0))));
        vm.assertEq(channels.credited(address(refuser), address(0)), credit, "still credited");
        vm.warp(uint256(_expiry()) + 1);
        uint256 before = buyer.balance;
        vm.prank(buyer);
        channels.reclaim(id);
        vm.assertEq(buyer.balance - before, 0.5 ether, "the buyer got the rest");
    }

    function test_ethTransferFailureIsNamed() public {
        ChannelsEthRefuser refuser = new ChannelsEthRefuser();
        vm.deal(address(this), 1 ether);
        bytes memory open = abi.encodeCall(Channels.openChannel, (model, address(0), 1 ether, _expiry()));
        uint256 id = abi.decode(refuser.forward{value: 1 ether}(address(channels), open), (uint256));
        vm.warp(uint256(_expiry()) + 1);
        vm.prank(address(refuser));
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsTransferFailed.selector, address(refuser), 1 ether));
        channels.reclaim(id);
    }

    // -- call price, views, construction ---------------------------------------------------------

    function test_callPriceByTheOwnerOnly() public {
        vm.assertEq(channels.callPrice(model), 0, "none set");
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNotModelOwner.selector, model, buyer, seller));
        channels.setCallPrice(model, 1000);
        vm.prank(seller);
        channels.setCallPrice(model, 1000);
        vm.assertEq(channels.callPrice(model), 1000, "set");
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSignature("ERC721NonexistentToken(uint256)", 999));
        channels.setCallPrice(999, 1);
    }

    function test_viewsAndConstruction() public {
        vm.assertEq(channels.registry(), address(registry), "registry");
        vm.assertEq(channels.marketplace(), address(market), "marketplace");
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsUnknownChannel.selector, 1));
        channels.channel(1);
        vm.expectRevert(abi.encodeWithSelector(Channels.ChannelsNothingToWithdraw.selector, address(this), address(0)));
        channels.withdraw(address(0));
        vm.expectRevert(Channels.ChannelsZeroAddress.selector);
        new Channels(IChannelsRegistry(address(0)), IChannelsMarketplace(address(market)));
        vm.expectRevert(Channels.ChannelsZeroAddress.selector);
        new Channels(IChannelsRegistry(address(registry)), IChannelsMarketplace(address(0)));
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Modex"),
                keccak256("1"),
                block.chainid,
                address(channels)
            )
        );
        vm.assertEq(channels.domainSeparator(), domain, "EIP-712 domain {Modex, 1, chainId, Channels}");
    }

    // -- fuzz ------------------------------------------------------------------------------------

    /// Whatever sequence of vouchers (rising, replayed, falling, above the deposit) and top-ups, the total
    /// claimed never exceeds the deposits, owner + fee credits always equal the claimed total, and the
    /// buyer gets back exactly the rest.
    function testFuzz_claimsNeverExceedDeposits(uint256 seed, uint8 steps) public {
        uint256 deposits = bound(seed % 1e24, 1, 1e24);
        uint256 id = _openEth(deposits);
        steps = uint8(bound(steps, 1, 24));
        for (uint256 i = 0; i < steps; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if (r % 5 == 0) {
                uint256 more = bound(r >> 8, 1, 1e22);
                vm.deal(buyer, more);
                vm.prank(buyer);
                channels.topUp{value: more}(id, more);
                deposits += more;
                continue;
            }
            uint256 cumulative = bound(r >> 16, 0, deposits * 2);
            bytes memory sig = _voucher(BUYER_KEY, id, cumulative);
            uint256 was = _claimed(id);
            vm.prank(seller);
            (bool ok,) = address(channels).call(abi.encodeCall(Channels.claim, (id, cumulative, sig)));
            uint256 due = cumulative < deposits ? cumulative : deposits;
            vm.assertEq(ok, due > was, "pays only what is new and covered");
            vm.assertEq(_claimed(id), ok ? due : was, "claimed moves to min(voucher, deposit)");
            vm.assertLe(_claimed(id), deposits, "never above the deposits");
        }
        uint256 claimed = _claimed(id);
        vm.assertEq(
            channels.credited(seller, address(0)) + channels.credited(feeRecipient, address(0)),
            claimed,
            "every claimed wei credited once"
        );
        vm.warp(uint256(_expiry()) + 1);
        uint256 before = buyer.balance;
        vm.prank(buyer);
        channels.reclaim(id);
        vm.assertEq(buyer.balance - before, deposits - claimed, "the rest back to the buyer");
        vm.assertEq(address(channels).balance, claimed, "what stays is exactly the credits");
    }
}
