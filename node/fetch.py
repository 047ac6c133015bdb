"""Fetch and verify a bought model: nothing reaches OUT unless it is exactly what was listed.

Steps (``fetch_model``):
1. read the listing on-chain (model hash, metadata CID) and the buyer's delivered wrapped key
   (the ``KeyDelivered`` event of the buyer's purchase; the chain is the source of truth), or
   for a later version the ``VersionKeyDelivered`` key of the buyer (``node.versionfetch``):
   by default the latest version the buyer holds a key for;
2. unwrap it with the wallet-derived X25519 key (docs/formats.md §4);
3. load the metadata JSON and check it names the same model hash as the chain;
4. stream the ciphertext from the store (each block verified against its CID) → unseal (§4.2)
   → extract the tar into a temporary folder beside OUT (same filesystem, so the final rename
   is atomic), hashing each file as it is written: one pass over the bytes;
5. compare the extracted files' manifest hash with the on-chain model hash, then rename the
   folder into place. Any failure removes the temporary folder: OUT is untouched.
Decrypted weights are private: OUT and every folder in it is 0700, every file 0600
(``private_folder``/``make_private``; the UI's uploads and fetched models use them too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from node import versionfetch, versions
from node.content import keywrap, seal, tarball
from node.content.manifest import check_model_hash
from node.errors import ChainError, IntegrityError, KeyDeliveryError, ManifestError, ModexError
from node.pipes import CountingReader, as_reader
from node.protocol import Book, SaleTerms

log = logging.getLogger(__name__)


@dataclass
class Listing:
    model_id: int
    model_hash: bytes
    metadata_cid: str
    price: int
    active: bool
    owner: str
    operator: str


@dataclass
class Fetched:
    model_id: int
    purchase_id: int  # 0: the owner's own copy (decrypt_published), bought by nobody
    out_dir: Path
    model_hash: str
    files: int
    size: int
    version: int = 1


def _registry_view(chain, model_id: int, fn):
    """``fn.call()`` on a registry view of ``model_id``; an unknown id (the view reverts with
    ERC721NonexistentToken) → ChainError "model N is not listed"."""
    if model_id <= 0:
        raise ChainError(f"model id must be a positive number, got {model_id}")
    try:
        return fn.call()
    except ChainError:
        raise
    except Exception as exc:  # web3 raises its own types for a view revert (ERC721NonexistentToken)
        if _is_connection_error(exc):
            raise ChainError(f"cannot reach the chain at {_endpoint(chain)}: {exc}") from exc
        raise ChainError(
            f"model {model_id} is not listed on chain {chain.chain_id}; "
            "`modex models` shows the listed ids",
            model_id=model_id,
        ) from None


def get_listing(chain, model_id: int) -> Listing:
    """The listing's on-chain facts; ChainError "model N is not listed" for an unknown id."""
    reg = chain.registry
    terms = sale_terms(chain, model_id)
    return Listing(
        model_id=model_id,
        model_hash=bytes(reg.functions.modelHash(model_id).call()),
        metadata_cid=reg.functions.metadataCid(model_id).call(),
        price=terms.price,
        active=terms.active,
        owner=terms.owner,
        operator=reg.functions.operatorOf(model_id).call(),
    )


def sale_terms(chain, model_id: int) -> SaleTerms:
    """Price in wei, active and owner in one call; ChainError for an unknown id."""
    return SaleTerms.from_call(
        _registry_view(chain, model_id, chain.registry.functions.saleTerms(model_id))
    )


def book(chain, model_id: int) -> Book:
    """What the Marketplace was told about the model's validation (disputed, and since when)."""
    return Book.from_call(chain.call(chain.marketplace.functions.book(model_id)))


def content_ref(chain, model_id: int) -> tuple[bytes, str]:
    """(model hash, metadata CID) as listed: all that fetching needs; ChainError if unknown."""
    reg = chain.registry
    model_hash = bytes(_registry_view(chain, model_id, reg.functions.modelHash(model_id)))
    return model_hash, reg.functions.metadataCid(model_id).call()


def _endpoint(chain) -> str:
    return getattr(chain, "endpoint", "the configured RPC endpoint")


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (
            ConnectionError,
            TimeoutError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        ),
    )


def load_metadata(store, cid: str) -> dict:
    """The listing's metadata JSON from the store (verified by its CID there)."""
    data = as_reader(store.get(cid)).read()
    try:
        meta = json.loads(data)
    except ValueError:
        raise IntegrityError(f"the metadata at {cid} is not JSON", cid=cid) from None
    if not isinstance(meta, dict) or meta.get("version") != 1:
        raise IntegrityError(f"the metadata at {cid} is not Modex metadata version 1", cid=cid)
    return meta


def check_metadata(meta: dict, model_id: int, model_hash: bytes) -> str:
    """Raise unless the metadata matches the on-chain model hash; return its content CID."""
    if str(meta.get("model_hash", "")).lower() != "0x" + model_hash.hex():
        raise IntegrityError(
            f"the metadata of model {model_id} names model hash {meta.get('model_hash')}, "
            f"but the chain lists 0x{model_hash.hex()}; refusing it",
            model_id=model_id,
        )
    seal_info = meta.get("seal") or {}
    if seal_info.get("scheme") != "MDXSEAL1" or not meta.get("content_cid"):
        raise IntegrityError(
            f"the metadata of model {model_id} does not describe a "
            "MDXSEAL1 sealed archive; this node cannot open it"
        )
    return meta["content_cid"]


def _logs(event, chain, **filters):
    start = int((getattr(chain, "deployment", None) or {}).get("block", 0) or 0)
    return event.get_logs(argument_filters=filters, from_block=start)


def find_delivery(
    chain, buyer: str, model_id: int, purchase_id: int | None = None
) -> tuple[int, bytes | None]:
    """The buyer's latest purchase of ``model_id`` (or ``purchase_id``) and its wrapped key.

    Returns (purchase_id, wrapped key or None when not delivered yet).
    """
    pid, delivered = find_delivery_event(chain, buyer, model_id, purchase_id)
    return pid, bytes(delivered["args"]["wrappedKey"]) if delivered else None


def find_delivery_event(chain, buyer: str, model_id: int, purchase_id: int | None = None):
    """``find_delivery``'s purchase id and its ``KeyDelivered`` event (None: not delivered)."""
    market = chain.marketplace
    purchases = _logs(market.events.Purchased(), chain, modelId=model_id, buyer=buyer)
    ids = [int(ev["args"]["purchaseId"]) for ev in purchases]
    if purchase_id is not None:
        if purchase_id not in ids:
            raise KeyDeliveryError(
                f"purchase {purchase_id} is not {buyer}'s purchase of model {model_id}",
                purchase_id=purchase_id,
            )
        ids = [purchase_id]
    if not ids:
        raise KeyDeliveryError(
            f"{buyer} has not bought model {model_id}: run `modex buy {model_id}` first",
            model_id=model_id,
        )
    # Newest delivered purchase wins; else report the newest pending one.
    for pid in sorted(ids, reverse=True):
        delivered = _logs(market.events.KeyDelivered(), chain, purchaseId=pid)
        if delivered:
            return pid, delivered[-1]
    return max(ids), None


def unwrap_for(chain, signer, purchase_id: int, wrapped: bytes) -> bytes:
    secret, _public = keywrap.derive_x25519(signer, chain.chain_id)
    return keywrap.unwrap_key(
        wrapped,
        secret,
        chain_id=chain.chain_id,
        marketplace=chain.marketplace.address,
        purchase_id=purchase_id,
    )


PRIVATE_FOLDER = 0o700  # decrypted weights and uploads: only the node's own user reads them
PRIVATE_FILE = 0o600


def private_folder(path: Path, root: Path | None = None) -> Path:
    """Create ``path`` and its missing parents as folders only their owner can open (0700);
    folders already there keep their mode (a buyer's own --out parent), except that with
    ``root`` (an ancestor: a folder of the node's own) every folder below it is made 0700."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
    below_root = [path, *path.parents]
    below_root = below_root[: below_root.index(root)] if root in below_root else missing
    for folder in below_root:
        os.chmod(folder, PRIVATE_FOLDER)  # mkdir's mode passes through the umask
    return path


def make_private(root: Path) -> None:
    """Every folder under ``root`` (itself included) 0700, every file 0600."""
    os.chmod(root, PRIVATE_FOLDER)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), PRIVATE_FOLDER)
        for name in files:
            os.chmod(os.path.join(folder, name), PRIVATE_FILE)


def retrieve(store, content_cid: str, key: bytes, dest_parent: Path, *, prefix: str, progress=None):
    """Stream store → unseal → extract into a new temp folder under ``dest_parent``.

    Returns (temp folder, manifest of what was extracted). The caller verifies and renames it;
    on any error here the temp folder is removed.
    """
    try:
        private_folder(dest_parent)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=dest_parent))
    except OSError as exc:
        # Not a ManifestError: that says the content is bad (a validator attests it unreadable).
        raise ModexError(
            f"cannot write in {dest_parent}: {exc.strerror}; choose another "
            "--out, in a folder you can write to"
        ) from None
    try:
        # One thread: store.get (each block verified) → unseal → extract (each file hashed while
        # written). On the 2-core machine a producer thread and a pipe measured slower than
        # this (the three stages are hashlib/AES/write calls that already run at C speed).
        src = CountingReader(
            as_reader(store.get(content_cid)),
            (lambda n: progress("fetch", n, None)) if progress else None,
        )
        manifest = tarball.extract_tar(seal.UnsealReader(src, key), tmp)
        make_private(tmp)  # extract_tar writes 0644/0755, readable only through tmp (0700)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, manifest


def _check_out_dir(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ManifestError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise ManifestError(f"{out} is not empty; choose a new or empty folder for --out")


def place(tmp: Path, out: Path) -> None:
    """Move a verified temp folder to ``out`` (which is absent or an empty folder)."""
    _check_out_dir(out)
    if out.is_dir():
        out.rmdir()
    os.chmod(tmp, PRIVATE_FOLDER)
    os.rename(tmp, out)


def fetch_model(
    chain,
    signer,
    store,
    model_id: int,
    out_dir: str | os.PathLike,
    *,
    purchase_id: int | None = None,
    version: int | None = None,
    progress=None,
) -> Fetched:
    """The buyer's fetch-and-verify journey (see the module docstring): ``version`` (default:
    the latest the buyer holds a key for: its purchase's, or a later one the seller's worker
    delivered) is verified against that version's on-chain hash."""
    out = Path(out_dir).absolute()
    _check_out_dir(out)
    content_ref(chain, model_id)  # "model N is not listed" before anything else
    if version is not None:
        versions.get_version(chain, model_id, version)  # a version the model has
    pid, delivered = find_delivery_event(chain, signer.address, model_id, purchase_id)
    if delivered is None:
        if book(chain, model_id).disputed:
            raise KeyDeliveryError(
                f"validators disputed model {model_id}: the key for purchase {pid} will never be "
                f"delivered; run `modex refund {pid}` now to take your payment back",
                purchase_id=pid,
            )
        raise KeyDeliveryError(
            f"the key for purchase {pid} of model {model_id} has not been delivered yet; wait "
            f"for the seller's worker, or after the delivery window run `modex refund {pid}`",
            purchase_id=pid,
        )
    opens = versions.delivered_version(
        chain, model_id, delivered["blockNumber"], delivered["logIndex"]
    )
    # Later versions' keys come one by one (VersionKeyDelivered); by default the latest held.
    later = versionfetch.later_version_keys(chain, signer.address, model_id)
    number = max([opens, *later]) if version is None else version
    if number == opens:
        key = unwrap_for(chain, signer, pid, bytes(delivered["args"]["wrappedKey"]))
    elif number in later:
        key = versionfetch.unwrap_version_key(chain, signer, model_id, number, later[number])
    else:
        raise versionfetch.no_key_for(chain, signer.address, model_id, pid, opens, number)
    model_hash, metadata_cid = versions.content_of(chain, model_id, number)
    content_cid = check_metadata(load_metadata(store, metadata_cid), model_id, model_hash)
    fetched = extract_verified(
        store,
        content_cid,
        key,
        Fetched(model_id, pid, out, "0x" + model_hash.hex(), 0, 0, version=number),
        progress=progress,
    )
    log.info(
        "model %d version %d verified (hash 0x%s) and written to %s",
        model_id,
        number,
        model_hash.hex(),
        out,
    )
    return fetched


def extract_verified(store, content_cid: str, key: bytes, fetched: Fetched, *, progress=None):
    """Steps 4 and 5: the sealed archive unsealed into a temporary folder beside
    ``fetched.out_dir`` and renamed to it only if its manifest hash is ``fetched.model_hash``;
    ``fetched`` with the count and size of the files written."""
    out = fetched.out_dir
    tmp, manifest = retrieve(
        store, content_cid, key, out.parent, prefix=f".{out.name}.", progress=progress
    )
    try:
        check_model_hash(manifest, bytes.fromhex(fetched.model_hash.removeprefix("0x")))
        place(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    fetched.files, fetched.size = len(manifest.files), manifest.total_size
    return fetched


def decrypt_published(chain, store, vault, model_id: int, out_dir, *, progress=None) -> Fetched:
    """The seller's side of a fetch: the listing's latest version decrypted from the store with
    the content key the seller's key vault kept when it was published (no purchase, no wrapped
    key), verified against that version's on-chain model hash like a buyer's fetch, written to
    ``out_dir`` (private, as every decrypted model). `modex retrain` starts from it."""
    out = Path(out_dir).absolute()
    _check_out_dir(out)
    content_ref(chain, model_id)  # "model N is not listed" before anything else
    number = versions.version_count(chain, model_id)
    model_hash, metadata_cid = versions.content_of(chain, model_id, number)
    content_cid = check_metadata(load_metadata(store, metadata_cid), model_id, model_hash)
    entry = vault.get(content_cid)
    if entry is None or entry.model_hash.lower() != "0x" + model_hash.hex():
        raise KeyDeliveryError(
            f"the key vault {vault.path} holds no key for version {number} of model {model_id} "
            f"(content {content_cid}): only the node that published it has it; run this with "
            "that node's --data-dir, or give the version's folder yourself",
            model_id=model_id,
        )
    listed = Fetched(model_id, 0, out, "0x" + model_hash.hex(), 0, 0, version=number)
    fetched = extract_verified(store, content_cid, entry.key, listed, progress=progress)
    log.info("model %d version %d decrypted from the key vault into %s", model_id, number, out)
    return fetched
