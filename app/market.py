"""Market: listings (search, filters, sort, pages), the model page, buy, fetch, try it, vote,
and "Recommended for you".

Views read input, validate it, call node/ (market, fetch) or ml/ (recommend, inference), then
flash and redirect. Listings come from the indexer's paginated query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup

from app import session_keys
from app.errors import flash_error, price_changed_message
from app.helpers import InputError, require_signer, vote_histogram_svg
from app.inference import service_states
from app.jobs import byte_progress, get_jobs
from app.last_answer import remember_answer
from app.lookups import (
    SORTS,
    STATUSES,
    TASKS,
    delivery_message,
    listing_row,
    model_or_404,
    my_purchase,
    page_args,
    seller_earnings,
    stops_sales,
)
from app.page_cache import DEFAULT_MAX_ENTRIES, DEFAULT_TTL_S, PageCache
from app.payments import answer_sentence, shown_payments, try_model
from app.resources import data_dir, get_chain, get_indexer, get_store
from app.versions import version_metadata
from ml.implicit import ImplicitModel
from ml.recommend import Recommender
from node import market
from node.errors import ModexError
from node.fetch import fetch_model, get_listing, private_folder
from node.indexer.feedback import FeedbackLog
from node.tokens import payment_token

log = logging.getLogger(__name__)
bp = Blueprint("market", __name__)

RECOMMEND_POOL = 200  # "recommended" ranks the best-scored matches, not all 10,000 listings

_recommender_lock = threading.Lock()


@bp.route("/")
def index():
    args = page_args()
    per_page = current_app.config["MODEX_PER_PAGE"]
    indexer = get_indexer()
    services = service_states()
    if args["sort"] == "recommended":  # ranked for this session's wallet: never shared
        listings = _render_listings(*_recommended_page(indexer, args, per_page), args, services)
    else:
        key = (
            indexer.checkpoint(),
            tuple(sorted(args.items())),
            per_page,
            tuple(sorted(services.items())),
        )
        listings = page_cache("listings").get_or_make(
            key,
            lambda: _render_listings(
                *indexer.list_models(per_page=per_page, **args), {}, args, services
            ),
        )
    return render_template(
        "market.html",
        listings=listings,
        args=args,
        sorts=SORTS,
        statuses=STATUSES,
        tasks=list(TASKS),
    )


def _render_listings(rows, total: int, notes: dict, args: dict, services: dict) -> Markup:
    """The market's count, table and pager for one page of listings (the same for every
    visitor: kept in page_cache("listings"))."""
    per_page = current_app.config["MODEX_PER_PAGE"]
    return Markup(
        render_template(
            "_listings.html",
            rows=[listing_row(r) for r in rows],
            total=total,
            pages=max(1, -(-total // per_page)),
            args=args,
            notes=notes,
            services=services,
        )
    )


def page_cache(name: str) -> PageCache:
    """The app's cache ``name`` of what every visitor is shown alike: MODEX_LISTINGS_CACHE_SIZE
    entries (0: off) for MODEX_LISTINGS_CACHE_TTL seconds."""
    key = f"modex.page_cache.{name}"
    cache = current_app.extensions.get(key)
    if cache is None:
        config = current_app.config
        size = int(config.get("MODEX_LISTINGS_CACHE_SIZE", DEFAULT_MAX_ENTRIES))
        ttl = float(config.get("MODEX_LISTINGS_CACHE_TTL", DEFAULT_TTL_S))
        cache = current_app.extensions.setdefault(key, PageCache(ttl_s=ttl, max_entries=size))
    return cache


def _recommended_page(indexer, args, per_page):
    query = {**args, "sort": "score", "page": 1}
    pool, total = indexer.list_models(per_page=RECOMMEND_POOL, **query)
    ranked = rank_for_buyer([dict(r) for r in pool], need=args["query"] or "")
    start = (args["page"] - 1) * per_page
    page = ranked[start : start + per_page]
    notes = {r["listing"]["model_id"]: r["explanation"] for r in page}
    return [r["listing"] for r in page], min(total, len(ranked)), notes


def rank_for_buyer(listings: list[dict], need: str) -> list[dict]:
    """ml/'s recommender over the listings, from the buyer's need and purchase history
    (listings already bought are the history's queries and are not recommended again)."""
    indexer = get_indexer()
    address = session_keys.current_address()
    bought = sorted({int(p["model_id"]) for p in indexer.purchases_of(address)}) if address else []
    by_id = {int(listing["model_id"]): listing_row(listing) for listing in listings}
    for model_id in bought:
        if model_id not in by_id and (row := indexer.get_model(model_id)) is not None:
            by_id[model_id] = listing_row(row)
    # The recommender's votes are a sum over a count: the price-weighted mean times the voters.
    items = [
        {
            "id": model_id,
            "name": row.get("name") or f"Model #{model_id}",
            "card": row.get("description") or "",
            "vote_sum": (row.get("score") or 0) * (row.get("vote_count") or 0),
            "vote_count": row.get("vote_count") or 0,
        }
        for model_id, row in by_id.items()
    ]
    ranked = _recommender().recommend(
        items, need=need, history=bought, top_k=None, implicit=_implicit_feedback(indexer)
    )
    return [{"listing": by_id[r.id], "explanation": r.explanation} for r in ranked]


def _implicit_feedback(indexer) -> ImplicitModel:
    """The app's implicit-feedback model (ml.implicit: what co-buyers chose together), brought
    up to date with the index's new events before each ranking: a purchase, vote or review the
    index has just taken in changes the next Recommended page."""
    with _recommender_lock:
        model = current_app.extensions.setdefault("modex.implicit", ImplicitModel())
    model.update(FeedbackLog(indexer))
    return model


def _recommender():
    app = current_app
    with _recommender_lock:
        if "modex.recommender" not in app.extensions:
            app.extensions["modex.recommender"] = Recommender(
                cache_path=data_dir() / "embeddings.sqlite"
            )
    return app.extensions["modex.recommender"]


@bp.route("/recommended", methods=["GET"])
def recommended():
    need = (request.args.get("need") or "").strip()[:500]
    results = []
    if need or session_keys.current_address():
        pool, _ = get_indexer().list_models(sort="score", page=1, per_page=RECOMMEND_POOL)
        results = rank_for_buyer([dict(r) for r in pool], need=need)[:20]
    return render_template("recommended.html", need=need, results=results)


def _refund_outlook(purchase: dict | None, listing: dict):
    """Whether the buyer's purchase can be refunded now, and the sentence that says so (None when
    there is nothing to say: no purchase, refunded, or a delivered purchase of a model no verdict
    stopped). A delivered purchase is refundable only after a dispute within its challenge
    period, which only the chain can tell."""
    if purchase is None or purchase["state"] not in ("pending", "delivered"):
        return None
    if purchase["state"] == "delivered" and not stops_sales(listing.get("status")):
        return None
    try:
        return market.refundability(get_chain(), purchase["purchase_id"])
    except ModexError as exc:
        log.warning(
            "purchase %s: cannot tell whether it is refundable: %s", purchase["purchase_id"], exc
        )
        return None


@bp.route("/models/<int:model_id>")
def model(model_id: int):
    listing = model_or_404(model_id)
    indexer = get_indexer()
    # The card, the licence and the content are the latest version's (the one sold now); the
    # claim beside the validators' reveals is the version their rounds attest.
    model_versions = indexer.versions_of(model_id)
    latest = model_versions[-1]
    attested = next(v for v in model_versions if v["attested"])
    meta = version_metadata(indexer, latest["metadata_cid"])
    claim = meta if attested is latest else version_metadata(indexer, attested["metadata_cid"])
    histogram = indexer.vote_histogram(model_id)
    purchase = my_purchase(model_id)
    address = session_keys.current_address()
    owner = address is not None and address.lower() == listing["owner"].lower()
    return render_template(
        "model.html",
        m=listing,
        meta=meta,
        latest=latest,
        attested=attested,
        claim=claim,
        attestations=indexer.attestations_of(model_id),
        rounds=indexer.rounds_of(model_id),
        histogram=vote_histogram_svg(histogram),
        purchase=purchase,
        refund=_refund_outlook(purchase, listing),
        delivery_text=purchase and delivery_message(purchase["state"], listing.get("status")),
        earnings=seller_earnings(address, model_id) if owner else None,
        stopped=stops_sales(listing.get("status")),
        fetched=_fetched_dir(model_id).is_dir(),
        served=model_id in (current_app.config.get("MODEX_MODELS") or {}),
        pending_vote=_pending_vote(indexer, address, model_id),
        pay=shown_payments(model_id, address),
    )


@bp.route("/models/<int:model_id>/buy", methods=["POST"])
def buy(model_id: int):
    listing = model_or_404(model_id)
    signer = require_signer()
    chain = get_chain()
    token = payment_token(chain, model_id)
    try:
        shown = token.parse(request.form.get("max_price", ""), "maximum price")
    except InputError as exc:
        flash(f"{exc} Nothing was charged.", "error")
        return redirect(url_for(".model", model_id=model_id))
    current = get_listing(chain, model_id).price
    if current > shown:
        flash(price_changed_message(current, token), "error")
        return redirect(url_for(".model", model_id=model_id))
    try:
        purchase = market.buy(chain, signer, model_id, max_price=shown)
    except ModexError as exc:
        flash_error(exc)
        return redirect(url_for(".model", model_id=model_id))
    purchases = session.setdefault("purchases", {})
    purchases[f"{signer.address}:{model_id}"] = purchase.purchase_id
    session.modified = True
    flash(
        f"Bought {listing.get('name') or 'model'} (purchase #{purchase.purchase_id}); the seller's node "
        "delivers your key in a moment.",
        "ok",
    )
    return redirect(url_for(".model", model_id=model_id))


def _fetched_dir(model_id: int) -> Path:
    address = session_keys.current_address() or "nobody"
    return data_dir() / "fetched" / address.lower() / str(model_id)


@bp.route("/models/<int:model_id>/fetch", methods=["POST"])
def fetch(model_id: int):
    model_or_404(model_id)
    signer = require_signer()
    out = _fetched_dir(model_id)
    if out.exists():
        flash("This model is already fetched and verified on this node.", "ok")
        return redirect(url_for(".model", model_id=model_id))
    private_folder(out.parent, data_dir())  # the buyer's decrypted weights: 0700 all the way
    job = get_jobs().submit(
        "fetch",
        session_keys.session_id(),
        _fetch_job,
        get_chain(),
        get_store(),
        signer,
        model_id,
        out,
    )
    return redirect(
        url_for("api.job_page", job_id=job.id, next=url_for(".model", model_id=model_id))
    )


def _fetch_job(chain, store, signer, model_id, out, *, progress):
    fetched = fetch_model(chain, signer, store, model_id, out, progress=byte_progress(progress))
    return {
        "path": str(fetched.out_dir),
        "model_hash": fetched.model_hash,
        "files": fetched.files,
        "url": f"/models/{model_id}",
    }


@bp.route("/models/<int:model_id>/refund", methods=["POST"])
def refund(model_id: int):
    """The buyer takes the payment back: an undelivered purchase after the delivery window, or at
    once when validators disputed the model; a delivered one when validators disputed the model
    within its challenge period. Anything else is refused with node.market's sentence saying
    when a refund would be possible; nothing is sent then."""
    model_or_404(model_id)
    signer = require_signer()
    purchase = my_purchase(model_id)
    if purchase is None or purchase["state"] not in ("pending", "delivered"):
        flash("There is no purchase of this model to refund.", "error")
        return redirect(url_for(".model", model_id=model_id))
    purchase_id = purchase["purchase_id"]
    return _send_and_return(
        model_id,
        lambda: market.refund(get_chain(), signer, purchase_id),
        f"Purchase #{purchase_id} refunded to your wallet.",
    )


@bp.route("/models/<int:model_id>/vote", methods=["POST"])
def vote(model_id: int):
    model_or_404(model_id)
    signer = require_signer()
    score = request.form.get("score", type=int)  # None when it is not a number: vote refuses it

    def send_vote():
        receipt = market.vote(get_chain(), signer, model_id, score)
        pending = session.setdefault("pending_votes", {})
        pending[f"{signer.address}:{model_id}"] = [score, int(receipt["blockNumber"])]
        session.modified = True

    return _send_and_return(model_id, send_vote, f"Your vote ({score}★) is recorded on-chain.")


def _pending_vote(indexer, address: str | None, model_id: int) -> int | None:
    """The score of this wallet's vote that is on-chain but not in the index yet (the votes the
    page shows come from the index); None once the index has its block."""
    pending = session.get("pending_votes") or {}
    key = f"{address}:{model_id}"
    if key not in pending:
        return None
    score, block = pending[key]
    checkpoint = indexer.checkpoint()
    if checkpoint and checkpoint[0] >= block:
        del pending[key]
        session.modified = True
        return None
    return score


def _send_and_return(model_id: int, send: Callable[[], object], done: str):
    """Sends a transaction of the model page's (send), flashes `done` when it went through or
    the error's sentence when it did not, and goes back to the model page."""
    try:
        send()
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(done, "ok")
    return redirect(url_for(".model", model_id=model_id))


# The flash category of Try it's answer: the model page shows it in its Try it box, under the
# button that asked (base.html leaves it out of the messages on top then).
TRY_IT = "try-it"


@bp.route("/models/<int:model_id>/try", methods=["POST"])
def try_it(model_id: int):
    """Inference playground: signs the request with the session's wallet and calls the endpoint,
    paid with the wallet's licence or subscription, else with a voucher on its open channel."""
    model_or_404(model_id)
    signer = require_signer()
    text = (request.form.get("text") or "").strip()
    if not text:
        flash("Type a sentence to classify.", f"error {TRY_IT}")
        return redirect(url_for(".model", model_id=model_id))
    status, body, paid_with = try_model(signer, model_id, text)
    if status != 200:
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        flash(message or "The inference server refused the request.", f"error {TRY_IT}")
    else:
        flash(answer_sentence(text, body, paid_with), f"ok {TRY_IT}")
        remember_answer(model_id, text, body)  # for "wrong? correct it" (app.feedback)
    return redirect(url_for(".model", model_id=model_id) + "#try")
