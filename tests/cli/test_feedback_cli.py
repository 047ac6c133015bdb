"""`modex feedback` on the embedded stack: a buyer sends a correction and lists it, the seller
reads it (JSON lines), the buyer withdraws it and the seller's read skips it; a stranger can
neither send nor read, and a send without a correction is refused before anything is sent."""

from __future__ import annotations

import json

import pytest

from tests.node.modex_stack import licence, make_stack, publish_model, write_model


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback-cli")
    stack = make_stack("embedded", root, delivery_window=3600)
    model_id = publish_model(stack, write_model(root / "m"))
    licence(stack, "buyer", model_id)
    return stack, str(model_id)


def test_send_list_read_withdraw(market):
    stack, model = market
    code, out, err = stack.cli(
        "buyer",
        "feedback",
        model,
        "--text",
        "not bad at all",
        "--output",
        "negative",
        "--label",
        "1",
    )
    assert code == 0, err
    cid = out.split("item ")[1].split(" ")[0]
    assert "only this CID is public" in out and "not bad at all" not in out
    code, out, _ = stack.cli("buyer", "feedback", model, "--list")
    assert code == 0 and f"{cid}  shared with the seller" in out
    code, out, err = stack.cli("seller", "feedback", model, "--read")
    assert code == 0, err
    (item,) = [json.loads(line) for line in out.splitlines()]
    assert item["cid"] == cid and item["input"] == "not bad at all" and item["label"] == 1
    assert item["output"] == "negative" and item["sender"] == stack.signers["buyer"].address
    code, out, err = stack.cli("buyer", "feedback", model, "--withdraw", cid)
    assert code == 0 and "withdrawn" in out, err
    code, out, _ = stack.cli("seller", "feedback", model, "--read")
    assert code == 0 and out == ""
    code, out, _ = stack.cli("buyer", "feedback", model, "--list")
    assert f"{cid}  withdrawn" in out


def test_a_stranger_or_a_send_without_a_correction_is_refused(market):
    stack, model = market
    code, _, err = stack.cli("validator", "feedback", model, "--text", "x", "--label", "0")
    assert code != 0 and "no licence or live subscription" in err
    code, _, err = stack.cli("validator", "feedback", model, "--read")
    assert code != 0 and "only its seller reads" in err
    code, _, err = stack.cli("buyer", "feedback", model, "--text", "x")
    assert code != 0 and "give the right label" in err
