"""The training options: their defaults, TrainConfig (what one run is given, checked before
anything loads) and the command-line options built from it, shared by `python -m ml.train`,
`modex train`, the app's training form and ml/card.py's model card. Light on purpose: no torch."""

from __future__ import annotations

import argparse
import dataclasses

from ml import data
from node.errors import ConfigError

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
