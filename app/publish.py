"""Publish: choose a model directory (one on this node, e.g. trained by ml/, or uploaded files),
name, description, task, licence, price -> a background job through node.publish (hash, seal,
pin, list) with progress -> the new model page. Uploaded files are written 0600 in 0700 folders
and removed when the job ends: this node keeps no plaintext of an uploaded model (so it does
not serve "Try it" for one; a folder of the node's own, e.g. trained here, is served).

Models published here are listed with this node's worker as operator, so the node's key-delivery
worker delivers buyers' keys while the seller is offline; the content key goes into the node's
key vault (node.keyvault), never into the database or a log. As `modex publish`, the job claims
the work digest of the folder's evaluation report (evaluation.json: models trained here carry
one); a folder without one is published with a warning that it can never become Verified, and a
report whose metrics are not the folder's metrics.json is refused before the job starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app import session_keys
from app.helpers import InputError, parse_eth, require_signer
from app.jobs import byte_progress, get_jobs
from app.lookups import TASKS
from app.resources import data_dir, get_chain, get_config, get_store
from node.errors import ManifestError
from node.fetch import PRIVATE_FILE, private_folder
from node.protocol import EVALUATION_REPORT
from node.publish import ListingInfo, claim_for, list_prepared, prepare

log = logging.getLogger(__name__)
bp = Blueprint("publish", __name__, url_prefix="/publish")

LICENSES = ("apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "openrail", "proprietary")
MAX_NAME, MAX_DESCRIPTION, MAX_CARD = 80, 2000, 50_000


def local_models() -> list[Path]:
    """Model directories this node offers in the form: ml/ outputs under <data dir>/models."""
    root = data_dir() / "models"
    if not root.is_dir():
        return []
    # Hidden folders are excluded: ml/train.py writes a model into ".<name>.*" before renaming it.
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
    )


@bp.route("/", methods=["GET"])
def index():
    # ?model_dir= preselects a directory (the training job's "Publish this model" link).
    return render_template(
        "publish.html",
        tasks=TASKS,
        licenses=LICENSES,
        models=local_models(),
        form={"model_dir": request.args.get("model_dir", "")},
    )


def _form() -> dict:
    form = request.form
    name = (form.get("name") or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InputError(f"Give the model a name of 1 to {MAX_NAME} characters.")
    description = (form.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InputError(
            f"Keep the description under {MAX_DESCRIPTION} characters "
            "(put details in the model card)."
        )
    task = form.get("task") or ""
    if task not in TASKS:
        raise InputError(f"Choose a task among: {', '.join(TASKS)}.")
    license_ = form.get("license") or ""
    if license_ not in LICENSES:
        raise InputError(f"Choose a licence among: {', '.join(LICENSES)}.")
    card = form.get("card") or ""
    if len(card) > MAX_CARD:
        raise InputError(f"The model card is over {MAX_CARD} characters; shorten it.")
    price = parse_eth(form.get("price", ""), "price")
    return {
        "name": name,
        "description": description,
        "task": task,
        "license": license_,
        "card": card or None,
        "price": price,
    }


def _model_dir() -> tuple[Path, bool]:
    """The directory to publish and whether it is a temporary upload to delete afterwards."""
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    if uploads:
        target = data_dir() / "uploads" / uuid.uuid4().hex
        for upload in uploads:
            rel = PurePosixPath(upload.filename.replace("\\", "/"))
            parts = rel.parts[1:] if len(rel.parts) > 1 else rel.parts  # drop the chosen folder
            if rel.is_absolute() or not parts or any(p in ("", ".", "..") for p in parts):
                shutil.rmtree(target, ignore_errors=True)
                raise InputError(
                    f"The uploaded file name '{upload.filename[:80]}' is not a plain "
                    "relative path; upload the model folder itself."
                )
            dest = target.joinpath(*parts)
            try:
                private_folder(dest.parent, data_dir())
                _save_private(upload, dest)
            except (OSError, ValueError) as exc:  # a NUL byte, a name over 255 bytes, a full disk
                shutil.rmtree(target, ignore_errors=True)
                log.info("upload %r refused: %s", upload.filename[:80], exc)
                raise InputError(
                    f"The uploaded file '{upload.filename[:80]}' could not be stored "
                    f"on this node ({getattr(exc, 'strerror', None) or exc}); rename "
                    "it or upload the model folder itself."
                ) from None
        return target, True
    choice = request.form.get("model_dir") or ""
    allowed = {str(p): p for p in local_models()}
    if choice not in allowed:
        raise InputError("Choose a model directory from the list or upload a model folder.")
    return allowed[choice], False


def _save_private(upload, dest: Path) -> None:
    """Write an uploaded file readable by this node's user only (0600, in 0700 folders)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with open(fd, "wb") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)  # a name uploaded twice: the file was there
        upload.save(out)


@bp.route("/", methods=["POST"])
def submit():
    signer = require_signer()
    vault = current_app.config.get("MODEX_KEYVAULT")
    if vault is None:
        flash(
            "This node has no key vault for sellers' content keys, so it cannot deliver keys "
            "for you: start it with `modex up`, or publish with `modex publish`.",
            "error",
        )
        return redirect(url_for(".index"))
    try:
        fields = _form()
        model_dir, temporary = _model_dir()
    except InputError as exc:
        flash(str(exc), "error")
        return render_template(
            "publish.html", tasks=TASKS, licenses=LICENSES, models=local_models(), form=request.form
        ), 400
    try:
        claim = claim_for(model_dir, _declared_metrics(model_dir))  # before any work: a sentence
    except ManifestError as exc:
        if temporary:
            shutil.rmtree(model_dir, ignore_errors=True)
        flash(str(exc).replace(str(model_dir), "MODEL_DIR"), "error")
        return render_template(
            "publish.html", tasks=TASKS, licenses=LICENSES, models=local_models(), form=request.form
        ), 400
    if claim is None:
        flash(
            f"This folder carries no evaluation report ({EVALUATION_REPORT}): it is listed "
            "without a claimed work digest and can never become Verified. Models trained on this "
            "node carry one; for another model run `modex evaluate MODEL_DIR --eval-set NAME "
            f"--output MODEL_DIR/metrics.json --report MODEL_DIR/{EVALUATION_REPORT}` and "
            "publish the folder again.",
            "warning",
        )
    job = get_jobs().submit(
        "publish",
        session_keys.session_id(),
        _publish_job,
        get_chain(),
        get_store(),
        get_config(),
        signer,
        model_dir,
        temporary,
        fields,
        current_app.config.get("MODEX_OPERATOR"),
        vault,
        current_app.config.get("MODEX_MODELS"),
    )
    return redirect(url_for("api.job_page", job_id=job.id))


def _declared_metrics(model_dir: Path) -> dict:
    try:
        metrics = json.loads((model_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _publish_job(
    chain, store, config, signer, model_dir, temporary, fields, operator, vault, models, *, progress
):
    fields = dict(fields)
    price = fields.pop("price")
    # A directory from ml/ declares its evaluation (eval set + metrics): validators re-run it.
    metrics = _declared_metrics(model_dir)
    try:
        prepared = prepare(
            model_dir,
            store,
            vault,
            ListingInfo(**fields, metrics=metrics),
            cid_profile=config.cid_profile,
            progress=byte_progress(progress),
        )
        progress("Listing on-chain")
        result = list_prepared(chain, signer, prepared, vault, price_wei=price, operator=operator)
    finally:
        # An upload's plaintext leaves this node once it is sealed and listed, and when the job
        # fails too (the form cannot pick an old upload: a retry uploads the folder again).
        if temporary:
            shutil.rmtree(model_dir, ignore_errors=True)
    if models is not None and not temporary:
        models[result.model_id] = model_dir  # served for inference by this node from now on
    return {
        "model_id": result.model_id,
        "url": f"/models/{result.model_id}",
        "work_digest": "0x" + result.work_digest.hex() if result.work_digest else None,
    }
