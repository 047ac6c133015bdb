"""Embedded chain reads: eth_getLogs over the whole chain and a receipt deep in it, with
node/evmindex.py against eth-tester's own walks (the baseline) in the same run.

    .venv/bin/python benchmarks/embedded_chain.py [--blocks 400] [--rare-every 50]

A tester chain of its own gets --blocks blocks, one transaction each, every one logging (as on a
Modex chain, where nearly every block holds some contract's event); one block in --rare-every
logs the event kind that is then read over the whole chain (as the pages and the worker read
VersionPublished or Attested from the deployment block). Timed, best of --repeat: that read by
eth-tester's get_logs and by evmindex's bloom-screened one (the answers are compared: equal or
the benchmark fails), and the receipt of the chain's first transaction by eth-tester's walk from
the head and by py-evm's hash index. Last line: JSON with the figures and the ratios.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_tester import EthereumTester  # noqa: E402
from eth_tester.backends.pyevm import main as pyevm_backend  # noqa: E402
from web3 import EthereumTesterProvider, Web3  # noqa: E402

from benchmarks.common import machine_state, print_figures  # noqa: E402
from node import evmindex  # noqa: E402

# Each call logs LOG2(no data; topics: the call's two words): CALLDATALOAD(32), CALLDATALOAD(0),
# LOG2(0, 0, ·, ·), STOP, behind an init code that returns it.
LOGGER_INIT = "600c600c600039600c6000f3" + "60203560003560006000a200"
COMMON, RARE = (1).to_bytes(32, "big"), (2).to_bytes(32, "big")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=400, help="blocks of logging transactions")
    p.add_argument("--rare-every", type=int, default=50, help="one block in N logs the rare kind")
    p.add_argument("--repeat", type=int, default=3, help="timings per figure; the best counts")
    return p.parse_args(argv)


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


@contextmanager
def eth_testers_own_reads():
    """eth-tester as it comes: its get_logs, and receipts found by its walk from the head
    (evmindex.install replaced the module's lookup for the whole process)."""
    pyevm_backend._get_transaction_by_hash = evmindex.walking_lookup
    try:
        yield
    finally:
        pyevm_backend._get_transaction_by_hash = evmindex.indexed_transaction


def build_chain(blocks: int, rare_every: int):
    w3 = Web3(EthereumTesterProvider())
    evmindex.install(w3)
    sender = w3.eth.accounts[0]
    deployed = w3.eth.send_transaction({"from": sender, "data": "0x" + LOGGER_INIT})
    logger = w3.eth.wait_for_transaction_receipt(deployed)["contractAddress"]
    first = None
    for i in range(blocks):
        kind = RARE if i % rare_every == 0 else COMMON
        data = kind + i.to_bytes(32, "big")
        tx = w3.eth.send_transaction(
            {"from": sender, "to": logger, "data": "0x" + data.hex(), "gas": 60_000}
        )
        first = first or tx
    return w3, logger, first


def main(argv=None) -> int:
    args = parse_args(argv)
    state = machine_state()
    started = time.perf_counter()
    w3, logger, first_tx = build_chain(args.blocks, args.rare_every)
    built_s = time.perf_counter() - started
    tester = w3.provider.ethereum_tester
    query = {"from_block": 0, "address": logger, "topics": ["0x" + RARE.hex()]}
    with eth_testers_own_reads():
        walked_s, walked = best_of(args.repeat, lambda: EthereumTester.get_logs(tester, **query))
    screened_s, screened = best_of(args.repeat, lambda: tester.get_logs(**query))
    if list(walked) != list(screened):
        sys.exit("the screened read's answer differs from eth-tester's")
    chain = tester.backend.chain
    tx_hash = bytes(first_tx)
    walk_s, _ = best_of(args.repeat, lambda: evmindex.walking_lookup(chain, tx_hash))
    index_s, _ = best_of(args.repeat, lambda: evmindex.indexed_transaction(chain, tx_hash))
    print(f"chain: {args.blocks} blocks built in {built_s:.1f} s; {len(screened)} rare logs")
    print(f"get_logs over the chain: eth-tester {walked_s:.3f} s, screened {screened_s:.4f} s")
    print(f"first transaction by hash: walk {walk_s * 1000:.1f} ms, index {index_s * 1000:.3f} ms")
    print_figures(
        {
            "benchmark": "embedded_chain",
            "blocks": args.blocks,
            "rare_logs": len(screened),
            "get_logs_eth_tester_s": round(walked_s, 4),
            "get_logs_screened_s": round(screened_s, 4),
            "get_logs_speedup": round(walked_s / screened_s, 1),
            "transaction_walk_ms": round(walk_s * 1000, 3),
            "transaction_index_ms": round(index_s * 1000, 3),
            "transaction_speedup": round(walk_s / index_s, 1),
            "machine": platform.processor() or platform.machine(),
            **state,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
