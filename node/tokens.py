"""Paying the Marketplace in a listing's token: what a model is priced in, the payer's balance
checked before anything is sent, and the payment itself.

ETH goes with the transaction (``value``). An ERC-20 is pulled by the Marketplace with
``transferFrom``, so the payer first approves it: ``pay`` raises the Marketplace's allowance to
exactly what this payment needs when it is short (one ``approve`` more, never an open-ended
allowance a later bug could drain; a token that refuses to change a non-zero allowance, as USDT
does, is set to zero first), then sends the call. EIP-2612's ``buyWithPermit`` saves that
transaction for a browser wallet that signs the permit; the node's own path approves, which every
ERC-20 supports.
"""

from __future__ import annotations

import logging

from eth_utils import is_address, to_checksum_address

from node.amounts import Token, fmt_amount
from node.deploy import STABLECOIN
from node.errors import ChainError, ConfigError, InputError

log = logging.getLogger(__name__)


def known_token(chain, address: str, what: str = "token") -> Token:
    """The token a person named by ``address`` (the zero address: ETH); InputError, before
    anything is sent, for text that is not an address or an address that holds no contract."""
    if not is_address(address):
        raise InputError(
            f"The {what} '{str(address)[:48]}' is not an address: write the token contract's "
            "0x address (40 hex digits).",
            what=what,
        )
    address = to_checksum_address(address)
    if int(address, 16) != 0 and not chain.has_code(address):
        raise InputError(
            f"There is no contract at {address} on chain {chain.chain_id}, so it is no token: "
            f"check the {what} address.",
            what=what,
        )
    return chain.token(address)


def stablecoin(chain) -> Token:
    """The test stablecoin ``modex up`` deploys beside its local chain (MockStablecoin, named in
    the deployment record); ConfigError when this deployment has none."""
    if STABLECOIN not in chain.contracts:
        raise ConfigError(
            f"this deployment (chain {chain.chain_id}) has no test stablecoin: `modex up` deploys "
            "one on its local chain; elsewhere name the token with --token ADDRESS",
            key="deployment_file",
        )
    return chain.token(chain.contracts[STABLECOIN].address)


def payment_token(chain, model_id: int) -> Token:
    """What ``model_id`` is priced in now (``ModelRegistry.paymentToken``): ETH or an ERC-20."""
    return chain.token(chain.call(chain.registry.functions.paymentToken(model_id)))


def check_max_price(amount: int, max_price: int | None, token: Token, what: str, **context):
    """ChainError, before anything is sent, when ``amount`` (what ``what`` costs, e.g. "model 7
    costs") is above the payer's ``max_price`` (None: no limit)."""
    if max_price is not None and amount > max_price:
        raise ChainError(
            f"{what} {fmt_amount(amount, token)}, above your --max-price of "
            f"{fmt_amount(max_price, token)}; nothing was sent",
            price=amount,
            **context,
        )


def require_funds(chain, address: str, token: Token, amount: int, what: str) -> None:
    """ChainError, before anything is sent, when ``address`` holds less than ``amount`` of
    ``token``: "0x… holds 3 mUSD but model 7 costs 5 mUSD" (``what``: "model 7 costs")."""
    have = chain.balance_in(token, address)
    if have >= amount:
        return
    if token.is_eth:
        todo = f"{what} {fmt_amount(amount, token)} plus gas; fund the account"
    else:
        todo = (
            f"{what} {fmt_amount(amount, token)}; get {fmt_amount(amount - have, token)} more "
            f"into the account"
        )
    raise ChainError(
        f"insufficient funds: {address} holds {fmt_amount(have, token)} but {todo} "
        "(nothing was sent)",
        address=address,
        balance=have,
        amount=amount,
        token=token.address,
    )


def allowance(chain, owner: str, token: Token, spender: str | None = None) -> int:
    """How much of ``token`` ``spender`` (default: the Marketplace) may pull from ``owner`` now."""
    erc20 = chain.erc20(token.address).functions
    return int(chain.call(erc20.allowance(owner, spender or chain.marketplace.address)))


def approvals(chain, owner: str, token: Token, amount: int, spender: str | None = None) -> list:
    """The ERC-20 calls ``owner`` must send before a call of ``spender``'s (default: the
    Marketplace; Channels for a channel's deposit) that takes ``amount`` of ``token`` from it:
    none for ETH or an allowance already enough; else ``approve`` of exactly ``amount`` (after
    ``approve(0)`` when a smaller allowance is left, for USDT-style tokens). A browser wallet
    signs and sends them in this order, then the call itself."""
    if token.is_eth:
        return []
    spender = spender or chain.marketplace.address
    current = allowance(chain, owner, token, spender)
    if current >= amount:
        return []
    erc20 = chain.erc20(token.address).functions
    return ([erc20.approve(spender, 0)] if current else []) + [erc20.approve(spender, amount)]


def pay(chain, signer, fn, token: Token, amount: int):
    """Send ``fn`` (a Marketplace call that takes ``amount`` of ``token`` from the signer) and
    return its receipt: with ``amount`` as the transaction's value for ETH; for an ERC-20, after
    the ``approvals`` it needs."""
    if token.is_eth:
        return chain.transact(fn, signer, value=amount)
    needed = approvals(chain, signer.address, token, amount)
    for approval in needed:
        chain.transact(approval, signer)
    if needed:
        log.info("approved the Marketplace to take %s", fmt_amount(amount, token))
    return chain.transact(fn, signer)
