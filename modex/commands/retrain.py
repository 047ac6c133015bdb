"""`modex retrain MODEL_ID [--from DIR] [--out DIR] [--max-regression X] [--seed N] [--dry-run]`:
the model's owner retrains its latest version on the feedback its users sent and publishes the
result as the next version when the public eval set does not regress (modex/retraining.py)."""

from __future__ import annotations

from pathlib import Path

from ml.retrain import add_run_options
from modex.commandline import add_command, add_node_options, positive_id
from modex.retraining import retrain_listing
from node.stack import Stack

REFUSED = 3  # the exit code of a run the gate refused (0: published, a dry run, or no feedback)


def register(sub) -> None:
    p = add_command(sub, "retrain", run)
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        metavar="DIR",
        help="the latest version's folder (default: decrypted from the store with your key "
        "vault's key and verified against its on-chain hash)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="keep the new version's folder here (a new or empty folder; default: a temporary "
        "one, removed once published)",
    )
    p.add_argument("--dry-run", action="store_true", help="train and gate, but publish nothing")
    group = p.add_argument_group("training (ml/retrain.py)")
    p.set_defaults(run_options=add_run_options(group))
    add_node_options(p)


def run(args) -> int:
    """As MODEL_ID's owner: read its feedback (the items about any version; withdrawn ones
    skipped), fine-tune the latest version on the labelled items plus replayed rows of its
    original training data, and publish the result as the next version only if its accuracy on
    the public eval set drops by at most --max-regression (its card and changelog.json count the
    items used). Prints what happened; exits 0 when published, on a dry run or without
    feedback, and 3 when the gate refused the new version (nothing is published then)."""
    options = {name: getattr(args, name) for name in args.run_options}
    outcome = retrain_listing(
        Stack.from_args(args),
        args.model_id,
        from_dir=args.from_dir,
        out_dir=args.out,
        dry_run=args.dry_run,
        **options,
    )
    print(outcome.summary())
    refused = outcome.result is not None and not outcome.result.published
    return REFUSED if refused else 0
