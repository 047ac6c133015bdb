"""What the chain node's failures mean, in sentences a person can act on (``node.chain``).

``CONNECTION_ERRORS`` are the exceptions that mean the node could not be reached (``Chain``
retries those). The rest turn what a node answers into ``ChainError``/``ContractRevert``: a
revert decoded over the chain's ABIs (``node.revert``), a refused call or gas estimate (out of
gas, insufficient funds), and why a mined transaction reverted (replayed on the state before
its block). ``Chain`` uses them for calls, ``node.sender.Sender`` for transactions.
"""

from __future__ import annotations

import requests
from web3.exceptions import ContractLogicError, ProviderConnectionError, Web3RPCError

from node.amounts import fmt_eth
from node.errors import ChainError, ContractRevert
from node.revert import as_revert

CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ProviderConnectionError,
    ConnectionError,
    TimeoutError,
)


def revert(chain, exc: ContractLogicError, fn=None) -> ContractRevert:
    """A revert as ContractRevert, decoded by node/revert.py over the chain's ABIs."""
    data = getattr(exc, "data", None)
    reason = str(exc.args[0]) if exc.args else ""
    if (not data or data == "no data") and (
        "out of gas" in reason.lower() or "below 2300 gas" in reason
    ):
        return ContractRevert(
            f"{getattr(fn, 'fn_name', 'the call')} would run out of gas: raise the limit or "
            f"leave it unset to estimate (nothing was sent)",
            error=None,
            args={},
        )
    decoded = as_revert(exc, chain.abis.values())
    assert decoded is not None  # as_revert gives None only for what is not a ContractLogicError
    return decoded


def refusal(chain, exc: Web3RPCError, fn, sender, value, gas=None) -> ChainError:
    """A call or gas estimate the node refused (not a revert)."""
    message = str(exc).lower()
    name = getattr(fn, "fn_name", "call")
    if "insufficient funds" in message and sender:
        return insufficient(chain, sender, value)
    if "out of gas" in message or "oog" in message or "gas required exceeds" in message:
        limit = f" with a gas limit of {gas}" if gas else ""
        return ContractRevert(
            f"{name} would run out of gas{limit}: raise the limit or leave it unset to "
            f"estimate (nothing was sent)",
            gas=gas,
        )
    return ChainError(f"the chain node at {chain.endpoint} refused {name}: {exc}")


def insufficient(chain, sender: str, value: int) -> ChainError:
    have = chain.balance(sender)
    return ChainError(
        f"insufficient funds: {sender} holds {fmt_eth(have)} but this "
        f"transaction needs {fmt_eth(value)} plus gas; fund the account "
        f"and try again (nothing was sent)",
        address=sender,
        balance=have,
        value=value,
    )


def failed_receipt(chain, receipt, hex_hash: str, fn, tx) -> ChainError:
    """Replay a failed transaction on the state before its block to say why it reverted."""
    reason = "the chain state changed since the dry run, or it ran out of gas"
    if tx is not None:
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            chain.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)
        except ContractLogicError as exc:
            decoded = revert(chain, exc, fn)
            if decoded.context.get("error"):  # a decoded custom error says it best
                decoded.context["tx_hash"] = hex_hash
                return decoded
            reason = str(exc.args[0]) if exc.args else reason
        except (Web3RPCError, *CONNECTION_ERRORS):
            pass
    gas = f" of {tx['gas']}" if tx and "gas" in tx else ""
    return ContractRevert(
        f"transaction {hex_hash} reverted in block {receipt['blockNumber']} (gas used "
        f"{receipt['gasUsed']}{gas}): {reason}",
        tx_hash=hex_hash,
    )
