"""The model page's versions and reviews in headless Chromium (issue 15 §5): a model with two
versions and a review, served by waitress over the session's embedded exchange; the page shows
both versions in its history with the metrics chart (an inline SVG, under the page's CSP: no
console error) and the review's score and text."""

from __future__ import annotations

import threading

import pytest
from conftest import make_model_dir, publish_listing, settle

from modex.commands import up
from node import market, reviews
from node.devchain import free_port
from node.publish import ListingInfo, publish_version
from tests.app.test_browser import browser, new_page, shot  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def served(stack, tmp_path_factory):
    """A model with two versions (the first lists no metrics, the second 0.9/0.85) and the demo buyer's review,
    indexed; the UI over the session's exchange served on a free port. Yields (url, model id)."""
    from waitress import create_server

    from app.resources import close_resources

    root = tmp_path_factory.mktemp("browser-versions")
    seller, buyer = stack.demo_accounts["seller"], stack.demo_accounts["buyer"]
    model_id = publish_listing(stack, root, "shown-1", "Shown in Chromium")  # no metrics listed
    market.buy(stack.chain, buyer, model_id)
    settle(stack)
    reviews.review(stack.chain, buyer, stack.store, model_id, 4, "Solid on short reviews.")
    publish_version(
        stack.chain,
        seller,
        stack.store,
        stack.vault,
        model_id,
        make_model_dir(root, "shown-2", payload=b"shown two" * 300),
        ListingInfo(name="Shown in Chromium", metrics={"accuracy": 0.9, "macro_f1": 0.85}),
    )
    settle(stack)
    app = up.create_ui(stack, demo=True)
    server = create_server(app, host="127.0.0.1", port=free_port(), threads=2)
    threading.Thread(target=server.run, name="ui", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", model_id
    finally:
        server.close()
        close_resources(app)


def test_the_model_page_shows_both_versions_their_chart_and_the_review(served, browser):  # noqa: F811
    url, model_id = served
    page = new_page(browser)
    errors: list[str] = []  # but the browser's own favicon request (the site has none)
    page.on(
        "console",
        lambda m: (
            errors.append(f"{m.text} ({m.location['url']})")
            if m.type == "error" and not m.location["url"].endswith("/favicon.ico")
            else None
        ),
    )
    page.goto(f"{url}/models/{model_id}")

    rows = page.locator("#versions tr.version")
    assert [rows.nth(i).get_attribute("data-version") for i in range(rows.count())] == ["2", "1"]
    assert rows.nth(0).inner_text().startswith("2 (latest)")
    chart = page.locator("#versions svg.versions-chart")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box  # drawn, not collapsed
    drawn = {
        (bar.get_attribute("data-version"), bar.get_attribute("data-metric")): (
            bar.get_attribute("data-value"),
            float(bar.get_attribute("height")),
        )
        for bar in chart.locator("rect[data-version]").all()
    }
    assert drawn == {
        ("2", "accuracy"): ("0.9", 90.0),
        ("2", "macro_f1"): ("0.85", 85.0),
    }
    gaps = chart.locator("text.chart-gap")
    assert [(g.get_attribute("data-version"), g.text_content()) for g in gaps.all()] == [
        ("1", "version 1: no accuracy listed—"),
        ("1", "version 1: no macro-F1 listed—"),
    ]
    labels = chart.locator("text.chart-version").all_text_contents()
    assert labels == ["version 1", "version 2"]
    assert chart.locator("text.chart-status").all_text_contents() == [
        "not validated",
        "not validated",
    ]

    review = page.locator("#reviews .review")
    assert review.count() == 1
    assert review.locator(".review-text").inner_text() == "Solid on short reviews."
    assert "4★" in review.inner_text() and "about version 1" in review.inner_text()
    shot(page, "model-versions")
    assert errors == [], errors  # nothing refused by the CSP, no script error
    page.context.close()
