"""Private feedback from the UI (issue 15 §3; node.feedback does the work): "wrong? correct it"
beside Try it's answer, and its JSON API.

    POST /models/<id>/feedback                 the form: the session wallet's correction
    POST /api/models/<id>/feedback             {"text", "output", "label" | "note", "version"?}
                                               -> {"cid", "tx_hash", "model_id"}
    POST /api/models/<id>/feedback/withdraw    {"cid"} -> {"tx_hash"}

Each item is sealed to the seller on this node, pinned, and its CID anchored with the session
wallet (Votes.sendFeedback); the text is never logged. The form offers Try it's last answer
(app.last_answer).
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, request, url_for

from app.errors import describe
from app.helpers import InputError, require_signer
from app.last_answer import forget_answer, last_answer
from app.lookups import model_or_404
from app.resources import get_chain, get_store
from node import feedback
from node.errors import ContractRevert

bp = Blueprint("feedback", __name__)
bp.add_app_template_global(last_answer)  # the form beside Try it offers its last answer

FLASH = "feedback"  # the category suffix the partial template shows


def _number(value, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise InputError(f"The {what} is a whole number (0, 1, ...), got {value!r}.")
    return int(value)


def _send(model_id: int, fields) -> feedback.SentFeedback:
    model_or_404(model_id)
    signer = require_signer()
    note = fields.get("note") or None
    return feedback.send_feedback(
        get_chain(),
        get_store(),
        signer,
        model_id,
        text=str(fields.get("text") or ""),
        output=str(fields.get("output") or ""),
        label=None if note else _number(fields.get("label"), "right label"),
        note=note,
        version=_number(fields.get("version"), "model version"),
    )


@bp.route("/models/<int:model_id>/feedback", methods=["POST"])
def correct(model_id: int):
    """The form beside Try it's answer (the keystore wallet of this session signs); a refusal
    is shown beside the form, which keeps the session's last answer."""
    try:
        sent = _send(model_id, request.form)
    except (InputError, feedback.FeedbackError, ContractRevert) as exc:
        flash(describe(exc), f"error {FLASH}")
    else:
        forget_answer()
        flash(
            f"Sent privately to the seller: only they can read it; the chain holds its CID "
            f"{sent.cid} only. Withdraw it at any time with `modex feedback {model_id} "
            f"--withdraw {sent.cid}`.",
            f"ok {FLASH}",
        )
    return redirect(url_for("market.model", model_id=model_id) + "#feedback")


def _json() -> dict:
    data = request.get_json(silent=True)
    if isinstance(data, dict):
        return data
    raise InputError("Send a JSON object in the request body.")


@bp.route("/api/models/<int:model_id>/feedback", methods=["POST"])
def send_api(model_id: int):
    sent = _send(model_id, _json())
    return jsonify(cid=sent.cid, tx_hash=sent.tx_hash, model_id=sent.model_id)


@bp.route("/api/models/<int:model_id>/feedback/withdraw", methods=["POST"])
def withdraw_api(model_id: int):
    model_or_404(model_id)
    cid = str(_json().get("cid") or "")
    if not cid:
        raise InputError('Name the item to withdraw: {"cid": "..."}.')
    tx = feedback.withdraw_feedback(get_chain(), require_signer(), model_id, cid)
    return jsonify(tx_hash=tx, cid=cid)
