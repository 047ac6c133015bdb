"""Lazy shared node resources, the flaskr `db.py` way: `get_config()`, `get_chain()`,
`get_store()`, `get_indexer()`.

The chain client, the store and the indexer are built once per app (thread-safe, shared by
requests and jobs); `close_resources(app)` closes what the app built itself. The indexer's SQLite
connection is per thread (SQLite connections belong to one): the one a request opened is closed
on teardown. Anything can be handed in ready-made through the app's
config (`MODEX_CHAIN`, `MODEX_STORE`, `MODEX_NODE_CONFIG`), which is how `modex up` and the tests
share one embedded stack between the node's threads and the UI.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import current_app, g

from node.chain import Chain
from node.config import load_config
from node.indexer import Indexer
from node.stack import open_configured_store

log = logging.getLogger(__name__)

_EXT = "modex.resources"


def _cache() -> dict:
    return current_app.extensions[_EXT]


def _cached(name: str, build):
    cache = _cache()
    if cache.get(name) is None:
        with cache["lock"]:
            if cache.get(name) is None:
                cache[name] = current_app.config.get(f"MODEX_{name.upper()}") or build()
    return cache[name]


def get_config():
    """The node's `Config` (node.config): from the app config or loaded from file + MODEX_* env."""

    def build():
        return load_config(current_app.config.get("MODEX_CONFIG_FILE"))

    return _cached("node_config", build)


def data_dir() -> Path:
    path = Path(get_config().data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_chain():
    """The chain client (node.chain.Chain) for the configured endpoint and deployment."""

    def build():
        return Chain.from_config(get_config())

    return _cached("chain", build)


def get_store():
    """The content store: the embedded one under the data dir, or a Kubo-API daemon by URL."""

    def build():
        return open_configured_store(get_config())

    return _cached("store", build)


def index_db_path() -> Path:
    return Path(current_app.config.get("MODEX_INDEX_DB") or get_config().index_db)


def get_indexer():
    """The indexer's read API (node.indexer.Indexer, one per app). Its SQLite connection is per
    thread; the one this request opened is closed on teardown."""

    def build():
        return Indexer(get_chain(), index_db_path(), confirmations=get_config().confirmations)

    indexer = _cached("indexer", build)
    g.modex_indexer = indexer
    return indexer


def close_indexer(exc=None) -> None:
    indexer = g.pop("modex_indexer", None)
    if indexer is not None:
        indexer.close()


def close_resources(app) -> None:
    """Close what this app built itself (things handed in belong to whoever built them)."""
    cache = app.extensions.get(_EXT, {})
    for name in ("indexer", "store", "chain"):
        obj = cache.pop(name, None)
        if obj is not None and app.config.get(f"MODEX_{name.upper()}") is None:
            close = getattr(obj, "close", None)
            if close:
                try:
                    close()
                except Exception:  # closing is best effort at shutdown
                    log.warning("closing %s failed", name, exc_info=True)


def init_app(app) -> None:
    app.extensions[_EXT] = {"lock": threading.RLock()}
    app.teardown_appcontext(close_indexer)
