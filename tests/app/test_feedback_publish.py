"""A listing published from the UI names its seller's key for private feedback (issue 15 §3) in
its metadata, as `modex publish` does: the keystore wallet's derived key, or the key a browser
wallet derived in its page; a browser wallet that derived none yet lists without one."""

from __future__ import annotations

import io
import json

from node import feedback
from node.content import keywrap
from node.fetch import load_metadata
from node.signer import LocalSigner
from tests.app.conftest import csrf_token, post, unlock, wait_job
from tests.app.test_pages import _publish_form
from tests.app.test_publish_wallet import browser_wallet, records, sealed_upload


def metadata_of_pending(stack, upload: str) -> dict:
    record = (records(stack) / f"{upload}.json").read_text()
    return load_metadata(stack.store, json.loads(record)["metadata_cid"])


def test_a_keystore_publish_names_the_sellers_feedback_key(client, stack):
    seller = stack.demo_accounts["seller"]
    unlock(client, stack, "seller")
    data = _publish_form(name="Feedback key")
    data["files"] = [(io.BytesIO(b"k" * 2048), "fk/model.safetensors")]
    r = post(client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data")
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "done", job
    model_id = job["result"]["model_id"]
    chain = stack.chain
    metadata_cid = chain.registry.functions.metadataCid(model_id).call()
    entry = load_metadata(stack.store, metadata_cid)["feedback_key"]
    assert entry == feedback.feedback_key_entry(seller, chain.chain_id)
    assert feedback.seller_key(chain, stack.store, model_id).hex() == entry["x25519"][2:]


def test_a_browser_wallet_publish_names_the_key_its_page_derived(client, stack):
    wallet = browser_wallet(client, stack)
    upload = sealed_upload(client, stack, "No key yet", "fk-none")
    assert "feedback_key" not in metadata_of_pending(stack, upload)
    _secret, public = keywrap.derive_x25519(LocalSigner(wallet), stack.chain.chain_id)
    r = client.post(
        "/api/wallet/encryption-key",
        json={"x25519_public": "0x" + public.hex()},
        headers={"X-CSRFToken": csrf_token(client, "/publish/")},
    )
    assert r.status_code == 200, r.get_json()
    upload = sealed_upload(client, stack, "Keyed", "fk-keyed")
    assert metadata_of_pending(stack, upload)["feedback_key"] == {
        "account": wallet.address,
        "x25519": "0x" + public.hex(),
    }
