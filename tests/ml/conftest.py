"""Fixtures for the ML tests: one tiny model trained once per session (tens of rows, length 32).

Also what the ML tests and tests/node share: a one-layer BERT (tiny_bert), and, from
benchmarks/paid_service.py (benchmarks/serve_http.py uses them too, and a benchmark never imports
tests), the tiny training config (TINY), a bought licence on a chain (send_tx, list_and_buy,
deliver_key, licensed_deployment) and `modex serve` started as a process (start_modex_serve).
"""

import os

import pytest

from benchmarks.paid_service import (  # noqa: F401 - re-exported: the tests import them from here
    LICENCE_PRICE,
    TINY,
    deliver_key,
    licensed_deployment,
    list_and_buy,
    send_tx,
    start_modex_serve,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def tiny_bert(num_labels: int):
    """A randomly initialised BERT classifier of one small layer: a real model in seconds, for
    tests of what is done with one (saving, publishing, optimizer groups), not of its answers."""
    # transformers loads torch: imported only by the tests that build a model
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


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
