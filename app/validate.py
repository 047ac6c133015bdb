"""Validate: stake, the queue of listings awaiting validation, one-click validate (fetch, verify,
evaluate, attest) through node.validator as a background job, and this validator's history.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app import session_keys
from app.errors import flash_error, format_eth
from app.helpers import InputError, parse_eth, require_signer
from app.jobs import get_jobs
from app.resources import data_dir, get_chain, get_indexer, get_store
from node.errors import ModexError

log = logging.getLogger(__name__)
bp = Blueprint("validate", __name__, url_prefix="/validate")

QUEUE_SIZE = 50


@bp.route("/")
def index():
    from node import market

    address = session_keys.current_address()
    indexer = get_indexer()
    queue, history, stake = [], [], None
    chain = get_chain()
    min_stake = market.min_stake(chain)
    if address:
        stake = market.staked(chain, address)
        history = [dict(a) for a in indexer.attestations_by(address)]
        done = {a["model_id"] for a in history}
        rows, _ = indexer.list_models(status="pending", sort="newest", page=1, per_page=QUEUE_SIZE)
        queue = [dict(r) for r in rows if r["model_id"] not in done]
    return render_template("validate.html", address=address, queue=queue, history=history,
                           stake=stake, min_stake=min_stake)


@bp.route("/stake", methods=["POST"])
def stake():
    from node import market

    signer = require_signer()
    try:
        amount = parse_eth(request.form.get("amount", ""), "stake")
        if amount <= 0:
            raise InputError("Stake more than 0 ETH.")
        market.stake(get_chain(), signer, amount)
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(f"Staked {format_eth(amount)}; you can now validate listings.", "ok")
    return redirect(url_for(".index"))


@bp.route("/<int:model_id>", methods=["POST"])
def run(model_id: int):
    signer = require_signer()
    if get_indexer().get_model(model_id) is None:
        flash(f"There is no model #{model_id} to validate.", "error")
        return redirect(url_for(".index"))
    job = get_jobs().submit("validate", session_keys.session_id(), _validate_job, get_chain(),
                            get_store(), signer, model_id, data_dir() / "validate",
                            current_app.config.get("MODEX_EVALUATOR"))
    return redirect(url_for("api.job_page", job_id=job.id, next=url_for(".index")))


def _validate_job(chain, store, signer, model_id, work_dir, evaluator, *, progress):
    from node.validator import validate_model

    result = validate_model(chain, store, signer, model_id, work_dir=work_dir,
                            evaluator=evaluator, progress=progress)
    return {"model_id": model_id, "matches": getattr(result, "matches", None),
            "url": f"/models/{model_id}"}
