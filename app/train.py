"""Train: a form on this node (model name, training rows, epochs, batch size, max length, learning
rate, validation checks, eval set) -> a background job of kind "train" that runs ml.train.train
with its progress -> a new model directory under <data dir>/models, which the Publish form offers,
and the job page with its accuracy and macro-F1 on the eval set and a button to publish it.

Who may train: a session with an unlocked wallet (`require_signer`, the gate of Publish), although
training signs and sends nothing. The job takes every core of the node for minutes and writes, and
with "replace" deletes, folders in the node's model directory that the node lists and serves; the
wallet gate keeps that to the seller's sessions, and the next step, publishing, needs the wallet
anyway.

One training job at a time per node (training uses every core): a second submit while one is
queued or running is refused with a sentence (status 409). The owner can cancel a run: its
progress callback then raises `TrainingCancelled` at the next step and train() leaves nothing on
disk. The directory appears only complete: train() writes a temporary folder beside it and renames
it into place.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from app import session_keys
from app.helpers import InputError, require_signer
from app.jobs import get_jobs
from app.resources import data_dir
from ml import data, trainconfig
from ml import train as ml_train
from node.errors import ModexError

bp = Blueprint("train", __name__, url_prefix="/train")

NAME_RE = re.compile(r"[a-z0-9-]{1,60}")
EPOCHS = (1, 5)
BATCH_SIZE = (1, 128)
MAX_LENGTH = (8, 512)
EVALS = (1, 20)
MIN_TRAIN_ROWS = 16
LEARNING_RATE = (1e-6, 1e-2)
# ml.train's phase names, as the job page says them.
PHASES = {
    "loading base model": "Loading the base model and the training rows",
    "training": "Training steps",
    "evaluating on validation": "Checking on validation rows",
    "saving": "Saving the model directory",
}


class TrainingCancelled(ModexError):
    """Raised from the progress callback of a cancelled run; train() then writes nothing."""


class TrainingSlot:
    """The node's one training job (and the event that cancels it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job = None
        self.cancel = threading.Event()

    def busy(self) -> bool:
        return self.job is not None and self.job.state in ("queued", "running")


def get_slot() -> TrainingSlot:
    return current_app.extensions.setdefault("modex.training", TrainingSlot())


def models_root() -> Path:
    return data_dir() / "models"


def defaults() -> dict:
    return {
        "name": "",
        "train_size": trainconfig.TRAIN_SIZE,
        "epochs": trainconfig.EPOCHS,
        "batch_size": trainconfig.BATCH_SIZE,
        "max_length": trainconfig.MAX_LENGTH,
        "learning_rate": trainconfig.LEARNING_RATE,
        "evals_per_run": trainconfig.EVALS_PER_RUN,
        "eval_set": data.DEFAULT_EVAL_SET,
    }


def _page(form: dict, status: int = 200):
    return render_template(
        "train.html",
        form=form,
        eval_sets=sorted(data.EVAL_SETS),
        train_rows=len(data.split("train")),
        min_rows=MIN_TRAIN_ROWS,
        bounds={
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "max_length": MAX_LENGTH,
            "evals_per_run": EVALS,
            "learning_rate": LEARNING_RATE,
        },
        busy=get_slot().busy(),
    ), status


@bp.route("/", methods=["GET"])
def index():
    return _page(defaults())


def _whole(form, key: str, label: str, bounds: tuple[int, int], default: int) -> int:
    raw = (form.get(key) or "").strip()
    if not raw:
        return default
    lo, hi = bounds
    try:
        value = int(raw)
    except ValueError:
        raise InputError(
            f"The {label} '{raw[:20]}' is not a whole number; write one from {lo} to {hi}."
        ) from None
    if not lo <= value <= hi:
        raise InputError(f"The {label} must be from {lo} to {hi} (you wrote {value}).")
    return value


def _learning_rate(form, default: float) -> float:
    raw = (form.get("learning_rate") or "").strip()
    if not raw:
        return default
    lo, hi = LEARNING_RATE
    try:
        value = float(raw)
    except ValueError:
        raise InputError(
            f"The learning rate '{raw[:20]}' is not a number; write one like 0.0001."
        ) from None
    if not lo <= value <= hi:  # also refuses nan and inf
        raise InputError(
            f"The learning rate must be from {lo:g} to {hi:g}, e.g. 0.0001 (you wrote {raw[:20]})."
        )
    return value


def _target(form) -> tuple[Path, bool]:
    """The new model folder under <data dir>/models and whether an existing one is replaced."""
    name = (form.get("name") or "").strip()
    if not NAME_RE.fullmatch(name):
        raise InputError(
            "Name the model with 1 to 60 lower-case letters, digits or hyphens, "
            "e.g. review-sentiment-v2 (it becomes the folder name)."
        )
    target = models_root() / name
    replace = form.get("replace") in ("1", "on", "yes", "true")
    if target.exists() or target.is_symlink():
        if not replace:
            raise InputError(
                f"A model folder named {name} already exists on this node; choose "
                'another name, or tick "Replace" to train over it.'
            )
        served = {
            Path(p).resolve(): i for i, p in (current_app.config.get("MODEX_MODELS") or {}).items()
        }
        if target.resolve() in served:
            raise InputError(
                f"{name} is the folder this node serves for listed model "
                f"#{served[target.resolve()]}; train under a new name instead (its "
                "buyers must keep getting the weights that were listed)."
            )
        if not target.is_dir() or target.is_symlink():
            raise InputError(
                f"{name} exists on this node and is not a model folder; choose another name."
            )
    return target, replace


def read_form(form) -> tuple[dict, Path, bool]:
    """(ml.train settings, target folder, replace) from the form, or InputError with a sentence."""
    base = defaults()
    target, replace = _target(form)
    eval_set = form.get("eval_set") or base["eval_set"]
    if eval_set not in data.EVAL_SETS:
        raise InputError(f"Choose an eval set among: {', '.join(sorted(data.EVAL_SETS))}.")
    settings = {
        "train_size": _whole(
            form,
            "train_size",
            "number of training rows",
            (MIN_TRAIN_ROWS, len(data.split("train"))),
            base["train_size"],
        ),
        "epochs": _whole(form, "epochs", "number of epochs", EPOCHS, base["epochs"]),
        "batch_size": _whole(form, "batch_size", "batch size", BATCH_SIZE, base["batch_size"]),
        "max_length": _whole(form, "max_length", "max length", MAX_LENGTH, base["max_length"]),
        "evals_per_run": _whole(
            form, "evals_per_run", "number of validation checks", EVALS, base["evals_per_run"]
        ),
        "learning_rate": _learning_rate(form, base["learning_rate"]),
        "eval_set": eval_set,
        "name": target.name,
    }
    return settings, target, replace


@bp.route("/", methods=["POST"])
def submit():
    require_signer()
    try:
        settings, target, replace = read_form(request.form)
    except InputError as exc:
        flash(str(exc), "error")
        return _page(request.form, 400)
    slot = get_slot()
    with slot.lock:
        if slot.busy():
            flash(
                "This node is already training a model (training uses every core); wait for "
                "that run to finish or cancel it from its job page, then start this one.",
                "error",
            )
            return _page(request.form, 409)
        slot.cancel = threading.Event()
        publish_url = url_for("publish.index", model_dir=str(target))
        slot.job = get_jobs().submit(
            "train",
            session_keys.session_id(),
            _train_job,
            settings,
            target,
            replace,
            slot.cancel,
            publish_url,
        )
    return redirect(url_for("api.job_page", job_id=slot.job.id))


@bp.route("/<job_id>/cancel", methods=["POST"])
def cancel(job_id: str):
    job = get_jobs().get(job_id, session_keys.session_id())
    if job is None or job.kind != "train":
        abort(404, description="No such training job in your session.")
    slot = get_slot()
    if slot.job is not None and slot.job.id == job.id and slot.busy():
        slot.cancel.set()
        flash("Cancelling: the run stops at its next step and saves nothing.", "ok")
    else:
        flash("This training run has already ended; there is nothing to cancel.", "ok")
    return redirect(url_for("api.job_page", job_id=job_id))


def _train_job(
    settings: dict,
    target: Path,
    replace: bool,
    cancel: threading.Event,
    publish_url: str,
    *,
    progress,
):
    def on_progress(step: str, done: int | None, total: int | None) -> None:
        if cancel.is_set():
            raise TrainingCancelled(
                "Training was cancelled; nothing was saved. Start a new run "
                "from the Train page when you like."
            )
        label = PHASES.get(step) or step[:1].upper() + step[1:]
        progress(label, done, total)

    result = ml_train.train(
        {**settings, "output_dir": str(target), "overwrite": replace, "progress": False},
        on_progress=on_progress,
    )
    return {
        "show": True,
        "model": target.name,
        "model_dir": str(target),
        "publish_url": publish_url,
        "eval_set": result["eval_set"],
        "n": result["n"],
        "accuracy": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "steps": result["run"]["steps"],
        "train_seconds": result["run"]["train_seconds"],
        "train_samples_per_s": result["run"]["train_samples_per_s"],
    }
