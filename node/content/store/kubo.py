"""A typed client for the Kubo HTTP RPC API (``/api/v0``) over httpx, as a ``Store``.

Only the Kubo RPC API is used, so a real Kubo node works unchanged; the tests run it against
js-ipfs 0.66.1 (node/ipfsdaemon.py), which serves the same API. Why not ``ipfshttpclient``: it is
unmaintained since 2021, refuses current daemons by version, reads whole files into memory on
``cat`` and silently sends ``raw-leaves=false`` with CIDv1.

- Uploads stream: the multipart body is a generator (the file part carries a Content-Type,
  which js-ipfs requires), and the same bytes feed node.content.cid's builder, so the CID the daemon
  reports is checked against Kubo's layout in the same pass. If they differ, the content is
  imported as a CAR of Modex-built blocks instead, which covers daemons whose importer cannot
  express a profile, e.g. js-ipfs's fixed 174-link width (a stream source is copied to an
  anonymous temporary file while it uploads, so it can be read a second time).
- Downloads stream (``cat``) and are verified: the bytes are re-chunked under every profile
  that matches the CID's kind and the stream fails at its end unless one reproduces the CID.
- Every call has a timeout (a daemon waits forever for content it lacks); connection failures
  are retried with exponential backoff, then StoreError names the endpoint. That RPC plumbing
  and the daemon's block, pin and DAG endpoints are ``node.content.store.kuborpc.KuboRpc``,
  which the store holds as ``rpc``; the store adds what Modex checks (CIDs, every block).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO, Self

import httpx

from node.content.car import encode_header, read_car, write_car
from node.content.cid import (
    DEFAULT_PROFILE,
    PROFILES,
    UnixFSBuilder,
    cid_to_str,
    get_profile,
    normalize_cid,
    parse_cid,
    read_full,
    uvarint,
    verify_block,
)
from node.content.store.dag import ChunkStream, repair_dag
from node.content.store.kuborpc import PIECE, KuboRpc
from node.content.store.source import Source, open_source
from node.errors import ContentNotFound, IntegrityError, StoreError

log = logging.getLogger(__name__)


class _Tee:
    """Feeds uploaded bytes to the CID builder and, for a stream source, to its spool file."""

    def __init__(self, builder: UnixFSBuilder, spool: BinaryIO | None):
        self._builder = builder
        self._spool = spool

    def write(self, data) -> None:
        self._builder.write(data)
        if self._spool is not None:
            self._spool.write(data)


class KuboStore:
    """``KuboStore("http://127.0.0.1:5001", timeout=30, retries=3, backoff=0.2)``."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        find_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        spool_dir: str | os.PathLike | None = None,
    ):
        self.rpc = KuboRpc(
            api_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            find_timeout=find_timeout,
            transport=transport,
        )
        self.api_url = self.rpc.api_url
        # where put() copies a stream source (None: the temp dir)
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else None

    def __repr__(self) -> str:
        return f"KuboStore({self.api_url!r})"

    def close(self) -> None:
        self.rpc.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plain RPC calls ----------------------------------------------------------------------
    def version(self) -> dict:
        return self.rpc.call("version")[0]

    def add(
        self,
        source: Source,
        *,
        profile: str = DEFAULT_PROFILE,
        pin: bool = True,
        only_hash: bool = False,
        builder: UnixFSBuilder | _Tee | None = None,
    ) -> str:
        """The daemon's own ``add`` with the profile's importer options; returns its CID,
        normalised (CIDv1 in base32). ``builder`` (optional) sees the same bytes."""
        p = get_profile(profile)
        stream, close = open_source(source)
        params = {
            "cid-version": p.cid_version,
            "raw-leaves": str(p.raw_leaves).lower(),
            "chunker": p.chunker,
            "hash": "sha2-256",
            "pin": str(pin).lower(),
            "only-hash": str(only_hash).lower(),
            "progress": "false",
        }
        if p.cid_version == 1:
            params["cid-base"] = "base32"

        def pieces() -> Iterator[bytes]:
            while True:
                buf = bytearray(PIECE)
                n = read_full(stream, memoryview(buf))
                piece = bytes(buf) if n == len(buf) else bytes(buf[:n])
                if builder is not None:
                    builder.write(piece)
                if piece:
                    yield piece
                if n < len(buf):
                    return

        try:
            entries = self.rpc.upload("add", params, "file", pieces())
        finally:
            if close:
                stream.close()
        hashes = [e["Hash"] for e in entries if "Hash" in e]
        if not hashes:
            raise StoreError(
                f"the IPFS daemon at {self.api_url} returned no CID for add: {entries}"
            )
        return normalize_cid(hashes[-1])

    def cat(self, cid: str) -> ChunkStream:
        """The daemon's ``cat`` as a stream (not verified; see ``get``)."""
        cid = normalize_cid(cid)
        self.rpc.find(cid)
        return self.rpc.download("cat", cid)

    # -- the Store interface ------------------------------------------------------------------
    def put(self, source: Source, *, profile: str = DEFAULT_PROFILE) -> str:
        """Add through the daemon's importer and check its CID against Kubo's layout.

        If the daemon's importer cannot express the profile (js-ipfs: fixed 174-link width),
        Modex's own blocks are imported with ``dag/import`` instead. A stream can only be read
        once, so a stream source is copied to an anonymous temporary file as it is uploaded
        (disk, not memory; gone when closed, even if this process dies) to import from.
        """
        builder = UnixFSBuilder(profile)
        is_path = isinstance(source, (str, bytes)) or hasattr(source, "__fspath__")
        with contextlib.ExitStack() as stack:
            spool = (
                None
                if is_path
                else stack.enter_context(
                    tempfile.TemporaryFile(prefix="modex-put-", dir=self.spool_dir)
                )
            )
            got = self.add(source, profile=profile, pin=False, builder=_Tee(builder, spool))
            want = builder.finish()
            if got == want:
                self.pin(want)
                return want
            log.warning(
                "daemon at %s gave %s, profile %s gives %s: importing Modex's blocks as a CAR",
                self.api_url,
                got,
                profile,
                want,
            )
            if spool is not None:
                spool.flush()
                spool.seek(0)
            roots = self._import_as_car(source if spool is None else spool, profile, want)
        if roots != [want]:
            raise IntegrityError(
                f"the IPFS daemon at {self.api_url} imported roots {roots}, expected [{want}]",
                got=roots,
                want=want,
            )
        return want

    def get(self, cid: str, *, verify: bool = True) -> ChunkStream:
        """``cat`` the file; with ``verify`` the bytes must reproduce ``cid`` under one of the
        profiles (checked when the stream ends: IntegrityError then, before EOF is returned)."""
        raw = self.cat(cid)
        if not verify:
            return raw
        want = normalize_cid(cid)
        candidates = [
            UnixFSBuilder(p)
            for p in PROFILES.values()
            if (p.cid_version == 0) == want.startswith("Qm")
        ]

        def chunks() -> Iterator[bytes]:
            for chunk in raw:
                for b in candidates:
                    b.write(chunk)
                yield chunk
            if not any(b.finish() == want for b in candidates):
                raise IntegrityError(
                    f"the bytes the IPFS daemon at {self.api_url} sent for {want} do not hash to "
                    "it under any Modex CID profile (corrupt, or added with other options: "
                    "use get(cid, verify=False) and check the model hash)",
                    cid=want,
                )

        return ChunkStream(chunks(), on_close=raw.close)

    def get_block(self, cid: bytes) -> bytes:
        """One block (``block/get``), verified: IntegrityError if the daemon's copy is corrupt.

        A daemon verifies the blocks it receives from the network, so a block it serves that
        does not hash to its CID is its own repository's copy (see ``repair``)."""
        block = self.rpc.block(cid_to_str(cid))
        verify_block(cid, block)
        return block

    def repair(self, cid: str) -> list[str]:
        """Check every block of ``cid``'s DAG as the daemon serves it; a corrupt one is removed
        from the daemon's repository (``block/rm``) and asked for again, which makes the
        daemon fetch it from the network (verified there; still corrupt: IntegrityError).
        A corrupt block the daemon refuses to remove (pinned) raises LocalStoreError.
        Returns the CIDs of the blocks that were replaced."""

        def again(block_cid: bytes) -> bytes:
            name = cid_to_str(block_cid)
            log.warning(
                "block %s in the IPFS daemon at %s is corrupt; removing it and fetching it again",
                name,
                self.api_url,
            )
            self.rpc.remove_block(name)
            block = self.rpc.block(name)
            try:
                verify_block(block_cid, block)
            except IntegrityError:
                raise IntegrityError(
                    f"block {name} is still corrupt after the IPFS daemon at {self.api_url} "
                    "fetched it again: the network's copy is bad",
                    cid=name,
                ) from None
            return block

        return repair_dag(parse_cid(cid), self.get_block, again)

    def pin(self, cid: str) -> None:
        cid = normalize_cid(cid)
        self.rpc.find(cid)
        self.rpc.pin(cid)

    def has(self, cid: str) -> bool:
        cid = normalize_cid(cid)
        try:
            self.rpc.find(cid)
        except ContentNotFound:
            return False
        return True

    def export_car(self, cid: str, out: BinaryIO) -> int:
        """Stream ``dag/export`` into ``out``, verifying every block on the way."""
        cid = normalize_cid(cid)
        self.rpc.find(cid)
        with self.rpc.download("dag/export", cid) as car:
            roots, blocks = read_car(io.BufferedReader(car, 1 << 20))  # verified block by block
            return write_car(roots, blocks, out)

    def import_car(self, source: BinaryIO) -> list[str]:
        """``dag/import`` (roots pinned by the daemon); returns the root CIDs."""

        def pieces() -> Iterator[bytes]:
            while True:
                piece = source.read(PIECE)
                if not piece:
                    return
                yield piece

        return self.rpc.dag_import(pieces())

    # -- internals ----------------------------------------------------------------------------
    def _import_as_car(self, source: Source, profile: str, root: str) -> list[str]:
        """Build ``source``'s blocks under ``profile`` and ``dag/import`` them as one CAR."""

        def pieces() -> Iterator[bytes]:
            header = encode_header([parse_cid(root)])
            yield uvarint(len(header)) + header
            out: list[bytes] = []

            def on_block(cid: bytes, block) -> None:
                out.append(uvarint(len(cid) + len(block)) + cid + bytes(block))

            f, close = open_source(source)
            try:
                builder = UnixFSBuilder(profile, on_block=on_block)
                view = memoryview(bytearray(builder.profile.chunk_size))
                while True:
                    n = read_full(f, view)
                    if n:
                        builder.write(view[:n])
                    yield from out
                    out.clear()
                    if n < len(view):
                        break
                builder.finish()
                yield from out
            finally:
                if close:
                    f.close()

        return self.rpc.dag_import(pieces())
