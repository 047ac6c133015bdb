"""A two-execution gas estimate for the embedded py-evm chain (instead of a binary search).

py-evm's default ``eth_estimateGas`` is a binary search between the intrinsic gas and the block
gas limit in steps of 21,000: about 13 full executions of the transaction, each costing what a
whole transaction costs on the pure-Python EVM (tens of milliseconds for a Modex call). A node
such as anvil answers in one execution. This estimator does the same in two:

1. run the transaction once at the block gas limit; its gas consumed before refunds is a lower
   bound of what it needs (an error here is the transaction's own error, raised as py-evm does);
2. run it again at that figure plus 1/63 (EIP-150 keeps 1/64 of the gas back at each call, so
   a call that consumed G needed up to 64/63·G on hand) plus a stipend's worth; if that run
   succeeds, it is the estimate. Otherwise (deep call chains) fall back to py-evm's binary
   search, so the answer is never too low.

``install(w3)`` switches an ``EthereumTesterProvider``-backed Web3 (the process-wide embedded
chain of node.chain) to it; the chain's other behaviour is untouched.
"""

from __future__ import annotations

import logging
from typing import cast

from eth.abc import SignedTransactionAPI
from eth.estimators.gas import _get_computation_error, binary_gas_search_1000_tolerance
from eth.vm.spoof import SpoofTransaction

log = logging.getLogger(__name__)

_STIPEND = 2_300


def two_pass_gas_estimate(state, transaction) -> int:
    """Gas limit that lets ``transaction`` succeed in ``state`` (py-evm estimator signature)."""
    limit = state.gas_limit
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        consumed = limit - computation.get_gas_remaining()
    finally:
        state.revert(snapshot)
    candidate = min(limit, max(transaction.intrinsic_gas, consumed + consumed // 63 + _STIPEND))
    # SpoofTransaction stands in for the signed transaction it wraps (py-evm's own estimator
    # passes one the same way; its annotation names only the real thing).
    spoofed = cast(SignedTransactionAPI, SpoofTransaction(transaction, gas=candidate))
    if _get_computation_error(state, spoofed) is None:
        return candidate
    log.debug("gas estimate %d too low (nested calls); falling back to a binary search", candidate)
    return binary_gas_search_1000_tolerance(state, transaction)


def install(w3) -> None:
    """Use :func:`two_pass_gas_estimate` for the tester chain behind ``w3`` (this chain only:
    eth-tester builds a chain class per backend)."""
    chain = w3.provider.ethereum_tester.backend.chain
    type(chain).gas_estimator = staticmethod(two_pass_gas_estimate)  # chains made from it later
    chain.gas_estimator = two_pass_gas_estimate  # py-evm copied the default onto the instance
