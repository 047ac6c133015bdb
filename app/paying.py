"""Paying for a model's service from the UI (issue 14 §5): subscribe, open a payment channel
for per-call credit, reclaim an expired channel, and a seller's claim of the vouchers this
node's service holds. Each sends one transaction with the session's wallet (node.subscriptions,
node.channels), then flashes what happened and goes back to the page that asked.

Claims are also made by the node's worker on its own (node/claimer.py, above a threshold or
near expiry); the wallet page's button claims now.

A browser wallet (EIP-1193, issue 16 §2) does the same without a key on this node:

    prepare_subscribe, prepare_open_channel, prepare_top_up, prepare_extend, prepare_reclaim
        /api/tx/prepare's actions (app/api.py): the transaction for the wallet to send; one that
        pays in an ERC-20 is preceded by the token's approve ("step": "approve"; the page sends
        it and asks again, as a withdrawal's releases)
    POST /api/models/<id>/try/typed-data   Try it's request (and voucher) as EIP-712 typed data
    POST /api/models/<id>/try              the request the page signed, handed to the service
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, request, session, url_for

from app.errors import flash_error
from app.helpers import require_signer
from app.last_answer import remember_answer
from app.lookups import model_or_404
from app.payments import (
    answer_sentence,
    chain_now,
    channels_client,
    claimable,
    model_payments,
    run_signed_try,
    try_to_sign,
)
from app.resources import get_chain, get_indexer
from node import market
from node.amounts import Token, fmt_period
from node.errors import InputError, ModexError
from node.revert_sentences import when
from node.subscriptions import subscribe as subscribe_to
from node.subscriptions import subscription_offer
from node.tokens import approvals, known_token, payment_token, require_funds

bp = Blueprint("paying", __name__)

MAX_PERIODS = 120
MAX_CHANNEL_DAYS = 365


def _whole(value, what: str, highest: int) -> int:
    """A form's or JSON body's whole number from 1 to ``highest``; InputError naming ``what``."""
    text = str(value if value is not None else "").strip()
    if not text.isdigit() or not 1 <= int(text) <= highest:
        raise InputError(f"Give the {what} as a whole number from 1 to {highest}.")
    return int(text)


def _on_model_page(model_id: int, send) -> object:
    """Send the transaction ``send(signer)`` for a model's page, flash its sentence (or the
    error's) and go back to the page's payment box."""
    model_or_404(model_id)
    signer = require_signer()
    try:
        flash(send(signer), "ok")
    except ModexError as exc:
        flash_error(exc)
    return redirect(url_for("market.model", model_id=model_id) + "#pay")


@bp.route("/models/<int:model_id>/subscribe", methods=["POST"])
def subscribe(model_id: int):
    def send(signer) -> str:
        periods = _whole(request.form.get("periods"), "number of periods", MAX_PERIODS)
        done = subscribe_to(get_chain(), signer, model_id, periods)
        return (
            f"Subscribed for {done.paid_text}: you may call this model's service until "
            f"{when(done.expires_at)}."
        )

    return _on_model_page(model_id, send)


@bp.route("/models/<int:model_id>/channel", methods=["POST"])
def open_channel(model_id: int):
    def send(signer) -> str:
        chain = get_chain()
        client = _channels(chain)
        token = payment_token(chain, model_id)
        amount = token.parse(request.form.get("amount", ""), "deposit")
        days = _whole(request.form.get("days"), "number of days", MAX_CHANNEL_DAYS)
        channel = client.open(signer, model_id, amount, chain_now(chain) + days * 86400)
        return (
            f"Opened payment channel #{channel.channel_id} with {token.format(channel.deposit)} "
            f"for {fmt_period(days * 86400)}: Try it pays each call from it."
        )

    return _on_model_page(model_id, send)


def _channels(chain):
    client = channels_client(chain)
    if client is None:
        raise InputError(
            "This exchange's deployment has no Channels contract: no payment channels here."
        )
    return client


@bp.route("/wallet/channels/<int:channel_id>/reclaim", methods=["POST"])
def reclaim(channel_id: int):
    signer = require_signer()
    chain = get_chain()
    try:
        client = _channels(chain)
        token = chain.token(client.channel(channel_id).token)
        returned = client.reclaim(signer, channel_id)
    except ModexError as exc:
        flash_error(exc)
    else:
        flash(f"Channel #{channel_id} closed: {token.format(returned)} came back to you.", "ok")
    return redirect(url_for("wallet.index") + "#channels")


@bp.route("/wallet/claim", methods=["POST"])
def claim():
    """Claim every voucher this node's service holds on channels paying the wallet's models."""
    signer = require_signer()
    chain = get_chain()
    client = channels_client(chain)
    from_store = claimable(signer.address)
    if client is None or not from_store:
        flash("This node's service holds no unclaimed vouchers for your models.", "error")
        return redirect(url_for("wallet.index") + "#claims")
    store = current_app.extensions["modex.service_store"]

    def claim_each(done: list[str]) -> None:
        for channel, amount, signature, token in from_store:
            claimed = client.claim(signer, channel.channel_id, amount, signature)
            store.mark_claimed(channel.channel_id, amount)
            done.append(f"#{channel.channel_id}: {token.format(claimed.paid)}")

    return _steps_on_wallet_page(
        claim_each, "Claimed channel {} (credited; withdraw below).", ", ", "#claims"
    )


def _steps_on_wallet_page(steps, sentence: str, joiner: str, anchor: str):
    """Run ``steps(done)``, which lists in ``done`` what each transaction did; flash ``sentence``
    over what was done (even when a later step failed, whose error is flashed too) and go back
    to the wallet page at ``anchor``."""
    done: list[str] = []
    try:
        steps(done)
    except ModexError as exc:
        flash_error(exc)
    if done:
        flash(sentence.format(joiner.join(done)), "ok")
    return redirect(url_for("wallet.index") + anchor)


@bp.route("/wallet/withdraw/<token_address>", methods=["POST"])
def withdraw_token(token_address: str):
    """Withdraw what the wallet is credited in one token: by the Marketplace (sales past their
    challenge period are released first; subscriptions) and by Channels (claimed calls)."""
    signer = require_signer()
    chain = get_chain()
    client = channels_client(chain)

    def withdraw_both(said: list[str]) -> None:
        token = known_token(chain, token_address)
        if client is not None and client.credited(signer.address, token.address):
            said.append(f"{token.format(client.withdraw(signer, token.address))} from paid calls")
        sales = [p["purchase_id"] for p in get_indexer().unreleased_sales(signer.address)]
        found = market.earnings(chain, signer.address, sales, token)
        if found.withdrawable or not said:
            said.append(f"{token.format(market.withdraw(chain, signer, sales, token).amount)}")

    return _steps_on_wallet_page(withdraw_both, "Withdrew {} to your wallet.", " and ", "#tokens")


# --- a browser wallet (EIP-1193): /api/tx/prepare's actions and Try it signed in the page -------
# Each preparer takes (chain, address, request body, modelId, score) and returns the contract
# call, the wei it sends and its step (app/api.py's _TX_PREPARERS).


def _paying(chain, address: str, token: Token, amount: int, spender: str, fn, step: str):
    """``fn`` (which takes ``amount`` of ``token`` from ``address``: as its value for ETH), or
    first the ERC-20 approve of ``spender`` it needs ("step": "approve", with how many approves
    are left: two for a token that must be set to zero first)."""
    needed = approvals(chain, address, token, amount, spender)
    if needed:
        said = {"step": "approve", "left": len(needed), "amount": token.format(amount)}
        return needed[0], 0, said
    return fn, amount if token.is_eth else 0, {"step": step}


def prepare_subscribe(chain, address, data, model_id, score):
    periods = _whole(data.get("periods"), "number of periods", MAX_PERIODS)
    offer = subscription_offer(chain, model_id)
    if not offer.offered:
        raise InputError(f"Model {model_id} offers no subscription (its seller set none).")
    total = offer.price_per_period * periods
    require_funds(chain, address, offer.token, total, f"{periods} period(s) of {offer.text} cost")
    fn = chain.marketplace.functions.subscribe(model_id, periods, total)
    return _paying(chain, address, offer.token, total, chain.marketplace.address, fn, "subscribe")


def prepare_open_channel(chain, address, data, model_id, score):
    client = _channels(chain)
    token = payment_token(chain, model_id)
    amount = _deposit(token, data.get("amount"), "deposit")
    days = _whole(data.get("days"), "number of days", MAX_CHANNEL_DAYS)
    require_funds(chain, address, token, amount, "the deposit is")
    expires_at = chain_now(chain) + days * 86400
    fn = client.contract.functions.openChannel(model_id, token.address, amount, expires_at)
    return _paying(chain, address, token, amount, client.address, fn, "open")


def prepare_top_up(chain, address, data, model_id, score):
    client, channel = _my_channel(chain, address, data)
    token = chain.token(channel.token)
    amount = _deposit(token, data.get("amount"), "top-up")
    require_funds(chain, address, token, amount, "the top-up is")
    fn = client.contract.functions.topUp(channel.channel_id, amount)
    return _paying(chain, address, token, amount, client.address, fn, "topUp")


def prepare_extend(chain, address, data, model_id, score):
    client, channel = _my_channel(chain, address, data)
    days = _whole(data.get("days"), "number of days", MAX_CHANNEL_DAYS)
    expires_at = max(channel.expires_at, chain_now(chain)) + days * 86400
    return client.contract.functions.extend(channel.channel_id, expires_at), 0, {}


def prepare_reclaim(chain, address, data, model_id, score):
    client, channel = _my_channel(chain, address, data)
    return client.contract.functions.reclaim(channel.channel_id), 0, {}


def _deposit(token: Token, text, what: str) -> int:
    amount = token.parse(str(text if text is not None else ""), what)
    if amount <= 0:
        raise InputError(f"The {what} must be more than 0 {token.symbol}.")
    return amount


def _my_channel(chain, address: str, data: dict):
    """The Channels client and the channel ``channelId`` names, which ``address`` opened."""
    client = _channels(chain)
    text = str(data.get("channelId", "")).strip()
    if not text.isdigit():
        raise InputError("channelId must be the number of one of your payment channels.")
    channel = client.channel(int(text))
    if channel.buyer.lower() != address.lower():
        raise InputError(f"Payment channel #{text} is not yours: only its buyer may change it.")
    return client, channel


def _browser_wallet() -> str:
    address = session.get("browser_wallet")
    if not address:
        raise InputError("Connect a browser wallet first (Wallet page).")
    return address


def _served(model_id: int) -> None:
    model_or_404(model_id)
    if model_id not in (current_app.config.get("MODEX_MODELS") or {}):
        raise InputError(
            f"This node does not serve model {model_id}: Try it runs on the node that serves it."
        )


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InputError("Send a JSON object in the request body.")
    return data


@bp.route("/api/models/<int:model_id>/try/typed-data", methods=["POST"])
def try_typed_data(model_id: int):
    """What the connected browser wallet signs for Try it: the request's EIP-712 typed data, and
    the voucher's when its channel pays (payments.try_to_sign)."""
    address = _browser_wallet()
    _served(model_id)
    text = str(_json_body().get("text") or "").strip()
    return jsonify(try_to_sign(address, model_id, text))


@bp.route("/api/models/<int:model_id>/try", methods=["POST"])
def try_signed(model_id: int):
    """Try it with the request (and voucher) the page signed: the service's answer, with the
    sentence the page shows in its Try it box and the channel's credit left."""
    address = _browser_wallet()
    _served(model_id)
    data = _json_body()
    status, answer, paid_with = run_signed_try(address, model_id, data)
    if status != 200:
        sentence = answer.get("error") or "The inference server refused the request."
        code = answer.get("code") or "refused"
        return jsonify(error={"code": code, "message": sentence}), status
    text = str(data["inputs"][0])
    remember_answer(model_id, text, answer)  # for "wrong? correct it" (app.feedback)
    said = answer_sentence(text, answer, paid_with)
    return jsonify(answer | {"said": said, "left": _credit_left(model_id, address, data)})


def _credit_left(model_id: int, address: str, signed: dict) -> str | None:
    """The paying channel's credit as the model page shows it, after the call."""
    if "channelId" not in signed:
        return None
    ways = model_payments(model_id, address)
    for channel in ways.channels:
        if channel.channel_id == int(signed["channelId"]):
            return (
                f"{ways.token.format(ways.left(channel))} of {ways.token.format(channel.deposit)}"
            )
    return None
