// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "../lib/TestBase.sol";
import {Suite} from "../lib/Suite.sol";
import {ModelRegistry} from "../../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {Votes} from "../../../contracts/Votes.sol";
import {Channels, IChannelsRegistry, IChannelsMarketplace} from "../../../contracts/Channels.sol";
import {World} from "./World.sol";
import {ChannelsWorld} from "./ChannelsWorld.sol";
import {Ghost} from "./Ghost.sol";
import {
    BuyerHandler,
    SellerHandler,
    OperatorHandler,
    HonestValidatorHandler,
    LazyValidatorHandler,
    ColludingValidatorsHandler,
    LeavingValidatorHandler,
    OwnerHandler,
    ReenteringHandler,
    RejectingHandler,
    ClockHandler,
    ChannelsHandler
} from "./Handlers.sol";

/// @notice The invariant campaign over the whole suite (issue 13 §3): forge calls the actor handlers in
/// random sequences (runs x depth in foundry.toml, profile fuzz) and, after every call, checks:
/// - money: each contract's ETH balance, and its balance of the campaign's ERC-20 (models are priced in
///   either, sales and subscriptions alike), is exactly what it holds for others in that currency
///   (Marketplace: escrow of pending purchases + revenue held in the challenge period + everything
///   credited + verifier rewards not yet claimed; Validators: stakes + credited forfeits; Channels: deposit
///   - claimed over the open channels + everything credited), and equals what came in minus what went
///   out; everyone's credit is what the rules give them, never more than the contract took in, and a
///   withdrawal pays exactly that (World, ChannelsWorld);
/// - each purchase is paid out (refund or release) at most once, and a delivery names its buyer;
/// - votes: every model's score is the sum over live, eligible licences (bought in ETH at a price above
///   0, not by the model's owner) of score x price, and no other licence holds a vote;
/// - channels: every channel's view agrees with the ChannelsWorld, and none paid out more than its deposit;
/// - validation: no seat holds a key that was not delivered to it; no attestation is counted without a
///   delivered key and a commitment that the reveal opened; bonded stake is exactly the bonds of open
///   seats and never leaves (a leaving validator has none); a Verified model was verified by a majority
///   of revealed weight that reproduced its listed hash and its claimed work digest;
/// - validation cycles (one per version validated): the current cycle's views (status, roundOf, tally,
///   attestationOf, ...) and every version's (statusAt, attestationAt, verifierWeightAt,
///   pendingValidatorRewardAt) agree with the World; a seat left open in an earlier cycle still bonds its
///   stake and counts in openSeats; each Verified version was verified against its own hash and claim;
///   rewards are kept per version (Marketplace.verdictVersion) and the unclaimed ones of every version
///   are in the money check;
/// - every view of the five contracts agrees with the World's model of the rules;
/// - nothing was re-entered, and no outcome differed from what the rules predict (World.violations).
contract InvariantTest is TestBase {
    World internal world;
    ModelRegistry internal registry;
    Marketplace internal market;
    Validators internal validators;
    Votes internal votes;
    Channels internal channels;
    ChannelsWorld internal channelsWorld;
    /// The money checks run after every call; the full comparison of every view with the model (a few
    /// hundred calls) after every FULL_EVERY-th call and at the end of each run.
    uint256 internal constant FULL_EVERY = 20;
    string internal constant REACH_FILE = "build/forge-test/reach.txt";

    function setUp() public {
        address owner = vm.addr(0xA11CE);
        address[] memory owners = _accounts("owner", 2);
        owners[0] = owner;
        Suite.Params memory p = Suite.params(owner, vm.addr(0xFEE), vm.addr(0x7EA5));
        vm.startPrank(owner);
        Suite.Deployed memory d = Suite.deploy(p);
        vm.stopPrank();
        (registry, market, validators, votes) = (d.registry, d.market, d.validators, d.votes);

        address[] memory buyers = _accounts("buyer", 3);
        address[2] memory sellers = [vm.addr(0x5E11), vm.addr(0xBAD5E11)];
        address[] memory honest = _accounts("honest validator", 3);
        address[] memory colluders = _accounts("colluding validator", 2);
        world = new World(
            d, p, owners, buyers, sellers, vm.addr(0x0FE), honest, vm.addr(0x1A2), colluders, vm.addr(0x1EAF)
        );
        address[] memory sellerList = new address[](2);
        (sellerList[0], sellerList[1]) = (sellers[0], sellers[1]);

        // The lying seller shops too: its own licences must never count as votes.
        address[] memory shoppers = new address[](buyers.length + 1);
        for (uint256 i = 0; i < buyers.length; i++) {
            shoppers[i] = buyers[i];
        }
        shoppers[buyers.length] = sellers[1];
        BuyerHandler buyer = new BuyerHandler(world, shoppers);
        _target(
            address(buyer),
            _sel6(
                buyer.shop.selector,
                buyer.shop.selector,
                buyer.shop.selector,
                buyer.shop.selector,
                buyer.shop.selector,
                buyer.shop.selector
            )
        );
        _target(
            address(buyer),
            _sel6(
                buyer.buy.selector,
                buyer.buy.selector,
                buyer.vote.selector,
                buyer.refund.selector,
                buyer.withdraw.selector,
                buyer.releaseRevenue.selector
            )
        );
        _target(address(buyer), _sel1(buyer.claimReward.selector));
        // subscribe twice as often: an offer needs the seller's terms, and half the models are priced in the token
        _target(address(buyer), _sel1(buyer.subscribe.selector));
        _target(address(buyer), _sel1(buyer.subscribe.selector));
        _target(address(buyer), _sel1(buyer.withdrawToken.selector));
        SellerHandler seller = new SellerHandler(world, sellerList);
        _target(address(seller), _sel1(seller.setSubscription.selector));
        _target(address(seller), _sel1(seller.setPaymentToken.selector));
        _target(address(seller), _sel1(seller.withdrawToken.selector));
        _target(
            address(seller),
            _sel6(
                seller.list.selector,
                seller.setPrice.selector,
                seller.setActive.selector,
                seller.setOperator.selector,
                seller.claimMetrics.selector,
                seller.transferModel.selector
            )
        );
        _target(
            address(seller),
            _sel6(
                seller.deliverKey.selector,
                seller.deliverKey.selector,
                seller.deliverKey.selector,
                seller.approve.selector,
                seller.setApprovalForAll.selector,
                seller.withdraw.selector
            )
        );
        _target(
            address(seller),
            _sel6(
                seller.releaseRevenue.selector,
                seller.releaseRevenue.selector,
                seller.deliverKey.selector,
                seller.deliverKey.selector,
                seller.list.selector,
                seller.claimMetrics.selector
            )
        );
        // new versions: every Verified model's validation goes on in a cycle for the next one
        _target(address(seller), _sel1(seller.publishVersion.selector));
        _targetContract(address(new OperatorHandler(world, world.operator())));
        _validatorTargets(address(new HonestValidatorHandler(world, honest)), bytes4(0));
        LazyValidatorHandler lazy = new LazyValidatorHandler(world, world.lazyValidator());
        _validatorTargets(address(lazy), lazy.commitWithoutKey.selector);
        ColludingValidatorsHandler colluding = new ColludingValidatorsHandler(world, colluders);
        _validatorTargets(address(colluding), colluding.copyCommitment.selector);
        LeavingValidatorHandler leaving = new LeavingValidatorHandler(world, world.leaver());
        _validatorTargets(address(leaving), leaving.leave.selector);
        _targetContract(address(new OwnerHandler(world, owners)));
        _targetContract(address(new ReenteringHandler(world, address(world.reenterer()))));
        _targetContract(address(new RejectingHandler(world, address(world.rejecter()))));
        _targetContract(address(new ClockHandler(world)));
        _channelsSetUp();
    }

    /// Channels on the same registry and marketplace; the World's buyers open channels and sign vouchers.
    function _channelsSetUp() internal {
        channels = new Channels(IChannelsRegistry(address(registry)), IChannelsMarketplace(address(market)));
        channelsWorld = new ChannelsWorld(world, channels, _keys("buyer", 3));
        _targetContract(address(new ChannelsHandler(channelsWorld)));
    }

    /// Every property, after every handler call (the view-by-view comparison every FULL_EVERY calls).
    function invariant_protocol() public view {
        _noViolation();
        _money(address(0));
        _money(address(world.token()));
        if (world.calls() % FULL_EVERY == 0) _everything();
    }

    /// All of them once more at the end of each run; and which outcomes the run reached, one line each
    /// in REACH_FILE, which tools/forge_gates.py adds up over the campaign (each must be reached).
    function afterInvariant() public {
        _noViolation();
        _money(address(0));
        _money(address(world.token()));
        _everything();
        _writeReached(world);
        _writeReached(channelsWorld);
    }

    function _writeReached(Ghost ghost) internal {
        uint256 n = ghost.reachedCount();
        for (uint256 i = 0; i < n; i++) {
            bytes32 name = ghost.reachedNames(i);
            vm.writeLine(REACH_FILE, string.concat(_name(name), "=", vm.toString(ghost.reached(name))));
        }
    }

    function _everything() internal view {
        _sums(address(0));
        _sums(address(world.token()));
        _heldSums();
        _registryAgrees();
        _purchases();
        _votes();
        _validation();
        _channels();
    }

    // ---- properties --------------------------------------------------------------------------

    function _noViolation() internal view {
        vm.assertEq(world.violations(), 0, world.firstViolation());
        vm.assertEq(channelsWorld.violations(), 0, channelsWorld.firstViolation());
        vm.assertEq(world.reenterer().reentered(), 0, "a value-moving function was re-entered");
        vm.assertEq(world.reenterer().staleReads(), 0, "a balance was still credited during its own payout");
    }

    /// Each contract holds exactly what it owes in `currency` (address(0): ETH, else the campaign's token):
    /// Marketplace = escrow of pending purchases + revenue held in its challenge period + everything
    /// credited + verifier rewards not yet claimed; Channels = deposit - claimed over the open channels +
    /// everything credited; Validators (ETH only) = stakes + forfeited bonds credited to the treasury. And
    /// that is what came in minus what went out.
    function _money(address currency) internal view {
        uint256 balance = _balance(address(market), currency);
        vm.assertEq(balance, world.marketIn(currency) - world.marketOut(currency), "Marketplace: balance != in - out");
        vm.assertEq(
            balance,
            world.escrow(currency) + world.heldRevenue(currency) + world.totalMarketCredited(currency)
                + world.unclaimedRewards(currency),
            "Marketplace: balance != escrow + held revenue + credited + unclaimed rewards"
        );
        balance = _balance(address(channels), currency);
        vm.assertEq(
            balance,
            channelsWorld.channelsIn(currency) - channelsWorld.channelsOut(currency),
            "Channels: balance != in - out"
        );
        vm.assertEq(
            balance,
            channelsWorld.held(currency) + channelsWorld.totalCredited(currency),
            "Channels: balance != deposit - claimed over open channels + credited"
        );
        if (currency != address(0)) {
            vm.assertEq(world.token().balanceOf(address(validators)), 0, "Validators holds the token");
            return;
        }
        balance = address(validators).balance;
        vm.assertEq(balance, world.validatorsIn() - world.validatorsOut(), "Validators ETH != in - out");
        vm.assertEq(
            balance,
            world.totalStaked() + world.validatorsCredited(world.treasury()),
            "Validators ETH != stakes + credited"
        );
    }

    /// The credits the money check sums in `currency`, from the contracts' own views; and nobody is
    /// credited more than the contract holds of what was paid in.
    function _sums(address currency) internal view {
        (uint256 credited, uint256 channelCredits) = (0, 0);
        uint256 n = world.accountCount();
        for (uint256 i = 0; i < n; i++) {
            address a = world.accounts(i);
            uint256 c = market.credited(a, currency);
            vm.assertEq(c, world.marketCredited(a, currency), "Marketplace.credited differs from what the rules credit");
            vm.assertLe(c, world.marketIn(currency) - world.marketOut(currency), "Marketplace credit above paid in");
            credited += c;
            c = channels.credited(a, currency);
            vm.assertEq(c, channelsWorld.credited(a, currency), "Channels.credited differs from what claims credit");
            vm.assertLe(
                c,
                channelsWorld.channelsIn(currency) - channelsWorld.channelsOut(currency),
                "Channels credit above paid in"
            );
            channelCredits += c;
            if (currency != address(0)) continue;
            vm.assertEq(
                validators.credited(a), world.validatorsCredited(a), "Validators.credited differs from the forfeits"
            );
        }
        vm.assertEq(credited, world.totalMarketCredited(currency), "credited to someone outside the world");
        vm.assertEq(channelCredits, channelsWorld.totalCredited(currency), "Channels credited someone outside");
    }

    /// Escrow, held revenue and verifiers' rewards in each currency ([0]: ETH, [1]: the token), and the
    /// stakes, from the contracts' views (one pass over the purchases and the seats for both currencies).
    function _heldSums() internal view {
        address[2] memory currencies = [address(0), address(world.token())];
        uint256[2] memory pending;
        uint256[2] memory held;
        uint256 np = world.purchaseCount();
        for (uint256 pid = 1; pid <= np; pid++) {
            (,, uint256 price,, uint8 status,,, bool released) = market.purchase(pid);
            uint256 k = market.purchaseToken(pid) == address(0) ? 0 : 1;
            if (status == 1) pending[k] += price;
            if (status == 2 && !released) held[k] += price;
        }
        uint256[2] memory rewards;
        uint256 stakes;
        uint256 ns = world.stakerCount();
        for (uint256 i = 0; i < ns; i++) {
            address v = world.stakers(i);
            (uint256 eth, uint256 inToken) = _pendingRewards(v);
            (rewards[0], rewards[1]) = (rewards[0] + eth, rewards[1] + inToken);
            (uint256 amount,,,) = validators.stakeOf(v);
            stakes += amount;
        }
        for (uint256 k = 0; k < 2; k++) {
            vm.assertEq(pending[k], world.escrow(currencies[k]), "escrow != prices of pending purchases");
            vm.assertEq(
                held[k], world.heldRevenue(currencies[k]), "held revenue != prices of delivered, unreleased purchases"
            );
            vm.assertEq(
                rewards[k],
                world.unclaimedRewards(currencies[k]),
                "unclaimed rewards != sum of pendingValidatorRewardAt over the versions"
            );
        }
        vm.assertEq(stakes, world.totalStaked(), "stakes");
    }

    /// What `v` may claim as a verifier, in ETH and in the token, over every model and version: every
    /// version's verifiers keep what they earned while it was the verdict's version.
    function _pendingRewards(address v) internal view returns (uint256 eth, uint256 inToken) {
        address token = address(world.token());
        for (uint256 id = 1; id <= world.modelCount(); id++) {
            uint256 versions = world.model(id).versions;
            for (uint256 ver = 1; ver <= versions; ver++) {
                eth += market.pendingValidatorRewardAt(id, ver, v, address(0));
                inToken += market.pendingValidatorRewardAt(id, ver, v, token);
            }
        }
    }

    /// Every channel as the ChannelsWorld has it; none paid out more than its deposit; the open ones hold
    /// what the money check counts.
    function _channels() internal view {
        uint256 n = channelsWorld.channelCount();
        vm.assertEq(channels.channelCount(), n, "channelCount");
        address token = address(world.token());
        (uint256 heldEth, uint256 heldToken) = (0, 0);
        for (uint256 cid = 1; cid <= n; cid++) {
            ChannelsWorld.GChannel memory g = channelsWorld.channelOf(cid);
            (uint256 id, address buyer, address currency, uint256 deposit, uint256 claimed, uint64 end, bool open) =
                channels.channel(cid);
            vm.assertEq(
                abi.encode(id, buyer, currency, deposit, claimed, uint256(end), open),
                abi.encode(g),
                "channel (model, buyer, token, deposit, claimed, expiresAt, open) != the ChannelsWorld's"
            );
            vm.assertLe(claimed, deposit, "a channel paid out more than its deposit");
            if (!open) continue;
            if (currency == token) heldToken += deposit - claimed;
            else heldEth += deposit - claimed;
        }
        vm.assertEq(heldEth, channelsWorld.held(address(0)), "ETH held != deposit - claimed over open channels");
        vm.assertEq(heldToken, channelsWorld.held(token), "token held != deposit - claimed over open channels");
    }

    function _balance(address holder, address currency) internal view returns (uint256) {
        return currency == address(0) ? holder.balance : world.token().balanceOf(holder);
    }

    function _registryAgrees() internal view {
        uint256 n = world.modelCount();
        vm.assertEq(registry.modelCount(), n, "modelCount");
        for (uint256 id = 1; id <= n; id++) {
            World.GModel memory m = world.model(id);
            vm.assertEq(registry.ownerOf(id), m.owner, "ownerOf");
            (uint256 price, bool active, address owner) = registry.saleTerms(id);
            vm.assertEq(owner, m.owner, "saleTerms owner");
            vm.assertEq(price, m.price, "price");
            vm.assertEq(registry.paymentToken(id), m.payToken, "paymentToken");
            vm.assertEq(active, m.active, "active");
            vm.assertEq(registry.operatorOf(id), m.operator, "operator");
            vm.assertEq(registry.getApproved(id), m.approved, "approved");
            vm.assertEq(registry.modelHash(id), m.listed, "modelHash");
            vm.assertEq(registry.claimedWorkDigest(id), m.claimed, "claimedWorkDigest");
            vm.assertEq(registry.versionCount(id), m.versions, "versionCount");
            for (uint256 ver = 1; ver <= m.versions; ver++) {
                World.GVersion memory g = world.versionOf(id, ver);
                (bytes32 hash, bytes32 digest, uint256 claimedAt) = registry.attestationTargetOf(id, ver);
                vm.assertEq(
                    abi.encode(hash, digest, claimedAt),
                    abi.encode(g.listed, g.claimed, g.claimedAt),
                    "attestationTargetOf (hash, claim, claimedAt) != the World's version"
                );
            }
        }
        vm.assertEq(market.owner(), world.marketOwner(), "Marketplace owner");
        vm.assertEq(market.feeBps(), world.feeBps(), "feeBps");
        vm.assertEq(market.feeRecipient(), world.feeRecipient(), "feeRecipient");
    }

    function _purchases() internal view {
        uint256 np = world.purchaseCount();
        vm.assertEq(market.nextPurchaseId(), np + 1, "nextPurchaseId");
        for (uint256 pid = 1; pid <= np; pid++) {
            _purchase(pid);
        }
    }

    function _purchase(uint256 pid) internal view {
        World.GPurchase memory g = world.purchase(pid);
        _purchaseView(pid, g);
        // paid out exactly once: a release or a refund, never both, never twice
        vm.assertLe(g.payouts, 1, "a purchase was paid out twice");
        vm.assertEq(g.payouts, (g.released ? 1 : 0) + (g.status == 3 ? 1 : 0), "payouts vs state");
        // a delivery only to its purchase's account
        if (g.deliveredAt != 0) vm.assertEq(g.deliveredTo, g.account, "a key was delivered naming another account");
        // the licence is the account's live (latest) purchase of the model, once delivered
        if (!g.forValidator && world.isCurrent(pid)) {
            vm.assertEq(market.hasLicense(g.model, g.account), g.status == 2, "hasLicense");
        }
    }

    function _purchaseView(uint256 pid, World.GPurchase memory g) internal view {
        (
            address account,
            uint256 id,
            uint256 price,,
            uint8 status,
            bool forValidator,
            uint256 deliveredAt,
            bool released
        ) = market.purchase(pid);
        vm.assertEq(account, g.account, "purchase account");
        vm.assertEq(id, g.model, "purchase model");
        vm.assertEq(forValidator, g.forValidator, "purchase forValidator");
        vm.assertEq(status, g.status, "purchase status");
        vm.assertEq(market.purchaseToken(pid), g.token, "purchaseToken");
        if (!world.isCurrent(pid)) return; // superseded: its price is gone from storage
        vm.assertEq(price, g.price, "purchase price");
        vm.assertEq(deliveredAt, g.deliveredAt, "purchase deliveredAt");
        vm.assertEq(released, g.released, "purchase released");
    }

    function _votes() internal view {
        uint256 n = world.modelCount();
        for (uint256 id = 1; id <= n; id++) {
            // recomputed from the licences: only eligible, live ones hold a vote
            uint256 sum;
            uint256 weight;
            uint256 voters;
            for (uint256 pid = 1; pid <= world.purchaseCount(); pid++) {
                World.GPurchase memory g = world.purchase(pid);
                if (g.model != id || g.vote == 0) continue;
                vm.assertTrue(g.status == 2 && !g.forValidator, "a vote on a licence that is not held");
                vm.assertTrue(g.price != 0 && !g.ownerBought, "a vote from a free or owner-bought licence");
                vm.assertEq(g.token, address(0), "a vote from a licence paid in a token (weights are wei)");
                vm.assertEq(market.voteOf(id, g.account), g.vote, "voteOf");
                sum += uint256(g.vote) * g.price;
                weight += g.price;
                voters += 1;
            }
            (uint256 s, uint256 w, uint256 c) = votes.scoreOf(id);
            vm.assertEq(s, sum, "weighted score != sum of score x price over eligible licences");
            vm.assertEq(w, weight, "vote weight != sum of prices of eligible voting licences");
            vm.assertEq(c, voters, "voter count");
            World.GScore memory gs = world.scoreOf(id);
            vm.assertEq(s, gs.weightedSum, "score ghost");
        }
    }

    function _validation() internal view {
        uint256 ns = world.stakerCount();
        uint256 n = world.modelCount();
        uint256 requestBond = world.requestBond();
        for (uint256 i = 0; i < ns; i++) {
            address v = world.stakers(i);
            (uint256 amount, uint256 bonded, uint256 unlockAt, uint256 openSeats) = validators.stakeOf(v);
            // World.GStake mirrors stakeOf field for field: the two encodings are equal iff every field is
            vm.assertEq(
                abi.encode(amount, bonded, unlockAt, openSeats),
                abi.encode(world.stakeOf(v)),
                "stakeOf (amount, bonded, unlockAt, openSeats) != the World's stake"
            );
            vm.assertLe(bonded, amount, "more bonded than staked");
            if (unlockAt != 0) vm.assertEq(bonded + openSeats, 0, "a leaving validator holds bonds or seats");
            (uint256 bonds, uint256 open) = _seatsOf(v, n, requestBond);
            vm.assertEq(bonded, bonds, "bonded stake != bonds of the open seats");
            vm.assertEq(openSeats, open, "openSeats != seats not released");
        }
        for (uint256 id = 1; id <= n; id++) {
            _round(id);
        }
    }

    /// `v`'s seats in every model: the current cycle's views, then its seat in each cycle (those left open
    /// in earlier cycles count too); the bonds and the number of the open ones.
    function _seatsOf(address v, uint256 n, uint256 requestBond) internal view returns (uint256 bonds, uint256 open) {
        for (uint256 id = 1; id <= n; id++) {
            _currentSeat(id, v);
            uint256 versions = world.model(id).versions;
            for (uint256 ver = 1; ver <= versions; ver++) {
                if (world.roundAt(id, ver).number == 0) continue; // no cycle attested it: no seat
                (uint256 b, bool isOpen) = _seat(id, ver, v, requestBond);
                bonds += b;
                if (isOpen) open += 1;
            }
        }
    }

    /// `v`'s seat in the model's current cycle (the views that take a model id), and its reward at the
    /// latest verdict's version.
    function _currentSeat(uint256 id, address v) internal view {
        uint256 version = world.currentVersion(id);
        vm.assertEq(
            _attestation(id, 0, v),
            _attestation(id, version, v),
            "attestationOf != attestationAt the current cycle's version"
        );
        (uint8 state,,,,) = validators.attestationOf(id, v);
        World.GSeat memory g = world.seatOf(id, v);
        vm.assertEq(state, g.state, "seat state (current cycle)");
        vm.assertEq(validators.commitmentOf(id, v), state == 3 ? g.commitment : bytes32(0), "commitmentOf");
        vm.assertEq(validators.verifierWeight(id, v), world.verifierWeight(id, v), "verifierWeight");
        vm.assertEq(validators.isVerifier(id, v), world.verifierWeight(id, v) != 0, "isVerifier");
        vm.assertEq(market.pendingValidatorReward(id, v), world.rewardOwed(id, v, address(0)), "pendingValidatorReward");
        address token = address(world.token());
        vm.assertEq(
            market.pendingValidatorReward(id, v, token), world.rewardOwed(id, v, token), "pendingValidatorReward(token)"
        );
    }

    /// attestationAt(id, version, v) encoded; version 0: attestationOf(id, v).
    function _attestation(uint256 id, uint256 version, address v) internal view returns (bytes memory) {
        if (version == 0) {
            (uint8 state, uint256 round, uint8 says, uint256 weight, uint256 commitBond) =
                validators.attestationOf(id, v);
            return abi.encode(state, round, says, weight, commitBond);
        }
        (uint8 s, uint256 r, uint8 d, uint256 w, uint256 b) = validators.attestationAt(id, version, v);
        return abi.encode(s, r, d, w, b);
    }

    /// `v`'s seat in the cycle that attests `version`, checked against the World; its bonds while open.
    function _seat(uint256 id, uint256 version, address v, uint256 requestBond)
        internal
        view
        returns (uint256 bonds, bool open)
    {
        (uint8 state, uint256 round, uint8 says, uint256 weight, uint256 commitBond) =
            validators.attestationAt(id, version, v);
        World.GSeat memory g = world.seatAt(id, version, v);
        vm.assertEq(state, g.state, "seat state");
        vm.assertEq(round, g.round, "seat round");
        vm.assertEq(says, g.says, "seat says");
        vm.assertEq(weight, g.weight, "seat weight");
        vm.assertEq(commitBond, g.commitBond, "seat commit bond");
        if (state >= 2) vm.assertTrue(g.keyDelivered, "a seat holds a key that was never delivered to it");
        if (state == 4 || (state == 5 && says != 0)) {
            vm.assertTrue(
                g.keyDelivered && g.revealedOwn, "an attestation counted without a key, a commit and its reveal"
            );
        }
        _verifierAt(id, version, v);
        open = state >= 1 && state <= 4;
        if (open) bonds = requestBond + (state >= 3 ? commitBond : 0);
    }

    /// `v` as a verifier of `version`: its weight and what it may claim in the token there.
    function _verifierAt(uint256 id, uint256 version, address v) internal view {
        vm.assertEq(
            validators.verifierWeightAt(id, version, v), world.verifierWeightAt(id, version, v), "verifierWeightAt"
        );
        address token = address(world.token());
        vm.assertEq(
            market.pendingValidatorRewardAt(id, version, v, token),
            world.rewardOwedAt(id, version, v, token),
            "pendingValidatorRewardAt(token)"
        );
    }

    /// The current cycle (roundOf, status, tally: the views that take a model id), then every version's
    /// status; each Verified one was verified by its own majority.
    function _round(uint256 id) internal view {
        World.GRound memory g = world.roundOf(id);
        vm.assertEq(validators.attestedVersion(id), world.cycleVersion(id), "attestedVersion");
        vm.assertEq(validators.opensNewCycle(id), world.opensNewCycle(id), "opensNewCycle");
        (uint256 number, uint64 commitEnd, uint64 revealEnd) = validators.roundOf(id);
        vm.assertEq(number, g.number, "round number");
        vm.assertEq(commitEnd, g.commitEnd, "commitEnd");
        vm.assertEq(revealEnd, g.revealEnd, "revealEnd");
        vm.assertEq(validators.status(id), g.status, "status");
        (uint256 verified, uint256 disputed, uint256 metrics) = validators.tally(id);
        vm.assertEq(verified, g.verifiedWeight, "tally verified");
        vm.assertEq(disputed, g.hashWeight, "tally disputed");
        vm.assertEq(metrics, g.metricsWeight, "tally metrics disputed");
        _book(id, g.status);
        uint256 versions = world.model(id).versions;
        for (uint256 ver = 1; ver <= versions; ver++) {
            World.GRound memory at = world.roundAt(id, ver);
            vm.assertEq(validators.statusAt(id, ver), at.status, "statusAt");
            if (at.status == 1) _verifiedOnlyWithTheClaim(id, ver, at);
        }
    }

    function _book(uint256 id, uint8 status) internal view {
        (uint256 verifierWeight, bool isDisputed, uint256 disputedAt, uint256 rewardPerWeight) = market.book(id);
        World.GBook memory g = world.bookOf(id);
        // World.GBook (with the ETH reward per weight of its version) mirrors book and verdictVersion field
        // for field: equal encodings iff every field is
        vm.assertEq(
            abi.encode(verifierWeight, isDisputed, disputedAt, market.verdictVersion(id), rewardPerWeight),
            abi.encode(g, world.rewardPerWeight(id, g.version, address(0))),
            "book (verifierWeight, disputed, disputedAt, verdictVersion, rewardPerWeight) != the World's book"
        );
        address token = address(world.token());
        vm.assertEq(
            market.rewardPerWeight(id, token),
            world.rewardPerWeight(id, g.version, token),
            "rewardPerWeight(token) != the World's"
        );
        vm.assertEq(isDisputed, status == 2 || status == 3, "disputed in the Marketplace iff settled against");
        if (status == 1) vm.assertEq(verifierWeight, world.roundOf(id).verifiedWeight, "verifier weight");
    }

    /// Verified (`version`): a majority of a quorum of revealed weight in its cycle reproduced that
    /// version's listed hash and the seller's claim for it as it stood when the deciding round opened (a
    /// later claim cannot count: Validators compares reveals with a claim made before the round opened).
    function _verifiedOnlyWithTheClaim(uint256 id, uint256 version, World.GRound memory g) internal view {
        World.GVersion memory m = world.versionOf(id, version);
        m.claimed = g.claimAtOpen;
        vm.assertTrue(m.claimed != bytes32(0), "Verified without a claimed work digest");
        vm.assertEq(m.claimed, world.versionOf(id, version).claimed, "Verified with another claim than the version's");
        uint256 agreeing;
        for (uint256 i = 0; i < world.stakerCount(); i++) {
            World.GSeat memory s = world.seatAt(id, version, world.stakers(i));
            if (s.round != g.number || s.says != 1) continue;
            vm.assertEq(s.observed, m.listed, "a Verified vote that did not reveal the listed hash");
            vm.assertEq(s.digest, m.claimed, "a Verified vote that did not reveal the claimed work digest");
            agreeing += s.weight;
        }
        uint256 total = g.verifiedWeight + g.hashWeight + g.metricsWeight;
        vm.assertEq(agreeing, g.verifiedWeight, "verified weight != weight of the reveals of hash and claim");
        vm.assertGe(total, world.quorum(), "Verified below quorum");
        vm.assertGt(2 * g.verifiedWeight, total, "Verified without a majority");
    }

    function _name(bytes32 name) internal pure returns (string memory) {
        uint256 len;
        while (len < 32 && name[len] != 0) len++;
        bytes memory out = new bytes(len);
        for (uint256 i = 0; i < len; i++) {
            out[i] = name[i];
        }
        return string(out);
    }

    /// A validator handler's moves, `advance` (the next step of a model's validation) weighted up so that
    /// runs carry models to their verdict; `extra` is the role's own move.
    function _validatorTargets(address h, bytes4 extra) internal {
        HonestValidatorHandler v = HonestValidatorHandler(h);
        _target(
            h,
            _sel6(
                v.advance.selector,
                v.advance.selector,
                v.advance.selector,
                v.advance.selector,
                v.advance.selector,
                v.advance.selector
            )
        );
        _target(
            h,
            _sel6(
                v.stake.selector,
                v.requestKey.selector,
                v.commit.selector,
                v.reveal.selector,
                v.settle.selector,
                v.release.selector
            )
        );
        _target(
            h,
            _sel6(
                v.claimReward.selector,
                v.requestUnstake.selector,
                v.unstake.selector,
                v.withdraw.selector,
                v.advance.selector,
                v.advance.selector
            )
        );
        if (extra != bytes4(0)) _target(h, _sel1(extra));
    }

    /// forge picks a target contract, then one of its selectors: a selector listed twice is drawn twice as often.
    function _target(address h, bytes4[] memory selectors) internal {
        bool known;
        address[] memory targets = this.targetContracts();
        for (uint256 i = 0; i < targets.length; i++) {
            known = known || targets[i] == h;
        }
        if (!known) _targetContract(h);
        _addSelectors(h, selectors);
    }

    function _sel1(bytes4 a) internal pure returns (bytes4[] memory out) {
        out = new bytes4[](1);
        out[0] = a;
    }

    function _sel6(bytes4 a, bytes4 b, bytes4 c, bytes4 d, bytes4 e, bytes4 f)
        internal
        pure
        returns (bytes4[] memory out)
    {
        out = new bytes4[](6);
        (out[0], out[1], out[2], out[3], out[4], out[5]) = (a, b, c, d, e, f);
    }

    function _accounts(string memory what, uint256 n) internal pure returns (address[] memory out) {
        uint256[] memory keys = _keys(what, n);
        out = new address[](n);
        for (uint256 i = 0; i < n; i++) {
            out[i] = vm.addr(keys[i]);
        }
    }

    /// The private keys of `_accounts(what, n)` (buyers sign vouchers with theirs).
    function _keys(string memory what, uint256 n) internal pure returns (uint256[] memory out) {
        out = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            out[i] = uint256(keccak256(abi.encode(what, i)));
        }
    }
}
