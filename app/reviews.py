"""Reviews and reports on the model page (issue 15 §2): node.reviews does the work, the node
prepares and the wallet signs.

    POST /models/<id>/review                     keystore wallet: sign, pin, Votes.review
    POST /models/<id>/report                     keystore wallet: sign, pin, Votes.report
    POST /api/models/<id>/review/typed-data      browser wallet: the review's EIP-712 typed data
    POST /api/models/<id>/report/typed-data      browser wallet: the report's
        then /api/tx/prepare's "review" / "report" actions (app/api.py's table: prepare_review,
        prepare_report) check the signature, pin the document and give the Votes call to send.

The page's reviews come from the index (``Indexer.reviews_of``), each text sanitised with nh3
(every tag stripped) before it is shown; ``model_reviews`` is the template's function for them.
"""

from __future__ import annotations

import nh3
from flask import Blueprint, flash, jsonify, redirect, request, session, url_for
from markupsafe import Markup

from app.errors import flash_error
from app.helpers import require_signer
from app.lookups import model_or_404, my_purchase
from app.resources import get_chain, get_indexer, get_store
from node import reviews
from node.errors import InputError, ModexError

bp = Blueprint("reviews", __name__)


def shown_text(text: str | None) -> Markup | None:
    """A review's text as the page shows it: nh3 strips every tag (its output is escaped HTML)."""
    return None if text is None else Markup(nh3.clean(text, tags=set()))


@bp.app_context_processor
def _template_functions() -> dict:
    return {"model_reviews": model_reviews}


def model_reviews(model_id: int) -> dict:
    """What the model page's reviews block shows: the reviews (newest first, texts sanitised),
    how many accounts reported the model, and whether this wallet may review (a delivered
    licence: the contract decides whether it votes)."""
    indexer = get_indexer()
    listed = [{**r, "text": shown_text(r["text"])} for r in indexer.reviews_of(model_id)]
    purchase = my_purchase(model_id)
    return {
        "reviews": listed,
        "report_count": indexer.report_count(model_id),
        "licensed": bool(purchase and purchase["state"] == "delivered"),
    }


def _back(model_id: int):
    return redirect(url_for("market.model", model_id=model_id) + "#reviews")


@bp.route("/models/<int:model_id>/review", methods=["POST"])
def review(model_id: int):
    model_or_404(model_id)
    signer = require_signer()
    score = request.form.get("score", type=int)  # None when not a number: refused by valid_score
    try:
        done = reviews.review(
            get_chain(), signer, get_store(), model_id, score, request.form.get("text")
        )
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(
            f"Your review ({score}★) is on-chain (document {done.cid}); it shows here once the "
            "index has its block.",
            "ok",
        )
    return _back(model_id)


@bp.route("/models/<int:model_id>/report", methods=["POST"])
def report(model_id: int):
    model_or_404(model_id)
    signer = require_signer()
    try:
        done = reviews.report(
            get_chain(), signer, get_store(), model_id, request.form.get("reason")
        )
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(f"Reported (reason {done.cid}); the market counts it once indexed.", "ok")
    return _back(model_id)


def _browser_fields(kind: str, address: str, model_id: int, data: dict) -> dict:
    """The document's fields for the browser wallet ``address``, from a JSON body (``score``,
    ``text`` and ``version`` for a review; ``reason`` for a report)."""
    chain = get_chain()
    if kind == "report":
        return reviews.report_fields(
            chain.chain_id, chain.votes.address, model_id, data.get("reason"), address
        )
    version = data.get("version")
    return reviews.review_fields(
        chain.chain_id,
        chain.votes.address,
        model_id,
        reviews.latest_version(chain, model_id) if version is None else version,
        data.get("score"),
        data.get("text"),
        address,
    )


@bp.route("/api/models/<int:model_id>/<any(review, report):kind>/typed-data", methods=["POST"])
def typed_data(model_id: int, kind: str):
    """What the connected browser wallet signs (eth_signTypedData_v4) for a review or report."""
    model_or_404(model_id)
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first (Wallet page).")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InputError("Send a JSON object in the request body.")
    fields = _browser_fields(kind, address, model_id, data)
    return jsonify(signer=address, typedData=reviews.typed_data(kind, fields))


def _prepare(kind: str, chain, address: str, data: dict, model_id: int):
    fields = _browser_fields(kind, address, model_id, data)
    signature = data.get("signature")
    if not isinstance(signature, str):
        raise InputError(f"Send the {kind}'s signature (0x-hex) from your wallet.")
    _cid, call = reviews.prepare(chain, get_store(), kind, fields, signature)
    return call, 0, {}


def prepare_review(chain, address, data, model_id, score):
    """/api/tx/prepare "review": the browser wallet's signed review (score, text, version,
    signature), pinned; the Votes.review call for the wallet to send."""
    return _prepare("review", chain, address, {**data, "score": score}, model_id)


def prepare_report(chain, address, data, model_id, score):
    """/api/tx/prepare "report": the browser wallet's signed report (reason, signature), pinned;
    the Votes.report call for the wallet to send."""
    return _prepare("report", chain, address, data, model_id)
