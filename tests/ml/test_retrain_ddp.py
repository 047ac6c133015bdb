"""ml.retrain under torchrun: two CPU processes (DDP over gloo) on a tiny slice end with the same
weights, the ones saved, and the run is the one its config describes."""

import json
import math
import os
import subprocess
import sys

from ml import data, retrain
from ml.evaluate import load_classifier

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_processes_end_with_identical_weights_and_the_configured_run(tiny_model, tmp_path):
    parent, _ = tiny_model
    items = tmp_path / "items.jsonl"
    rows = data.split("train")[400:430]
    items.write_text("".join(json.dumps({"text": r.text, "label": r.label}) + "\n" for r in rows))
    out = tmp_path / "v2"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        # each process's stdout to a file of its own: two long lines written to one pipe at once
        # can interleave
        *("--log-dir", str(tmp_path / "logs"), "--redirects", "1"),
        *("-m", "ml.retrain", str(parent), "--feedback", str(items), "--output-dir", str(out)),
        *("--replay-rows", "10", "--epochs", "2", "--batch-size", "6", "--max-length", "32"),
        *("--max-regression", "0.99", "--seed", "11"),
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = sorted((tmp_path / "logs").rglob("stdout.log"))
    assert len(outputs) == 2, outputs
    lines = [
        json.loads(line)
        for output in outputs
        for line in output.read_text().splitlines()
        if line.startswith("{")
    ]
    assert sorted(line["rank"] for line in lines) == [0, 1]
    first, second = lines
    assert first["weights_sha256"] == second["weights_sha256"]
    assert {k: v for k, v in first.items() if k != "rank"} == {
        k: v for k, v in second.items() if k != "rank"
    }  # process 0's result reached process 1
    model, _ = load_classifier(out)
    assert retrain.weights_digest(model) == first["weights_sha256"]  # what was saved

    config = json.loads((out / "training_config.json").read_text())
    assert config == first["config"] and first["published"]
    run = config["run"]
    assert run["processes"] == 2 and run["backend"] == "gloo" and run["forward"] == "packed"
    trained = config["feedback"]["trained"] + config["replay_rows"]
    assert config["feedback"] == {"items": 30, "in_eval_set": 0, "trained": 24, "held_out": 6}
    assert run["train_rows"] == trained == 34
    assert run["steps"] == config["epochs"] * math.ceil(trained / config["batch_size"]) == 12
    assert len(run["history"]) == run["steps"]
