"""A browser wallet pays for a model's service in headless Chromium (issue 16 §2, "Buyer, Try it"),
against a real `modex up` (its local anvil; the demo lists a model in mUSD with a subscription
offer and a price per call). The wallet is a stand-in for MetaMask injected as window.ethereum:
an eth-account key in the test signs (personal_sign for Sign-In with Ethereum,
eth_signTypedData_v4 for Try it's request and voucher, eth_sendTransaction sent to anvil). One
wallet subscribes (approve, then subscribe) and runs Try it; another opens a channel and runs two
Try its paid by vouchers. No request the pages send carries a private key or a personal_sign
signature. Screenshots go to test-artifacts/screenshots/wallet-pay-*.png."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from tests.app.conftest import modex_up
from tests.app.test_browser import (  # noqa: F401 (browser: a fixture)
    browser,
    expect_flash,
    shot,
    status_says,
)
from tests.app.test_browser_pay import MUSD_MODEL
from tests.app.test_up import INJECTED_PROVIDER

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with modex_up(tmp_path_factory.mktemp("modex-up-wallet-pay")) as (url, log_path):
        anvil = re.search(r"local anvil (http://127\.0\.0\.1:\d+)", log_path.read_text())
        assert anvil, log_path.read_text()[-2000:]
        yield url, anvil.group(1)


SIWE_LINE = "wants you to sign in with your Ethereum account"


class InjectedWallet:
    """An eth-account key behind the page's window.ethereum; it remembers the signatures it gave
    with personal_sign other than Sign-In with Ethereum's (the encryption key's seed: the pages
    must never send it)."""

    def __init__(self, rpc_url: str):
        self.account = Account.create()
        self.rpc = httpx.Client(base_url=rpc_url, timeout=30)
        self.personal_signatures: list[str] = []

    def _rpc(self, method: str, params: list):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        reply = self.rpc.post("", json=body).json()
        assert "error" not in reply, reply
        return reply["result"]

    def request(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        account = self.account
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps([account.address])
        if method == "personal_sign":
            signature = bytes(account.sign_message(encode_defunct(text=params[0])).signature)
            if SIWE_LINE not in params[0]:  # Sign-In with Ethereum's is sent: the node checks it
                self.personal_signatures.append(signature.hex())
            return json.dumps("0x" + signature.hex())
        if method == "eth_signTypedData_v4":
            assert params[0] == account.address, params
            signed = account.sign_message(encode_typed_data(full_message=json.loads(params[1])))
            return json.dumps("0x" + bytes(signed.signature).hex())
        if method == "eth_sendTransaction":  # eth-account takes the 0x quantities as they are
            tx = {k: v for k, v in params[0].items() if k != "from"}
            raw = "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()
            return json.dumps(self._rpc("eth_sendRawTransaction", [raw]))
        raise AssertionError(f"unexpected wallet call {method}")


def wallet_on_the_musd_model(browser, url: str, rpc_url: str, sent: list):  # noqa: F811
    """A new page whose injected wallet signed in and connected, got test ETH and 1000 mUSD from
    the faucet, on the mUSD model's page; every request the page sends is added to ``sent``."""
    wallet = InjectedWallet(rpc_url)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.expose_function("pyEthereum", wallet.request)
    context.add_init_script(INJECTED_PROVIDER)
    page = context.new_page()
    page.dialogs = []  # the page says everything in its status lines: an alert() is a failure
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))
    page.goto(f"{url}/wallet/")
    page.click("#eip1193-connect")
    page.wait_for_selector("#eip1193-enc")
    assert wallet.account.address in page.inner_text("#address")
    page.click("#eip1193-enc")  # a personal_sign whose signature must stay in the page
    page.wait_for_selector("#eip1193-status:has-text('Encryption key ready')")
    page.click("#faucet-button")
    expect_flash(page, "1000 mUSD")
    page.goto(url)
    page.click(f"text={MUSD_MODEL}")
    assert "0.01 mUSD a call" in page.inner_text("#call-price")
    assert page.locator("#try").count() == 0  # nothing paid yet: no Try it
    return wallet, page


def run_try_it(page, text: str) -> str:
    """Type, press Run (the wallet signs in the page), and read the answer in the Try it box."""
    page.fill("#try textarea", text)
    page.click("#eip1193-try")
    page.wait_for_selector("#try-result:has-text('→')", timeout=180_000)  # the model may load
    result = page.inner_text("#try-result")
    assert re.search(r"\((0|1)\.\d\d\)", result), result
    return result


def test_a_browser_wallet_subscribes_or_opens_a_channel_and_runs_try_it(server, browser):  # noqa: F811
    url, rpc_url = server
    sent: list[str] = []

    # -- a subscriber: the wallet approves 1 mUSD, subscribes, then signs Try it's request --
    subscriber, page = wallet_on_the_musd_model(browser, url, rpc_url, sent)
    page.wait_for_load_state("load")  # modex.js has wired the forms
    page.press("#subscribe-form input[name=periods]", "Enter")  # as its button: the wallet pays
    page.wait_for_selector("#subscribed-until", timeout=60_000)
    # The status is said again after the reload, once the page's script has run: wait for it.
    status_says(page, "Subscribed")
    assert "paid with your subscription" in run_try_it(page, "I love this phone")
    shot(page, "wallet-pay-1-subscribed")
    assert not page.dialogs, page.dialogs

    # -- per-call credit: a 1 mUSD channel, two Try its paid by vouchers signed in the page --
    buyer, page = wallet_on_the_musd_model(browser, url, rpc_url, sent)
    page.fill("#channel-form input[name=amount]", "1")
    page.click("#eip1193-channel")
    page.wait_for_selector("#my-channels", timeout=60_000)
    status_says(page, "Opened a payment channel with 1 mUSD")
    assert "1 mUSD of 1 mUSD" in page.inner_text("#my-channels")
    number = page.get_attribute("#my-channels tr[data-channel]", "data-channel")
    first = run_try_it(page, "great value, works perfectly")
    assert f"paid by a voucher on channel #{number} (0.01 mUSD spent" in first, first
    page.click("#eip1193-try")  # the same text again: a new request and the next voucher
    page.wait_for_selector("#try-result:has-text('0.02 mUSD spent')", timeout=60_000)
    assert "0.98 mUSD of 1 mUSD" in page.inner_text("#my-channels")  # updated in place
    shot(page, "wallet-pay-2-channel")
    page.goto(f"{url}/wallet/")
    assert page.inner_text(f"#channel-{number} .channel-spent") == "0.02 mUSD"
    assert page.locator(f"[data-eip1193-topup='{number}']").count() == 1
    shot(page, "wallet-pay-3-wallet")
    assert not page.dialogs, page.dialogs

    # -- nothing the pages sent carries a wallet's private key or its personal_sign signature --
    secrets = [w.account.key.hex().removeprefix("0x") for w in (subscriber, buyer)]
    secrets += subscriber.personal_signatures + buyer.personal_signatures
    assert len(secrets) == 4 and sent
    for request in sent:
        assert not any(secret.lower() in request.lower() for secret in secrets), request
