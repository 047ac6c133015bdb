"""`modex validator stake|set-attester|show`: the validator's own (cold) wallet, apart from the
agent: stake, and name the hot key (attester) that `modex validate --validator ADDRESS` runs with.

The attester may request keys, commit and reveal for this validator, and claim its rewards to it;
it can never stake, unstake, withdraw or change the attester (contracts/README.md, Validators).
"""

from __future__ import annotations

import argparse

from modex.commandline import add_command, add_node_options
from node import market
from node.amounts import fmt_eth, parse_eth
from node.protocol import StakeInfo
from node.stack import Stack
from node.validator import NO_ATTESTER, NO_ATTESTER_ADDRESS, set_attester


def register(sub) -> None:
    validator = sub.add_parser(
        "validator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    actions = validator.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = add_command(actions, "stake", run_stake, help="stake ETH as a validator")
    p.add_argument("--amount", metavar="ETH", help="how much (default: what reaches the minimum)")
    add_node_options(p)

    p = add_command(actions, "set-attester", run_set_attester, help="name the agent's hot key")
    p.add_argument(
        "attester",
        metavar="ADDRESS",
        help=f'the hot key\'s address (one that never staked), or "{NO_ATTESTER}" to attest '
        "with this wallet again",
    )
    add_node_options(p)

    p = add_command(actions, "show", run_show, help="this wallet's stake and attester")
    add_node_options(p)


def run_stake(args) -> int:
    """Stake from this wallet: --amount, or what brings its stake up to the minimum."""
    stack = Stack.from_args(args)
    chain, signer = stack.chain, stack.signer
    if args.amount:
        amount = parse_eth(args.amount, what="--amount")
    else:
        info = StakeInfo.from_call(chain.call(chain.validators.functions.stakeOf(signer.address)))
        amount = max(market.min_stake(chain) - info.amount, 0)
        if amount == 0:
            print(f"{signer.address} already stakes {fmt_eth(info.amount)}; nothing sent")
            return 0
    market.stake(chain, signer, amount)
    print(f"staked {fmt_eth(amount)} from {signer.address}")
    return 0


def run_set_attester(args) -> int:
    """Name the hot key that attests for this wallet (the old one is revoked at once); the
    agent then runs with that key: `modex validate --account HOT --validator THIS_ADDRESS`."""
    stack = Stack.from_args(args)
    set_attester(stack.chain, stack.signer, args.attester)
    named = stack.chain.call(stack.chain.validators.functions.attesterOf(stack.signer.address))
    if named == NO_ATTESTER_ADDRESS:
        print(f"{stack.signer.address} attests with its own key again")
    else:
        print(
            f"{named} now attests for {stack.signer.address}: run the agent with it, "
            f"`modex validate --validator {stack.signer.address}` (its wallet); the stake and "
            "rewards stay with this wallet"
        )
    return 0


def run_show(args) -> int:
    """This wallet's stake (and what open seats bond of it) and its attester."""
    stack = Stack.from_args(args)
    chain, address = stack.chain, stack.signer.address
    v = chain.validators.functions
    info = StakeInfo.from_call(chain.call(v.stakeOf(address)))
    named = chain.call(v.attesterOf(address))
    print(
        f"{address}: stake {fmt_eth(info.amount)} (bonded {fmt_eth(info.bonded)}, "
        f"{info.open_seats} open seat(s)); attester: "
        + ("none (this wallet attests)" if named == NO_ATTESTER_ADDRESS else named)
    )
    return 0
