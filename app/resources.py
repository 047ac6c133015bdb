"""The node's parts for the app, the flaskr `db.py` way: `get_stack()` (one node.stack.Stack per
app) and its shortcuts `get_config()`, `get_chain()`, `get_store()`, `get_indexer()`.

The stack is built once per app from the node configuration: the app config's
`MODEX_NODE_CONFIG`, else node.config.load_config (`MODEX_CONFIG_FILE`, one TOML file + MODEX_*
env), its index moved to `MODEX_INDEX_DB` when that is set. Parts handed in ready-made through
the app config (`MODEX_CHAIN`, `MODEX_STORE`, `MODEX_KEYVAULT`) are used as they are: that is how
`modex up` and the tests share one embedded chain and store between the node's threads and the
UI. The chain, the store and the indexer are shared by requests and jobs; the indexer's SQLite
connection is per thread (SQLite connections belong to one) and lives as long as its thread.
`close_resources(app)` closes what the app built itself.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import current_app

from app.ui_state import UI_STATE_FILE, UiState
from node.config import Config, load_config
from node.indexer import Indexer
from node.stack import Stack

log = logging.getLogger(__name__)

_EXT = "modex.resources"


def _cached(name: str, build):
    cache = current_app.extensions[_EXT]
    if cache.get(name) is None:
        with cache["lock"]:
            if cache.get(name) is None:
                cache[name] = build()
    return cache[name]


def get_stack() -> Stack:
    """The node's parts for this app (see the module docstring), built on first use."""

    def build():
        settings = current_app.config
        config = settings.get("MODEX_NODE_CONFIG") or load_config(settings.get("MODEX_CONFIG_FILE"))
        if settings.get("MODEX_INDEX_DB"):
            config = config.replace(index_db=Path(settings["MODEX_INDEX_DB"]))
        return Stack(
            config,
            chain=settings.get("MODEX_CHAIN"),
            store=settings.get("MODEX_STORE"),
            vault=settings.get("MODEX_KEYVAULT"),
        )

    return _cached("stack", build)


def get_config() -> Config:
    """The node's `Config` (node.config)."""
    return get_stack().config


def data_dir() -> Path:
    path = Path(get_config().data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_chain():
    """The chain client (node.chain.Chain) for the configured endpoint and deployment."""
    return get_stack().chain


def get_store():
    """The content store: the embedded one under the data dir, or a Kubo-API daemon by URL."""
    return get_stack().store


def get_indexer() -> Indexer:
    """The indexer's read API (node.indexer.Indexer, one per app; the node's followers fill the
    index, so it fetches no metadata). Its SQLite connection is per thread and lives as long as
    the thread: the UI server's threads are a fixed pool, and opening a connection (with its
    PRAGMAs) for each request and closing it after cost every page CPU."""
    return _cached("indexer", lambda: get_stack().indexer(metadata=False))


def get_ui_state() -> UiState:
    """What the processes serving this UI share (app.ui_state): ``MODEX_UI_STATE`` of the app
    config, else <data dir>/ui-state.sqlite3."""
    return _cached(
        "ui_state",
        lambda: UiState(current_app.config.get("MODEX_UI_STATE") or data_dir() / UI_STATE_FILE),
    )


def close_resources(app) -> None:
    """Close what this app built itself: the indexer, the UI's shared state and the stack's own
    parts (parts handed in belong to whoever built them)."""
    cache = app.extensions.get(_EXT, {})
    ui_state = cache.pop("ui_state", None)
    if ui_state is not None:
        ui_state.close()
    indexer, stack = cache.pop("indexer", None), cache.pop("stack", None)
    if indexer is not None:
        try:
            indexer.close()
        except Exception:  # closing is best effort at shutdown
            log.warning("closing the indexer failed", exc_info=True)
    if stack is not None:
        stack.close()


def init_app(app) -> None:
    app.extensions[_EXT] = {"lock": threading.RLock()}
