"""Publish a model: tar + hash → seal → put/pin → metadata → put/pin → key vault → list → operator.

The order is the safety argument:
- the ciphertext and the metadata JSON are pinned before ``list()`` is sent (``Store.put`` pins
  the root it returns, in both stores), so nothing is ever listed without its content pinned;
- the content key goes into the seller's key vault before ``list()``, so a crash after the
  listing never leaves a listing whose key is lost (the worker finds the key by the content CID
  in the listing's metadata if the model id was not yet recorded);
- the model directory is streamed (tar → seal → store.put through a pipe): memory stays flat and
  no plaintext copy of the model is written anywhere; each file is read once, hashed while it
  goes into the tar, and the manifest (model hash) is built from those very bytes.

Metadata JSON is DESIGN.md §4.5, canonical JSON as in §4.1, plus ``cid_profile`` (§4.4).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from web3.logs import DISCARD

from node import manifest as manifest_mod
from node import seal, tarball
from node.errors import ChainError, ManifestError
from node.keyvault import KeyVault
from node.pipes import CountingReader, CountingWriter, pipeline

log = logging.getLogger(__name__)

# progress(stage, bytes_done_delta, stage_total_bytes) — the CLI turns it into tqdm bars.
Progress = Callable[[str, int, int | None], None]

CHUNK_SIZE = 1 << 20


def canonical_json(obj) -> bytes:
    """DESIGN.md §4.1 canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class ListingInfo:
    """What a seller says about a model (all optional but the name)."""

    name: str
    description: str = ""
    task: str = ""
    license: str = ""
    framework: str = ""
    metrics: dict = field(default_factory=dict)
    card: str | None = None  # default: the model dir's README.md


@dataclass
class Prepared:
    model_hash: bytes
    content_cid: str
    metadata_cid: str
    metadata: dict
    sealed_bytes: int


@dataclass
class Published(Prepared):
    model_id: int = 0
    tx_hash: str = ""
    price_wei: int = 0


def _emit(progress: Progress | None, stage: str, n: int, total: int | None) -> None:
    if progress:
        progress(stage, n, total)


def read_card(model_dir: Path) -> str:
    for name in ("README.md", "readme.md", "MODEL_CARD.md"):
        p = model_dir / name
        if p.is_file():
            return p.read_text(encoding="utf-8", errors="replace")
    return ""


def guess_framework(model_dir: Path) -> str:
    if (model_dir / "config.json").is_file():
        return "transformers"
    return "unknown"


def build_metadata(info: ListingInfo, manifest, *, content_cid: str, chunk_size: int,
                   cid_profile: str, model_dir: Path, created: str | None = None) -> dict:
    """The listing's public metadata JSON (DESIGN.md §4.5)."""
    return {
        "version": 1,
        "name": info.name,
        "description": info.description,
        "task": info.task,
        "license": info.license,
        "framework": info.framework or guess_framework(model_dir),
        "model_hash": "0x" + manifest.model_hash.hex(),
        "manifest": manifest.as_dict(),
        "sealed": True,
        "content_cid": content_cid,
        "cid_profile": cid_profile,
        "seal": {"scheme": "MDXSEAL1", "chunk_size": chunk_size},
        "metrics": dict(info.metrics),
        "card": info.card if info.card is not None else read_card(model_dir),
        "created": created or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def seal_and_put(model_dir: Path, listing: list[tuple[str, int]], key: bytes, store, *,
                 cid_profile: str, chunk_size: int = CHUNK_SIZE,
                 progress: Progress | None = None) -> tuple[str, int, manifest_mod.Manifest]:
    """Stream tar (hashing each file as it is read) → seal (a thread) → store.put (here).

    One read of the model: the manifest is built from the very bytes that went into the tar.
    Returns (content CID, sealed size, manifest); the manifest only once the seal is complete.
    """
    total = tarball.listing_tar_size(listing)
    made: list[manifest_mod.Manifest] = []

    def seal_into(w):
        counted = CountingWriter(w, lambda n: _emit(progress, "seal", n, total))
        with seal.SealWriter(counted, key, chunk_size=chunk_size) as sealer:
            _, manifest = tarball.write_tar_hashing(model_dir, listing, sealer)
        made.append(manifest)

    counted: list[CountingReader] = []

    def put(r):
        reader = CountingReader(r, lambda n: _emit(progress, "pin", n, None))
        counted.append(reader)
        return store.put(reader, profile=cid_profile)

    cid = pipeline(seal_into, put)
    return cid, counted[0].count, made[0]


def prepare(model_dir: str | os.PathLike, store, vault: KeyVault, info: ListingInfo, *,
            cid_profile: str = "unixfs-v1-2025", chunk_size: int = CHUNK_SIZE,
            progress: Progress | None = None) -> Prepared:
    """Everything before the chain: refuse pickles, hash + seal + pin in one pass, metadata, key.

    ``store.put`` pins what it adds (both stores), so the ciphertext and the metadata are
    pinned when their CIDs come back; ``list()`` is only sent after that.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ManifestError(f"model directory {model_dir} does not exist or is not a directory")
    listing = manifest_mod.scan_dir(model_dir)
    if not listing:
        raise ManifestError(f"{model_dir} holds no regular files: nothing to publish",
                            path=str(model_dir))
    manifest_mod.refuse_pickle_paths(path for path, _ in listing)
    key = secrets.token_bytes(32)
    content_cid, sealed_bytes, manifest = seal_and_put(
        model_dir, listing, key, store, cid_profile=cid_profile, chunk_size=chunk_size,
        progress=progress)
    metadata = build_metadata(info, manifest, content_cid=content_cid, chunk_size=chunk_size,
                              cid_profile=cid_profile, model_dir=model_dir)
    metadata_cid = store.put(BytesIO(canonical_json(metadata)), profile=cid_profile)
    # Before list(): a listing must never exist without its key in the vault.
    vault.put(content_cid, key, model_hash=metadata["model_hash"])
    log.info("sealed %s: model hash %s, content %s, metadata %s", model_dir,
             metadata["model_hash"], content_cid, metadata_cid)
    return Prepared(manifest.model_hash, content_cid, metadata_cid, metadata, sealed_bytes)


def list_prepared(chain, signer, prepared: Prepared, vault: KeyVault, *, price_wei: int,
                  operator: str | None = None) -> Published:
    """Send ``list()`` (and ``setOperator`` when a worker address is given); record the id."""
    if price_wei < 0:
        raise ChainError("the price cannot be negative")
    registry = chain.registry
    receipt = chain.transact(
        registry.functions.list(prepared.model_hash, prepared.metadata_cid, price_wei), signer)
    events = registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)
    if not events:
        raise ChainError(f"list() was mined in {receipt['transactionHash'].hex()} but emitted "
                         "no ModelListed event; check the deployment file's registry address")
    model_id = int(events[0]["args"]["modelId"])
    vault.assign(prepared.content_cid, chain_id=chain.chain_id, model_id=model_id,
                 registry=registry.address)
    if operator and operator.lower() != signer.address.lower():
        chain.transact(registry.functions.setOperator(model_id, operator), signer)
        log.info("model %d: operator set to %s", model_id, operator)
    return Published(**prepared.__dict__, model_id=model_id,
                     tx_hash="0x" + bytes(receipt["transactionHash"]).hex(), price_wei=price_wei)


def publish(chain, signer, store, vault: KeyVault, model_dir, info: ListingInfo, *,
            price_wei: int, operator: str | None = None, cid_profile: str = "unixfs-v1-2025",
            chunk_size: int = CHUNK_SIZE, progress: Progress | None = None) -> Published:
    """The whole publish journey; see the module docstring for the order and why."""
    prepared = prepare(model_dir, store, vault, info, cid_profile=cid_profile,
                       chunk_size=chunk_size, progress=progress)
    return list_prepared(chain, signer, prepared, vault, price_wei=price_wei, operator=operator)
