"""node.evmindex: the embedded chain's indexed transaction lookup and bloom-screened log reads
answer exactly what eth-tester's own walks answer."""

from __future__ import annotations

import pytest
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionNotFound
from web3 import EthereumTesterProvider, Web3

from benchmarks.embedded_chain import LOGGER_INIT  # a contract logging its call's two words
from node import evmindex
from tests.scripts import run_benchmark


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


@pytest.fixture(scope="module")
def tester_chain():
    """A tester chain of its own with two logging contracts, 40 blocks of their logs (topics
    from a small alphabet) and plain transfers between them; indexed reads installed."""
    w3 = Web3(EthereumTesterProvider())
    evmindex.install(w3)
    sender, other = w3.eth.accounts[:2]
    contracts = []
    for _ in range(2):
        tx = w3.eth.send_transaction({"from": sender, "data": "0x" + LOGGER_INIT})
        contracts.append(w3.eth.wait_for_transaction_receipt(tx)["contractAddress"])
    hashes = []
    for i in range(40):
        if i % 5 == 4:  # a block with no logs at all
            hashes.append(w3.eth.send_transaction({"from": sender, "to": other, "value": 1}))
            continue
        data = _word(i % 3) + _word(100 + i % 4)
        hashes.append(
            w3.eth.send_transaction(
                {"from": sender, "to": contracts[i % 2], "data": "0x" + data.hex(), "gas": 60_000}
            )
        )
    return w3, contracts, hashes


def _topic(n: int) -> str:
    return "0x" + _word(n).hex()


FILTERS = [
    {},
    {"from_block": "earliest", "to_block": "latest"},
    {"from_block": 0, "to_block": 20},
    {"from_block": 15},
    {"topics": [_topic(1)]},
    {"topics": [None, _topic(102)]},
    {"topics": [[_topic(0), _topic(2)], _topic(101)]},
    {"topics": [[_topic(0), None]]},
    {"topics": [_topic(7)]},  # no log has it
    {"topics": [_topic(1), _topic(101), _topic(5)]},  # more topics than any log
]


@pytest.mark.parametrize("query", FILTERS)
@pytest.mark.parametrize("addresses", ["none", "first", "both"])
def test_screened_logs_are_eth_testers_logs(tester_chain, query, addresses):
    w3, contracts, _ = tester_chain
    query = dict(query)
    if addresses == "first":
        query["address"] = contracts[0]
    elif addresses == "both":
        query["address"] = list(contracts)
    query.setdefault("from_block", 0)
    tester = w3.provider.ethereum_tester
    screened = tester.get_logs(**query)
    walked = EthereumTester.get_logs(tester, **query)
    assert list(screened) == list(walked)


def test_the_screen_skips_blocks_whose_bloom_rules_them_out(tester_chain, monkeypatch):
    w3, contracts, _ = tester_chain
    tester = w3.provider.ethereum_tester
    ranges = []
    original = EthereumTester.get_logs

    def counting(self, **query):
        ranges.append((query["from_block"], query["to_block"]))
        return original(self, **query)

    monkeypatch.setattr(EthereumTester, "get_logs", counting)
    logs = tester.get_logs(from_block=0, address=contracts[1], topics=[_topic(1)])
    assert logs and all(log["address"] == contracts[1] for log in logs)
    read = sum(last - first + 1 for first, last in ranges)
    # Topic 1 on the second contract: calls i ≡ 1 (mod 6) with i % 5 != 4, 6 of the 40 blocks.
    assert read == len(logs) == 6


def test_a_transaction_and_its_receipt_by_hash(tester_chain):
    w3, _, hashes = tester_chain
    for tx_hash in (hashes[0], hashes[17], hashes[-1]):
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        block = w3.eth.get_block(receipt["blockNumber"])
        assert block["transactions"][receipt["transactionIndex"]] == tx_hash
        assert w3.eth.get_transaction(tx_hash)["hash"] == tx_hash
    backend = w3.provider.ethereum_tester.backend
    with pytest.raises(TransactionNotFound):
        evmindex.indexed_transaction(backend.chain, b"\x11" * 32)


def test_a_reverted_snapshots_transaction_is_no_longer_found(tester_chain):
    w3, _, _ = tester_chain
    tester = w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    sender, other = w3.eth.accounts[:2]
    tx_hash = w3.eth.send_transaction({"from": sender, "to": other, "value": 7})
    assert w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
    tester.revert_to_snapshot(snapshot)
    with pytest.raises(TransactionNotFound):
        evmindex.indexed_transaction(tester.backend.chain, bytes(tx_hash))


def test_the_benchmark_compares_both_reads_and_prints_a_json_line():
    """benchmarks/embedded_chain.py keeps working (a short run: its figures are BENCHMARKS.md's)."""
    lines, figures = run_benchmark("embedded_chain", "--blocks", "40", "--repeat", "1", timeout=300)
    assert figures["benchmark"] == "embedded_chain" and figures["blocks"] == 40
    assert figures["rare_logs"] == 1  # block 0 of 40, one in 50
    assert figures["get_logs_eth_tester_s"] > 0 and figures["get_logs_screened_s"] > 0
    assert figures["transaction_walk_ms"] > 0 and figures["transaction_index_ms"] > 0
    assert any(line.startswith("get_logs over the chain") for line in lines)
