"""Market queries from 100 to 10,000 listings: ``Indexer.list_models`` alone, per query shape.

    .venv/bin/python -m benchmarks.market_queries [--sizes 100,1000,10000] [--repeat 200]

For each size a fresh indexer database is filled through the indexer's own path
(benchmarks/synthetic_market.py: synthetic ModelListed / Voted / StatusChanged / ActiveChanged
events applied by the indexer, metadata JSON through its ``metadata_loader``; 10,000 real
``list()`` transactions would measure the chain, not the query). Every query shape the market page and the API issue is
then timed: the three sorts, a deep page by ``page`` (OFFSET n/2) and by ``after`` cursor at the
same depth, a task + status filter, a task + status filter sorted by price, an owner's listings,
and text search (a word in a quarter of the listings, newest first, by price, by score; a rare
name; FTS operators typed as text; a prefix ``senti*``, the one shape expected to grow).
Each figure is the median of --repeat calls after a warm-up; the sizes take turns call by call
(the machine is shared: load from elsewhere hits all sizes alike).

Baseline: the same query at the smallest size, same run. Target (issue 6): flat, i.e. the ratio
largest / smallest ≤ 1.5 for every shape. Last line: JSON with each shape's ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eth_utils import to_checksum_address

from benchmarks.common import print_figures
from benchmarks.synthetic_market import embedded_suite, filled_indexer
from node.indexer import Indexer

TASKS = ("text-classification", "feature-extraction", "sentiment-analysis", "summarization")
WORDS = ("sentiment", "review", "legal", "medical", "news", "tweet", "code", "finance")
OWNERS = 50  # listings are spread over this many sellers


def shapes(n: int, cursor_at_half: str) -> dict[str, dict]:
    """The list_models keyword arguments of each measured shape at size n."""
    return {
        "newest": {"sort": "newest"},
        "price": {"sort": "price"},
        "score": {"sort": "score"},
        "deep page (OFFSET n/2)": {"sort": "price", "page": n // 2 // 20},
        "deep page (after cursor)": {"sort": "price", "after": cursor_at_half},
        "task+status": {"task": "text-classification", "status": "verified", "sort": "score"},
        "task+status by price": {
            "task": "sentiment-analysis",
            "status": "unverified",
            "sort": "price",
        },
        "owner": {"owner": _owner(7)},
        "search": {"query": "sentiment"},
        "search by price": {"query": "sentiment news", "sort": "price"},
        "search by score": {"query": "medical", "sort": "score"},
        "search rare": {"query": "model 17"},
        "search operators": {"query": '"a OR *'},
        "search prefix": {"query": "senti*"},
    }


def _owner(k: int) -> str:
    return to_checksum_address("0x" + f"{k + 1:040x}")


def fill(chain, db: Path, n: int) -> Indexer:
    """n listings by OWNERS sellers (every third voted on, every fifth verified, every 50th
    delisted) in an indexer."""
    return filled_indexer(
        chain,
        db,
        n,
        seller=lambda i: _owner(i % OWNERS),
        price=lambda i: (i * 7919 % 997 + 1) * 10**15,
        delist_every=50,
        tasks=TASKS,
        name=lambda i: f"{WORDS[i % 8].title()} model {i}",
        description=lambda i: f"a {WORDS[i % 4]} {WORDS[4 + i % 3]} classifier, listing number {i}",
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    chain = embedded_suite()
    with tempfile.TemporaryDirectory() as tmp:
        indexers, cases, results = {}, {}, {}
        for n in sizes:
            started = time.perf_counter()
            indexers[n] = fill(chain, Path(tmp) / f"{n}.sqlite3", n)
            half = indexers[n].list_models(sort="price", page=n // 2 // 20 - 1)[0].next_cursor
            cases[n] = shapes(n, half)
            print(f"{n} listings filled in {time.perf_counter() - started:.1f} s")
        names = list(cases[sizes[0]])
        for name in names:  # same rows whichever way the deep page is reached
            if name == "deep page (after cursor)":
                for n in sizes:
                    a = indexers[n].list_models(**cases[n][name])[0]
                    b = indexers[n].list_models(**cases[n]["deep page (OFFSET n/2)"])[0]
                    assert [r["model_id"] for r in a] == [r["model_id"] for r in b], n
        samples = {(n, name): [] for n in sizes for name in names}
        for round_ in range(args.repeat + 5):
            for name in names:
                for n in sizes:
                    t = time.perf_counter()
                    rows, total = indexers[n].list_models(**cases[n][name])
                    elapsed = (time.perf_counter() - t) * 1000
                    if round_ >= 5:  # warm-up rounds
                        samples[(n, name)].append(elapsed)
                    results[(n, name)] = (len(rows), str(total))
        medians = {k: statistics.median(v) for k, v in samples.items()}

    width = max(map(len, names))
    print(f"list_models median ms over {args.repeat} calls (rows returned / total)")
    print(f"{'shape':<{width}}  " + "  ".join(f"{n:>18,}" for n in sizes) + "   ratio")
    ratios, upper = {}, {}
    for name in names:
        ratios[name] = medians[(sizes[-1], name)] / medians[(sizes[0], name)]
        # Where the smallest size returns a short page, the two largest compare like with like.
        upper[name] = medians[(sizes[-1], name)] / medians[(sizes[-2], name)]
        cells = "  ".join(
            f"{medians[(n, name)]:7.3f} ({results[(n, name)][0]:>2}/{results[(n, name)][1]:>5})"
            for n in sizes
        )
        print(
            f"{name:<{width}}  {cells}   {ratios[name]:.2f}  ({upper[name]:.2f} over the "
            f"{sizes[-2]:,} case)"
        )
    worst = max(ratios, key=ratios.get)
    print(f"largest / smallest: worst {worst} {ratios[worst]:.2f} (target <= 1.5 each)")
    print_figures(
        {
            "sizes": sizes,
            "ms_largest": {k: round(medians[(sizes[-1], k)], 3) for k in names},
            "ms_smallest": {k: round(medians[(sizes[0], k)], 3) for k in names},
            "ratio": {k: round(v, 2) for k, v in ratios.items()},
            "ratio_over_second_largest": {k: round(v, 2) for k, v in upper.items()},
            "worst_ratio": round(ratios[worst], 2),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
