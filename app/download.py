"""The in-browser download of a bought model, for a browser-wallet (EIP-1193) buyer.

    GET /api/models/<id>/download   what the page needs to unwrap the key and check the files:
                                    the chain id, Marketplace and ModelRegistry addresses,
                                    purchase id, the wrappedKey of its KeyDelivered event, the
                                    on-chain model hash, the message the wallet signs
                                    (docs/formats.md §4) and the sealed archive's size (for
                                    progress only)
    GET /api/models/<id>/sealed     the sealed archive (docs/formats.md §3), streamed from the
                                    node's store, each block verified against its CID there

Everything secret happens in the page (app/static/js/download.js): the wallet signs the
encryption message, the page derives the X25519 secret from that signature, opens the HPKE
wrapped key, decrypts and checks the archive. No request to this node carries the signature or
the content key; what these routes send is public (on-chain, or ciphertext on IPFS). The page
reads the model hash, the purchase and the wrapped key from the chain itself, through the wallet,
and refuses an answer of this node that differs.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, session, url_for

from app.helpers import InputError
from app.lookups import model_or_404, my_purchase
from app.resources import get_chain, get_store
from node.content import seal, tarball
from node.content.keywrap import encryption_message
from node.content.manifest import manifest_from_json
from node.errors import KeyDeliveryError, ModexError
from node.fetch import check_metadata, content_ref, find_delivery, load_metadata
from node.pipes import as_reader

log = logging.getLogger(__name__)
bp = Blueprint("download", __name__)

STREAM_BLOCK = 1 << 20


def _browser_wallet() -> str:
    address = session.get("browser_wallet")
    if not address:
        raise InputError(
            "Connect a browser wallet first (Wallet page): the in-browser download unwraps "
            "the key with your wallet's signature."
        )
    return address


def _delivered_purchase(model_id: int) -> None:
    purchase = my_purchase(model_id)
    if purchase is None or purchase["state"] != "delivered":
        raise KeyDeliveryError(
            f"Your wallet has no delivered key for model {model_id}: buy it, and wait until "
            "the seller's node delivers the key.",
            model_id=model_id,
        )


def _sealed_size(meta: dict, model_hash: bytes) -> int | None:
    """The sealed archive's size the metadata implies (progress only; the page checks the bytes)."""
    try:
        manifest = manifest_from_json(meta.get("manifest") or {}, expected_hash=model_hash)
        chunk_size = int((meta.get("seal") or {}).get("chunk_size") or seal.DEFAULT_CHUNK_SIZE)
        return seal.sealed_size(tarball.tar_size(manifest), chunk_size)
    except (ModexError, TypeError, ValueError):
        return None


@bp.route("/api/models/<int:model_id>/download")
def info(model_id: int):
    model_or_404(model_id)
    address = _browser_wallet()
    _delivered_purchase(model_id)
    chain = get_chain()
    model_hash, metadata_cid = content_ref(chain, model_id)
    meta = load_metadata(get_store(), metadata_cid)
    check_metadata(meta, model_id, model_hash)  # the metadata names the chain's model hash
    purchase_id, wrapped = find_delivery(chain, address, model_id)
    if wrapped is None:
        raise KeyDeliveryError(
            f"Purchase #{purchase_id} has no KeyDelivered event on-chain yet: wait for the "
            "seller's node to deliver the key.",
            purchase_id=purchase_id,
        )
    return jsonify(
        chain_id=chain.chain_id,
        marketplace=chain.marketplace.address,
        registry=chain.registry.address,
        account=address,
        purchase_id=purchase_id,
        wrapped_key="0x" + bytes(wrapped).hex(),
        model_hash="0x" + model_hash.hex(),
        encryption_message=encryption_message(chain.chain_id, address),
        sealed_url=url_for(".sealed", model_id=model_id),
        sealed_size=_sealed_size(meta, model_hash),
        name=str(meta.get("name") or f"model-{model_id}"),
    )


def _blocks(reader):
    while block := reader.read(STREAM_BLOCK):
        yield block


@bp.route("/api/models/<int:model_id>/sealed")
def sealed(model_id: int):
    model_or_404(model_id)
    _browser_wallet()
    _delivered_purchase(model_id)
    model_hash, metadata_cid = content_ref(get_chain(), model_id)
    store = get_store()
    content_cid = check_metadata(load_metadata(store, metadata_cid), model_id, model_hash)
    reader = as_reader(store.get(content_cid))
    return Response(
        _blocks(reader),
        mimetype="application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )
