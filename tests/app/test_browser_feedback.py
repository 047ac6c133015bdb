"""A browser-wallet licence holder corrects a model's answer in headless Chromium (issue 15 §3,
issue 16 §2): "Wrong? Correct it" beside Try it, sealed in the page (app/static/js/feedback.js,
bundled by tools/setup.sh into app/static/build/), pinned by the node unread, anchored by the
wallet's Votes.sendFeedback. The UI over an exchange of its own (the embedded chain and store),
served by waitress; the wallet is an eth-account key behind an injected window.ethereum (as in
test_publish_wallet_browser.py) whose transactions go to the embedded chain.

The seller's node.feedback.read_feedback reads the text and the label; every request the page
sent is recorded and none carries the text (the one upload is the sealed bytes the node pinned);
the chain holds the CID only. Then the page withdraws it (Votes.withdrawFeedback) and the seller's
reader skips it."""

from __future__ import annotations

import threading
import uuid

import pytest
from eth_account import Account

from modex import demo
from modex.commands import up
from node import feedback, market, paths
from node.devchain import free_port
from node.pipes import as_reader
from node.signer import LocalSigner
from tests.app.conftest import publish_listing, settle
from tests.app.test_browser import browser, shot  # noqa: F401 (browser: a fixture)
from tests.app.test_publish_wallet_browser import InjectedWallet
from tests.app.test_up import INJECTED_PROVIDER

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

BUNDLE = paths.ROOT / "app" / "static" / "build" / "feedback.js"


class EmbeddedChainWallet(InjectedWallet):
    """test_publish_wallet_browser.py's stand-in for MetaMask, sending to the exchange's embedded
    chain (its Web3 provider) instead of anvil's RPC; the page's faucet funds it."""

    def __init__(self, w3):
        self.account = Account.create()
        self.sent: list[str] = []
        self.w3 = w3

    def rpc_call(self, method: str, params: list):
        body = self.w3.provider.make_request(method, params)
        assert "error" not in body, body
        return body["result"]


@pytest.fixture
def served(own_exchange, tmp_path):
    """own_exchange with the demo wallets and one listing it serves (Try it shows; no inference
    runs here), its UI served by waitress; yields (url, exchange, model id)."""
    from waitress import create_server

    from app.resources import close_resources

    assert BUNDLE.is_file(), f"{BUNDLE} is missing: run `bash tools/setup.sh` (it builds it)"
    demo.demo_accounts(own_exchange)
    model_id = publish_listing(own_exchange, tmp_path, "corrected", "Corrected", price=10**16)
    own_exchange.models[model_id] = tmp_path / "corrected"
    settle(own_exchange)
    app = up.create_ui(own_exchange, demo=True)
    server = create_server(app, host="127.0.0.1", port=free_port(), threads=2)
    threading.Thread(target=server.run, name="ui", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", own_exchange, model_id
    finally:
        server.close()
        close_resources(app)


def test_a_browser_wallet_corrects_an_answer_sealed_in_the_page(served, browser):  # noqa: F811
    url, exchange, model_id = served
    chain = exchange.chain
    wallet = EmbeddedChainWallet(chain.w3)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.expose_function("pyEthereum", wallet.request)
    context.add_init_script(INJECTED_PROVIDER)
    sent: list[tuple[str, str, bytes]] = []  # every request of the page: url, headers, body
    context.on("request", lambda r: sent.append((r.url, str(r.headers), r.post_data_buffer or b"")))
    page = context.new_page()
    console: list = []  # a CSP refusal would be an error here
    page.on("console", lambda message: console.append(message))
    page.goto(f"{url}/wallet/")
    page.click("#eip1193-connect")
    page.wait_for_selector("#eip1193-enc")
    page.click("#faucet-button")
    page.wait_for_selector(".flash")
    market.buy(chain, LocalSigner(wallet.account), model_id)  # the licence, from the same wallet
    settle(exchange)

    page.goto(f"{url}/models/{model_id}")
    secret = f"screen-cracked-{uuid.uuid4().hex}"  # one spelling: no request may carry it
    page.fill("#try textarea", secret)
    page.click("#feedback-sealed summary")  # opened: it offers the text just tried
    # <details> fires "toggle" in a task of its own after opening: wait for the offered text.
    page.wait_for_function(
        "t => document.querySelector('#feedback-sealed textarea[name=text]').value === t",
        arg=secret,
        timeout=10_000,
    )
    page.fill("#feedback-sealed input[name=output]", "positive")
    page.fill("#feedback-sealed input[name=label]", "0")
    page.click("#feedback-seal-button")
    page.wait_for_selector("#feedback-seal-status:has-text('Sent privately')", timeout=30_000)
    shot(page, "feedback-sealed-in-the-page")

    (item,) = feedback.read_feedback(
        chain, exchange.store, exchange.demo_accounts["seller"], model_id
    )
    assert (item.input, item.output, item.label, item.note) == (secret, "positive", 0, None)
    assert item.sender == wallet.account.address and item.cid in page.inner_text(
        "#feedback-seal-status"
    )
    uploads = [body for u, _h, body in sent if u.endswith(f"/{model_id}/feedback/sealed")]
    assert uploads == [as_reader(exchange.store.get(item.cid)).read()]
    assert uploads[0].startswith(feedback.MAGIC)
    assert sent and not [r for r in sent if secret.encode() in r[2] or secret in r[0] + r[1]]
    (event,) = chain.events("FeedbackSent", modelId=model_id)
    tx = chain.w3.eth.get_transaction(event["transactionHash"])
    assert event["args"]["itemCid"] == item.cid and secret.encode() not in bytes(tx["input"])
    call = chain.votes.decode_function_input(tx["input"])
    assert (call[0].fn_name, dict(call[1])) == (
        "sendFeedback",
        {"modelId": model_id, "itemCid": item.cid},
    )
    page.click("#feedback-withdraw-button")  # consent withdrawn: the seller's reader skips it
    page.wait_for_selector("#feedback-seal-status:has-text('Withdrawn')", timeout=30_000)
    assert (
        feedback.read_feedback(chain, exchange.store, exchange.demo_accounts["seller"], model_id)
        == []
    )
    errors = [(m.text, m.location["url"]) for m in console if m.type == "error"]
    assert [e for e in errors if not e[1].endswith("/favicon.ico")] == []  # the site has none
    context.close()
