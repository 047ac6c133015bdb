"""A browser wallet's private feedback (issue 15 §3, issue 16 §2): the page seals the item
(app/static/js/feedback.js), this node pins the sealed bytes unread and prepares the Votes calls.

First the page's code under node against node/feedback.py: the same canonical JSON for the same
item, and a JS-sealed item that open_item accepts. Then the node's side with Flask's test client
on an exchange of its own: the pin route (refuses what is not a sealed item, what is too large,
a request without its CSRF token or from another site, a wallet without access; stores exactly
the bytes) and /api/tx/prepare's sendFeedback and withdrawFeedback, sent by the wallet (an
eth-account key here) and read back by the seller with node.feedback.read_feedback."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from modex import demo
from modex.commands import up
from node import feedback, paths
from node.content import keywrap
from node.onchain import canonical_json
from node.pipes import as_reader
from tests.app.conftest import FAST_SCRYPT, csrf_token, post, publish_listing, settle
from tests.app.test_browser_wallet_pay_api import api
from tests.app.test_pages import send_prepared
from tests.app.test_siwe import sign_in

FEEDBACK_JS = paths.ROOT / "app" / "static" / "js" / "feedback.js"
VOTES = "0x" + "ab" * 20

# The page's buildItem and sealItem under node (its WebCrypto is the browser's API): SEAL_ARGS
# is {"item": ..., "key": seller public key hex, "chainId", "votes", "modelId"}; prints the
# item's canonical JSON and the stored bytes in hex.
SEAL_IN_NODE = """
const { buildItem, canonicalJSON, sealItem } = await import(process.env.FEEDBACK_JS);
const a = JSON.parse(process.env.SEAL_ARGS);
const item = buildItem(a.item);
const stored = await sealItem(item, a.key, a);
console.log(JSON.stringify({ canonical: canonicalJSON(item), stored: Buffer.from(stored).toString("hex") }));
"""


def seal_with_page_code(item: dict, public: bytes, model_id: int) -> tuple[str, bytes]:
    args = {
        "item": item,
        "key": public.hex(),
        "chainId": 31337,
        "votes": VOTES,
        "modelId": str(model_id),  # JSON numbers past 2**53 are not exact in JS
    }
    out = subprocess.run(
        ["node", "--input-type=module", "-e", SEAL_IN_NODE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=paths.ROOT,
        env={**os.environ, "FEEDBACK_JS": FEEDBACK_JS.as_uri(), "SEAL_ARGS": json.dumps(args)},
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    return answer["canonical"], bytes.fromhex(answer["stored"])


@pytest.mark.parametrize(
    "fields",
    [
        {"label": 2},
        {"note": 'été \u2028 "quoted" \\ \x7f \x01 \t 😀 <tag> \U0001f600'},
    ],
)
def test_an_item_sealed_by_the_page_opens_with_node_feedback(fields):
    secret = bytes(range(32))
    public = keywrap.x25519_public(secret)
    model_id = 2**70 + 5  # past a JS number's exact range: the page writes it exactly
    item = {
        "modelId": model_id,
        "version": 3,
        "input": "the screen cracked in a day — 壊れた 😀",
        "output": "positive",
        "sender": "0x" + "Ab" * 20,
        "createdAt": 1_760_000_000,
    } | fields
    canonical, stored = seal_with_page_code(item | {"modelId": str(model_id)}, public, model_id)
    expected = item | {"sender": to_checksum_address(item["sender"])}  # as build_item writes it
    assert canonical.encode() == canonical_json(expected)
    assert stored.startswith(feedback.MAGIC) and len(stored) == 8 + 32 + len(canonical) + 16
    opened = feedback.open_item(stored, secret, chain_id=31337, votes=VOTES, model_id=model_id)
    assert opened == expected
    with pytest.raises(feedback.FeedbackError, match="does not open"):  # info binds the model
        feedback.open_item(stored, secret, chain_id=31337, votes=VOTES, model_id=model_id + 1)


# ---- the node's side: pin, prepare, send (Flask's test client) -------------------------------


@pytest.fixture
def exchange(own_exchange, tmp_path):
    """own_exchange with the demo wallets and one listing (its metadata publishes the seller's
    feedback key); ``exchange.listing`` is its id."""
    demo.demo_accounts(own_exchange)
    own_exchange.listing = publish_listing(own_exchange, tmp_path, "fb", "Corrected", 10**16)
    settle(own_exchange)
    return own_exchange


def licensed_browser_wallet(ui, node, model_id: int):
    """A new key signed in and connected as the session's browser wallet, funded by the faucet,
    that bought ``model_id`` from its wallet and received the key (so hasAccess holds)."""
    wallet = Account.create()
    sign_in(ui, wallet, node.chain.chain_id)
    assert api(ui, "/api/wallet/connect", {"address": wallet.address}).status_code == 200
    post(ui, "/wallet/faucet")
    public = "0x" + keywrap.x25519_public(bytes(range(1, 33))).hex()
    assert api(ui, "/api/wallet/encryption-key", {"x25519_public": public}).status_code == 200
    r = api(ui, "/api/tx/prepare", {"action": "buy", "modelId": model_id, "maxPrice": "0.01"})
    assert r.status_code == 200, r.get_json()
    assert send_prepared(ui, node.chain, wallet, r.get_json()["tx"]) == "mined"
    settle(node)
    assert node.chain.call(node.chain.marketplace.functions.hasAccess(model_id, wallet.address))
    return wallet


def test_a_browser_wallet_pins_its_sealed_item_and_anchors_it(exchange):
    ui = up.create_ui(
        exchange, demo=True, extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT}
    ).test_client()
    model_id, chain = exchange.listing, exchange.chain
    sealed = f"/api/models/{model_id}/feedback/sealed"
    wallet = licensed_browser_wallet(ui, exchange, model_id)

    facts = ui.get(f"/api/models/{model_id}/feedback/seal").get_json()
    seller = exchange.demo_accounts["seller"]
    secret, public = keywrap.derive_x25519(seller, chain.chain_id)
    assert facts | {"answer": None} == {
        "account": wallet.address,
        "model_id": model_id,
        "chain_id": chain.chain_id,
        "votes": chain.votes.address,
        "version": 1,
        "seller_key": "0x" + public.hex(),
        "max_stored_bytes": feedback.MAX_STORED_BYTES,
        "answer": None,
    }
    item = feedback.build_item(
        model_id, 1, text="it said great", output="positive", sender=wallet.address, label=0
    )
    blob = feedback.seal_item(
        item, public, chain_id=chain.chain_id, votes=chain.votes.address, model_id=model_id
    )
    headers = {"X-CSRFToken": csrf_token(ui), "Content-Type": "application/octet-stream"}
    refusals = {
        "not a sealed feedback item": b"MDXSEAL1" + blob[8:],
        "at most": feedback.MAGIC + bytes(feedback.MAX_STORED_BYTES),
    }
    for said, body in refusals.items():
        r = ui.post(sealed, data=body, headers=headers)
        assert r.status_code == 400 and said in r.get_json()["error"]["message"], r.get_json()
    r = ui.post(sealed, data=blob, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)  # no token
    r = ui.post(sealed, data=blob, headers=headers | {"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = ui.post(sealed, data=blob, headers=headers)
    assert r.status_code == 200, r.get_json()
    cid = r.get_json()["cid"]
    assert as_reader(exchange.store.get(cid)).read() == blob  # exactly the bytes, unread
    r = api(ui, sealed, {"sealed": base64.b64encode(blob).decode()})  # the JSON form
    assert r.get_json()["cid"] == cid

    prepared = api(
        ui, "/api/tx/prepare", {"action": "sendFeedback", "modelId": model_id, "cid": cid}
    )
    assert prepared.status_code == 200, prepared.get_json()
    tx = prepared.get_json()["tx"]
    assert tx["to"] == chain.votes.address and tx["from"] == wallet.address
    assert send_prepared(ui, chain, wallet, tx) == "mined"
    (read,) = feedback.read_feedback(chain, exchange.store, seller, model_id)
    assert (read.cid, read.input, read.label, read.sender) == (
        cid,
        "it said great",
        0,
        wallet.address,
    )

    r = api(
        ui,
        "/api/tx/prepare",
        {"action": "withdrawFeedback", "modelId": model_id, "cid": "bafyother"},
    )
    assert r.status_code == 400 and "only its sender" in r.get_json()["error"]["message"]
    r = api(ui, "/api/tx/prepare", {"action": "withdrawFeedback", "modelId": model_id, "cid": cid})
    assert send_prepared(ui, chain, wallet, r.get_json()["tx"]) == "mined"
    assert feedback.read_feedback(chain, exchange.store, seller, model_id) == []

    outsider = Account.create()  # a browser wallet without a licence: nothing pinned, no call
    sign_in(ui, outsider, chain.chain_id)
    assert api(ui, "/api/wallet/connect", {"address": outsider.address}).status_code == 200
    other = feedback.seal_item(
        item | {"input": "another"},
        public,
        chain_id=chain.chain_id,
        votes=chain.votes.address,
        model_id=model_id,
    )
    r = ui.post(sealed, data=other, headers=headers)
    assert r.status_code == 400 and "no licence" in r.get_json()["error"]["message"]
    r = api(ui, "/api/tx/prepare", {"action": "sendFeedback", "modelId": model_id, "cid": cid})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "feedback_refused"
