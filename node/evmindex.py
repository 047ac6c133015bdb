"""Indexed reads for the embedded py-evm chain: a transaction by its hash, and logs by bloom.

eth-tester (0.13) reads the embedded chain in ways whose cost grows with its length:

- **a transaction or its receipt by hash** walks the chain back from the head, block by block,
  until it meets the transaction: O(depth). py-evm's chain database already keeps the canonical
  hash → (block, index) lookup; :func:`indexed_transaction` reads it.
- **eth_getLogs** fetches every block of the range and every receipt in it, each receipt by
  that walk: O(range × depth), so a read of the logs over the whole chain is quadratic in its
  length (measured on 4 Dec: 30 s at 500 blocks, 122 s at 1,000, for a single event kind).
  :func:`bloom_screened_get_logs` first reads each block's header and skips the blocks whose
  logs bloom cannot hold a match for the filter's addresses and topics (a bloom has no false
  negatives), then hands the runs of remaining blocks to eth-tester's own ``get_logs``, so the
  answer is exactly eth-tester's.

A node such as anvil indexes both; ``install(w3)`` gives the process-wide embedded chain
(node.chain) the same, as node.evmgas does for gas estimates. Results are unchanged: the
indexed lookup is checked against the block it names and falls back to eth-tester's walk.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from eth.exceptions import TransactionNotFound as EvmTransactionNotFound
from eth_bloom import BloomFilter
from eth_tester.backends.pyevm import main as pyevm_backend

# eth-tester's own lookup, walking back from the head (the fallback, and benchmarks' baseline)
walking_lookup = pyevm_backend._get_transaction_by_hash


def indexed_transaction(chain, transaction_hash):
    """(block, transaction, index) for ``transaction_hash``: the pending block first, then the
    chain database's canonical lookup; eth-tester's walk when the lookup has nothing that
    matches (it raises eth-tester's TransactionNotFound for an unknown hash)."""
    pending = chain.get_block()
    for index, transaction in enumerate(pending.transactions):
        if transaction.hash == transaction_hash:
            return pending, transaction, index
    try:
        number, index = chain.chaindb.get_transaction_index(transaction_hash)
    except EvmTransactionNotFound:
        return walking_lookup(chain, transaction_hash)
    if number < pending.number:
        block = chain.get_canonical_block_by_number(number)
        if index < len(block.transactions) and block.transactions[index].hash == transaction_hash:
            return block, block.transactions[index], index
    return walking_lookup(chain, transaction_hash)


def _may_match(bloom: BloomFilter, addresses, topics) -> bool:
    """Whether a block whose logs bloom is ``bloom`` can hold a log matching the (normalized)
    filter: some address of the filter, and for each topic position the filter constrains,
    some value it accepts. True whenever the filter's shape is not one read here."""
    if addresses:
        candidates = addresses if isinstance(addresses, (list, tuple)) else (addresses,)
        if not any(bytes(a) in bloom for a in candidates):
            return False
    for position in topics or ():
        if position is None:
            continue
        if isinstance(position, bytes):
            if position not in bloom:
                return False
        elif isinstance(position, (list, tuple)):
            if None in position:
                continue
            if not any(isinstance(t, bytes) and t in bloom for t in position):
                return False
    return True


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in an ascending list."""
    for _, group in itertools.groupby(enumerate(numbers), lambda pair: pair[1] - pair[0]):
        run = [n for _, n in group]
        yield run[0], run[-1]


def _last_block(raw, mined: int) -> int | None:
    """The normalized ``to_block`` as a mined block's number; None for the parameters whose
    meaning eth-tester's filter reads its own way ("earliest", "pending": its pending logs)."""
    if isinstance(raw, int):
        return raw
    if raw in (None, "latest"):  # what eth-tester's filter takes for "the mined logs"
        return max(0, mined - 1)
    return None


def bloom_screened_get_logs(tester, from_block=None, to_block=None, address=None, topics=None):
    """``EthereumTester.get_logs`` with the blocks whose bloom rules them out skipped."""
    get_logs = type(tester).get_logs.__get__(tester)
    tester.validator.validate_inbound_filter_params(
        from_block=from_block, to_block=to_block, address=address, topics=topics
    )
    raw_from, raw_to, raw_address, raw_topics = tester.normalizer.normalize_inbound_filter_params(
        from_block=from_block, to_block=to_block, address=address, topics=topics
    )
    chain = tester.backend.chain
    mined = chain.get_block().number  # the pending block's number: the mined ones are below it
    first = raw_from if isinstance(raw_from, int) else None
    last = _last_block(raw_to, mined)
    if first is None or last is None or last >= mined:  # named blocks, pending: eth-tester's read
        return get_logs(from_block=from_block, to_block=to_block, address=address, topics=topics)
    candidates = [
        number
        for number in range(first, last + 1)
        if _may_match(
            BloomFilter(chain.get_canonical_block_header_by_number(number).bloom),
            raw_address,
            raw_topics,
        )
    ]
    found: list = []
    for start, end in _runs(candidates):
        found.extend(get_logs(from_block=start, to_block=end, address=address, topics=topics))
    return tuple(found)


def install(w3) -> None:
    """Give the tester chain behind ``w3`` the indexed reads. The transaction lookup is
    eth-tester's module function (shared by every tester chain of the process: each answer is
    checked against the block it names); the log read is this tester's own."""
    pyevm_backend._get_transaction_by_hash = indexed_transaction
    tester = w3.provider.ethereum_tester
    tester.get_logs = bloom_screened_get_logs.__get__(tester)
