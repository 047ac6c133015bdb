"""Versions of a listing (issue 15 §1) on the embedded stack, through `modex` as seller and buyers:
`modex publish --new-version`, `modex versions`, `modex fetch --version`, the worker delivering
the latest version's key to a new buyer, and validation per version (a status never carries over
to other weights). The contract's own rules are fuzzed in tests/forge/ModelRegistry.t.sol and
tests/forge/Validators.t.sol."""

from __future__ import annotations

import json

import pytest

from node.content.manifest import model_hash
from node.fetch import load_metadata
from node.protocol import ModelStatus
from node.versions import FOREVER, list_versions
from tests.node.modex_stack import (
    buy_raw,
    make_stack,
    publish_model,
    settle_validation,
    write_model,
)
from tests.node.worker_helpers import deliver_keys


def ok(result) -> str:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def refused(result) -> str:
    code, out, err = result
    assert code != 0, f"expected a refusal, got exit 0\nstdout: {out}"
    return err


@pytest.fixture
def market(tmp_path):
    stack = make_stack("embedded", tmp_path)
    v1 = write_model(tmp_path / "v1", seed=1)
    v2 = write_model(tmp_path / "v2", seed=2)
    return stack, publish_model(stack, v1), v1, v2


def versions_json(stack, role: str, model_id: int, *argv: str) -> dict:
    return json.loads(ok(stack.cli(role, "versions", str(model_id), "--json", *argv)))


def files_of(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_new_version_reaches_new_buyers_and_each_key_opens_its_own(market, tmp_path):
    stack, model_id, v1, v2 = market
    first = buy_raw(stack, "buyer", model_id)
    assert deliver_keys(stack, tmp_path / "worker.json") == [first]

    published = json.loads(
        ok(stack.cli("seller", "publish", "--new-version", str(model_id), str(v2), "--json"))
    )
    assert published["version"] == 2
    assert published["model_hash"] == "0x" + model_hash(v2).hex()
    listed = versions_json(stack, "buyer", model_id)
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert [v["model_hash"] for v in listed["versions"]] == [
        "0x" + model_hash(v1).hex(),
        published["model_hash"],
    ]
    assert listed["versions"][1]["metadata_cid"] == published["metadata_cid"]
    times = [v["published_at"] for v in listed["versions"]]
    assert 0 < times[0] <= times[1], "the listing's time comes from its ModelListed block"
    assert listed["update_window"] == 0, "by default a buyer keeps the version bought"
    assert load_metadata(stack.store(), published["metadata_cid"])["name"] == "m", "carried over"

    # The first buyer's key opens version 1: fetched and verified against version 1's hash.
    out = ok(stack.cli("buyer", "fetch", str(model_id), "--out", str(tmp_path / "o1")))
    assert "version 1 verified" in out
    assert files_of(tmp_path / "o1") == files_of(v1)
    err = refused(
        stack.cli("buyer", "fetch", str(model_id), "--out", str(tmp_path / "o2"), "--version", "2")
    )
    assert "opens version 1" in err
    assert not (tmp_path / "o2").exists()

    # A buyer after the new version gets its key from the worker and fetches version 2.
    second = buy_raw(stack, "buyer2", model_id)
    assert deliver_keys(stack, tmp_path / "worker.json") == [second]
    out = ok(
        stack.cli("buyer2", "fetch", str(model_id), "--out", str(tmp_path / "o3"), "--version", "2")
    )
    assert "version 2 verified" in out
    assert files_of(tmp_path / "o3") == files_of(v2)
    assert "has versions 1 to 2" in refused(
        stack.cli("buyer2", "fetch", str(model_id), "--out", str(tmp_path / "o4"), "--version", "3")
    )


def test_only_the_owner_publishes_changed_weights_and_sets_the_window(market, tmp_path):
    stack, model_id, v1, v2 = market
    new = ["publish", "--new-version", str(model_id)]
    assert "belongs to" in refused(stack.cli("buyer", *new, str(v2)))
    assert "latest version of model" in refused(stack.cli("seller", *new, str(v1)))
    assert "cannot change with a new version" in refused(
        stack.cli("seller", *new, str(v2), "--price", "1")
    )
    assert "needs a price" in refused(stack.cli("seller", "publish", str(v2)))
    assert [v.number for v in list_versions(stack.chain, model_id)] == [1]

    assert "is not the owner" in refused(
        stack.cli("buyer", "versions", str(model_id), "--update-window", "forever")
    )
    shown = versions_json(stack, "seller", model_id, "--update-window", "forever")
    assert shown["update_window"] == FOREVER
    assert versions_json(stack, "seller", model_id, "--update-window", "90d")["update_window"] == (
        90 * 86400
    )
    assert "not a period" in refused(
        stack.cli("seller", "versions", str(model_id), "--update-window", "soon")
    )


def test_validation_is_per_version(market):
    stack, model_id, _v1, v2 = market
    owner, validator = stack.signers["seller"], stack.signers["validator"]
    assert settle_validation(stack.chain, model_id, owner=owner, validator=validator) == (
        ModelStatus.VERIFIED
    )
    ok(stack.cli("seller", "publish", "--new-version", str(model_id), str(v2)))
    statuses = [v["status"] for v in versions_json(stack, "buyer", model_id)["versions"]]
    assert statuses == ["verified", "unverified"], "version 2 does not inherit version 1's status"

    # A model whose second version is out before any key request is validated as that version.
    other = publish_model(stack, write_model(stack.root / "w1", seed=3), name="other")
    ok(stack.cli("seller", "publish", "--new-version", str(other), str(stack.root / "v2")))
    assert settle_validation(stack.chain, other, owner=owner, validator=validator) == (
        ModelStatus.VERIFIED
    )
    statuses = [v["status"] for v in versions_json(stack, "buyer", other)["versions"]]
    assert statuses == ["unverified", "verified"]
