import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ml import data
from ml.serve import DynamicBatcher, InvalidInput, Predictor, QueueFull
from node.errors import ConfigError

LONG = "this phone is great but the battery, the screen and the speaker all broke " * 6


@pytest.fixture(scope="module")
def fp32(tiny_model):
    return Predictor(tiny_model[0], dtype="fp32", max_length=32)


@pytest.fixture(scope="module")
def mixed():
    """Held-out texts of many lengths, some over max_length (32 tokens here), in no length order."""
    texts = [ex.text for ex in data.split("test")[:40]]
    return texts[:20] + [LONG, "ok", "meh."] + texts[20:]


def test_predict_labels_scores_and_truncation(predictor):
    out = predictor.predict(["I love this phone", LONG])
    assert [set(o) for o in out] == [{"label", "score", "truncated"}] * 2
    assert all(o["label"] in ("negative", "neutral", "positive") for o in out)
    assert all(1 / 3 <= o["score"] <= 1 for o in out)
    assert [o["truncated"] for o in out] == [False, True]
    # batching does not change an answer (padding is masked)
    assert predictor.predict(["I love this phone"])[0]["label"] == out[0]["label"]


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "inputs is empty"),
        (["ok", "  "], "input 1 is empty"),
        ("just a string", "list of texts"),
        (["ok", 3], "input 1 is int"),
    ],
)
def test_predict_refuses_bad_input(predictor, bad, message):
    with pytest.raises(InvalidInput, match=message):
        predictor.predict(bad)


def test_served_default_is_packed_int8_on_cpu(predictor, fp32):
    assert (predictor.dtype, predictor.packed) == ("int8", True)
    assert (fp32.dtype, fp32.packed) == ("fp32", True)


def test_packed_forward_gives_the_transformers_logits(tiny_model, fp32, mixed):
    import torch

    plain = Predictor(tiny_model[0], dtype="fp32", max_length=32, packed=False)
    ids, truncated = fp32.encode(mixed)
    assert 0 < truncated.count(True) < len(mixed) and len({len(x) for x in ids}) > 10
    enc = plain.tokenizer(mixed, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        want = plain.model(**enc).logits  # transformers' own tokenization, padding and forward
        got = fp32.forward(ids)
    assert enc["input_ids"].shape[1] == 32 and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # The answers: the same labels and truncation; each score is rounded to 6 decimals from
    # logits equal to ~1e-6, so one may land on the other side of a rounding step (seen in CI).
    packed, reference = fp32.predict(mixed), plain.predict(mixed)
    assert [(a["label"], a["truncated"]) for a in packed] == [
        (a["label"], a["truncated"]) for a in reference
    ]
    assert [a["score"] for a in packed] == pytest.approx([a["score"] for a in reference], abs=2e-6)


def test_answers_do_not_depend_on_batch_neighbours_or_order(fp32, predictor, mixed):
    together = fp32.predict(mixed)
    alone = [fp32.predict([t])[0] for t in mixed]
    backwards = fp32.predict(mixed[::-1])[::-1]
    for a, b, c in zip(together, alone, backwards, strict=True):
        assert a["label"] == b["label"] == c["label"] and a["truncated"] == b["truncated"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-5) == c["score"]
    # int8 quantizes each batch's activations with one scale, so neighbours move scores a little
    together = predictor.predict(mixed)
    for a, t in zip(together, mixed, strict=True):
        assert a["score"] == pytest.approx(predictor.predict([t])[0]["score"], abs=0.02)


def test_small_token_budget_splits_into_chunks_with_the_same_answers(tiny_model, fp32, mixed):
    small = Predictor(tiny_model[0], dtype="fp32", max_length=32, max_batch_tokens=40)
    ids, _ = small.encode(mixed)
    order = sorted(range(len(mixed)), key=lambda i: len(ids[i]))
    chunks = list(small._chunks(order, ids))
    assert len(chunks) > 5 and sorted(i for c in chunks for i in c) == list(range(len(mixed)))
    assert all(len(c) * max(len(ids[i]) for i in c) <= 40 for c in chunks)
    for a, b in zip(small.predict(mixed), fp32.predict(mixed), strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_int8_stays_close_to_fp32_on_held_out_texts(fp32, predictor):
    texts = [ex.text for ex in data.split("test")[:64]]
    ref, out = fp32.predict(texts), predictor.predict(texts)
    assert max(abs(a["score"] - b["score"]) for a, b in zip(ref, out, strict=True)) < 0.05
    # labels may flip only where fp32 itself hesitates (the tiny model's classes are close)
    flipped = [a["score"] for a, b in zip(ref, out, strict=True) if a["label"] != b["label"]]
    assert len(flipped) <= 6 and all(s < 0.5 for s in flipped), flipped


def test_reduced_precision_predictors_stay_close_to_fp32(tiny_model, fp32):
    texts = ["I love this phone", "worst service ever", "the bus leaves at nine"]
    ref = fp32.predict(texts)
    for dtype in ("bf16", "int8"):
        out = Predictor(tiny_model[0], dtype=dtype, max_length=32).predict(texts)
        assert [o["truncated"] for o in out] == [False] * 3
        for a, b in zip(ref, out, strict=True):
            # the tiny model's classes are close together, so compare probabilities, not labels
            assert abs(a["score"] - b["score"]) < 0.05, (dtype, a, b)


def test_predictor_refuses_bad_settings(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="dtype must be one of"):
        Predictor(tiny_model[0], dtype="fp8")
    with pytest.raises(ConfigError, match="not a model directory"):
        Predictor(tmp_path)
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        Predictor(tiny_model[0], max_length=128, max_batch_tokens=64)
    (tmp_path / "config.json").write_text("{}")  # transformers cannot use it: one sentence
    with pytest.raises(ConfigError, match="cannot load a classifier from"):
        Predictor(tmp_path)


def test_concurrent_requests_are_batched_and_answered_in_order(fp32):
    # fp32: answers do not depend on batch neighbours, so each must equal the lone answer
    texts = [f"sample text number {i}, {'good' if i % 2 else 'bad'}" for i in range(24)]
    expected = fp32.predict(texts)
    with DynamicBatcher(fp32, max_batch_size=8, max_wait_ms=50, max_queue=64) as batcher:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda t: batcher.predict([t], timeout=60), texts))
        assert batcher.items == 24 and batcher.batches < 24  # several requests shared a batch
    for got, want in zip(results, expected, strict=True):
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


class Echo:
    """A fake predictor that answers each text with itself, slowly, noting which thread ran it."""

    labels = ("echo",)

    def __init__(self):
        self.threads = set()

    def predict(self, texts):
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)
        return [{"label": t, "score": 1.0, "truncated": False} for t in texts]


def test_two_workers_share_the_queue_answer_each_request_in_order_and_stop():
    import torch

    threads = torch.get_num_threads()
    echo = Echo()
    try:
        batcher = DynamicBatcher(echo, max_batch_size=4, max_wait_ms=2, workers=2)
        assert torch.get_num_threads() == 1  # 2 CPUs here: one intra-op thread per worker
        requests = [[f"r{i}-t{j}" for j in range(1 + i % 3)] for i in range(40)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda r: batcher.predict(r, timeout=30), requests))
        assert [[o["label"] for o in out] for out in results] == requests
        assert echo.threads == {"modex-batcher-0", "modex-batcher-1"}
        assert batcher.items == sum(map(len, requests))
        batcher.close()
        assert not any(t.is_alive() for t in batcher._threads)
    finally:
        torch.set_num_threads(threads)


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on():
    gate = Gate()
    gate.release.set()
    with DynamicBatcher(gate, max_batch_size=4, max_wait_ms=0) as batcher:
        with pytest.raises(RuntimeError, match="model failed"):
            batcher.predict(["boom"], timeout=5)
        assert batcher.predict(["fine"], timeout=5)[0]["label"] == "neutral"
        with pytest.raises(InvalidInput):
            batcher.submit([""])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--processes", "0"], "--processes must be at least 1 (got 0)"),
        (["--workers", "0"], "--workers must be at least 1 (got 0)"),
        (["--port", "70000"], "--port must be from 0 to 65535 (got 70000)"),
        (["--model-id", "-1"], "--model-id must be the listing's id, 0 or more (got -1)"),
        ([], "is not a model directory (no config.json)"),
    ],
)
def test_modex_serve_reports_bad_options_in_one_line(tmp_path, capsys, extra, message):
    from modex.cli import main as modex

    # checked before any chain call (nothing listens on port 9) or any process start
    argv = ["serve", str(tmp_path), "--model-id", "1", "--chain", "http://127.0.0.1:9", *extra]
    assert modex(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("modex: error: ") and message in err and "Traceback" not in err


def test_modex_serve_processes_on_a_busy_port_is_one_line(
    tiny_model, tmp_path, monkeypatch, capsys
):
    import signal
    import socket
    from types import SimpleNamespace

    from modex.cli import main as modex
    from node.chain import Chain

    chain = SimpleNamespace(chain_id=31337, marketplace=SimpleNamespace(address="0x" + "5f" * 20))
    monkeypatch.setattr(Chain, "from_config", classmethod(lambda cls, config: chain))
    monkeypatch.delenv("MODEX_CHAIN", raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        argv = [
            "serve",
            str(tiny_model[0]),
            "--model-id",
            "1",
            "--chain",
            "http://127.0.0.1:9",
            "--port",
            str(port),
            "--processes",
            "2",
        ]
        assert modex(argv) == 1  # was an OSError traceback
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is handler
