"""What several blueprints look up and say the same way, so that none imports another: the
listing query's page arguments, a model by number (404 otherwise), the session wallet's purchase
of a model and the sentence its state shows, and a seller's earnings.

    page_args()              the market's search, filter, sort and page from the query string
    model_or_404(model_id)   the indexer's listing row, ready for a template
    listing_metadata(...)    a listing's (or a version's) public metadata JSON, {} when unreachable
    my_purchase(model_id)    the session wallet's purchase of that model (or None)
    delivery_message(...)    what the buyer's purchase box says
    seller_earnings(address) node.market.earnings over the address's unreleased sales
"""

from __future__ import annotations

import logging

from flask import abort, request, session

from app import session_keys
from app.helpers import STATUS_NAMES, score_text
from app.resources import get_chain, get_indexer, get_store
from node import market
from node.errors import ModexError
from node.fetch import load_metadata
from node.protocol import ModelStatus, Purchase

log = logging.getLogger(__name__)

# The tasks a listing may name: the Publish form's choices and the market's task filter.
TASKS = ("text-classification", "sentiment-analysis", "feature-extraction", "other")
SORTS = {
    "newest": "Newest",
    "price": "Price (low to high)",
    "score": "Score",
    "recommended": "Recommended",
}
# Filter values are the indexer's status words (ModelStatus.word), named as the badges name them.
STATUSES = {"": "Any status", **STATUS_NAMES}
MAX_PAGE = 100_000  # beyond any real listing count; keeps OFFSET inside SQLite's integers

DELIVERY_MESSAGES = {
    "pending": "Paid; waiting for the seller's node to deliver your key…",
    "delivered": "Key delivered: you can fetch the model.",
    "refunded": "Refunded: the seller did not deliver in time.",
}
DISPUTED_MESSAGES = {  # the Marketplace refuses to deliver a disputed model and refunds it at once
    "pending": "Validators disputed this model: its key will not be delivered. Refund your payment now.",
    "refunded": "Refunded: validators disputed this model.",
}


def page_args() -> dict:
    """The listing query from the request's arguments (q, task, status, sort, page); values
    outside the choices fall back to none or to the defaults."""
    try:
        page = min(max(1, int(request.args.get("page", 1))), MAX_PAGE)
    except ValueError:
        page = 1
    sort = request.args.get("sort", "newest")
    status = request.args.get("status", "")
    return {
        "query": (request.args.get("q") or "").strip()[:200] or None,
        "task": (request.args.get("task") or "").strip()[:80] or None,
        "status": status if status in STATUSES and status else None,
        "sort": sort if sort in SORTS else "newest",
        "page": page,
    }


def listing_row(row) -> dict:
    """An indexer row as the templates read it: a dict with its score in words."""
    row = dict(row)
    row["score_text"] = score_text(row.get("score"), row.get("vote_count") or 0)
    return row


def model_or_404(model_id: int) -> dict:
    row = get_indexer().get_model(model_id) if model_id < 2**63 else None  # SQLite's integers
    if row is None:
        abort(
            404,
            description=f"There is no model #{model_id} on this exchange; "
            "it may not be indexed yet. Go back to the market.",
        )
    return listing_row(row)


def listing_metadata(indexer, cid: str) -> dict:
    """The listing's public metadata JSON (docs/formats.md §6): the indexer's copy, else the store's
    (a listing the indexer has not fetched metadata for yet); {} when neither has it."""
    meta = indexer.metadata(cid)
    if meta is not None:
        return meta
    try:
        return load_metadata(get_store(), cid)
    except ModexError as exc:
        log.warning("metadata %s unavailable: %s", cid, exc)
        return {}


def stops_sales(status_word: str | None) -> bool:
    """Whether the indexer's status word is a verdict that stops sales (Disputed or Metrics
    disputed: the Marketplace refuses deliveries and refunds the buyers)."""
    return status_word in {s.word for s in ModelStatus if s.stops_sales}


def delivery_message(state: str, model_status: str | None) -> str:
    """What the buyer's purchase box says (the model page and its polling API alike)."""
    if stops_sales(model_status) and state in DISPUTED_MESSAGES:
        return DISPUTED_MESSAGES[state]
    return DELIVERY_MESSAGES.get(state, state)


def my_purchase(model_id: int) -> dict | None:
    """The session wallet's purchase of this model: the indexer's row, or — right after buying,
    before the indexer has caught up — the purchase this session made, read from the chain."""
    address = session_keys.current_address()
    if not address:
        return None
    mine = [
        p
        for p in get_indexer().purchases_of(address)
        if p["model_id"] == model_id and p.get("kind", "buyer") == "buyer"
    ]
    if mine:
        delivered = [p for p in mine if p["state"] == "delivered"]
        return (delivered or mine)[-1]
    pid = session.get("purchases", {}).get(f"{address}:{model_id}")
    if pid is None:
        return None
    chain = get_chain()
    p = Purchase.from_call(chain.call(chain.marketplace.functions.purchase(pid)))
    if p.account.lower() != address.lower():
        return None
    return {"purchase_id": pid, "model_id": model_id, "price": p.price, "state": p.status.word}


def seller_earnings(address: str, model_id: int | None = None):
    """``node.market.earnings`` of ``address`` over its unreleased sales from the index (those
    of one model when ``model_id`` is given)."""
    sales = [
        p["purchase_id"]
        for p in get_indexer().unreleased_sales(address)
        if model_id is None or p["model_id"] == model_id
    ]
    return market.earnings(get_chain(), address, sales)
