"""Serving: a Predictor loaded once, and a DynamicBatcher that shares it between concurrent callers.

    predictor = Predictor("runs/sentiment", dtype="bf16")
    predictor.predict(["great phone", "meh"])
        -> [{"label": "positive", "score": 0.93, "truncated": False}, ...]
    with DynamicBatcher(predictor, max_batch_size=32, max_wait_ms=5, max_queue=256) as batcher:
        batcher.submit(["great phone"]).result()       # a concurrent.futures.Future

dtype: "fp32" (reference), "bf16" (weights in bfloat16; kept classifier accuracy and embedding
similarity here, ~2x faster on this CPU), "int8" (dynamic int8 Linear layers, CPU only; kept
classifier accuracy but cut embedding cosine similarity to 0.89 here, so it is never used for the
recommender's embeddings). On CUDA the model runs there, fp32 or bf16.

Inputs longer than ``max_length`` tokens are truncated and the result says ``truncated: true``.
Errors: ``InvalidInput`` (empty list, empty or non-string text: the caller's fault) and
``QueueFull`` (the bounded queue is full: try again later; HTTP 503), both ModexError.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import ConfigError, ModexError

log = logging.getLogger(__name__)

DTYPES = ("fp32", "bf16", "int8")


class InvalidInput(ModexError):
    """The texts sent for inference are unusable (says which one and why)."""


class QueueFull(ModexError):
    """The batcher's bounded queue is full; the caller should retry after a short pause."""


def check_texts(texts) -> list[str]:
    """The texts as a list, or InvalidInput naming the first bad one."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidInput("inputs must be a list of texts, e.g. [\"great phone\"]")
    if not texts:
        raise InvalidInput("inputs is empty; send at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"input {i} is {type(text).__name__}, not text; send strings", index=i)
        if not text.strip():
            raise InvalidInput(f"input {i} is empty; send non-empty text", index=i)
    return list(texts)


class Predictor:
    """A text classifier loaded once, in eval mode, answering under torch.inference_mode()."""

    def __init__(self, model_dir, *, dtype: str = "fp32", max_length: int = 128, device=None,
                 sub_batch: int = 8):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, not {dtype!r}", dtype=dtype)
        if not 1 <= max_length <= 512:
            raise ConfigError(f"max_length must be 1..512, not {max_length}")
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a model directory (no config.json)", model_dir=str(path))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype == "int8" and self.device.type != "cpu":
            raise ConfigError("dtype int8 (dynamic quantization) runs on CPU only; use bf16 on GPU")
        model = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, use_safetensors=True
        )
        model.eval()
        if dtype == "bf16":
            model = model.to(torch.bfloat16)
        elif dtype == "int8":
            with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao (absent)
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.model = model.to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.dtype = dtype
        self.max_length = max_length
        self.sub_batch = max(1, sub_batch)
        self.model_dir = str(path)

    def predict(self, texts) -> list[dict]:
        """One ``{"label", "score", "truncated"}`` per text, in order."""
        import torch

        texts = check_texts(texts)
        full = self.tokenizer(texts, truncation=False)["input_ids"]
        truncated = [len(ids) > self.max_length for ids in full]
        # Padding every text to the batch's longest wastes most of the work on short texts:
        # run texts of similar length together, SUB_BATCH at a time, and put answers back in order.
        order = sorted(range(len(texts)), key=lambda i: len(full[i]))
        out: list[dict] = [None] * len(texts)  # type: ignore[list-item]
        for start in range(0, len(order), self.sub_batch):
            idx = order[start : start + self.sub_batch]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                probs = self.model(**enc).logits.float().softmax(dim=-1)
            scores, labels = probs.max(dim=-1)
            for i, label, score in zip(idx, labels.tolist(), scores.tolist()):
                out[i] = {"label": self.labels[label], "score": round(score, 6),
                          "truncated": truncated[i]}
        return out


@dataclass
class _Request:
    texts: list[str]
    future: Future = field(default_factory=Future)


_STOP = object()


class DynamicBatcher:
    """Gathers concurrent requests into batches for one model instance on one worker thread.

    A batch closes when it holds ``max_batch_size`` texts or ``max_wait_ms`` after its first
    request arrived, whichever comes first (a single request larger than the batch size runs
    alone). At most ``max_queue`` requests wait; beyond that ``submit`` raises QueueFull at once.
    """

    def __init__(self, predictor, *, max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 256):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ConfigError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name="modex-batcher", daemon=True)
        self._thread.start()

    @property
    def labels(self):
        return self.predictor.labels

    def submit(self, texts) -> Future:
        """Queue texts for prediction; the Future resolves to the list of results."""
        if self._closed:
            raise ModexError("the batcher is closed; create a new one")
        request = _Request(check_texts(texts))
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise QueueFull(
                f"inference queue is full ({self.max_queue} requests waiting); retry in a moment",
                max_queue=self.max_queue,
            ) from None
        return request.future

    def predict(self, texts, timeout: float | None = None) -> list[dict]:
        return self.submit(texts).result(timeout)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, count, stop = [first], len(first.texts), False
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
            count += len(item.texts)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._gather(first)
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            texts = [t for r in batch for t in r.texts]
            try:
                results = self.predictor.predict(texts)
            except Exception as exc:  # every waiting caller gets the error; the loop goes on
                log.exception("batch of %d texts failed", len(texts))
                for r in batch:
                    r.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(texts)
            start = 0
            for r in batch:
                r.future.set_result(results[start : start + len(r.texts)])
                start += len(r.texts)
        while True:  # a request that raced with close() gets an answer, never a hang
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                break
            if late is not _STOP and late.future.set_running_or_notify_cancel():
                late.future.set_exception(ModexError("the batcher was closed; retry elsewhere"))

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish queued work and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)  # blocks if full: queued requests are served first
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
