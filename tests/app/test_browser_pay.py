"""The three ways to pay in headless Chromium (issue 14, "Done when"), against a real `modex up`
(its local chain deploys the test stablecoin; the demo lists a model in mUSD with a subscription
offer and a price per call): one new wallet subscribes and runs Try it paid by the subscription,
another opens a payment channel and runs Try it paid by vouchers, and its wallet page shows the
channel and the balances per token. Screenshots go to test-artifacts/screenshots/pay-*.png."""

from __future__ import annotations

import re

import pytest

from tests.app.conftest import modex_up
from tests.app.test_browser import browser, expect_flash, new_page, shot  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

MUSD_MODEL = "Demo sentiment classifier, in mUSD"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with modex_up(tmp_path_factory.mktemp("modex-up-pay")) as running:
        yield running


def funded_wallet_on_the_musd_model(browser, url: str, password: str):  # noqa: F811
    """A new page with a new wallet, given test ETH and mUSD by the faucet, on the mUSD model."""
    page = new_page(browser)
    page.goto(f"{url}/wallet/")
    page.fill("form[action$='/wallet/create'] input[name=password]", password)
    page.fill("form[action$='/wallet/create'] input[name=confirm]", password)
    page.click("#create-button")
    expect_flash(page, "created and unlocked")
    page.click("#faucet-button")
    expect_flash(page, "1000 mUSD")
    page.goto(url)
    assert "5 mUSD" in page.locator("tr", has_text=MUSD_MODEL).inner_text()
    page.click(f"text={MUSD_MODEL}")
    assert page.inner_text("#price") == "5 mUSD"
    assert "1 mUSD per 30 days" in page.inner_text("#subscription-offer")
    assert "0.01 mUSD a call" in page.inner_text("#call-price")
    assert page.locator("#try").count() == 0  # nothing paid yet: no Try it
    return page


def run_try_it(page, text: str) -> str:
    page.fill("#try textarea", text)
    page.click("#try-button", timeout=180_000)  # the model may still be loading
    result = page.inner_text("#try-result")
    assert "→" in result and re.search(r"\((0|1)\.\d\d\)", result), result
    return result


def test_subscribe_or_pay_per_call_then_try_it(server, browser):  # noqa: F811
    url, _ = server

    # -- a subscriber: 1 period of 1 mUSD, then Try it paid by the subscription --
    page = funded_wallet_on_the_musd_model(browser, url, "subscriber password")
    page.click("#subscribe-button")
    expect_flash(page, "Subscribed for 1 mUSD")
    assert "Subscribed until" in page.inner_text("#subscribed-until")
    assert "paid with your subscription" in run_try_it(page, "I love this phone")
    shot(page, "pay-1-subscribed")

    # -- per-call credit: a channel of 1 mUSD for 7 days, Try it paid by vouchers --
    page = funded_wallet_on_the_musd_model(browser, url, "per-call password")
    page.fill("#channel-form input[name=amount]", "1")
    page.click("#channel-button")
    shown = expect_flash(page, "Opened payment channel #")
    opened = re.search(r"Opened payment channel #(\d+) with 1 mUSD", shown)
    assert opened, shown
    number = opened.group(1)
    assert "1 mUSD of 1 mUSD" in page.inner_text("#my-channels")
    first = run_try_it(page, "great value, works perfectly")
    assert f"paid by a voucher on channel #{number} (0.01 mUSD spent" in first, first
    second = run_try_it(page, "broke after a day, awful")
    assert f"channel #{number} (0.02 mUSD spent" in second, second
    assert "0.98 mUSD of 1 mUSD" in page.inner_text("#my-channels")
    shot(page, "pay-2-channel")

    # -- its wallet page: the channel, and the balances per token --
    page.goto(f"{url}/wallet/")
    assert f"#{number}" in page.inner_text(f"#channel-{number}")
    assert page.inner_text(f"#channel-{number} .channel-spent") == "0.02 mUSD"
    assert re.search(r"\d ETH", page.inner_text("#token-balances tr[data-token=ETH]"))
    assert "999 mUSD" in page.inner_text("#token-balances tr[data-token=mUSD]")  # less the deposit
    shot(page, "pay-3-wallet")
