// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ModelRegistry} from "../../../contracts/ModelRegistry.sol";
import {Marketplace} from "../../../contracts/Marketplace.sol";
import {Validators} from "../../../contracts/Validators.sol";
import {Votes} from "../../../contracts/Votes.sol";

/// @notice The four contracts deployed and wired the way node.deploy.suite_plan does it (registry,
/// marketplace, validators + connectValidators, votes + connectVotes), with test parameters.
library Suite {
    struct Params {
        uint256 deliveryWindow;
        uint256 challengePeriod;
        uint256 feeBps;
        address feeRecipient;
        uint256 validatorShareBps;
        address owner;
        Validators.Config validators;
    }

    struct Deployed {
        ModelRegistry registry;
        Marketplace market;
        Validators validators;
        Votes votes;
    }

    /// Small periods so that a campaign crosses them often; quorum 2 weights, so one minimum stake
    /// cannot decide a round alone.
    function params(address owner, address feeRecipient, address treasury) internal pure returns (Params memory p) {
        p.deliveryWindow = 1 hours;
        p.challengePeriod = 1 days;
        p.feeBps = 250;
        p.feeRecipient = feeRecipient;
        p.validatorShareBps = 2000;
        p.owner = owner;
        p.validators = Validators.Config({
            minStake: 1 ether,
            quorum: 2,
            commitPeriod: 1 hours,
            revealPeriod: 1 hours,
            unstakeDelay: 1 days,
            bondBps: 2000,
            requestBond: 0.05 ether,
            maxOpenRequests: 3,
            treasury: treasury
        });
    }

    /// Deploys as the caller; the marketplace's owner is `p.owner`, which must be the caller (it wires).
    function deploy(Params memory p) internal returns (Deployed memory d) {
        d.registry = new ModelRegistry();
        d.market = new Marketplace(
            d.registry, p.deliveryWindow, p.challengePeriod, p.feeBps, p.feeRecipient, p.validatorShareBps, p.owner
        );
        d.validators = new Validators(d.registry, d.market, p.validators);
        d.market.connectValidators(d.validators);
        d.votes = new Votes(d.market);
        d.market.connectVotes(d.votes);
    }

    /// The commitment Validators.revealAttestation checks (issue 13 §2).
    function commitment(
        Validators validators,
        uint256 modelId,
        address validator,
        bytes32 observedHash,
        bytes32 workDigest,
        bytes32 salt
    ) internal view returns (bytes32) {
        return keccak256(
            abi.encode(block.chainid, address(validators), modelId, validator, observedHash, workDigest, salt)
        );
    }
}
