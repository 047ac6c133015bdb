"""Every journey as three different people — seller, buyer, validator — through `modex`.

Once on the embedded stack (in-process chain + embedded store, worker passes run in between),
once on anvil + the IPFS daemon (Kubo RPC API) with `modex worker` running as a separate
process while `modex buy` waits for its key.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from modex_stack import make_stack, past
from validator_helpers import round_of, toy_report

from node.onchain import canonical_json, work_digest
from node.protocol import EVALUATION_REPORT, ModelStatus, Purchase, PurchaseStatus
from tests.ml.conftest import tiny_bert
from tests.scripts import run_benchmark

PRICE = 10**16  # 0.01 ETH
FEE_BPS = 250
CHALLENGE = 300  # seconds a sale's revenue is held (the dev deployment's challenge period)
PERIOD = 3  # the validators' commit and reveal periods (seconds)
# What the seller's evaluation found, and the validator's (ml/ itself is tested in tests/ml).
REPORT = toy_report(outputs=(0, 1), accuracy=0.5)
# The deployment both journeys run on.
TERMS = {
    "fee_bps": FEE_BPS,
    "delivery_window": 3600,
    "challenge_period": CHALLENGE,
    "commit_period": PERIOD,
    "reveal_period": PERIOD,
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real (tiny) BERT classifier in safetensors, plus its seller's evaluation report and
    metrics naming an eval set."""
    out = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    tiny_bert(num_labels=2).save_pretrained(out, safe_serialization=True)
    (out / "README.md").write_text("---\nlicense: mit\n---\n# tiny-bert\nA test model.\n")
    (out / EVALUATION_REPORT).write_bytes(canonical_json(REPORT))
    (out / "metrics.json").write_bytes(canonical_json(REPORT["metrics"]))
    return out


def fake_ml(model_dir, metadata):
    """The CLI's evaluator, without loading ml/ (tested in tests/ml and test_validate_ml.py)."""
    assert (model_dir / "model.safetensors").is_file()
    assert metadata["metrics"]["eval_set"] == REPORT["eval_set"]
    return json.loads(json.dumps(REPORT))


def ok(result):
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def published_id(out: str) -> int:
    return int(dict(line.split(None, 1) for line in out.splitlines())["model_id"])


def check_after_journey(stack, model_id, fetched_dir, tiny_model):
    """What the chain and the buyer's folder must show after the full journey."""
    from transformers import AutoModelForSequenceClassification

    from node.content.manifest import build_manifest

    chain = stack.chain
    reg, mkt, val = (
        chain.registry.functions,
        chain.marketplace.functions,
        chain.validators.functions,
    )
    # The buyer's folder is exactly the listed model, and loads.
    assert build_manifest(fetched_dir).model_hash == bytes(chain.call(reg.modelHash(model_id)))
    assert build_manifest(fetched_dir).model_hash == build_manifest(tiny_model).model_hash
    AutoModelForSequenceClassification.from_pretrained(fetched_dir)
    assert not any(p.name.endswith(".partial") for p in fetched_dir.parent.iterdir())
    # Licence for the buyer, none for the validator (its key grants no vote).
    buyer, validator = stack.signers["buyer"].address, stack.signers["validator"].address
    assert chain.call(mkt.hasLicense(model_id, buyer))
    assert not chain.call(mkt.hasLicense(model_id, validator))
    # Verified by the validator's revealed attestation (quorum 1 on a dev deployment): it
    # reproduced the listed hash and the work digest the seller claimed when publishing.
    assert chain.call(val.status(model_id)) == ModelStatus.VERIFIED
    attested = chain.events("Attested", modelId=model_id)
    assert [e["args"]["validator"] for e in attested] == [validator]
    assert (
        bytes(attested[0]["args"]["workDigest"])
        == work_digest(REPORT)
        == bytes(chain.call(reg.claimedWorkDigest(model_id)))
    )
    assert chain.call(val.isVerifier(model_id, validator))
    # One vote of 5, weighing the price the buyer paid: (weighted sum, weight, voters).
    assert tuple(chain.call(chain.votes.functions.scoreOf(model_id))) == (5 * PRICE, PRICE, 1)
    # Each purchase (buyer's and validator's) delivered exactly once.
    delivered = [e["args"]["purchaseId"] for e in chain.events("KeyDelivered")]
    assert len(delivered) == len(set(delivered)) == 2


@pytest.mark.slow
def test_all_journeys_on_the_embedded_stack(tmp_path, tiny_model, monkeypatch):
    stack = make_stack("embedded", tmp_path, **TERMS)
    monkeypatch.setattr("modex.commands.validate.ml_evaluator", fake_ml)

    out = ok(
        stack.cli(
            "seller",
            "publish",
            str(tiny_model),
            "--price",
            "0.01",
            "--name",
            "tiny-bert",
            "--task",
            "text-classification",
            "--license",
            "mit",
        )
    )
    model_id = published_id(out)
    # The metadata JSON is pinned, canonical and says what docs/formats.md §6 says.
    meta_cid = stack.chain.call(stack.chain.registry.functions.metadataCid(model_id))
    raw = stack.store().get(meta_cid).read()
    meta = json.loads(raw)
    assert raw == json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    assert {
        "version",
        "name",
        "description",
        "task",
        "license",
        "framework",
        "model_hash",
        "manifest",
        "sealed",
        "content_cid",
        "seal",
        "metrics",
        "card",
        "created",
    } <= set(meta)
    assert meta["seal"] == {"scheme": "MDXSEAL1", "chunk_size": 1 << 20}
    assert meta["metrics"]["eval_set"] == "toy-v1" and meta["card"].startswith("---")
    assert meta["framework"] == "transformers"

    assert "asked for its key" in ok(stack.cli("validator", "validate", "--once"))  # and stakes
    out = ok(stack.cli("buyer", "buy", str(model_id), "--max-price", "0.01", "--wait", "0"))
    assert "purchase" in out
    before = stack.chain.balance(stack.signers["seller"].address)
    out = ok(stack.cli("seller", "worker", "--once"))
    assert "delivered 2 key(s)" in out
    ok(stack.cli("seller", "worker", "--once"))  # a second pass delivers nothing new
    fetched = tmp_path / "bought" / "tiny-bert"
    ok(stack.cli("buyer", "fetch", str(model_id), "--out", str(fetched)))
    out = ok(stack.cli("validator", "validate", "--once"))
    assert f"model {model_id}: committed to hash" in out and "(matches)" in out
    assert "waiting for commits of round 1 to close, then it reveals: until" in out
    past(stack, round_of(stack, model_id).commit_end)  # the embedded chain's clock moves by hand
    assert f"model {model_id}: revealed" in ok(stack.cli("validator", "validate", "--once"))
    past(stack, round_of(stack, model_id).reveal_end)
    out = ok(stack.cli("validator", "validate", "--once"))
    assert f"model {model_id}: settled verified" in out and "seat released" in out
    ok(stack.cli("buyer", "vote", str(model_id), "5"))
    check_after_journey(stack, model_id, fetched, tiny_model)

    # Money: the sale is held for the challenge period; then the seller's withdraw releases it
    # (credited the price less the fee) and withdraws exactly that.
    stack.time_travel(CHALLENGE + 1)
    out = ok(stack.cli("seller", "withdraw"))
    assert "released 1 sale(s)" in out and "withdrew 0.00975 ETH" in out
    assert stack.chain.balance(stack.signers["seller"].address) < before + PRICE  # minus gas

    # Refund journey: buyer2 pays, nobody delivers, the window passes, buyer2 gets it back.
    code, out, _ = stack.cli("buyer2", "buy", str(model_id), "--wait", "0.5")
    assert code == 3 and "modex refund" in out  # no key in time: it says how to get the money back
    pid = int(out.split()[1].rstrip(":"))
    code, _, err = stack.cli("buyer2", "refund", str(pid))
    assert code == 1 and "refund is possible only after" in err and "Traceback" not in err
    stack.time_travel(3700)
    ok(stack.cli("buyer2", "refund", str(pid)))
    out = ok(stack.cli("seller", "worker", "--once"))  # too late: never delivered
    assert "delivered 0 key(s)" in out
    out = ok(stack.cli("buyer2", "withdraw"))
    assert "0.01 ETH" in out
    refunded = Purchase.from_call(stack.chain.call(stack.chain.marketplace.functions.purchase(pid)))
    assert refunded.status == PurchaseStatus.REFUNDED


@pytest.mark.anvil
@pytest.mark.kubo
@pytest.mark.slow
def test_all_journeys_on_anvil_and_the_ipfs_daemon(
    tmp_path, tiny_model, anvil, ipfs_daemon, monkeypatch
):
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, ipfs=ipfs_daemon.api_url, **TERMS)
    monkeypatch.setattr("modex.commands.validate.ml_evaluator", fake_ml)
    model_id = published_id(ok(stack.cli("seller", "publish", str(tiny_model), "--price", "0.01")))
    worker = subprocess.Popen(
        stack.modex_cmd("seller", "worker", "--interval", "0.2"),
        env=stack.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ok(stack.cli("validator", "validate", "--once"))
        out = ok(stack.cli("buyer", "buy", str(model_id), "--wait", "60"))
        assert "key delivered" in out
        fetched = tmp_path / "bought" / "tiny-bert"
        ok(stack.cli("buyer", "fetch", str(model_id), "--out", str(fetched)))
        # The worker answers the validator's request in the background; the chain's clock runs.
        out = ok(
            stack.cli(
                "validator",
                "validate",
                "--until-settled",
                str(model_id),
                "--timeout",
                "120",
                "--interval",
                "0.3",
            )
        )
        assert f"model {model_id}: settled verified" in out
        ok(stack.cli("buyer", "vote", str(model_id), "5"))
    finally:
        worker.terminate()
        log = worker.communicate(timeout=20)[0]
    assert worker.returncode == 0, log
    check_after_journey(stack, model_id, fetched, tiny_model)
    stack.time_travel(CHALLENGE + 1)  # the sale's revenue is held until then
    out = ok(stack.cli("seller", "withdraw"))
    assert "released 1 sale(s)" in out and "withdrew 0.00975 ETH" in out


def test_e2e_benchmark_runs_and_ends_with_its_json_line():
    _, figures = run_benchmark("e2e", "--size-mb", "2", timeout=300)
    assert {"e2e_over_raw", "publish_s", "buy_s", "deliver_s", "fetch_s"} <= set(figures)
    assert figures["e2e_over_raw"] > 0
