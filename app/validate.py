"""Validate: stake, the queue of listings awaiting validation, one-click validate (fetch, verify,
evaluate, attest) through node.validator as a background job, and this validator's history.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app import session_keys
from app.errors import flash_error, format_eth
from app.helpers import InputError, parse_eth, require_signer
from app.jobs import get_jobs
from app.resources import data_dir, get_chain, get_indexer, get_store
from node.errors import KeyDeliveryError, ModexError, StoreError

log = logging.getLogger(__name__)
bp = Blueprint("validate", __name__, url_prefix="/validate")

QUEUE_SIZE = 50


@bp.route("/")
def index():
    from node import market

    address = session_keys.current_address()
    indexer = get_indexer()
    queue, history, stake = [], [], 0
    chain = get_chain()
    min_stake = market.min_stake(chain)
    if address:
        stake = int(chain.call(chain.validators.functions.stakeOf(address))[0])
        history = attestations_by(chain, address)
        done = {a["model_id"] for a in history}
        rows, _ = indexer.list_models(status="unverified", sort="newest", page=1,
                                      per_page=QUEUE_SIZE)
        queue = [dict(r) for r in rows if r["model_id"] not in done]
    return render_template("validate.html", address=address, queue=queue, history=history,
                           stake=stake, min_stake=min_stake)


def attestations_by(chain, address: str) -> list[dict]:
    """This validator's attestations, newest first, from the Attested events (the indexer keys
    its attestations by model)."""
    start = int(chain.deployment.get("block", 0) or 0)
    events = chain.events("Attested", from_block=start, validator=address)
    return [{"model_id": int(e["args"]["modelId"]), "matches": bool(e["args"]["matches"]),
             "metrics_digest": "0x" + bytes(e["args"]["metricsDigest"]).hex(),
             "block": e["blockNumber"]} for e in reversed(events)]


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
    from app.market import model_or_404

    signer = require_signer()
    model_or_404(model_id)
    job = get_jobs().submit("validate", session_keys.session_id(), _validate_job, get_chain(),
                            get_store(), signer, model_id, data_dir() / "validate",
                            current_app.config.get("MODEX_EVALUATOR"))
    return redirect(url_for("api.job_page", job_id=job.id, next=url_for(".index")))


def evaluate_listing(model_dir, metadata: dict) -> dict | None:
    """The evaluator the validator agent runs: ml/'s deterministic evaluation on the listing's
    declared public eval set (DESIGN.md §7); None when the listing declares none or its weights
    cannot be evaluated (the hash is still attested; the metrics digest is then zero)."""
    eval_set = (metadata.get("metrics") or {}).get("eval_set")
    if not eval_set:
        return None
    from ml.evaluate import evaluate_dir

    try:
        return evaluate_dir(model_dir, eval_set)
    except Exception:  # weights that do not load: attest the hash, with no metrics (zero digest)
        log.warning("the declared evaluation (%s) could not run on %s", eval_set, model_dir,
                    exc_info=True)
        return None


def _validate_job(chain, store, signer, model_id, work_dir, evaluator, *, progress,
                  timeout: float = 600.0, interval: float = 1.0):
    """Run the validator agent's passes until this model is attested (or settled)."""
    from node.validator import ValidatorAgent

    agent = ValidatorAgent(chain, signer, store, work_dir / f"{signer.address.lower()}.json",
                           work_dir=work_dir, evaluator=evaluator or evaluate_listing)
    deadline = time.monotonic() + timeout
    progress("staking if needed")
    while True:
        report = agent.poll()
        mine = [a for a in report.attested if a.model_id == model_id]
        if mine:
            a = mine[0]
            return {"model_id": model_id, "matches": a.matches, "reason": a.reason,
                    "url": f"/models/{model_id}"}
        if model_id in report.done:
            return {"model_id": model_id, "url": f"/models/{model_id}"}
        if model_id in report.requested or model_id in report.waiting:
            progress("key requested; waiting for the seller's node to deliver it")
        not_checked = report.retry.get(model_id)  # this node's store or disk, never attested
        if not_checked:
            progress(f"not checked yet, nothing attested: {not_checked}; trying again")
        if time.monotonic() > deadline:
            if not_checked:
                raise StoreError(f"model {model_id} could not be checked within {timeout:g} s "
                                 f"and nothing was attested: {not_checked}")
            raise KeyDeliveryError(
                f"the seller's node did not deliver the key for model {model_id} within "
                f"{timeout:g} s; try again later")
        time.sleep(interval)
