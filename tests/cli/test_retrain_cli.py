"""`modex retrain` and the worker's retraining job on the embedded stack, with the ML tests' tiny
model (a 3-step fine-tune) and one-epoch retrainings on a handful of feedback items.

The market: the seller lists v1; two buyers send labelled corrections, one of them also a note
(read, not trainable) and one item it then withdraws (never read). A stranger and an unknown
model are refused before any training, and so is a --from folder that is not the latest version;
a run that wrecks the model (a huge learning rate) is refused by the gate and publishes nothing;
--dry-run publishes nothing; a real run publishes version 2, whose changelog (decrypted back
from the store with the seller's key vault) counts the items used. The worker's job retrains
once N new items came in, and a restart (its state file) does not retrain on them again."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from ml import data
from modex.retraining import RetrainJob
from node import feedback, versions
from node.config import load_config
from node.errors import ConfigError
from node.fetch import decrypt_published
from tests.ml.conftest import TINY
from tests.node.modex_stack import buy_raw, licence, make_stack, publish_model

FAST = ("--replay-rows", "8", "--epochs", "1", "--batch-size", "8", "--max-length", "32")
ACCEPTING = ("--max-regression", "0.99")  # the tiny model's accuracy is noise: let it through
LABELLED = 8  # labelled items not withdrawn: what a run trains and evaluates on


def corrections(start: int, count: int) -> list[tuple[str, int]]:
    """Rows of the training split past what the tiny model was trained on, as (text, label)."""
    return [(r.text, r.label) for r in data.split("train")[start : start + count]]


def send(stack, role: str, model_id: int, rows) -> list[str]:
    signer, store = stack.signers[role], stack.store(role)
    return [
        feedback.send_feedback(stack.chain, store, signer, model_id, text=t, label=y).cid
        for t, y in rows
    ]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    from ml.train import train  # late (heavy): torch

    root = tmp_path_factory.mktemp("retrain-cli")
    stack = make_stack("embedded", root, delivery_window=3600)
    v1 = root / "v1"
    train({"output_dir": str(v1), **TINY})
    model_id = publish_model(stack, v1)
    licence(stack, "buyer", model_id)
    licence(stack, "buyer2", model_id)
    send(stack, "buyer", model_id, corrections(100, 5))
    withdrawn, *_kept = send(stack, "buyer2", model_id, corrections(105, 4))
    feedback.withdraw_feedback(stack.chain, stack.signers["buyer2"], model_id, withdrawn)
    signer2, store = stack.signers["buyer2"], stack.store("buyer2")
    feedback.send_feedback(
        stack.chain, store, signer2, model_id, text="so-so", note="it is neither, really"
    )
    return stack, model_id, v1


def test_a_stranger_an_unknown_model_or_another_folder_is_refused_before_training(market):
    stack, model_id, v1 = market
    code, _, err = stack.cli("buyer", "retrain", str(model_id), *FAST)
    assert code == 1 and "only its seller reads its feedback" in err
    code, _, err = stack.cli("seller", "retrain", "99", *FAST)
    assert code == 1 and "model 99 is not listed" in err
    other = v1.parent / "not-v1"
    shutil.copytree(v1, other)
    (other / "extra.txt").write_text("not in the published version")
    code, _, err = stack.cli("seller", "retrain", str(model_id), "--from", str(other), *FAST)
    assert code == 1 and "is not the latest version (1)" in err
    assert versions.version_count(stack.chain, model_id) == 1


def test_a_regressing_run_is_refused_and_publishes_nothing(market):
    stack, model_id, v1 = market
    code, out, err = stack.cli(
        "seller",
        "retrain",
        str(model_id),
        "--from",
        str(v1),
        "--learning-rate",
        "0.5",
        "--max-regression",
        "0",
        *FAST,
    )
    assert code == 3, err
    assert f"on {LABELLED} feedback item(s)" in out and "refused:" in out
    assert "nothing was published: the current version stays" in out
    assert versions.version_count(stack.chain, model_id) == 1


def test_a_dry_run_trains_and_gates_but_publishes_nothing(market, tmp_path):
    stack, model_id, _v1 = market
    out_dir = tmp_path / "candidate"
    code, out, err = stack.cli(
        "seller", "retrain", str(model_id), "--dry-run", "--out", str(out_dir), *ACCEPTING, *FAST
    )
    assert code == 0, err
    assert "dry run: nothing was published" in out and f"folder: {out_dir}" in out
    assert json.loads((out_dir / "changelog.json").read_text())[0]["feedback_items"] == LABELLED
    assert versions.version_count(stack.chain, model_id) == 1


def test_retrain_publishes_version_2_whose_changelog_counts_the_items_used(market, tmp_path):
    stack, model_id, _v1 = market
    code, out, err = stack.cli("seller", "retrain", str(model_id), *ACCEPTING, *FAST)
    assert code == 0, err
    assert f"retrained version 1 on {LABELLED} feedback item(s)" in out
    assert "1 item(s) without a usable label skipped" in out  # the note
    assert f"published as version 2 of model {model_id}" in out
    assert versions.version_count(stack.chain, model_id) == 2
    node = stack.node("seller")
    v2 = decrypt_published(stack.chain, node.store, node.vault, model_id, tmp_path / "v2")
    assert v2.version == 2
    (entry,) = json.loads((v2.out_dir / "changelog.json").read_text())
    assert entry["feedback_items"] == LABELLED
    assert entry["feedback_trained"] + entry["feedback_held_out"] == LABELLED
    card = (v2.out_dir / "README.md").read_text()
    assert f"- version 2: {LABELLED} feedback items" in card


def test_the_worker_job_retrains_once_after_n_new_items_and_not_again_after_a_restart(
    market, caplog
):
    """The validator's wallet sells here: the job sees only the models its account owns. The
    restart is `modex worker --once --retrain-after 3` with the job's default state file."""
    stack, _model_id, v1 = market
    owner = stack.node("validator")
    model_id = publish_model(stack, v1, role="validator")
    purchase = buy_raw(stack, "buyer", model_id)
    stack.chain.transact(
        stack.chain.marketplace.functions.deliverKey(
            purchase, stack.signers["buyer"].address, b"\x01" * 80
        ),
        stack.signers["validator"],
    )
    state = owner.config.retrain_state_path(stack.chain.chain_id)
    options = {"max_regression": 0.99, "replay_rows": 8, "epochs": 1, "batch_size": 8}
    job = RetrainJob(owner, retrain_after=3, max_length=32, **options)
    sent = send(stack, "buyer", model_id, corrections(200, 2))
    assert job.poll() == [] and not state.exists()  # 2 of 3
    sent += send(stack, "buyer", model_id, corrections(202, 1))
    (outcome,) = job.poll()
    assert outcome.version == 2 and sorted(outcome.used) == sorted(sent)
    assert json.loads(state.read_text())["used"] == {str(model_id): sorted(sent)}
    restarted = RetrainJob(owner, retrain_after=3, max_length=32, **options)
    assert restarted.poll() == []
    with caplog.at_level(logging.INFO, logger="modex.retraining"):
        code, out, err = stack.cli("validator", "worker", "--once", "--retrain-after", "3")
    assert code == 0 and "delivered 0 key(s)" in out, err
    assert not [r for r in caplog.records if r.name == "modex.retraining"]
    assert versions.version_count(stack.chain, model_id) == 2


def test_worker_retrain_after_is_a_count_of_items(tmp_path):
    assert load_config(data_dir=tmp_path, env={}).worker_retrain_after == 0  # off
    env = {"MODEX_WORKER_RETRAIN_AFTER": "5"}
    assert load_config(data_dir=tmp_path, env=env).worker_retrain_after == 5
    with pytest.raises(ConfigError, match="worker_retrain_after .* must be 0"):
        load_config(data_dir=tmp_path, env={}, worker_retrain_after=-1)
