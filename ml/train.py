"""Fine-tune a sentiment classifier from the packaged all-MiniLM-L6-v2 weights.

    .venv/bin/python -m ml.train --output-dir runs/sentiment --train-size 2000 --max-length 64
    modex train --output-dir runs/sentiment            (same options)

Steps: load_data (the shared split of ml/data.py; the test split is never read here) → fine-tune
(AdamW, linear warm-up then decay, CUDA + bf16 autocast when present, else CPU fp32; BERT
classifiers run the padding-free forward of ml/packed.py, the same model and gradients without the
work on padding; --no-packed for transformers' padded forward) with periodic
evaluate() on validation rows → save (safetensors weights, config, tokenizer, training_config.json,
the curves plot, a model card) → the reproducible evaluation of ml/evaluate.py on the saved
directory: its report goes into evaluation.json (whose work digest `modex publish` claims) and its
metrics into metrics.json and the card, one evaluation for all three. The output directory is written in a
temporary folder beside it and renamed into place, so it is never half-written.

    train(config, on_progress=lambda step, done, total: ...)   # the node app's training job

`on_progress(step, done, total)` hears "loading base model", "training" (step, total) after every
optimizer step, "evaluating on validation" (step, total), "saving" and "evaluating <eval_set>". An
exception it raises aborts the run and leaves no output directory (nothing is written before the
save phase, whose temporary folder is removed on any error). Time spent in it is not counted in
train_samples_per_s.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a file (python ml/train.py): re-run as the module from the repository root (see
    # ml/run_as_file.py; ml/ is sys.path[0] here, so it imports as a top-level module).
    from run_as_file import rerun_as_module

    rerun_as_module(__file__, "ml.train")

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from tqdm.auto import tqdm

from ml import data
from ml import evaluate as evaluation
from ml import packed as packing
from ml.card import model_card, plot_curves
from node.errors import ConfigError
from node.protocol import EVALUATION_REPORT

# Heavy packages load late (torch, transformers and numpy): each is imported in the
# function that uses it, marked `late (heavy)`, because the app and the CLI import this module
# at start-up.

log = logging.getLogger(__name__)

# ---- defaults (one flat block) --------------------------------------------------------------
SEED = 1337
TRAIN_SIZE = 2000  # rows from the training split (0 = all of it)
EPOCHS = 1
# batch 8 (250 AdamW steps per 2,000 rows): held-out accuracy, one epoch, 2,000 rows, length 64
# (2026-11-23, loaded 2-core CPU): batch 32 0.686, batch 16 0.722, batch 8 0.735; lr 2e-4 (b8)
# 0.694 and 4e-4 (b16) 0.706 were worse than 1e-4. See BENCHMARKS.md "ML".
BATCH_SIZE = 8
MAX_LENGTH = 64
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.1
MAX_GRAD_NORM = 1.0
MIN_CONFIDENCE = (
    0.0  # train only on rows whose annotator confidence is at least this (0 = all rows)
)
LABEL_SMOOTHING = 0.0
HEAD_LEARNING_RATE = 0.0  # learning rate of the new classifier head (0 = learning_rate)
EVAL_SIZE = 200  # validation rows for the curves
EVALS_PER_RUN = 4
EVAL_SET = data.DEFAULT_EVAL_SET
# Padding-free forward (ml/packed.py) for BERT classifiers: the same model and gradients as the
# padded transformers forward up to float rounding, without the work on padding (1.34x a step
# here). False, or a base model that is not a BERT classifier: transformers' padded forward.
PACKED = True
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclasses.dataclass
class TrainConfig:
    output_dir: str
    seed: int = SEED
    train_size: int = TRAIN_SIZE
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    max_length: int = MAX_LENGTH
    learning_rate: float = LEARNING_RATE
    weight_decay: float = WEIGHT_DECAY
    warmup_ratio: float = WARMUP_RATIO
    max_grad_norm: float = MAX_GRAD_NORM
    min_confidence: float = MIN_CONFIDENCE
    label_smoothing: float = LABEL_SMOOTHING
    head_learning_rate: float = HEAD_LEARNING_RATE
    eval_size: int = EVAL_SIZE
    evals_per_run: int = EVALS_PER_RUN
    eval_set: str = EVAL_SET
    packed: bool = PACKED
    base_model: str = ""  # a model directory; "" = the packaged base model
    name: str = "modex-sentiment-minilm"
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def from_any(cls, value) -> TrainConfig:
        """A TrainConfig from itself, a dict or an argparse.Namespace (unknown keys refused)."""
        if isinstance(value, cls):
            return value
        items = dict(vars(value) if isinstance(value, argparse.Namespace) else value)
        items = {k: v for k, v in items.items() if k not in ("func", "command", "verbose")}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(items) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        if not items.get("output_dir"):
            raise ConfigError("training needs output_dir (where the model directory goes)")
        return cls(**items)

    def check(self) -> None:
        positive = ("epochs", "batch_size", "max_length", "evals_per_run")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1 (got {getattr(self, key)})", key=key)
        if self.train_size < 0 or self.eval_size < 1:
            raise ConfigError("train_size must be >= 0 (0 = all) and eval_size >= 1")
        if not 0 < self.learning_rate < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("learning_rate must be in (0, 1) and warmup_ratio in [0, 1)")
        if not 0 <= self.min_confidence <= 1 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("min_confidence must be in [0, 1] and label_smoothing in [0, 1)")
        if not 0 <= self.head_learning_rate < 1:
            raise ConfigError(
                "head_learning_rate must be in [0, 1) (0 = the same as learning_rate)"
            )
        if self.max_length > 512:
            raise ConfigError("max_length must be <= 512 (the base model's position limit)")
        if self.eval_set not in data.EVAL_SETS:
            raise ConfigError(
                f"unknown eval_set {self.eval_set!r}; known: {sorted(data.EVAL_SETS)}"
            )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p.parse_args(argv)


# The numeric training options: (TrainConfig field, help); each option's type and default are
# its field's, and its flag is the field's name with dashes (train_size: --train-size).
NUMERIC_OPTIONS = (
    ("train_size", "training rows (0 = all)"),
    ("epochs", None),
    ("batch_size", None),
    ("max_length", "tokens per input"),
    ("learning_rate", None),
    ("weight_decay", None),
    ("warmup_ratio", None),
    ("min_confidence", "train only on rows with annotator confidence >= this (0 = all rows)"),
    ("label_smoothing", None),
    ("head_learning_rate", "learning rate of the classifier head (0 = --learning-rate)"),
    ("eval_size", "validation rows for curves"),
    ("evals_per_run", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training options (shared by this script and `modex train`)."""
    p.add_argument("--output-dir", required=True, help="model directory to create")
    for name, help_text in NUMERIC_OPTIONS:
        default = getattr(TrainConfig, name)
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=type(default), default=default, help=help_text)
    p.add_argument(
        "--eval-set",
        default=EVAL_SET,
        choices=sorted(data.EVAL_SETS),
        help="named eval set for the final, reproducible metrics",
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--no-packed",
        dest="packed",
        action="store_false",
        help="train with transformers' padded forward instead of the padding-free one",
    )
    p.add_argument("--base-model", default="", help="base model directory (default: packaged)")
    p.add_argument("--name", default="modex-sentiment-minilm", help="model name for the card")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def pick_device():
    """(device, autocast context factory): CUDA + bf16 autocast when present, else CPU fp32."""
    import torch  # late (heavy)

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return torch.device("cuda"), (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
        )
    return torch.device("cpu"), nullcontext


def seed_everything(seed: int) -> None:
    import numpy as np  # late (heavy)
    import torch  # late (heavy)

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(cfg: TrainConfig):
    """(train rows, validation rows for the curves) from the shared split; never the test split.

    With min_confidence, only training rows whose annotator confidence reaches it are kept (rows
    without a confidence are dropped), in split order; validation and test rows are not filtered.
    """
    train_rows = data.split("train")
    if cfg.min_confidence:
        train_rows = [
            r for r in train_rows if r.confidence is not None and r.confidence >= cfg.min_confidence
        ]
    if cfg.train_size:
        if cfg.train_size > len(train_rows):
            raise ConfigError(
                f"train_size {cfg.train_size} > {len(train_rows)} training rows "
                f"(with min_confidence {cfg.min_confidence})"
            )
        train_rows = train_rows[: cfg.train_size]
    return train_rows, data.split("validation")[: cfg.eval_size]


def load_base(cfg: TrainConfig):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # late (heavy)
    from transformers.utils import logging as hf_logging  # late (heavy)

    base = Path(cfg.base_model) if cfg.base_model else data.base_model_dir()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(data.LABELS),
            id2label=dict(enumerate(data.LABELS)),
            label2id={name: i for i, name in enumerate(data.LABELS)},
            local_files_only=True,
            use_safetensors=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    except (OSError, ValueError) as exc:  # missing folder or files, unreadable config
        raise ConfigError(
            f"cannot load the base model from {base}: {exc}; give a model directory "
            "with config.json, model.safetensors and the tokenizer files",
            base_model=str(base),
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer, base


def batches(rows, tokenizer, cfg: TrainConfig, *, packed: bool, generator=None):
    """Tokenized batches, shuffled when a generator is given: {"labels", and "ids" (token id
    lists, for the packed forward) or the tokenizer's tensors padded to the longest in the batch}.
    """
    import torch  # late (heavy)

    order = (
        torch.randperm(len(rows), generator=generator).tolist() if generator else range(len(rows))
    )
    order = list(order)
    for start in range(0, len(order), cfg.batch_size):
        chunk = [rows[i] for i in order[start : start + cfg.batch_size]]
        texts = [ex.text for ex in chunk]
        if packed:
            batch = {
                "ids": tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
            }
        else:
            batch = dict(
                tokenizer(
                    texts,
                    padding=True,
                    truncation=True,
                    max_length=cfg.max_length,
                    return_tensors="pt",
                )
            )
        batch["labels"] = torch.tensor([ex.label for ex in chunk])
        yield batch


def forward(model, batch: dict, device, autocast):
    """(fp32 logits, labels) for one batch from batches(), on device."""
    labels = batch["labels"].to(device)
    with autocast():
        if "ids" in batch:
            logits = packing.logits(model, batch["ids"])
        else:
            logits = model(**{k: v.to(device) for k, v in batch.items() if k != "labels"}).logits
    return logits.float(), labels


def evaluate(model, rows, tokenizer, cfg: TrainConfig, device, autocast, *, packed: bool) -> dict:
    """Mean loss and accuracy on rows (the curves), under torch.no_grad() in eval mode."""
    import torch  # late (heavy)

    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for batch in batches(rows, tokenizer, cfg, packed=packed):
            logits, labels = forward(model, batch, device, autocast)
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
    model.train(was_training)
    return {"loss": loss_sum / len(rows), "accuracy": correct / len(rows)}


def save(
    model, tokenizer, cfg: TrainConfig, history: dict, run: dict, out: Path, on_progress=None
) -> dict:
    """Write the model directory into ``out`` (a fresh temp folder) and evaluate it there."""
    # transformers 5 writes safetensors only (its save_pretrained no longer takes
    # safe_serialization); the pickle check below holds that promise for the whole folder.
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    plot_curves(history, out / "training_curves.png")
    config = dataclasses.asdict(cfg) | {
        "base_model": cfg.base_model or data.BASE_MODEL_NAME,
        "dataset": data.DATASET,
        "split": {
            "seed": data.SPLIT_SEED,
            "test_size": data.TEST_SIZE,
            "validation_size": data.VALIDATION_SIZE,
        },
        "metrics": list(evaluation.METRIC_NAMES),
        "run": run,
        "history": history,
    }
    config.pop("output_dir")
    config.pop("progress")
    config.pop("overwrite")
    (out / "training_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if on_progress:
        on_progress(f"evaluating {cfg.eval_set}", None, None)
    report = evaluation.evaluation_report(out, cfg.eval_set)
    metrics = report["metrics"]
    evaluation.write_metrics(metrics, out / "metrics.json")
    evaluation.write_report(report, out / EVALUATION_REPORT)
    (out / "README.md").write_text(model_card(cfg, report, run), encoding="utf-8")
    for path in out.iterdir():
        path.chmod(0o644)  # some writers create private files; a model directory is shared
    pickles = [p.name for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ConfigError(f"refusing to publish pickle files {pickles} in a model directory")
    return metrics


def make_optimizer(model, cfg: TrainConfig):
    """AdamW over four groups: encoder / classifier head (head_learning_rate) x decay / no decay.

    Fused (one kernel per step, CPU and CUDA; what Trainer uses by default) when available.
    """
    import torch  # late (heavy)

    no_decay = ("bias", "LayerNorm.weight")
    head_lr = cfg.head_learning_rate or cfg.learning_rate
    groups = []
    for head in (False, True):  # encoder, then the newly initialised classifier head
        named = [(n, p) for n, p in model.named_parameters() if n.startswith("classifier.") == head]
        for decay in (True, False):
            params = [p for n, p in named if n.endswith(no_decay) != decay]
            groups.append(
                {
                    "params": params,
                    "weight_decay": cfg.weight_decay if decay else 0.0,
                    "lr": head_lr if head else cfg.learning_rate,
                }
            )
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def train(config, *, on_progress=None) -> dict:
    """Fine-tune, save and evaluate; returns the final eval metrics plus run figures.

    on_progress(step, done, total), when given, hears each phase (see the module docstring).
    """
    import torch  # late (heavy)
    from transformers import get_linear_schedule_with_warmup  # late (heavy)

    cfg = TrainConfig.from_any(config)
    cfg.check()
    out_dir = Path(cfg.output_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not cfg.overwrite:
        raise ConfigError(
            f"{out_dir} exists and is not empty; pick another --output-dir or pass --overwrite",
            output_dir=str(out_dir),
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = on_progress or (lambda step, done, total: None)
    report("loading base model", None, None)
    seed_everything(cfg.seed)
    device, autocast = pick_device()
    train_rows, val_rows = load_data(cfg)
    model, tokenizer, base = load_base(cfg)
    model.to(device)
    packed = cfg.packed and packing.supports(model)
    log.info(
        "training on %s (%s forward): %d rows, %d validation rows, base %s",
        device,
        "packed" if packed else "padded",
        len(train_rows),
        len(val_rows),
        base,
    )

    steps_per_epoch = math.ceil(len(train_rows) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    eval_every = max(1, total // cfg.evals_per_run)
    generator = torch.Generator().manual_seed(cfg.seed)
    history = {"train": [], "eval": []}

    model.train()
    step, seen, untimed = 0, 0, 0.0
    bar = tqdm(total=total, desc="train", unit="step", disable=not cfg.progress)
    # samples/s counts tokenization and steps, not the evals nor the time spent in on_progress
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        for batch in batches(train_rows, tokenizer, cfg, packed=packed, generator=generator):
            logits, labels = forward(model, batch, device, autocast)
            loss = torch.nn.functional.cross_entropy(
                logits, labels, label_smoothing=cfg.label_smoothing
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = loss.item()
            step += 1
            seen += len(labels)
            history["train"].append({"step": step, "epoch": epoch, "loss": round(loss_value, 5)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            t0 = time.perf_counter()
            report("training", step, total)
            untimed += time.perf_counter() - t0
            if step % eval_every == 0 or step == total:
                t0 = time.perf_counter()
                report("evaluating on validation", step, total)
                ev = evaluate(model, val_rows, tokenizer, cfg, device, autocast, packed=packed)
                untimed += time.perf_counter() - t0
                history["eval"].append({"step": step, **{k: round(v, 5) for k, v in ev.items()}})
                log.info(
                    "step %d/%d: validation loss %.4f accuracy %.4f",
                    step,
                    total,
                    ev["loss"],
                    ev["accuracy"],
                )
    bar.close()
    train_time = time.perf_counter() - started - untimed
    run = {
        "device": str(device),
        "forward": "packed" if packed else "padded",
        "train_rows": len(train_rows),
        "steps": step,
        "train_seconds": round(train_time, 3),
        "train_samples_per_s": round(seen / train_time, 3),
        "torch": torch.__version__,
    }

    model.to("cpu")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    try:
        report("saving", None, None)
        metrics = save(model, tokenizer, cfg, history, run, tmp, on_progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved %s: %s accuracy %.4f", out_dir, cfg.eval_set, metrics["accuracy"])
    return {**metrics, "run": run, "output_dir": str(out_dir)}


def main(argv=None) -> int:
    args = parse_args(argv)
    result = train(args)
    print(
        json.dumps(
            {k: result[k] for k in ("eval_set", "n", "accuracy", "macro_f1")}
            | {
                "train_samples_per_s": result["run"]["train_samples_per_s"],
                "output_dir": result["output_dir"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
