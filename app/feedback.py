"""Private feedback from the UI (issue 15 §3; node.feedback does the work): "wrong? correct it"
beside Try it's answer, and its JSON API.

    POST /models/<id>/feedback                 the form: the session wallet's correction
    POST /api/models/<id>/feedback             {"text", "output", "label" | "note", "version"?}
                                               -> {"cid", "tx_hash", "model_id"}
    POST /api/models/<id>/feedback/withdraw    {"cid"} -> {"tx_hash"}

Each item is sealed to the seller on this node, pinned, and its CID anchored with the session
wallet (Votes.sendFeedback); the text is never logged. The form offers Try it's last answer
(app.last_answer).

A browser wallet (hosted mode; issue 16 §2) has no key here, so its page seals the item itself
(app/static/js/feedback.js) and this node only pins and prepares:

    GET  /api/models/<id>/feedback/seal        what the page seals with: the seller's X25519 key
                                               (metadata feedback_key), chain id, Votes address,
                                               latest version, the session's last answer
    POST /api/models/<id>/feedback/sealed      the sealed item (raw bytes, or {"sealed": base64})
                                               -> {"cid"}: pinned unread (MAGIC and size checked)
    then /api/tx/prepare "sendFeedback" {"cid"} / "withdrawFeedback" {"cid"} (app/api.py's table:
    prepare_send_feedback, prepare_withdraw_feedback): the Votes call the wallet sends.
"""

from __future__ import annotations

import base64
import binascii
from io import BytesIO

from flask import Blueprint, flash, jsonify, redirect, request, session, url_for

from app.errors import describe
from app.helpers import InputError, require_signer
from app.last_answer import forget_answer, last_answer
from app.lookups import model_or_404
from app.resources import get_chain, get_store
from node import feedback
from node.content.keywrap import ENC_SIZE
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


# --- a browser wallet's feedback: sealed in its page, pinned and anchored through its wallet ---


def _browser_wallet() -> str:
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first (Wallet page).")
    return address


def _require_access(chain, model_id: int, address: str) -> None:
    if not chain.call(chain.marketplace.functions.hasAccess(model_id, address)):
        raise feedback.FeedbackError(
            f"{address} holds no licence or live subscription for model {model_id}: only its "
            "users send feedback (buy or subscribe first)",
            model_id=model_id,
        )


@bp.route("/api/models/<int:model_id>/feedback/seal")
def seal_facts(model_id: int):
    """What the page needs to build and seal an item exactly as node.feedback does: the sender
    (the connected wallet), the seller's published key (checked to be the owner's), the HPKE
    info's chain id and Votes address, the latest version, and Try it's last answer."""
    model_or_404(model_id)
    address = _browser_wallet()
    chain = get_chain()
    public = feedback.seller_key(chain, get_store(), model_id)
    answer = last_answer(model_id)
    return jsonify(
        account=address,
        model_id=model_id,
        chain_id=chain.chain_id,
        votes=chain.votes.address,
        version=feedback.latest_version(chain, model_id),
        seller_key="0x" + public.hex(),
        max_stored_bytes=feedback.MAX_STORED_BYTES,
        answer={"text": answer.get("text", ""), "output": answer.get("output", "")},
    )


def _sealed_body() -> bytes:
    """The uploaded item: the raw body, or base64 in {"sealed": ...}; nothing over the limit is
    read (the base64 form is a third larger)."""
    limit = feedback.MAX_STORED_BYTES
    if request.content_length is None or request.content_length > 2 * limit:
        raise InputError(
            f"A sealed feedback item is at most {limit} bytes: send it whole, with its "
            "Content-Length (this request is larger, or did not say its length)."
        )
    if request.is_json:
        data = request.get_json(silent=True)
        encoded = data.get("sealed") if isinstance(data, dict) else None
        if not isinstance(encoded, str):
            raise InputError('Send the sealed item as raw bytes or as {"sealed": base64}.')
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError('"sealed" is not base64: send the sealed item\'s bytes.') from None
    return request.get_data(cache=False)


@bp.route("/api/models/<int:model_id>/feedback/sealed", methods=["POST"])
def pin_sealed(model_id: int):
    """Pin an item the page sealed to the seller: this node cannot open it and does not try; it
    checks the header and the size a reader accepts, and that the wallet may send feedback at
    all (no pinning for accounts the contract would refuse)."""
    model_or_404(model_id)
    address = _browser_wallet()
    blob = _sealed_body()
    if not blob.startswith(feedback.MAGIC) or len(blob) <= len(feedback.MAGIC) + ENC_SIZE:
        raise InputError(
            f"This is not a sealed feedback item (it must start with {feedback.MAGIC.decode()}, "
            "then the HPKE enc and ciphertext): seal it in the page first."
        )
    if len(blob) > feedback.MAX_STORED_BYTES:
        raise InputError(
            f"The sealed item has {len(blob)} bytes; a reader fetches at most "
            f"{feedback.MAX_STORED_BYTES}: shorten the text or the note."
        )
    chain = get_chain()
    _require_access(chain, model_id, address)
    cid = get_store().put(BytesIO(blob))
    return jsonify(cid=cid, model_id=model_id, size=len(blob))


def _cid(data: dict) -> str:
    cid = data.get("cid")
    if not isinstance(cid, str) or not cid.strip():
        raise InputError('Name the feedback item: {"cid": "..."} (the pinned item\'s CID).')
    return cid.strip()


def prepare_send_feedback(chain, address, data, model_id, score):
    """/api/tx/prepare "sendFeedback": Votes.sendFeedback(modelId, cid) for an item the page
    sealed and pinned (POST .../feedback/sealed); refused first for a wallet without access."""
    cid = _cid(data)
    _require_access(chain, model_id, address)
    return chain.votes.functions.sendFeedback(model_id, cid), 0, {}


def prepare_withdraw_feedback(chain, address, data, model_id, score):
    """/api/tx/prepare "withdrawFeedback": Votes.withdrawFeedback(modelId, cid), its sender's
    only (the same refusal as node.feedback.withdraw_feedback's, before the wallet opens)."""
    cid = _cid(data)
    sender = chain.call(chain.votes.functions.feedbackSender(model_id, cid))
    if str(sender).lower() != address.lower():
        raise feedback.FeedbackError(
            f"item {cid} on model {model_id} was not sent by {address}: only its sender "
            "withdraws it",
            model_id=model_id,
        )
    return chain.votes.functions.withdrawFeedback(model_id, cid), 0, {}
