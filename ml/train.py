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
from ml.trainconfig import TrainConfig, add_arguments
from node.errors import ConfigError
from node.protocol import EVALUATION_REPORT

# Heavy packages load late (torch, transformers and numpy): each is imported in the
# function that uses it, marked `late (heavy)`, because the app and the CLI import this module
# at start-up.

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p.parse_args(argv)


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


def train(config, *, on_progress=None, train_rows=None) -> dict:
    """Fine-tune, save and evaluate; returns the final eval metrics plus run figures.

    on_progress(step, done, total), when given, hears each phase (see the module docstring).
    train_rows (data.Example rows), when given, are trained on instead of the split's first
    train_size rows (benchmarks/feedback.py trains on a few collections of the corpus);
    training_config.json then says "train_data": "given".
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
    given = train_rows is not None
    split_rows, val_rows = load_data(dataclasses.replace(cfg, train_size=0) if given else cfg)
    train_rows = list(train_rows) if given else split_rows
    if not train_rows:
        raise ConfigError("train_rows is empty: give at least one row to train on")
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
        "train_data": "given" if given else "split",
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
