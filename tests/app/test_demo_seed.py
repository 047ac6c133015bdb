"""`modex up`'s demo seeding: listings come from the chain, and a listing left unclaimed by a start
cut short between `list` and `claimMetrics` is claimed at the next start (without it, the demo
model could never become Verified)."""

from __future__ import annotations

import shutil

import pytest

from modex import demo
from node import publish as publish_mod
from node.errors import ChainError
from node.onchain import work_digest
from node.publish import read_report


def test_a_demo_listing_left_unclaimed_is_claimed_at_the_next_start(
    own_exchange, trained_model, monkeypatch
):
    stack = own_exchange
    model_dir = demo.demo_model_dir(stack.config)
    shutil.copytree(trained_model, model_dir, dirs_exist_ok=True)
    assert demo.is_trained_model(model_dir)

    def lost(chain, signer, model_id, digest):
        raise ChainError("the node went away")

    with monkeypatch.context() as patched:
        patched.setattr(publish_mod, "claim_metrics", lost)
        with pytest.raises(ChainError, match="is listed, but its work digest was not claimed"):
            demo.seed_demo(stack, say=lambda *_: None)

    ids = demo.seed_demo(stack, say=lambda *_: None)
    assert len(ids) == len(demo.DEMO_LISTINGS)  # the first listing is not listed twice
    claimed = {
        bytes(stack.chain.call(stack.chain.registry.functions.claimedWorkDigest(i))) for i in ids
    }
    assert claimed == {work_digest(read_report(model_dir))}
    assert demo.seed_demo(stack, say=lambda *_: None) == ids  # and a third start changes nothing


def test_a_cached_model_without_its_report_is_not_taken_as_trained(tmp_path, trained_model):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model, model_dir)
    assert demo.is_trained_model(model_dir)
    (model_dir / "evaluation.json").unlink()
    assert not demo.is_trained_model(model_dir)
