import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ml.serve import DynamicBatcher, InvalidInput, Predictor, QueueFull
from node.errors import ConfigError

LONG = "this phone is great but the battery, the screen and the speaker all broke " * 6


def test_predict_labels_scores_and_truncation(predictor):
    out = predictor.predict(["I love this phone", LONG])
    assert [set(o) for o in out] == [{"label", "score", "truncated"}] * 2
    assert all(o["label"] in ("negative", "neutral", "positive") for o in out)
    assert all(1 / 3 <= o["score"] <= 1 for o in out)
    assert [o["truncated"] for o in out] == [False, True]
    # batching does not change an answer (padding is masked)
    assert predictor.predict(["I love this phone"])[0]["label"] == out[0]["label"]


@pytest.mark.parametrize("bad, message", [
    ([], "inputs is empty"),
    (["ok", "  "], "input 1 is empty"),
    ("just a string", "list of texts"),
    (["ok", 3], "input 1 is int"),
])
def test_predict_refuses_bad_input(predictor, bad, message):
    with pytest.raises(InvalidInput, match=message):
        predictor.predict(bad)


def test_reduced_precision_predictors_stay_close_to_fp32(tiny_model, predictor):
    texts = ["I love this phone", "worst service ever", "the bus leaves at nine"]
    ref = predictor.predict(texts)
    for dtype in ("bf16", "int8"):
        out = Predictor(tiny_model[0], dtype=dtype, max_length=32).predict(texts)
        assert [o["truncated"] for o in out] == [False] * 3
        for a, b in zip(ref, out):
            # the tiny model's classes are close together, so compare probabilities, not labels
            assert abs(a["score"] - b["score"]) < 0.05, (dtype, a, b)


def test_predictor_refuses_bad_settings(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="dtype must be one of"):
        Predictor(tiny_model[0], dtype="fp8")
    with pytest.raises(ConfigError, match="not a model directory"):
        Predictor(tmp_path)


def test_concurrent_requests_are_batched_and_answered_in_order(predictor):
    texts = [f"sample text number {i}, {'good' if i % 2 else 'bad'}" for i in range(24)]
    expected = predictor.predict(texts)
    with DynamicBatcher(predictor, max_batch_size=8, max_wait_ms=50, max_queue=64) as batcher:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda t: batcher.predict([t], timeout=60), texts))
        assert batcher.items == 24 and batcher.batches < 24  # several requests shared a batch
    for got, want in zip(results, expected):
        assert got[0]["label"] == want["label"]
        assert got[0]["score"] == pytest.approx(want["score"], abs=1e-4)


class Gate:
    """A fake predictor that blocks until released (to fill the queue deterministically)."""

    labels = ("negative", "neutral", "positive")

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, texts):
        self.entered.set()
        self.release.wait(10)
        if "boom" in texts:
            raise RuntimeError("model failed")
        return [{"label": "neutral", "score": 1.0, "truncated": False} for _ in texts]


def test_full_queue_raises_queue_full_then_recovers():
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch_size=1, max_wait_ms=0, max_queue=2)
    first = batcher.submit(["a"])
    assert gate.entered.wait(5)  # the worker holds "a"; the queue is empty again
    queued = [batcher.submit(["b"]), batcher.submit(["c"])]
    with pytest.raises(QueueFull, match="queue is full"):
        batcher.submit(["d"])
    gate.release.set()
    assert [f.result(5)[0]["label"] for f in [first, *queued]] == ["neutral"] * 3
    assert batcher.submit(["e"]).result(5)  # room again
    batcher.close()
    with pytest.raises(Exception, match="closed"):
        batcher.submit(["f"])


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on():
    gate = Gate()
    gate.release.set()
    with DynamicBatcher(gate, max_batch_size=4, max_wait_ms=0) as batcher:
        with pytest.raises(RuntimeError, match="model failed"):
            batcher.predict(["boom"], timeout=5)
        assert batcher.predict(["fine"], timeout=5)[0]["label"] == "neutral"
        with pytest.raises(InvalidInput):
            batcher.submit([""])
