"""Market page time from 100 to 10,000 listings: it must stay flat (the page reads one indexed,
paginated query from the indexer; nothing scales with the number of listings but SQLite's
index walks).

    .venv/bin/python -m benchmarks.ui_pages [--sizes 100,1000,10000] [--repeat 30]

For each size, a fresh indexer database is filled the way the indexer fills it
(benchmarks/synthetic_market.py: synthetic ModelListed / Voted / StatusChanged events applied by
the indexer, metadata loaded through its `metadata_loader`, over a real suite deployed on the
embedded chain; sending 10,000 real `list()` transactions would take the embedded chain tens of
minutes and measure the chain, not the page). Then the real Flask app renders the market page
through its test client: newest first, by price, by score, a deep page, a task + status filter,
a text search. Each figure is the median of --repeat renders after a warm-up, the sizes taking
turns render by render (the machine is shared: load from elsewhere then hits all sizes alike).

Baseline: the same pages at the smallest size, in the same run. The last line is JSON with each
size's median over all pages, `browse_ratio_largest_over_smallest` (newest / price / score: the
market page as opened and sorted; target ≤ 1.5), the same over all pages, and each page's ratio.
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

from app import create_app
from app.lookups import TASKS  # the tasks a listing may name
from benchmarks.common import print_figures
from benchmarks.synthetic_market import embedded_suite, filled_indexer
from node.config import Config

SELLER = "0x" + "5e" * 20
PAGES = {
    "newest": "/",
    "price": "/?sort=price",
    "score": "/?sort=score",
    "deep page": "/?sort=price&page={deep}",
    "task+status": "/?task=text-classification&status=verified&sort=score",
    "search": "/?q=model+17",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--repeat", type=int, default=30)
    return p.parse_args(argv)


def fill(chain, db: Path, n: int) -> None:
    """n listings by one seller, every third with votes, every fifth verified, in an index."""
    filled_indexer(
        chain,
        db,
        n,
        seller=lambda i: SELLER,
        price=lambda i: (i % 97 + 1) * 10**15,
        tasks=TASKS,
        name=lambda i: f"model {i}",
        description=lambda i: f"synthetic listing number {i}",
    ).close()


def time_pages(apps: dict, repeat: int) -> dict[int, dict[str, float]]:
    """Median ms per (size, page). Sizes are interleaved round by round, so a burst of load from
    elsewhere on a shared machine lands on every size alike instead of on one."""
    urls = {}
    for n, app in apps.items():
        deep = max(1, n // app.config["MODEX_PER_PAGE"] // 2)
        urls[n] = {name: path.format(deep=deep) for name, path in PAGES.items()}
    clients = {n: app.test_client() for n, app in apps.items()}
    for n, client in clients.items():  # warm-up: templates compiled, OS file cache filled
        for url in urls[n].values():
            for _ in range(3):
                assert client.get(url).status_code == 200
    samples = {n: {name: [] for name in PAGES} for n in apps}
    for _ in range(repeat):
        for name in PAGES:
            for n, client in clients.items():
                t0 = time.perf_counter()
                response = client.get(urls[n][name])
                samples[n][name].append(time.perf_counter() - t0)
                assert response.status_code == 200
    return {
        n: {name: statistics.median(v) * 1000 for name, v in pages.items()}
        for n, pages in samples.items()
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    chain = embedded_suite()
    with tempfile.TemporaryDirectory() as tmp:
        apps = {}
        for n in sizes:
            db = Path(tmp) / f"index-{n}.sqlite3"
            t0 = time.perf_counter()
            fill(chain, db, n)
            print(f"{n:>6} listings indexed in {time.perf_counter() - t0:5.1f} s", flush=True)
            apps[n] = create_app(
                {
                    "TESTING": True,
                    "MODEX_CHAIN": chain,
                    "MODEX_INDEX_DB": str(db),
                    "MODEX_NODE_CONFIG": Config(data_dir=Path(tmp) / "node"),
                }
            )
        table = time_pages(apps, args.repeat)
    for n in sizes:
        print(
            f"{n:>6} listings: "
            + ", ".join(f"{name} {ms:6.2f} ms" for name, ms in table[n].items())
        )
    small, large = sizes[0], sizes[-1]
    browse = ("newest", "price", "score")  # the market page as opened and sorted

    def ratio(pages) -> float:
        return statistics.median(table[large][p] for p in pages) / statistics.median(
            table[small][p] for p in pages
        )

    per_page = {p: table[large][p] / table[small][p] for p in PAGES}
    print(
        f"\nbaseline: the same pages at {small} listings, same run; {large}/{small} ratios: "
        + ", ".join(f"{p} {r:.2f}" for p, r in per_page.items())
    )
    print(
        f"browse pages (newest, price, score; target <= 1.5): {ratio(browse):.2f}; "
        f"all pages: {ratio(PAGES):.2f}"
    )
    print_figures(
        {
            **{f"page_ms_{n}": round(statistics.median(v.values()), 3) for n, v in table.items()},
            "browse_ratio_largest_over_smallest": round(ratio(browse), 3),
            "all_pages_ratio_largest_over_smallest": round(ratio(PAGES), 3),
            **{
                f"ratio_{p.replace(' ', '_').replace('+', '_')}": round(r, 3)
                for p, r in per_page.items()
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
