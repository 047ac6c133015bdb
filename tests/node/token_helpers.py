"""The test stablecoin of a journey deployed with ``stablecoin=True``: contracts/MockStablecoin.sol
(6 decimals, "mUSD", EIP-2612, a faucet anyone may call), named in the deployment record, so
`--stablecoin` finds it."""

from __future__ import annotations

from modex_stack import Journey, make_stack

from node.amounts import Token
from node.deploy import STABLECOIN


def stablecoin_stack(root, **params) -> Journey:
    """``make_stack("embedded", root, ...)`` with the test stablecoin deployed beside the suite."""
    return make_stack("embedded", root, stablecoin=True, **params)


def mint(stack: Journey, role: str, amount: int) -> None:
    """``amount`` (base units) of the stablecoin for ``role``, from its faucet."""
    faucet = stack.chain.contract(STABLECOIN).functions.mint(stack.signers[role].address, amount)
    stack.chain.transact_unlocked(faucet, stack.chain.w3.eth.accounts[0])


def balance(stack: Journey, token: Token, role: str) -> int:
    return stack.chain.balance_in(token, stack.signers[role].address)
