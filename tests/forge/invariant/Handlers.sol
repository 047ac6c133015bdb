// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {World} from "./World.sol";
import {ChannelsWorld} from "./ChannelsWorld.sol";

/// @notice One handler per actor. forge calls their functions with random arguments; each picks which
/// of its accounts acts and what it does, and asks the World to do it (the World checks every outcome
/// against the rules). Handlers hold no state and never revert.
abstract contract Handler {
    World public immutable world;
    address[] internal _actors;

    constructor(World world_, address[] memory actors_) {
        world = world_;
        _actors = actors_;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return _actors[seed % _actors.length];
    }

    /// Anyone in the world (for recipients and "some other account").
    function _anyone(uint256 seed) internal view returns (address) {
        if (seed % 41 == 0) return address(0);
        return world.accounts(seed % world.accountCount());
    }

    /// Any account that can stake (for `release`, which anyone may call for anyone).
    function _staker(uint256 seed) internal view returns (address) {
        return world.stakers(seed % world.stakerCount());
    }

    function _one(address a) internal pure returns (address[] memory out) {
        out = new address[](1);
        out[0] = a;
    }
}

/// Buyers: buy (sometimes paying wrong, with a zero key or too low a maxPrice), vote, refund,
/// withdraw, and release sellers' revenue (anyone may).
contract BuyerHandler is Handler {
    constructor(World w, address[] memory buyers) Handler(w, buyers) {}

    /// The next step of this buyer's life with a model (World.shop).
    function shop(uint256 who, uint256 modelSeed, uint256 seed) external {
        world.shop(_actor(who), modelSeed, seed);
    }

    function buy(uint256 who, uint256 modelSeed, uint256 pay) external {
        world.buy(_actor(who), modelSeed, pay, pay % 37 == 0);
    }

    function vote(uint256 who, uint256 modelSeed, uint8 score) external {
        world.vote(_actor(who), modelSeed, score);
    }

    function subscribe(uint256 who, uint256 modelSeed, uint256 periods, uint256 pay) external {
        world.subscribe(_actor(who), modelSeed, periods, pay);
    }

    function refund(uint256 who, uint256 purchaseSeed) external {
        world.refund(_actor(who), purchaseSeed);
    }

    function withdraw(uint256 who) external {
        world.withdrawMarket(_actor(who));
    }

    /// What refunds credited in the campaign's token.
    function withdrawToken(uint256 who) external {
        world.withdrawMarketToken(_actor(who));
    }

    function releaseRevenue(uint256 who, uint256 purchaseSeed) external {
        world.releaseRevenue(_actor(who), purchaseSeed);
    }

    /// Buyers are no validators: a reward claim must fail, in either currency, at any version.
    function claimReward(uint256 who, uint256 modelSeed, bool inToken, uint256 versionSeed) external {
        world.claimReward(_actor(who), modelSeed, inToken, versionSeed);
    }
}

/// Sellers: an honest one and one whose listings lie (a hash that is not the content's, inflated
/// metrics, an evaluation that cannot run); both list, price, open and close, name operators, claim
/// metrics, deliver keys (the worker: to the purchase's buyer, or naming another account as after a
/// reorg, or with a bad key), move their tokens and withdraw.
contract SellerHandler is Handler {
    constructor(World w, address[] memory sellers) Handler(w, sellers) {}

    function list(uint256 who, uint256 kind, uint256 price, uint256 cidSeed, bool claimNow) external {
        world.list(_actor(who), kind, price, cidSeed, claimNow);
    }

    function setPrice(uint256 who, uint256 modelSeed, uint256 price) external {
        world.setPrice(_actor(who), modelSeed, price);
    }

    function setActive(uint256 who, uint256 modelSeed, bool active) external {
        world.setActive(_actor(who), modelSeed, active);
    }

    function setSubscription(uint256 who, uint256 modelSeed, uint256 seed) external {
        world.setSubscription(_ownerMostly(who, modelSeed), modelSeed, seed);
    }

    /// ETH, the campaign's token, or an address that is no token; mostly by the model's owner.
    function setPaymentToken(uint256 who, uint256 modelSeed, uint256 which) external {
        world.setPaymentToken(_ownerMostly(who, modelSeed), modelSeed, which);
    }

    /// The model's owner three times in four (sellers mostly act on their own models), else this seller.
    function _ownerMostly(uint256 who, uint256 modelSeed) internal view returns (address) {
        address owner = world.ownerOfSeed(modelSeed);
        return who % 4 == 0 || owner == address(0) ? _actor(who) : owner;
    }

    function setOperator(uint256 who, uint256 modelSeed, uint256 opSeed) external {
        address op = opSeed % 3 == 0 ? address(0) : opSeed % 3 == 1 ? world.operator() : _anyone(opSeed);
        world.setOperator(_actor(who), modelSeed, op);
    }

    function claimMetrics(uint256 who, uint256 modelSeed, uint256 how) external {
        world.claimMetrics(_actor(who), modelSeed, how);
    }

    /// The model's next version (World.publishVersion), mostly by its owner and mostly claimed at once (a
    /// version without a claim can only end MetricsDisputed, which stops the model's sales for good).
    function publishVersion(uint256 who, uint256 modelSeed, uint256 kind, uint256 cidSeed) external {
        world.publishVersion(_ownerMostly(who, modelSeed), modelSeed, kind, cidSeed, kind % 5 != 0);
    }

    /// Mostly the worker of the purchase's model answering; now and then this seller, whoever owns it.
    function deliverKey(uint256 who, uint256 purchaseSeed, uint256 how, uint256 otherSeed) external {
        if (who % 5 == 0) {
            world.deliverKey(_actor(who), purchaseSeed, how, _anyone(otherSeed));
        } else {
            world.workerDeliver(purchaseSeed, how % 6 == 1 ? 1 : how % 6 == 2 ? 2 : 0, _anyone(otherSeed), who % 2 == 0);
        }
    }

    function transferModel(uint256 who, uint256 modelSeed, uint256 toSeed, uint256 mode) external {
        world.transferModel(_actor(who), modelSeed, _anyone(toSeed), mode);
    }

    function approve(uint256 who, uint256 modelSeed, uint256 toSeed) external {
        world.approve(_actor(who), modelSeed, _anyone(toSeed));
    }

    function setApprovalForAll(uint256 who, uint256 opSeed, bool approved) external {
        world.setApprovalForAll(_actor(who), _anyone(opSeed), approved);
    }

    function withdraw(uint256 who) external {
        world.withdrawMarket(_actor(who));
    }

    function withdrawToken(uint256 who) external {
        world.withdrawMarketToken(_actor(who));
    }

    function releaseRevenue(uint256 who, uint256 purchaseSeed) external {
        world.releaseRevenue(_actor(who), purchaseSeed);
    }
}

/// The seller's worker account as operator: delivers while it is the model's operator (never after the
/// token moved on, which clears it), and moves tokens it was approved for.
contract OperatorHandler is Handler {
    constructor(World w, address op) Handler(w, _one(op)) {}

    function deliverKey(uint256 purchaseSeed, uint256 how, uint256 otherSeed) external {
        world.deliverKey(_actor(0), purchaseSeed, how, _anyone(otherSeed));
    }

    function transferModel(uint256 modelSeed, uint256 toSeed, uint256 mode) external {
        world.transferModel(_actor(0), modelSeed, _anyone(toSeed), mode);
    }

    function withdraw() external {
        world.withdrawMarket(_actor(0));
    }
}

/// The validator roles share these moves; what a validator commits to is decided by who it is
/// (World._opinion): honest ones what the content gives, the lazy one what it copies from the chain,
/// colluders what their seller wants.
abstract contract ValidatorMoves is Handler {
    constructor(World w, address[] memory vs) Handler(w, vs) {}

    /// The next step of this validator's part in a model (World.advance).
    function advance(uint256 who, uint256 modelSeed, uint256 saltSeed) external {
        world.advance(_actor(who), modelSeed, saltSeed);
    }

    function stake(uint256 who, uint256 amount) external {
        world.stake(_actor(who), amount);
    }

    function requestKey(uint256 who, uint256 modelSeed) external {
        world.requestKey(_actor(who), modelSeed, modelSeed % 41 == 0);
    }

    function commit(uint256 who, uint256 modelSeed, uint256 saltSeed) external {
        world.commit(_actor(who), modelSeed, saltSeed, false);
    }

    function reveal(uint256 who, uint256 modelSeed, uint256 how) external {
        world.reveal(_actor(who), modelSeed, how % 8 == 0 ? 1 : how % 8 == 1 ? 2 : 0);
    }

    function settle(uint256 who, uint256 modelSeed) external {
        world.settle(_actor(who), modelSeed);
    }

    /// A seat of its own or anyone's: one left open in an earlier cycle first (`releaseAt`).
    function release(uint256 who, uint256 modelSeed, uint256 whose) external {
        world.release(_actor(who), modelSeed, whose % 2 == 0 ? _actor(who) : _staker(whose), whose % 3 == 0);
    }

    /// At the latest verdict's version, or (versionSeed % 3 == 0) at a version named (claimValidatorRewardAt).
    function claimReward(uint256 who, uint256 modelSeed, bool inToken, uint256 versionSeed) external {
        world.claimReward(_actor(who), modelSeed, inToken, versionSeed);
    }

    function requestUnstake(uint256 who) external {
        world.requestUnstake(_actor(who));
    }

    function unstake(uint256 who) external {
        world.unstake(_actor(who));
    }

    function withdraw(uint256 who) external {
        world.withdrawMarket(_actor(who));
    }
}

/// Validators that fetch the key, evaluate and reveal what they found.
contract HonestValidatorHandler is ValidatorMoves {
    constructor(World w, address[] memory vs) ValidatorMoves(w, vs) {}
}

/// A validator that never fetches the content: it asks for keys (it must, to commit) but commits the
/// listed hash and claimed digest it reads from the chain; it also tries to commit on models whose
/// key it never received.
contract LazyValidatorHandler is ValidatorMoves {
    constructor(World w, address lazy) ValidatorMoves(w, _one(lazy)) {}

    function commitWithoutKey(uint256 modelSeed, uint256 saltSeed) external {
        world.commit(_actor(0), modelSeed, saltSeed, false); // the World checks ValidatorsNoKey when keyless
    }
}

/// Validators working for the lying seller: they vouch for its models, dispute everyone else's, copy
/// honest validators' commitments and try to reveal others' values as their own.
contract ColludingValidatorsHandler is ValidatorMoves {
    constructor(World w, address[] memory vs) ValidatorMoves(w, vs) {}

    function copyCommitment(uint256 who, uint256 modelSeed, uint256 victimSeed) external {
        world.commit(_actor(who), modelSeed, victimSeed, true);
    }
}

/// A validator that wants out: it stakes, takes part, and asks to leave at every turn; leaving must be
/// refused while any seat is open, and its stake must stay until then.
contract LeavingValidatorHandler is ValidatorMoves {
    constructor(World w, address leaver) ValidatorMoves(w, _one(leaver)) {}

    function leave() external {
        world.requestUnstake(_actor(0));
        world.unstake(_actor(0));
    }
}

/// The Marketplace's owner(s): fee and fee recipient, ownership hand-over between its accounts, and
/// every call reserved to the owner or to the other contracts, tried by anyone (must revert); the
/// treasury withdraws forfeited bonds.
contract OwnerHandler is Handler {
    constructor(World w, address[] memory owners) Handler(w, owners) {}

    function setFeeBps(uint256 who, uint256 bps) external {
        world.setFeeBps(who % 5 == 0 ? _anyone(who) : world.marketOwner(), bps);
    }

    function setFeeRecipient(uint256 who, uint256 toSeed) external {
        world.setFeeRecipient(who % 5 == 0 ? _anyone(who) : world.marketOwner(), _anyone(toSeed));
    }

    function transferOwnership(uint256 who, uint256 toSeed) external {
        address to = toSeed % 7 == 0 ? address(0) : _actor(toSeed);
        world.transferOwnership(who % 5 == 0 ? _anyone(who) : world.marketOwner(), to);
    }

    function forbidden(uint256 who, uint256 which, uint256 modelSeed) external {
        world.forbidden(who % 2 == 0 ? world.marketOwner() : _anyone(who), which, modelSeed);
    }

    function treasuryWithdraw() external {
        world.withdrawValidators(world.treasury());
    }

    function feeWithdraw(bool inToken) external {
        if (inToken) world.withdrawMarketToken(world.feeRecipient());
        else world.withdrawMarket(world.feeRecipient());
    }
}

/// A contract account as buyer, seller and validator, so that every payment path pays it at some point.
abstract contract ContractAccountHandler is Handler {
    constructor(World w, address account) Handler(w, _one(account)) {}

    function shop(uint256 modelSeed, uint256 seed) external {
        world.shop(_actor(0), modelSeed, seed);
    }

    function buy(uint256 modelSeed, uint256 pay) external {
        world.buy(_actor(0), modelSeed, pay, false);
    }

    function refund(uint256 purchaseSeed) external {
        world.refund(_actor(0), purchaseSeed);
    }

    function vote(uint256 modelSeed, uint8 score) external {
        world.vote(_actor(0), modelSeed, score);
    }

    function list(uint256 kind, uint256 price, uint256 cidSeed) external {
        world.list(_actor(0), kind, price, cidSeed, true);
    }

    function deliverKey(uint256 purchaseSeed) external {
        world.deliverKey(_actor(0), purchaseSeed, 0, address(0));
    }

    function withdraw() external {
        world.withdrawMarket(_actor(0));
    }

    function withdrawToken() external {
        world.withdrawMarketToken(_actor(0));
    }

    function stake(uint256 amount) external {
        world.stake(_actor(0), amount);
    }

    function leave() external {
        world.requestUnstake(_actor(0));
        world.unstake(_actor(0));
    }
}

/// The ReenteringReceiver: it re-enters whoever pays it (each re-entry must be refused).
contract ReenteringHandler is ContractAccountHandler {
    constructor(World w, address reenterer) ContractAccountHandler(w, reenterer) {}
}

/// The EthRejecter: its withdrawals and unstake must fail whole, leaving what it is owed in place,
/// while everyone else's payouts go on.
contract RejectingHandler is ContractAccountHandler {
    constructor(World w, address rejecter) ContractAccountHandler(w, rejecter) {}
}

/// Time: small steps most of the time (inside the commit, reveal and delivery periods), now and then
/// past a challenge period or an unstake delay.
contract ClockHandler {
    World public immutable world;

    constructor(World w) {
        world = w;
    }

    function warp(uint256 secs) external {
        world.warp(secs % 4 == 0 ? secs % 2 days : secs % 40 minutes);
    }
}

/// Pay-per-call channels (ChannelsWorld): buyers open, top up and reclaim; the models' owners and operators
/// claim the buyers' vouchers; anyone withdraws what claims credited it.
contract ChannelsHandler {
    ChannelsWorld public immutable channelsWorld;

    constructor(ChannelsWorld w) {
        channelsWorld = w;
    }

    function open(uint256 buyerSeed, uint256 modelSeed, uint256 amountSeed, uint256 how) external {
        channelsWorld.open(buyerSeed, modelSeed, amountSeed, how);
    }

    function topUp(uint256 callerSeed, uint256 channelSeed, uint256 amountSeed) external {
        channelsWorld.topUp(callerSeed, channelSeed, amountSeed);
    }

    function claim(uint256 who, uint256 channelSeed, uint256 amountSeed) external {
        channelsWorld.claim(who, channelSeed, amountSeed);
    }

    function reclaim(uint256 callerSeed, uint256 channelSeed, bool wait) external {
        channelsWorld.reclaim(callerSeed, channelSeed, wait);
    }

    function withdraw(uint256 who, bool inToken) external {
        channelsWorld.withdraw(who, inToken);
    }
}
