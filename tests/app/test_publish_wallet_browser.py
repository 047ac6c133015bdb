"""A seller publishes from a browser wallet in Chromium (issue 16 §2) against a real `modex up
--hosted` (its managed anvil, its embedded store): the page uploads a model folder, the node
seals and pins it, the injected EIP-1193 wallet signs list and setOperator, and a second browser
wallet buys the model and sees its key delivered by the node's worker (the model's operator)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.app.conftest import make_model_dir, modex_up
from tests.app.test_browser import browser, shot  # noqa: F401 (browser: the module's Chromium)
from tests.app.test_publish_wallet import REPORT
from tests.app.test_up import INJECTED_PROVIDER

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    env = {"MODEX_PASSWORD": "a password for this test"}
    with modex_up(tmp_path_factory.mktemp("hosted"), "--no-demo", "--hosted", env=env) as up:
        yield up


class InjectedWallet:
    """A stand-in for MetaMask: an eth-account key that signs what the page asks and sends it
    to the exchange's chain (as MetaMask sends to its own RPC node)."""

    def __init__(self, rpc_url: str):
        self.account = Account.create()
        self.rpc = httpx.Client(base_url=rpc_url, timeout=30)
        self.sent: list[str] = []
        self.rpc_call("anvil_setBalance", [self.account.address, hex(10**18)])

    def rpc_call(self, method: str, params: list):
        body = self.rpc.post(
            "", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        ).json()
        assert "error" not in body, body
        return body["result"]

    def request(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps([self.account.address])
        if method == "personal_sign":
            signed = self.account.sign_message(encode_defunct(text=params[0]))
            return json.dumps("0x" + bytes(signed.signature).hex())
        assert method == "eth_sendTransaction", method
        tx = {k: v if k in ("to", "data") else int(v, 16) for k, v in params[0].items()}
        del tx["from"]
        raw = "0x" + bytes(self.account.sign_transaction(tx).raw_transaction).hex()
        self.sent.append(self.rpc_call("eth_sendRawTransaction", [raw]))
        return json.dumps(self.sent[-1])

    def page(self, browser, url: str):  # noqa: F811 (the browser fixture's value)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.expose_function("pyEthereum", self.request)
        page.add_init_script(INJECTED_PROVIDER)
        page.goto(f"{url}/wallet/")
        page.click("#eip1193-connect")  # Sign-In with Ethereum, then connect
        page.wait_for_selector("#eip1193-enc")
        return page


def wait_for_text(page, text: str, timeout: float, *, reload: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while text not in page.inner_text("body"):
        assert time.monotonic() < deadline, page.inner_text("body")[:2000]
        time.sleep(1)
        if reload:
            page.reload()


def test_a_browser_wallet_publishes_and_a_browser_buyer_gets_the_key(hosted, browser, tmp_path):  # noqa: F811
    url, log_path = hosted
    rpc_url = httpx.get(f"{url}/api/health", timeout=30).json()["endpoint"]
    seller = InjectedWallet(rpc_url)
    page = seller.page(browser, url)
    page.goto(f"{url}/publish/")
    folder = make_model_dir(tmp_path, "wallet-folder", payload=b"browser-published" * 300)
    (folder / "evaluation.json").write_text(json.dumps(REPORT))  # so the wallet claims it too
    page.set_input_files("input[name=files]", folder)
    page.fill("input[name=name]", "Published from a browser wallet")
    page.fill("input[name=price]", "0.01")
    page.click("#publish-button")
    page.wait_for_selector("#publish-sign", timeout=120_000)  # sealed and pinned: now sign
    assert page.locator("#publish-steps li").count() == 3  # list, claimMetrics, setOperator
    page.click("#publish-sign")
    page.wait_for_url("**/models/*", timeout=120_000)
    model_id = int(page.url.rsplit("/", 1)[1])
    assert len(seller.sent) == 3
    assert "Published from a browser wallet" in page.inner_text("h1")
    assert "claimed" in page.inner_text("#claimed-digest")
    # The owner's wallet reprices it from the model page (setPrice).
    page.fill("#listing-price", "0.02")
    page.click("#listing-set-price")
    page.wait_for_selector("#price:has-text('0.02 ETH')", timeout=60_000)
    assert len(seller.sent) == 4
    shot(page, "50-browser-wallet-published")

    buyer = InjectedWallet(rpc_url)
    page = buyer.page(browser, url)
    page.click("#eip1193-enc")
    page.wait_for_selector("#eip1193-status:has-text('Encryption key ready')")
    page.goto(f"{url}/models/{model_id}")
    page.click("[data-eip1193-buy]")
    wait_for_text(page, "Key delivered", 120, reload=True)
    assert len(buyer.sent) == 1
    shot(page, "51-browser-wallet-bought-from-browser-seller")
    assert "Traceback" not in log_path.read_text()
