"""JSON endpoints the pages poll and call, plus the job progress page.

    GET  /api/health                      chain id, head block, indexed block
    GET  /api/models                      one page of listings (same arguments as the market page)
    GET  /api/models/<id>/delivery        the session wallet's purchase of that model: state + key
    GET  /api/jobs/<id>                   a background job's progress (polled by /jobs/<id>)
    POST /api/wallet/connect              bind a browser wallet (EIP-1193) address to the session:
                                          the address this session signed in with (app.auth)
    POST /api/wallet/encryption-key       its X25519 public key (the page derives it from a
                                          personal_sign signature that never leaves it)
    POST /api/tx/prepare                  an unsigned transaction for the browser wallet to send
                                          (buy, vote, withdraw, refund); withdraw is a sequence:
                                          one releaseRevenue per sale past its challenge period
                                          ("step": "release"), then the withdrawal ("withdraw");
                                          publish, setPrice, setActive: app.publish;
                                          subscribe, openChannel, topUp, extend, reclaim (an
                                          ERC-20 "approve" step first): app.paying;
                                          stake, setAttester: app.validate;
                                          sendFeedback, withdrawFeedback: app.feedback
    GET  /api/tx/<hash>                   the receipt of a transaction the browser sent

The inference endpoint, POST /api/inference/v1/infer, is mounted beside these by app.inference.

Errors are JSON `{"error": {"code": word, "message": sentence}}`, the HTTP status the
response's own (app.errors).
"""

from __future__ import annotations

import re

from eth_utils import to_checksum_address
from flask import Blueprint, abort, jsonify, render_template, request, session
from web3.exceptions import TransactionNotFound
from werkzeug.exceptions import Conflict

from app import session_keys
from app.errors import price_changed_message
from app.feedback import prepare_send_feedback, prepare_withdraw_feedback
from app.helpers import InputError, local_path, parse_eth
from app.inference import warm_models  # noqa: F401 (re-exported until `modex up` imports app.inference)
from app.jobs import get_jobs
from app.lookups import delivery_message, model_or_404, my_purchase, page_args, seller_earnings
from app.paying import (
    prepare_extend,
    prepare_open_channel,
    prepare_reclaim,
    prepare_subscribe,
    prepare_top_up,
)
from app.publish import prepare_publish, prepare_set_active, prepare_set_price
from app.resources import get_chain, get_indexer
from app.reviews import prepare_report, prepare_review
from app.validate import prepare_set_attester, prepare_stake
from node import market
from node.content.keywrap import encryption_message
from node.fetch import get_listing

bp = Blueprint("api", __name__)

HEX_RE = re.compile(r"^0x[0-9a-fA-F]+$")


@bp.route("/api/health")
def health():
    chain = get_chain()
    checkpoint = get_indexer().checkpoint()
    return jsonify(
        chain_id=chain.chain_id,
        block=chain.block_number(),
        indexed_block=checkpoint[0] if checkpoint else None,
        endpoint=chain.endpoint,
    )


@bp.route("/api/models")
def models():
    args = page_args()
    if args["sort"] == "recommended":
        args["sort"] = "score"
    per_page = min(100, max(1, request.args.get("per_page", 20, type=int)))
    rows, total = get_indexer().list_models(per_page=per_page, **args)
    return jsonify(
        total=total, page=args["page"], per_page=per_page, models=[_jsonable(dict(r)) for r in rows]
    )


def _jsonable(row: dict) -> dict:
    return {k: ("0x" + v.hex() if isinstance(v, (bytes, bytearray)) else v) for k, v in row.items()}


@bp.route("/api/models/<int:model_id>/delivery")
def delivery(model_id: int):
    listing = model_or_404(model_id)
    purchase = my_purchase(model_id)
    if purchase is None:
        return jsonify(state="none", message="You have not bought this model.")
    return jsonify(
        state=purchase["state"],
        purchase_id=purchase["purchase_id"],
        message=delivery_message(purchase["state"], listing.get("status")),
    )


@bp.route("/api/jobs/<job_id>")
def job(job_id: str):
    found = get_jobs().get(job_id, session_keys.session_id())
    if found is None:
        abort(404, description="No such job in your session (jobs are kept for a while only).")
    return jsonify(found.to_dict())


@bp.route("/jobs/<job_id>")
def job_page(job_id: str):
    found = get_jobs().get(job_id, session_keys.session_id())
    if found is None:
        abort(404, description="No such job in your session (jobs are kept for a while only).")
    return render_template(
        "job.html", job=found.to_dict(), next=local_path(request.args.get("next"))
    )


# --- browser wallet (EIP-1193): the server prepares, the browser signs and sends ---------------


def _json() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InputError("Send a JSON object in the request body.")
    return data


class NotSignedIn(session_keys.SignInRefused):
    """A wallet call for an address this session has not signed in with (SIWE)."""

    def __init__(self, address: str):
        super().__init__(
            "not_signed_in",
            f"Sign in with {address} first (Sign-In with Ethereum: POST /auth/siwe); "
            "a browser wallet is connected only after it signed this exchange's message.",
        )


@bp.route("/api/wallet/connect", methods=["POST"])
def connect_wallet():
    address = str(_json().get("address") or "")
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise InputError("The browser wallet sent no valid address (0x followed by 40 hex digits).")
    address = to_checksum_address(address)
    if session_keys.signed_in_address() != address:
        raise NotSignedIn(address)
    session_keys.lock()
    if session.get("browser_wallet") != address:  # another wallet's key must not buy for this one
        session.pop("browser_x25519", None)
    session["browser_wallet"] = address
    session_keys.session_id()
    return jsonify(address=session["browser_wallet"])


@bp.route("/api/wallet/encryption-key", methods=["POST"])
def encryption_key():
    """The connected browser wallet's X25519 public key for buy(). The page derived it itself
    from the wallet's personal_sign signature of docs/formats.md §4's message: that signature is the
    secret key's seed, so it stays in the browser and this node never sees it."""
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first.")
    data = _json()
    if "signature" in data:
        raise InputError(
            "Send only the public key (x25519_public): the signature is the seed of "
            "your key-delivery key and must stay in your browser. Reload the page."
        )
    public = str(data.get("x25519_public") or "")
    if not HEX_RE.match(public) or len(public) != 66 or int(public, 16) == 0:
        raise InputError(
            "x25519_public must be the 32-byte X25519 public key in hex "
            "(0x + 64 digits), derived in the browser."
        )
    session["browser_x25519"] = public.lower()
    return jsonify(x25519_public=public.lower())


@bp.route("/api/wallet/encryption-message")
def encryption_message_view():
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first.")
    return jsonify(message=encryption_message(get_chain().chain_id, address))


def _whole(value) -> int:
    """A JSON number or decimal string that is a whole number (7, 7.0, "7"); 7.5 and true are
    ValueErrors, not model 7 or model 1."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


# The /api/tx/prepare actions: each takes (chain, address, request body, modelId, score) and
# returns the contract call, the wei it sends and the withdrawal step it is (empty for the others).


def _prepare_buy(chain, address, data, model_id, score):
    max_price = parse_eth(str(data.get("maxPrice", "")), "maximum price")
    public = session.get("browser_x25519")
    if not public:
        raise InputError(
            "Enable encryption first (Wallet page): your wallet signs one message "
            "from which your key-delivery key is derived."
        )
    price = get_listing(chain, model_id).price
    if price > max_price:
        raise InputError(price_changed_message(price))
    return (
        chain.marketplace.functions.buy(model_id, bytes.fromhex(public[2:]), max_price),
        price,
        {},
    )


def _prepare_vote(chain, address, data, model_id, score):
    return chain.votes.functions.vote(model_id, market.valid_score(score)), 0, {}


def _prepare_withdraw(chain, address, data, model_id, score):
    earnings = seller_earnings(address)
    if earnings.releasable:
        sale = earnings.releasable[0]
        step = {"step": "release", "purchaseId": sale.purchase_id, "left": len(earnings.releasable)}
        return chain.marketplace.functions.releaseRevenue(sale.purchase_id), 0, step
    if earnings.credited == 0:
        raise Conflict(earnings.nothing_to_withdraw(address))
    step = {"step": "withdraw", "amount": str(earnings.credited)}
    return chain.marketplace.functions.withdraw(), 0, step


def _prepare_refund(chain, address, data, model_id, score):
    purchase = my_purchase(model_id)
    if purchase is None or purchase["state"] not in ("pending", "delivered"):
        raise InputError("There is no purchase of this model to refund.")
    outlook = market.refundability(chain, purchase["purchase_id"], address)
    if not outlook.possible:
        raise Conflict(f"{outlook.sentence} Nothing was sent.")
    return chain.marketplace.functions.refund(purchase["purchase_id"]), 0, {}


_TX_PREPARERS = {
    "buy": _prepare_buy,
    "vote": _prepare_vote,
    "withdraw": _prepare_withdraw,
    "refund": _prepare_refund,
    "subscribe": prepare_subscribe,  # an ERC-20 listing's approve first ("step": "approve")
    "openChannel": prepare_open_channel,
    "topUp": prepare_top_up,
    "extend": prepare_extend,
    "reclaim": prepare_reclaim,
    "publish": prepare_publish,  # a browser wallet's upload: list, claim, setOperator (steps)
    "setPrice": prepare_set_price,
    "setActive": prepare_set_active,
    "stake": prepare_stake,  # a validator's wallet (app/validate.py)
    "setAttester": prepare_set_attester,
    "review": prepare_review,  # a signed review or report, pinned first (app/reviews.py)
    "report": prepare_report,
    "sendFeedback": prepare_send_feedback,  # an item the page sealed and pinned (app/feedback.py)
    "withdrawFeedback": prepare_withdraw_feedback,
}


@bp.route("/api/tx/prepare", methods=["POST"])
def prepare_tx():
    """An unsigned transaction for the connected browser wallet: buy, vote, refund (the session
    wallet's purchase of modelId, as the keystore Refund button does: refused with the reason
    and when it would be possible), or withdraw.

    A withdrawal is prepared one transaction at a time, because the browser signs each: while
    the wallet's models have sales past their challenge period, the next ``releaseRevenue``
    (``"step": "release"``, with how many are left), then ``withdraw`` (``"step": "withdraw"``).
    The page sends each and asks again; nothing is released server-side (this node holds no key
    of a browser wallet, and releasing from another account would spend that account's gas)."""
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first (Wallet page).")
    data = _json()
    chain = get_chain()
    try:
        model_id, score = (_whole(data.get(k, 0)) for k in ("modelId", "score"))
    except (TypeError, ValueError):
        raise InputError("modelId and score must be whole numbers.") from None
    if not 0 <= model_id < 2**256:
        raise InputError("modelId must be a model number from the market (0 or more).")
    action = data.get("action")
    prepare = _TX_PREPARERS.get(action) if isinstance(action, str) else None
    if prepare is None:
        raise InputError(f"Unknown action: use one of {', '.join(_TX_PREPARERS)}.")
    fn, value, step = prepare(chain, address, data, model_id, score)
    # Dry-runs first: a revert becomes a sentence here, before the wallet pops up.
    tx = chain.build_transaction(fn, address, value=value)
    return jsonify(tx={k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()}, **step)


@bp.route("/api/tx/<tx_hash>")
def tx_status(tx_hash: str):
    if not HEX_RE.match(tx_hash) or len(tx_hash) != 66:
        raise InputError("A transaction hash is 0x followed by 64 hex digits.")
    w3 = get_chain().w3
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return jsonify(state="pending")
    return jsonify(
        state="mined" if receipt["status"] == 1 else "reverted",
        block=receipt["blockNumber"],
        gas_used=receipt["gasUsed"],
    )
