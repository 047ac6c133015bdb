"""A market of n synthetic listings in a fresh indexer database, for the benchmarks that time
what reads it (benchmarks/market_queries.py, benchmarks/ui_pages.py).

The listings go in the way the indexer takes a history: ModelListed events (every third listing
voted on, every fifth verified, optionally every k-th delisted) appended to its event log by
``Indexer.import_events`` and applied by it, metadata JSON through its ``metadata_loader``. A real
suite deployed on the embedded chain gives the indexer contracts to name; sending n real
``list()`` transactions would measure the chain, not the reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from node.chain import Chain, connect
from node.deploy import deploy_suite
from node.indexer import Indexer
from node.protocol import ModelStatus

VOTERS = ["0x" + f"{0xABC0 + i:040x}" for i in range(5)]


def _model_hash(i: int) -> str:
    return "0x" + f"{i:064x}"


def embedded_suite() -> Chain:
    """The contracts deployed on a fresh embedded chain."""
    w3 = connect("embedded")
    return Chain(w3, deploy_suite(w3, w3.eth.accounts[0]))


def listing_events(
    n: int, *, seller: Callable[[int], str], price: Callable[[int], int], delist_every: int = 0
) -> list[tuple]:
    """The event rows of listings 1..n (``seller(i)`` lists listing i at ``price(i)`` wei): every
    third gets 1-5 votes, every fifth is verified, every ``delist_every``-th (0: none) delisted."""
    rows = []
    for i in range(1, n + 1):
        block, tx = 100 + i, "0x" + f"{i:064x}"
        listed = {
            "modelId": i,
            "seller": seller(i),
            "modelHash": _model_hash(i),
            "metadataCid": f"bafy-synthetic-{i}",
            "price": price(i),
        }
        rows.append((block, 0, tx, "ModelRegistry", "ModelListed", listed))
        if i % 3 == 0:
            for k, voter in enumerate(VOTERS[: 1 + i % 5]):
                vote = {"modelId": i, "voter": voter, "score": 1 + (i + k) % 5}
                rows.append((block, 1 + k, tx, "Votes", "Voted", vote))
        if i % 5 == 0:
            verified = {"modelId": i, "status": int(ModelStatus.VERIFIED)}
            rows.append((block, 8, tx, "Validators", "StatusChanged", verified))
        if delist_every and i % delist_every == 0:
            delisted = {"modelId": i, "active": False}
            rows.append((block, 9, tx, "ModelRegistry", "ActiveChanged", delisted))
    return rows


def metadata_loader(
    tasks: Sequence[str], *, name: Callable[[int], str], description: Callable[[int], str]
) -> Callable[[str], dict]:
    """The indexer's ``metadata_loader`` for these listings: listing i (named by its metadata CID
    ``bafy-synthetic-i``) is ``name(i)``, of task ``tasks[i % len(tasks)]``, ``description(i)``."""

    def load(cid: str) -> dict:
        i = int(cid.rsplit("-", 1)[1])
        return {
            "version": 1,
            "name": name(i),
            "task": tasks[i % len(tasks)],
            "description": description(i),
            "license": "mit",
            "model_hash": _model_hash(i),
        }

    return load


def filled_indexer(
    chain: Chain,
    db: Path,
    n: int,
    *,
    seller: Callable[[int], str],
    price: Callable[[int], int],
    delist_every: int = 0,
    tasks: Sequence[str],
    name: Callable[[int], str],
    description: Callable[[int], str],
) -> Indexer:
    """An indexer at ``db`` holding listings 1..n (``listing_events``) and the metadata of every
    one (``metadata_loader``)."""
    metadata = metadata_loader(tasks, name=name, description=description)
    indexer = Indexer(chain, db, metadata_loader=metadata, metadata_per_sync=n)
    indexer.import_events(listing_events(n, seller=seller, price=price, delist_every=delist_every))
    loaded = indexer.load_metadata(limit=n)
    total = indexer.list_models(active=None)[1]
    assert total == n and loaded == n, (total, loaded, n)
    return indexer
