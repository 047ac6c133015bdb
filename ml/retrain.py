"""Retrain a model version on its buyers' feedback, and keep the result only if it does not regress.

    .venv/bin/python -m ml.retrain MODEL_DIR --feedback items.jsonl --output-dir NEW_DIR
    torchrun --standalone --nproc_per_node 2 -m ml.retrain MODEL_DIR --feedback ... (same options)

    retrain(model_dir, [(text, label), ...], out_dir, replay_rows=None, seed=1337,
            max_regression=0.01, holdout_share=0.2) -> RetrainResult

Steps: split the feedback (seeded) into a training share and a held-out share → evaluate the
current version (MODEL_DIR) on its listing's public eval set (ml/evaluate.py, the reproducible
protocol validators run) and on the held-out feedback → fine-tune it on the training share plus a
seeded replay sample of its original training rows (so it does not forget what it knew) →
evaluate the candidate the same two ways → the gate: the new version is written to out_dir only
when its public-eval accuracy is at most ``max_regression`` below the current version's (a
fraction: 0.01 = one point); otherwise nothing is written and the result says why.

A published version holds what ``modex train`` writes (safetensors weights, tokenizer, config,
training_config.json with every setting of this run, metrics.json, evaluation.json, the model
card) plus changelog.json: the parent's entries and this run's (feedback count, replay rows,
metric deltas), which the card lists too. The same seed, feedback and number of processes give
the same weights.

Scaling out: under torchrun each process trains on its share of every batch under
DistributedDataParallel (ml/ddp.py: gloo on CPU, NCCL with one GPU per process). Process 0
evaluates, gates and saves; every process returns the same RetrainResult, with its own weights
digest (equal on all of them).

Feedback items are (text, label) pairs, label an index into ml.data.LABELS; texts found in the
public eval set are left out (training on them would make the gate's measure lie). The feedback
file of the command line holds one JSON object a line: {"text": ..., "label": "positive" or 2}.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a file (python ml/retrain.py): re-run as the module from the repository root (see
    # ml/run_as_file.py; ml/ is sys.path[0] here, so it imports as a top-level module).
    from run_as_file import rerun_as_module

    rerun_as_module(__file__, "ml.retrain")

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from ml import data
from ml import evaluate as evaluation
from ml import train as training
from ml.card import model_card
from ml.ddp import Processes, fine_tune
from ml.trainconfig import TrainConfig
from node.errors import ConfigError, InputError
from node.protocol import EVALUATION_REPORT

# Heavy packages load late (torch and transformers): each is imported in the function that uses
# it, marked `late (heavy)`, because the node's worker and the CLI import this module at start-up.

log = logging.getLogger(__name__)

# ---- defaults ---------------------------------------------------------------------------------
# Rows of the original training data mixed into the feedback: at most this many (a version trained
# on fewer replays all of them, unless told a number).
REPLAY_ROWS = 500
HOLDOUT_SHARE = 0.2  # share of the feedback kept out of training to measure the new version
MAX_REGRESSION = 0.01  # the most public-eval accuracy a new version may lose (0.01 = one point)
EPOCHS = 2
LEARNING_RATE = 5e-5  # half the first training's: the model is already trained
CHANGELOG = "changelog.json"
FEEDBACK_HOLDOUT = "feedback-holdout"  # the eval_set name of the held-out feedback's metrics


@dataclasses.dataclass
class RetrainResult:
    published: bool
    reason: str  # why the gate published or refused the new version
    before: dict  # {"eval": public eval set metrics, "holdout": held-out feedback metrics}
    after: dict  # the same for the candidate
    changelog: dict  # this run's entry (also in the new version's changelog.json and card)
    config: dict  # every setting of the run (saved as training_config.json with the weights)
    output_dir: str | None  # the new version's directory; None when refused
    weights_sha256: str  # digest of this process's trained weights (equal on every process)


def check_feedback(feedback) -> list[data.Example]:
    """The (text, label) pairs as Examples; InputError naming the first bad item."""
    rows = []
    for i, item in enumerate(feedback):
        try:
            text, label = item
        except (TypeError, ValueError):
            raise InputError(f"feedback item {i} is not a (text, label) pair: {item!r}") from None
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"feedback item {i} has no text; give the input that was misread")
        if isinstance(label, bool) or label not in range(len(data.LABELS)):
            raise InputError(
                f"feedback item {i} has label {label!r}; give the index of one of "
                f"{list(data.LABELS)} (0 to {len(data.LABELS) - 1})"
            )
        rows.append(data.Example(text.strip(), label))
    if not rows:
        raise InputError("no feedback to retrain on; collect at least one corrected item")
    return rows


def split_feedback(rows: list, holdout_share: float, seed: int) -> tuple[list, list]:
    """(training share, held-out share) of the feedback, shuffled with the seed. With two or more
    items and a share above 0, at least one is held out and at least one trained on."""
    if not 0 <= holdout_share < 1:
        raise InputError(f"holdout_share must be in [0, 1) (got {holdout_share})")
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    held = round(len(shuffled) * holdout_share)
    if holdout_share and len(shuffled) >= 2:
        held = min(max(held, 1), len(shuffled) - 1)
    return shuffled[held:], shuffled[:held]


def parent_settings(model_dir: Path) -> dict:
    """The current version's training_config.json (what it was trained on and evaluated by)."""
    path = model_dir / "training_config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path} ({exc}); retrain a directory that 'modex train' or "
            f"ml.retrain wrote (it records the training rows and the eval set)",
            model_dir=str(model_dir),
        ) from None


def original_data(settings: dict) -> dict:
    """Which rows of the split the first version was trained on: {"train_size", "min_confidence"}
    (a retrained version carries its first version's)."""
    if "original_data" in settings:
        return settings["original_data"]
    if settings.get("run", {}).get("train_data") == "given":
        return {"given": True}
    return {"train_size": settings["train_size"], "min_confidence": settings["min_confidence"]}


def replay_sample(pool, replay_rows: int | None, seed: int, original: dict) -> list[data.Example]:
    """A seeded sample of replay_rows rows of the original training data (or of ``pool``);
    None: REPLAY_ROWS of them, or all when there are fewer."""
    if pool is None:
        if original.get("given"):
            raise ConfigError(
                "this version was trained on rows its trainer chose, not a slice of the split; "
                "pass its training rows as replay_pool"
            )
        spec = TrainConfig(output_dir="-", **original)
        pool = training.load_data(spec)[0]
    pool = [r if isinstance(r, data.Example) else data.Example(*r) for r in pool]
    if replay_rows is None:
        replay_rows = min(REPLAY_ROWS, len(pool))
    if not 0 <= replay_rows <= len(pool):
        raise InputError(
            f"replay_rows must be between 0 and the {len(pool)} original training rows "
            f"(got {replay_rows})"
        )
    return random.Random(seed).sample(pool, replay_rows)


def holdout_metrics(model_dir, rows: list) -> dict | None:
    """The reproducible metrics (ml/evaluate.py's predictor) of a model directory on the held-out
    feedback; None when nothing is held out."""
    if not rows:
        return None
    with evaluation.deterministic_cpu():
        model, tokenizer = evaluation.load_classifier(model_dir)
        preds = evaluation.predict_labels(
            model,
            tokenizer,
            [r.text for r in rows],
            max_length=evaluation.EVAL_MAX_LENGTH,
            batch_size=evaluation.EVAL_BATCH_SIZE,
        )
    return evaluation.compute_metrics(preds, [r.label for r in rows], FEEDBACK_HOLDOUT)


def measure(model_dir, eval_set: str, holdout: list) -> tuple[dict, dict]:
    """(public eval report, {"eval": its metrics, "holdout": held-out feedback metrics})."""
    report = evaluation.evaluation_report(model_dir, eval_set)
    return report, {"eval": report["metrics"], "holdout": holdout_metrics(model_dir, holdout)}


def gate(before: dict, after: dict, max_regression: float) -> tuple[bool, str]:
    """Whether the candidate may become the new version, and why: its public-eval accuracy may
    be at most max_regression below the current version's."""
    old, new = before["eval"]["accuracy"], after["eval"]["accuracy"]
    change = f"{before['eval']['eval_set']} accuracy {old} -> {new} ({new - old:+.6f})"
    if new < old - max_regression - 1e-12:
        return False, f"refused: {change} regresses by more than {max_regression}"
    return True, f"published: {change}, within the allowed regression of {max_regression}"


def delta(before: dict | None, after: dict | None, key: str) -> dict | None:
    if before is None or after is None:
        return None
    return {"before": before[key], "after": after[key], "delta": round(after[key] - before[key], 6)}


def changelog_entry(cfg: dict, before: dict, after: dict) -> dict:
    """This run's changelog entry: what it was trained on and how its metrics moved."""
    return {
        "parent_weights_sha256": cfg["parent_weights_sha256"],
        "feedback_items": cfg["feedback"]["items"],
        "feedback_trained": cfg["feedback"]["trained"],
        "feedback_held_out": cfg["feedback"]["held_out"],
        "feedback_in_eval_set": cfg["feedback"]["in_eval_set"],
        "replay_rows": cfg["replay_rows"],
        "seed": cfg["seed"],
        "eval_set": cfg["eval_set"],
        "accuracy": delta(before["eval"], after["eval"], "accuracy"),
        "macro_f1": delta(before["eval"], after["eval"], "macro_f1"),
        "holdout_accuracy": delta(before["holdout"], after["holdout"], "accuracy"),
    }


def changelog_section(entries: list[dict]) -> str:
    """The card's changelog, newest version first."""
    lines = [
        "\n## Changelog\nEach entry is one retraining on buyers' feedback "
        "(`ml/retrain.py`), kept only because the public eval set did not regress beyond the "
        "allowed margin; the numbers are before -> after.\n"
    ]
    for number, entry in reversed(list(enumerate(entries, start=2))):
        held = entry["holdout_accuracy"]
        held_text = (
            f"; held-out feedback accuracy {held['before']} -> {held['after']}" if held else ""
        )
        lines.append(
            f"- version {number}: {entry['feedback_items']} feedback items "
            f"({entry['feedback_trained']} trained on, {entry['feedback_held_out']} held out) "
            f"with {entry['replay_rows']} replayed training rows; `{entry['eval_set']}` accuracy "
            f"{entry['accuracy']['before']} -> {entry['accuracy']['after']} "
            f"({entry['accuracy']['delta']:+}), macro-F1 {entry['macro_f1']['before']} -> "
            f"{entry['macro_f1']['after']} ({entry['macro_f1']['delta']:+}){held_text}"
        )
    return "\n".join(lines) + "\n"


def weights_digest(model) -> str:
    """SHA-256 over the parameters and buffers, by name: equal weights, equal digest."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass
class Plan:
    """What one retraining run works from, decided before any training."""

    cfg: TrainConfig  # the fine-tuning settings (output_dir: the new version's directory)
    settings: dict  # the parent's training_config.json
    train_rows: list  # the feedback's training share plus the replay sample, shuffled
    holdout: list
    config: dict  # the run's config as saved with the weights


def plan_run(model_dir: Path, feedback, out_dir: Path, options: dict, replay_pool) -> Plan:
    settings = parent_settings(model_dir)
    eval_set = options.pop("eval_set") or settings.get("eval_set") or data.DEFAULT_EVAL_SET
    replay_rows, holdout_share, max_regression = (
        options.pop(k) for k in ("replay_rows", "holdout_share", "max_regression")
    )
    if not 0 <= max_regression < 1:
        raise InputError(f"max_regression must be in [0, 1) (got {max_regression})")
    cfg = TrainConfig(
        output_dir=str(out_dir),
        eval_set=eval_set,
        name=settings.get("name", TrainConfig.name),
        progress=False,
        **options,
    )
    cfg.check()
    given = check_feedback(feedback)
    public = {ex.text for ex in data.eval_set(eval_set)}
    usable = [ex for ex in given if ex.text not in public]
    trained, holdout = split_feedback(usable, holdout_share, cfg.seed)
    if not trained:
        raise InputError("every feedback item is held out or in the public eval set")
    original = original_data(settings)
    replay = replay_sample(replay_pool, replay_rows, cfg.seed, original)
    train_rows = trained + replay
    random.Random(cfg.seed).shuffle(train_rows)
    config = dataclasses.asdict(cfg) | {
        "parent_weights_sha256": file_digest(model_dir / "model.safetensors"),
        "original_data": original,
        "replay_rows": len(replay),
        "replay_source": "given" if replay_pool is not None else "split",
        "holdout_share": holdout_share,
        "max_regression": max_regression,
        "feedback": {
            "items": len(given),
            "in_eval_set": len(given) - len(usable),
            "trained": len(trained),
            "held_out": len(holdout),
        },
        "dataset": data.DATASET,
        "metrics": list(evaluation.METRIC_NAMES),
    }
    for key in ("output_dir", "progress", "overwrite", "train_size", "min_confidence"):
        config.pop(key)
    return Plan(cfg, settings, train_rows, holdout, config)


def write_version(tmp: Path, model_dir: Path, plan: Plan, report: dict, entry: dict) -> None:
    """The rest of the new version's directory (weights and tokenizer are already in ``tmp``)."""
    metrics = report["metrics"]
    evaluation.write_metrics(metrics, tmp / "metrics.json")
    evaluation.write_report(report, tmp / EVALUATION_REPORT)
    old = model_dir / CHANGELOG
    entries = (json.loads(old.read_text()) if old.is_file() else []) + [entry]
    (tmp / CHANGELOG).write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    run = plan.config["run"]
    card = model_card(plan.cfg, report, run) + changelog_section(entries)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    for path in tmp.iterdir():
        path.chmod(0o644)  # some writers create private files; a model directory is shared


def retrain(
    model_dir,
    feedback,
    out_dir,
    *,
    replay_rows: int | None = None,
    seed: int = TrainConfig.seed,
    max_regression: float = MAX_REGRESSION,
    holdout_share: float = HOLDOUT_SHARE,
    epochs: int = EPOCHS,
    learning_rate: float = LEARNING_RATE,
    batch_size: int = TrainConfig.batch_size,
    max_length: int = TrainConfig.max_length,
    eval_set: str = "",
    replay_pool=None,
    overwrite: bool = False,
) -> RetrainResult:
    """Fine-tune the version in model_dir on feedback ((text, label) pairs) plus replay_rows rows
    of its original training data (None: REPLAY_ROWS, or all when it has fewer; replay_pool:
    those rows, when the version's training_config.json cannot name them), and write the new version to out_dir only if the
    public eval set (eval_set: "" = the version's own) does not regress by more than
    max_regression. See the module docstring."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir} exists and is not empty; pick another or pass overwrite")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    options = {
        "seed": seed,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "max_length": max_length,
        "eval_set": eval_set,
        "replay_rows": replay_rows,
        "holdout_share": holdout_share,
        "max_regression": max_regression,
    }
    plan = plan_run(model_dir, feedback, out_dir, options, replay_pool)
    procs = Processes()
    try:
        before = None
        if procs.rank == 0:  # fail fast: an unloadable version stops the run before training
            before = measure(model_dir, plan.cfg.eval_set, plan.holdout)[1]
        training.seed_everything(plan.cfg.seed)
        model, tokenizer = evaluation.load_classifier(model_dir)
        plan.config["run"] = fine_tune(model, tokenizer, plan.train_rows, plan.cfg, procs)
        digest = weights_digest(model)
        outcome = save_if_better(model, tokenizer, model_dir, out_dir, plan, before)
        outcome = procs.share(outcome if procs.rank == 0 else None)
    finally:
        procs.close()
    return RetrainResult(**outcome, weights_sha256=digest)


def save_if_better(model, tokenizer, model_dir, out_dir, plan: Plan, before) -> dict | None:
    """Process 0: save the candidate beside out_dir, measure it, and move it into place only if
    the gate lets it through. The RetrainResult's fields but the weights digest."""
    if before is None:  # not process 0
        return None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config = plan.config
        (tmp / "training_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        report, after = measure(tmp, plan.cfg.eval_set, plan.holdout)
        published, reason = gate(before, after, config["max_regression"])
        entry = changelog_entry(config, before, after)
        if published:
            write_version(tmp, model_dir, plan, report, entry)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
        log.info("%s", reason)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "published": published,
        "reason": reason,
        "before": before,
        "after": after,
        "changelog": entry,
        "config": config,
        "output_dir": str(out_dir) if published else None,
    }


def read_feedback_file(path) -> list[tuple[str, int]]:
    """(text, label) pairs from a JSON-lines file of {"text", "label"} (a name or an index)."""
    pairs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the feedback file {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            label = item["label"]
            label = data.LABELS.index(label) if isinstance(label, str) else label
            pairs.append((item["text"], label))
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f'{path} line {number} is not {{"text": ..., "label": one of '
                f"{list(data.LABELS)} or its index}}"
            ) from None
    return pairs


def add_run_options(p: argparse.ArgumentParser) -> list[str]:
    """The run's settings as options of a command line (``python -m ml.retrain`` and `modex
    retrain`), each named as retrain()'s keyword; returns those names."""
    options = [
        p.add_argument(
            "--replay-rows",
            type=int,
            default=None,
            help=f"rows of the original training data mixed in (default {REPLAY_ROWS}, or all "
            "of them when the version was trained on fewer)",
        ),
        p.add_argument("--seed", type=int, default=TrainConfig.seed, help="default %(default)s"),
        p.add_argument(
            "--max-regression",
            type=float,
            default=MAX_REGRESSION,
            help="the most public-eval accuracy the new version may lose, a fraction "
            "(default %(default)s = one point)",
        ),
        p.add_argument(
            "--holdout-share",
            type=float,
            default=HOLDOUT_SHARE,
            help="share of the feedback kept out of training to measure it (default %(default)s)",
        ),
        p.add_argument("--epochs", type=int, default=EPOCHS, help="default %(default)s"),
        p.add_argument(
            "--learning-rate", type=float, default=LEARNING_RATE, help="default %(default)s"
        ),
        p.add_argument(
            "--batch-size", type=int, default=TrainConfig.batch_size, help="default %(default)s"
        ),
        p.add_argument(
            "--max-length", type=int, default=TrainConfig.max_length, help="default %(default)s"
        ),
        p.add_argument("--eval-set", default="", help="public eval set (default: the version's)"),
    ]
    return [action.dest for action in options]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="the current version's model directory")
    p.add_argument("--feedback", required=True, help="JSON lines of {text, label}")
    p.add_argument("--output-dir", required=True, help="where the new version goes if kept")
    add_run_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Retrain; every process prints one JSON line: its rank, whether the version was published,
    the reason, the metrics and its weights digest."""
    args = vars(parse_args(argv))
    feedback = read_feedback_file(args.pop("feedback"))
    result = retrain(args.pop("model_dir"), feedback, args.pop("output_dir"), **args)
    line = dataclasses.asdict(result) | {"rank": int(os.environ.get("RANK", 0))}
    print(json.dumps(line, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
