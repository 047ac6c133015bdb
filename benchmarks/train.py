"""Training benchmark: ml/train.py vs the transformers Trainer, same model, data, batch and length.

    .venv/bin/python benchmarks/train.py [--train-size 2000] [--max-length 64] [--batch-size 8]

Both runs fine-tune all-MiniLM-L6-v2 with a fresh 3-way head (same seed) on the same first
``--train-size`` rows of the training split, one epoch, with every other setting taken from the
one ``TrainConfig`` (ml/train.py's defaults block: batch, learning rate, weight decay, warm-up
ratio, gradient clipping, seed, the training-row filter min_confidence, label smoothing, head
learning rate) for both sides: AdamW, linear warm-up then linear decay, dynamic padding to the
longest in each batch. Accuracy: both saved models are scored by the same reproducible protocol
(ml/evaluate.py) on the held-out test split.

Throughput: training samples per second of the training loop, ml/train.py's own
``train_samples_per_s`` and the Trainer's ``train_samples_per_second``. The two timed regions
cover the same work. Trainer: from after its dataloader and optimizer are built to the end of the
last step (per-row tokenizing in the Dataset, collation, forward, backward, clipping, AdamW,
schedule, callbacks). ml/train.py: from just before the first batch to the end of the last step
(per-batch tokenizing, forward, backward, clipping, AdamW, schedule, the per-step loss read and
progress bar), minus its periodic validation evaluations (the Trainer here runs none). Neither
counts model loading, optimizer construction, saving or the test evaluation. Measured here, the
small per-step extras are under 1% of a ~73 s loop: tokenizing 2,000 rows in 250 batches 0.46 s
(per row, the Trainer's way: 0.36 s), 250 progress-bar updates 0.02 s; ``loss.item()`` on CPU
waits for nothing that was not already computed.

The forward: ml/train.py trains BERT classifiers padding-free by default (ml/packed.py: each
batch's texts back to back, no work on padding, the last layer for the [CLS] rows only); that is
the same model with the same logits and gradients as the padded transformers forward up to float
rounding (tests/ml/test_packed.py), on the same batches, with the same dropout rates. The Trainer
runs transformers' forward on padded batches, as it does by default. ``--no-packed`` runs
ml/train.py with the padded forward too, to see the loops alone.

Targets: samples_per_s_vs_trainer >= 1.0; |accuracy - trainer_accuracy| <= 0.01.
With --repeats N the pairs run in ABBA order and the medians are reported (this machine's
cores are shared, so single runs are noisy).
Last line: JSON with ``samples_per_s_vs_trainer``, ``accuracy``, ``trainer_accuracy``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.common import print_figures
from ml import data, train, trainconfig
from ml import evaluate as evaluation


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-size", type=int, default=trainconfig.TRAIN_SIZE)
    p.add_argument("--max-length", type=int, default=trainconfig.MAX_LENGTH)
    p.add_argument("--batch-size", type=int, default=trainconfig.BATCH_SIZE)
    p.add_argument("--eval-set", default=data.DEFAULT_EVAL_SET, choices=sorted(data.EVAL_SETS))
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs, ABBA order; medians")
    p.add_argument(
        "--no-packed",
        dest="packed",
        action="store_false",
        help="ml/train.py with the padded transformers forward (as the Trainer)",
    )
    return p.parse_args()


def run_trainer(cfg: trainconfig.TrainConfig, out: Path) -> dict:
    """The same fine-tune through transformers.Trainer; returns its figures and test metrics."""
    import math

    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    train.seed_everything(cfg.seed)
    rows, _ = train.load_data(cfg)
    model, tokenizer, _ = train.load_base(cfg)

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):  # tokenized on the fly, as ml/train.py does per batch
            enc = tokenizer(rows[i].text, truncation=True, max_length=cfg.max_length)
            return {**enc, "labels": rows[i].label}

    steps = math.ceil(len(rows) / cfg.batch_size) * cfg.epochs
    args = TrainingArguments(
        output_dir=str(out / "trainer-run"),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup_ratio * steps),
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        label_smoothing_factor=cfg.label_smoothing,
        seed=cfg.seed,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
    )
    # the Trainer's own fused AdamW has the same decay groups; only a separate head learning rate
    # needs ml/train.py's optimizer (the Trainer still makes its linear warm-up schedule)
    optimizers = (
        (train.make_optimizer(model, cfg), None) if cfg.head_learning_rate else (None, None)
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Rows(),
        data_collator=DataCollatorWithPadding(tokenizer),
        optimizers=optimizers,
    )
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    model_dir = out / "trainer-model"
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(model_dir)
    metrics = evaluation.evaluate_dir(model_dir, cfg.eval_set)
    return {
        "samples_per_s": result.metrics["train_samples_per_second"],
        "wall_s": wall,
        "metrics": metrics,
    }


def main():
    args = parse_args()
    import statistics

    import torch

    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), cuda {torch.cuda.is_available()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    ours_runs, their_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # every option but --repeats is a TrainConfig field, for both sides alike
        options = {k: v for k, v in vars(args).items() if k != "repeats"}
        cfg = trainconfig.TrainConfig.from_any(
            {**options, "output_dir": str(tmp / "ours"), "progress": False, "overwrite": True}
        )
        # ABBA order over repeats, so a drift in machine load hits both sides alike
        order = [
            ("ours", "trainer") if r % 2 == 0 else ("trainer", "ours") for r in range(args.repeats)
        ]
        for pair in order:
            for who in pair:
                if who == "ours":
                    t0 = time.perf_counter()
                    ours = train.train(cfg)
                    ours_runs.append(ours)
                    print(
                        f"ml/train.py ({ours['run']['forward']} forward): "
                        f"{ours['run']['train_samples_per_s']:.2f} samples/s "
                        f"({ours['run']['train_seconds']:.1f} s training loop, "
                        f"{time.perf_counter() - t0:.1f} s in all incl. load, curves, save, "
                        f"test eval); {args.eval_set} accuracy {ours['accuracy']:.4f}, "
                        f"macro-F1 {ours['macro_f1']:.4f}"
                    )
                else:
                    theirs = run_trainer(cfg, tmp)
                    their_runs.append(theirs)
                    print(
                        f"transformers Trainer: {theirs['samples_per_s']:.2f} samples/s "
                        f"({theirs['wall_s']:.1f} s in trainer.train()); {args.eval_set} "
                        f"accuracy {theirs['metrics']['accuracy']:.4f}, macro-F1 "
                        f"{theirs['metrics']['macro_f1']:.4f}"
                    )
    ours_sps = statistics.median(r["run"]["train_samples_per_s"] for r in ours_runs)
    their_sps = statistics.median(r["samples_per_s"] for r in their_runs)
    print_figures(
        {
            "benchmark": "train",
            "train_size": args.train_size,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "forward": ours_runs[-1]["run"]["forward"],
            "samples_per_s": round(ours_sps, 3),
            "trainer_samples_per_s": round(their_sps, 3),
            "samples_per_s_vs_trainer": round(ours_sps / their_sps, 3),
            "accuracy": ours_runs[-1]["accuracy"],
            "trainer_accuracy": their_runs[-1]["metrics"]["accuracy"],
            "targets": {"samples_per_s_vs_trainer": ">= 1.0", "accuracy_gap": "<= 0.01"},
        }
    )


if __name__ == "__main__":
    main()
