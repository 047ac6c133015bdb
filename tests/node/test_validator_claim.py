"""The seller's claim, what validators must reproduce: `modex publish` claims the work digest of
the evaluation report the model directory carries (the evaluation its card's metrics come from),
right after listing; without a report it lists with no claim and says the model can never become
Verified; a report that disagrees with the listed metrics stops the publish before anything is
listed; `modex claim` finishes a listing whose claim was not sent."""

from __future__ import annotations

import json

import pytest
from modex_stack import make_stack, write_model
from validator_helpers import claimed_model, toy_report

from node import publish
from node.errors import ChainError
from node.onchain import canonical_json, work_digest
from node.protocol import EVALUATION_REPORT

REPORT = toy_report()


@pytest.fixture
def stack(tmp_path):
    return make_stack("embedded", tmp_path / "stack", delivery_window=3600)


def listed_count(stack) -> int:
    return int(stack.chain.call(stack.chain.registry.functions.modelCount()))


def claimed(stack, model_id: int) -> bytes:
    return bytes(stack.chain.call(stack.chain.registry.functions.claimedWorkDigest(model_id)))


def publish_cli(stack, folder, *argv):
    return stack.cli("seller", "publish", str(folder), "--price", "0.01", *argv)


def fields(out: str) -> dict:
    return dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("warning"))


def test_publish_claims_the_digest_of_the_report_the_model_carries(stack, tmp_path):
    code, out, err = publish_cli(stack, claimed_model(tmp_path / "m", REPORT))
    assert code == 0, err
    model_id = int(fields(out)["model_id"])
    assert fields(out)["work_digest"] == "0x" + work_digest(REPORT).hex()
    assert claimed(stack, model_id) == work_digest(REPORT)
    [event] = stack.chain.events("MetricsClaimed", modelId=model_id)
    [listed] = stack.chain.events("ModelListed", modelId=model_id)
    assert event["blockNumber"] == listed["blockNumber"] + 1  # right after list()
    meta = json.loads(
        stack.store()
        .get(stack.chain.call(stack.chain.registry.functions.metadataCid(model_id)))
        .read()
    )
    assert meta["metrics"] == REPORT["metrics"]  # the card's metrics are the claimed evaluation's


def test_without_metrics_json_the_listing_declares_the_reports_metrics(stack, tmp_path):
    folder = claimed_model(tmp_path / "m", REPORT)
    (folder / "metrics.json").unlink()
    code, out, err = publish_cli(stack, folder)
    assert code == 0, err
    model_id = int(fields(out)["model_id"])
    meta = json.loads(
        stack.store()
        .get(stack.chain.call(stack.chain.registry.functions.metadataCid(model_id)))
        .read()
    )
    assert meta["metrics"] == REPORT["metrics"] and claimed(stack, model_id) == work_digest(REPORT)


def test_a_model_without_a_report_is_listed_unclaimed_and_the_seller_is_told(stack, tmp_path):
    folder = write_model(tmp_path / "bare")
    code, out, err = publish_cli(stack, folder)
    assert code == 0, err
    model_id = int(fields(out)["model_id"])
    assert fields(out)["work_digest"] == "none claimed" and claimed(stack, model_id) == b"\0" * 32
    assert "can never become Verified" in out and f"--report {folder}/{EVALUATION_REPORT}" in out
    assert stack.chain.events("MetricsClaimed") == []


@pytest.mark.parametrize(
    "tamper, said",
    [
        (
            lambda f: (f / "metrics.json").write_text(
                json.dumps({**REPORT["metrics"], "accuracy": 0.99})
            ),
            "accuracy: declared 0.99, reproduced 0.5",
        ),
        (
            lambda f: (f / "metrics.json").write_text(json.dumps({"accuracy": 0.5})),
            "eval_set: declared None, evaluated 'toy-v1'",
        ),
        (
            lambda f: (f / EVALUATION_REPORT).write_text("{not json"),
            "cannot read the evaluation report",
        ),
        (
            lambda f: (f / EVALUATION_REPORT).write_bytes(
                canonical_json({**REPORT, "outputs": []})
            ),
            "is not an evaluation report: its outputs must be",
        ),
        (
            lambda f: (f / EVALUATION_REPORT).write_bytes(canonical_json({**REPORT, "version": 2})),
            "is not an evaluation report: version 2, expected 1",
        ),
    ],
    ids=["boasting-metrics", "no-eval-set", "not-json", "no-outputs", "other-version"],
)
def test_a_report_that_is_not_the_listed_evaluation_stops_the_publish_before_listing(
    stack, tmp_path, tamper, said
):
    folder = claimed_model(tmp_path / "m", REPORT)
    tamper(folder)
    code, _, err = publish_cli(stack, folder)
    assert code == 1 and said in err and "Traceback" not in err, err
    assert listed_count(stack) == 0 and stack.vault().entries() == []  # nothing pinned or listed


def test_a_claim_that_fails_after_the_listing_is_finished_by_modex_claim(
    stack, tmp_path, monkeypatch
):
    folder = claimed_model(tmp_path / "m", REPORT)
    real = publish.claim_metrics

    def unreachable(*args, **kw):
        raise ChainError("the chain node at embedded refused claimMetrics: connection reset")

    monkeypatch.setattr("node.publish.claim_metrics", unreachable)
    code, _, err = publish_cli(stack, folder)
    assert code == 1 and "model 1 is listed, but its work digest was not claimed" in err
    assert f"`modex claim 1 {folder}`" in err and claimed(stack, 1) == b"\0" * 32
    monkeypatch.setattr("node.publish.claim_metrics", real)

    other = claimed_model(tmp_path / "other", REPORT, seed=5)
    code, _, err = stack.cli("seller", "claim", "1", str(other))
    assert code == 1 and "is not the model listed as 1" in err
    code, out, err = stack.cli("seller", "claim", "1", str(folder))
    assert code == 0, err
    assert f"work digest 0x{work_digest(REPORT).hex()} claimed in 0x" in out
    assert claimed(stack, 1) == work_digest(REPORT)
    code, out, _ = stack.cli("seller", "claim", "1", str(folder))  # not again: it would count late
    assert code == 0 and "already claimed: nothing sent" in out
    assert len(stack.chain.events("MetricsClaimed", modelId=1)) == 1
