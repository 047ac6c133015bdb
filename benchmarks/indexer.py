"""Indexer throughput: events per second indexed from anvil holding 10,000 listings.

    .venv/bin/python benchmarks/indexer.py [--listings 10000] [--batch-blocks 2000]

Starts anvil on 127.0.0.1 (stopped by PID at the end), deploys the suite, creates the listings
fast (pre-signed transactions from ten dev accounts, sent as JSON-RPC batches without waiting
for receipts), then indexes from the deployment block into a fresh SQLite file and times it.
Every listing emits two events (ERC-721 Transfer + ModelListed).

Baseline in the same run: fetching the same logs with bare ``eth_getLogs`` calls (no decoding,
no SQLite), the floor any indexer over this node pays. Also timed: ``list_models`` page reads
with 100 listings indexed and with all of them (the page time should stay flat).

Target (issue 4): ``events_per_s`` >= 1,000. Last line: JSON.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

import requests

from benchmarks.common import print_figures
from node.chain import Chain, connect
from node.content.cid import cid_of_stream
from node.deploy import deploy_suite
from node.devchain import start_anvil
from node.indexer import Indexer

SENDERS = 10
# anvil serves a batch's calls concurrently: with one transaction per sender per batch, nonces
# always arrive in order (several per sender left nonce gaps that never filled).
RPC_BATCH = SENDERS
SMALL = 100
MINE_EVERY = 500  # transactions per mined block (anvil runs with a block gas limit to fit them)


def create_listings(chain: Chain, url: str, count: int) -> tuple[float, int]:
    """``count`` list() transactions from SENDERS unlocked dev accounts, sent as JSON-RPC batches
    without waiting for receipts (anvil signs them); returns seconds until all are mined and the block holding the first SMALL listings."""
    senders = chain.w3.eth.accounts[:SENDERS]
    expected = {a: chain.w3.eth.get_transaction_count(a) for a in senders}
    registry = chain.registry
    started = time.perf_counter()
    session = requests.Session()
    calls = []
    for i in range(count):
        sender = senders[i % SENDERS]
        nonce = expected[sender]
        expected[sender] += 1
        cid = cid_of_stream(io.BytesIO(f"benchmark metadata {i}".encode()))
        data = registry.encode_abi("list", args=[(i + 1).to_bytes(32, "big"), cid, 10**15 + i])
        calls.append(
            {
                "from": sender,
                "to": registry.address,
                "data": data,
                "gas": hex(300_000),
                "nonce": hex(nonce),
            }
        )
    # Automine off: a chunk of transactions enters the pool, then one evm_mine packs it into a
    # block (anvil mining each of 10,000 arrivals separately fell far behind the sender).
    chain.w3.provider.make_request("evm_setAutomine", [False])
    # The first block holds SMALL listings: an index synced up to it is the "small" case.
    bounds = [0, *range(SMALL, len(calls), MINE_EVERY), len(calls)]
    small_block = None
    for chunk, chunk_end in itertools.pairwise(bounds):
        for start in range(chunk, chunk_end, RPC_BATCH):
            batch = [
                {"jsonrpc": "2.0", "id": n, "method": "eth_sendTransaction", "params": [c]}
                for n, c in enumerate(calls[start : min(start + RPC_BATCH, chunk_end)])
            ]
            answers = session.post(url, json=batch, timeout=120).json()
            errors = [a["error"] for a in answers if "error" in a]
            if errors:
                raise SystemExit(f"anvil refused transactions: {errors[:3]}")
        chain.w3.provider.make_request("evm_mine", [])
        small_block = small_block or chain.block_number()
    chain.w3.provider.make_request("evm_setAutomine", [True])
    chain.wait_for(
        lambda: (
            all(chain.w3.eth.get_transaction_count(a) == n for a, n in expected.items())
            or chain.w3.provider.make_request("evm_mine", [])
            and False
        ),
        timeout=600,
        interval=0.2,
        what="all listings mined",
    )
    return time.perf_counter() - started, small_block


def raw_getlogs_seconds(chain: Chain, start: int, end: int, batch: int) -> tuple[float, int]:
    """The baseline: bare eth_getLogs over the same ranges, results left as JSON (no decoding)."""
    started = time.perf_counter()
    n = 0
    for lo in range(start, end + 1, batch):
        n += len(
            chain.get_logs(
                {
                    "fromBlock": lo,
                    "toBlock": min(lo + batch - 1, end),
                    "address": list(chain.addresses.values()),
                },
                raw=True,
            )
        )
    return time.perf_counter() - started, n


def page_times(index: Indexer, repeat: int = 30) -> dict[str, float]:
    """Median milliseconds per list_models call for a few typical pages."""
    cases = {
        "newest_p1": {"sort": "newest"},
        "price_p1": {"sort": "price"},
        "score_p1": {"sort": "score"},
        "newest_p5": {"sort": "newest", "page": 5},
        "query": {"query": "bert"},
    }
    result = {}
    for name, kwargs in cases.items():
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            index.list_models(**kwargs)
            samples.append((time.perf_counter() - t) * 1000)
        result[name] = round(statistics.median(samples), 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--batch-blocks", type=int, default=2000)
    args = parser.parse_args()

    with (
        start_anvil(accounts=SENDERS, extra_args=["--gas-limit", "1000000000"]) as anvil,
        tempfile.TemporaryDirectory() as tmp,
    ):
        w3 = connect(anvil.url, timeout=120)
        record = deploy_suite(w3, w3.eth.accounts[0])
        chain = Chain(w3, record)
        seconds_create, small_block = create_listings(chain, anvil.url, args.listings)
        head = chain.block_number()
        print(
            f"created {args.listings} listings in {seconds_create:.1f} s "
            f"(blocks {record['block']}..{head})"
        )

        raw_s, raw_logs = raw_getlogs_seconds(chain, record["block"], head, args.batch_blocks)
        print(
            f"baseline: bare eth_getLogs of {raw_logs} logs: {raw_s:.2f} s "
            f"({raw_logs / raw_s:,.0f} logs/s)"
        )

        index = Indexer(chain, Path(tmp) / "index.sqlite3", batch_blocks=args.batch_blocks)
        started = time.perf_counter()
        events = index.sync()
        index_s = time.perf_counter() - started
        rate = events / index_s
        print(
            f"indexer: {events} events from block {record['block']} in {index_s:.2f} s "
            f"= {rate:,.0f} events/s (target >= 1,000); {index_s / raw_s:.2f}x the bare "
            f"getLogs time"
        )
        assert index.list_models()[1] == args.listings, "index lost listings"

        started = time.perf_counter()
        index.rebuild()
        rebuild_s = time.perf_counter() - started
        print(f"rebuild of all tables from the stored log: {rebuild_s:.2f} s")

        small = Indexer(chain, Path(tmp) / "small.sqlite3")
        small.sync(until=small_block)  # the first SMALL listings
        small_total = small.list_models()[1]
        pages_small, pages_big = page_times(small), page_times(index)
        print(f"list_models median ms with {small_total} listings: {pages_small}")
        print(f"list_models median ms with {args.listings} listings: {pages_big}")

    print_figures(
        {
            "events_per_s": round(rate, 1),
            "events": events,
            "listings": args.listings,
            "index_s": round(index_s, 3),
            "baseline_getlogs_s": round(raw_s, 3),
            "index_over_getlogs": round(index_s / raw_s, 2),
            "rebuild_s": round(rebuild_s, 3),
            "create_s": round(seconds_create, 1),
            "page_ms_small": pages_small,
            "page_ms_large": pages_big,
            "small_listings": small_total,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
