"""Content stores behind one small interface (docs/architecture.md, docs/formats.md §5).

    Store.put(path_or_stream, *, profile) -> cid    add bytes as a UnixFS file (Kubo's CIDs)
    Store.get(cid) -> readable binary stream         verified while read
    Store.pin(cid) / Store.has(cid) -> bool
    Store.export_car(cid, out) / Store.import_car(in) -> [root cids]
    Store.get_block(cid bytes) -> bytes                one verified block
    Store.repair(cid) -> [replaced cids]             check this node's copy of the DAG; drop
                                                     corrupt blocks and fetch them again

Two implementations: ``EmbeddedStore`` (node/content/store/embedded.py: blocks on local disk, the
default, with a read-only gateway in node/content/store/gateway.py) and ``KuboStore``
(node/content/store/kubo.py: any daemon speaking the Kubo RPC API). ``open_store`` picks one.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Protocol, runtime_checkable

from node.content.cid import DEFAULT_PROFILE
from node.content.store.dag import ChunkStream
from node.content.store.embedded import EmbeddedStore
from node.content.store.kubo import KuboStore
from node.content.store.source import Source, open_source
from node.errors import ConfigError

__all__ = [
    "STORE_KINDS",
    "EmbeddedStore",
    "KuboStore",
    "Source",
    "Store",
    "open_source",
    "open_store",
]


@runtime_checkable
class Store(Protocol):
    def put(self, source: Source, *, profile: str = DEFAULT_PROFILE) -> str: ...

    def get(self, cid: str) -> ChunkStream: ...

    def pin(self, cid: str) -> None: ...

    def has(self, cid: str) -> bool: ...

    def export_car(self, cid: str, out: BinaryIO) -> int: ...

    def import_car(self, source: BinaryIO) -> list[str]: ...

    def get_block(self, cid: bytes) -> bytes: ...

    def repair(self, cid: str) -> list[str]: ...


STORE_KINDS = ("embedded", "kubo")


def open_store(
    kind: str = "embedded",
    *,
    root: str | os.PathLike | None = None,
    api_url: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    source=None,
) -> Store:
    """``open_store("embedded", root=DIR, source=None)`` or ``open_store("kubo", api_url=URL)``;
    ``source`` (embedded only): where missing or locally corrupt blocks are fetched from."""
    if kind == "embedded":
        if root is None:
            raise ConfigError("the embedded store needs a root directory (store root)", key="root")
        return EmbeddedStore(root, source=source)
    if kind in ("kubo", "daemon"):
        if not api_url:
            raise ConfigError(
                "the kubo store needs the daemon's RPC API URL, e.g. http://127.0.0.1:5001",
                key="api_url",
            )
        return KuboStore(api_url, timeout=timeout, retries=retries)
    raise ConfigError(
        f"unknown store kind {kind!r}: use one of {', '.join(STORE_KINDS)}", key="kind"
    )
