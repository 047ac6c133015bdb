"""A new version's key reaches the licence holders its update window covers (issue 15 §1), on the
embedded stack: the seller's key-delivery worker wraps version 2's key for buyer A (bought inside
the window) and not for buyer B (bought a day before it), once across crashes and restarts; the
contract's own rules are tested in tests/contracts/test_version_keys.py."""

from __future__ import annotations

import logging
import re

import pytest

from node.config import Config, validate
from node.content import keywrap
from node.errors import ConfigError
from tests.node.cli_results import ok, refused
from tests.node.modex_stack import buy_raw, make_stack, publish_model, write_model
from tests.node.worker_helpers import seller_worker

DAY = 86400


class Crashed(Exception):
    """Stands in for the worker process dying at a crash point."""


def crash_at(point: str):
    def crash(at: str, item: int) -> None:
        if at == point:
            raise Crashed(f"{at} {item}")

    return crash


@pytest.fixture
def published(tmp_path):
    """Model with a one-day update window: B bought on day 0, A on day 2, then version 2 is out
    (inside A's window, outside B's); both purchases' keys delivered."""
    stack = make_stack("embedded", tmp_path)
    v1, v2 = write_model(tmp_path / "v1", seed=1), write_model(tmp_path / "v2", seed=2)
    model_id = publish_model(stack, v1)
    ok(stack.cli("seller", "versions", str(model_id), "--update-window", "1d"))
    state = tmp_path / "worker.json"
    early = buy_raw(stack, "buyer2", model_id)
    assert seller_worker(stack, state).poll().delivered == [early]
    stack.time_travel(2 * DAY)
    late = buy_raw(stack, "buyer", model_id)
    assert seller_worker(stack, state).poll().delivered == [late]
    ok(stack.cli("seller", "publish", "--new-version", str(model_id), str(v2)))
    return stack, model_id, state, v2


def test_the_version_key_info_binds_chain_marketplace_model_version_and_account():
    market, account = "0x" + "ab" * 20, "0x" + "cd" * 20
    info = keywrap.version_key_info(31337, market, 7, 2, account)
    assert info == (
        b"modex/v1/version-key"
        + (31337).to_bytes(8, "big")
        + bytes.fromhex("ab" * 20)
        + (7).to_bytes(32, "big")
        + (2).to_bytes(32, "big")
        + bytes.fromhex("cd" * 20)
    )
    with pytest.raises(keywrap.KeyWrapError, match="account must be a 20-byte address"):
        keywrap.version_key_info(31337, market, 7, 2, "0x1234")


def version_key_events(stack, model_id: int) -> list[dict]:
    return [
        dict(ev["args"])
        for ev in stack.chain.events(
            "VersionKeyDelivered", from_block=stack.chain.deployment["block"], modelId=model_id
        )
    ]


def test_the_worker_delivers_version_2_to_the_holder_inside_the_window_only(published):
    stack, model_id, state, _v2 = published
    a, b = stack.signers["buyer"].address, stack.signers["buyer2"].address
    market = stack.chain.marketplace.functions
    assert stack.chain.call(market.entitledTo(model_id, 2, a))
    assert not stack.chain.call(market.entitledTo(model_id, 2, b))

    report = seller_worker(stack, state).poll()
    assert report.version_keys == [(model_id, 2, a)]
    (event,) = version_key_events(stack, model_id)
    assert event["account"] == a and event["version"] == 2
    # wrapped to A's purchase key, bound to (chain, marketplace, model, version, A): A opens it
    secret, _public = keywrap.derive_x25519(stack.signers["buyer"], stack.chain.chain_id)
    info = keywrap.version_key_info(
        stack.chain.chain_id, stack.chain.marketplace.address, model_id, 2, a
    )
    key = keywrap.unwrap_with_info(bytes(event["wrappedKey"]), secret, info=info)
    assert key == stack.vault().for_model(stack.chain.chain_id, model_id).key
    with pytest.raises(keywrap.KeyWrapError):  # not as another version's key
        wrong = keywrap.version_key_info(
            stack.chain.chain_id, stack.chain.marketplace.address, model_id, 3, a
        )
        keywrap.unwrap_with_info(bytes(event["wrappedKey"]), secret, info=wrong)

    # a restarted worker decides from the chain again: nothing more to send
    assert seller_worker(stack, state).poll().version_keys == []
    assert len(version_key_events(stack, model_id)) == 1


def test_modex_worker_once_says_which_version_keys_it_delivered(published):
    stack, model_id, _state, _v2 = published
    a = stack.signers["buyer"].address
    out = ok(stack.cli("seller", "worker", "--once"))
    assert f"model {model_id} version 2: key delivered to {a}" in out
    assert "version 2: key delivered" not in ok(stack.cli("seller", "worker", "--once"))


@pytest.mark.parametrize("point", ["before_send", "after_send"])
def test_a_crash_around_the_send_delivers_once(published, point, caplog):
    stack, model_id, state, _v2 = published
    a = stack.signers["buyer"].address
    with pytest.raises(Crashed):
        seller_worker(stack, state, crash=crash_at(point)).poll()
    assert len(version_key_events(stack, model_id)) == (0 if point == "before_send" else 1)

    restarted = seller_worker(stack, state)
    with caplog.at_level(logging.INFO, logger="node.worker"):
        assert restarted.poll().version_keys == [(model_id, 2, a)], "the recorded batch, resumed"
    if point == "before_send":  # the recorded bytes sent again, said of the batch
        assert re.search(r"version-key batch \d+: resending recorded transaction", caplog.text)
        assert "purchase" not in caplog.text
    assert restarted.poll().version_keys == []
    assert seller_worker(stack, state).poll().version_keys == []
    assert [e["account"] for e in version_key_events(stack, model_id)] == [a]


def test_a_batch_holds_at_most_the_configured_number_of_holders(published):
    stack, model_id, state, _v2 = published
    stack.cli("seller", "versions", str(model_id), "--update-window", "forever")
    report = seller_worker(stack, state, version_key_batch=1).poll()
    assert sorted(report.version_keys) == sorted(
        (model_id, 2, stack.signers[r].address) for r in ("buyer", "buyer2")
    )
    blocks = {
        ev["blockNumber"]
        for ev in stack.chain.events(
            "VersionKeyDelivered", from_block=stack.chain.deployment["block"]
        )
    }
    assert len(blocks) == 2, "one transaction per holder"


def test_holders_fetch_the_versions_they_hold_keys_for(published, tmp_path):
    stack, model_id, state, v2 = published
    seller_worker(stack, state).poll()
    fetch = ["fetch", str(model_id), "--out"]
    # A: version 2 by its VersionKeyDelivered key, verified; also the default (the latest held)
    out = ok(stack.cli("buyer", *fetch, str(tmp_path / "a2"), "--version", "2"))
    assert "version 2 verified" in out
    assert files_of(tmp_path / "a2") == files_of(v2)
    assert "version 2 verified" in ok(stack.cli("buyer", *fetch, str(tmp_path / "a")))
    # B: outside the window, refused in words; its purchase's version stays its default
    err = refused(
        stack.cli("buyer2", *fetch, str(tmp_path / "b2"), "--version", "2"),
        "not entitled to version 2",
        "update window is 86400 s after each purchase",
        "opens version 1",
    )
    assert "Traceback" not in err and not (tmp_path / "b2").exists()
    assert "version 1 verified" in ok(stack.cli("buyer2", *fetch, str(tmp_path / "b")))


def test_an_entitled_holder_waits_for_the_worker_in_words(published, tmp_path):
    stack, model_id, _state, _v2 = published
    refused(
        stack.cli("buyer", "fetch", str(model_id), "--out", str(tmp_path / "a"), "--version", "2"),
        "entitled to version 2",
        "has not delivered its key yet",
    )


def files_of(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_batch_size_is_a_setting_of_1_to_1000_holders():
    assert Config().version_key_batch == 50
    validate(Config(version_key_batch=1000))
    with pytest.raises(ConfigError, match="version_key_batch .* must be 1 to 1000"):
        validate(Config(version_key_batch=0))
