"""The model page's version history (issue 15 §1): each version with its own validation status,
read from the index's VersionPublished rows and validation cycles; and the validators' queue, which
lists a Verified model again once a later version awaits its cycle."""

from __future__ import annotations

from conftest import funded_validator, make_model_dir, publish_listing, settle, unlock

from node.content.manifest import model_hash
from node.protocol import ModelStatus
from node.publish import ListingInfo, publish_version
from tests.node.modex_stack import settle_validation


def test_the_page_shows_each_version_and_its_own_status(stack, client, tmp_path):
    seller = stack.demo_accounts["seller"]
    model_id = publish_listing(stack, tmp_path, "versioned", "Versioned")
    settle(stack)
    page = client.get(f"/models/{model_id}")
    assert page.status_code == 200
    assert 'id="versions"' not in page.get_data(as_text=True), "one version: no history shown"
    validator = funded_validator(stack)
    verdict = settle_validation(stack.chain, model_id, owner=seller, validator=validator)
    assert verdict == ModelStatus.VERIFIED
    second = make_model_dir(tmp_path, "versioned-2", payload=b"new weights" * 300)
    published = publish_version(
        stack.chain, seller, stack.store, stack.vault, model_id, second, ListingInfo(name="v2")
    )
    assert published.version == 2
    settle(stack)

    indexer = stack.indexer()
    try:
        rows = indexer.versions_of(model_id)
    finally:
        indexer.close()
    assert [(r["version"], r["status"]) for r in rows] == [(1, "verified"), (2, "unverified")]
    assert rows[1]["model_hash"].lower() == "0x" + model_hash(second).hex()
    assert rows[1]["published_at"] and rows[0]["published_at"] is None

    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    block = html[
        html.index('id="versions"') : html.index("</section>", html.index('id="versions"'))
    ]
    assert "2 (latest)" in block
    statuses = [cell.split("</td>")[0] for cell in block.split('<td class="version-status"')[1:]]
    assert [c.split(">", 1)[1] for c in statuses] == ["not validated", "Verified"], (
        "version 2 does not inherit version 1's status"
    )
    # The card and the content are the version sold now; the rounds' version is named.
    card = html[
        html.index("<h2>Model card</h2>") : html.index("</section>", html.index("Model card"))
    ]
    assert "<h1>versioned-2</h1>" in card, card
    assert rows[1]["model_hash"] in html and rows[1]["metadata_cid"] in html
    assert '<td id="content-version">2 (latest)</td>' in html
    assert "The rounds attest version 1; version 2 is not validated yet." in html
    # A validator's queue lists it again: its key request opens version 2's cycle.
    unlock(client, stack, "validator")
    queue = client.get("/validate/").get_data(as_text=True)
    row = queue[queue.index(f'data-model-id="{model_id}"') :]
    assert "version 2 awaits validation: Validate opens its cycle" in row[: row.index("</tr>")]

    # A validator's next key request opens version 2's cycle: the rounds now attest it.
    stack.chain.transact(
        stack.chain.marketplace.functions.requestValidatorKey(model_id, b"\x0b" * 32), validator
    )
    settle(stack)
    html = client.get(f"/models/{model_id}").get_data(as_text=True)
    assert "The rounds attest version 2." in html and "is not validated yet" not in html
    block = html[html.index('id="versions"') :]
    statuses = [cell.split("</td>")[0] for cell in block.split('<td class="version-status"')[1:]]
    assert [c.split(">", 1)[1] for c in statuses] == ["being validated", "Verified"]
