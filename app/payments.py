"""The three ways to pay for a model's service (issue 14 §5) as the model and wallet pages show
them, and Try it's choice among them. No blueprint: the market and wallet views and the paying
blueprint read them alike.

    model_payments(model_id, address)   the listing's token and prices, the wallet's licence or
                                        subscription and its channels on the model
    shown_payments(model_id, address)   the same for the model page, its terms from the index
    try_model(signer, model_id, text)   Try it paid with the licence or subscription, else with a
                                        voucher on the wallet's open channel; (status, body, how)
    try_to_sign(address, model_id, text)    Try it for a browser wallet: the request's EIP-712
                                        typed data (and the voucher's) for the page to sign
    run_signed_try(address, model_id, body) the request the page signed, handed to the service
    wallet_payments(address)            balances and credits per token, subscriptions, channels
    claimable(address)                  the vouchers this node's service holds for the address's
                                        models, not claimed yet

Vouchers signed for Try it are remembered per wallet in <data dir>/vouchers/<address>.json, the
same record `modex call --channel` keeps (node.channels.VoucherBook): the amount of the
last voucher a call was served for, and the highest ever signed (for a browser wallet: the
highest this node asked its page to sign).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

from app.inference import call_inference, handle_signed
from app.resources import data_dir, get_chain, get_indexer
from ml.signing import DEFAULT_TTL, inputs_digest, typed_data, with_voucher
from node import market
from node.amounts import Token
from node.channels import ChannelClient, ChannelState, VoucherBook, voucher_typed_data
from node.errors import InputError
from node.fetch import sale_terms
from node.revert_sentences import when
from node.subscriptions import SubscriptionOffer, access_until, has_access, subscription_offer
from node.tokens import payment_token

# A channel Try it pays on must outlive the call by the service's own margin (ml/payment.py
# refuses a channel expiring within 5 minutes): one closer to its end is offered no more.
CHANNEL_MARGIN_S = 5 * 60

_voucher_lock = threading.Lock()  # one voucher at a time per process: each is the last one + price


def channels_client(chain) -> ChannelClient | None:
    """The deployment's Channels client, or None where it has no Channels contract."""
    return ChannelClient.for_chain(chain) if "Channels" in chain.contracts else None


def chain_now(chain) -> int:
    """The later of the latest block's time and this machine's clock (a dev chain's blocks may
    lag the clock; the service checks expiries against its own clock)."""
    return max(int(chain.w3.eth.get_block("latest")["timestamp"]), int(time.time()))


def indexed_now(indexer) -> int:
    """``chain_now`` as the index tells it, without a call: the later of the latest block time
    the index keeps and this machine's clock."""
    return max(indexer.latest_block_time() or 0, int(time.time()))


@dataclass
class ModelPayments:
    """What the model page's "ways to pay" box shows for one listing and wallet."""

    token: Token
    price: int
    offer: SubscriptionOffer
    call_price: int
    now: int
    access: bool = False  # a licence or a live subscription (Marketplace.hasAccess)
    subscribed_until: int = 0  # 0: never subscribed
    channels: list[ChannelState] = field(default_factory=list)  # the wallet's, on this model
    spent: dict[int, int] = field(default_factory=dict)  # channel id -> spent (spent_on)

    @property
    def price_text(self) -> str:
        return self.token.format(self.price)

    @property
    def price_input(self) -> str:
        """The price as the maximum-price field takes it: the number without the symbol."""
        return self.price_text.rsplit(" ", 1)[0]

    @property
    def call_price_text(self) -> str:
        return self.token.format(self.call_price)

    @property
    def subscribed(self) -> bool:
        return self.subscribed_until > self.now

    def left(self, channel: ChannelState) -> int:
        """What the channel can still pay: its deposit less what vouchers spent of it."""
        return channel.deposit - self.spent.get(channel.channel_id, channel.claimed)

    def usable_channel(self) -> ChannelState | None:
        """The wallet's open channel on this model that can pay one more call, if any."""
        for channel in self.channels:
            live = channel.expires_at > self.now + CHANNEL_MARGIN_S
            if channel.open and live and self.left(channel) >= self.call_price > 0:
                return channel
        return None

    @property
    def try_with(self) -> str | None:
        """How Try it would pay now: "subscription", "licence", "channel", or None."""
        if self.access:
            return "subscription" if self.subscribed else "licence"
        return "channel" if self.usable_channel() else None


def model_payments(model_id: int, address: str | None) -> ModelPayments:
    """The listing's terms read from the chain's latest block, and the wallet's access and
    channels: what paying (Try it, a voucher's amount) decides by."""
    chain = get_chain()
    client = channels_client(chain)
    found = ModelPayments(
        token=payment_token(chain, model_id),
        price=sale_terms(chain, model_id).price,
        offer=subscription_offer(chain, model_id),
        call_price=client.call_price(model_id) if client else 0,
        now=chain_now(chain),
    )
    return _with_wallet(found, chain, client, model_id, address)


def shown_payments(model_id: int, address: str | None) -> ModelPayments:
    """The model page's ways to pay: the terms as the index holds them (the block the rest of
    the page shows: no chain call; ``model_payments`` where the index lacks the model), the
    wallet's access and channels from the chain. A wallet's channels are read only when the
    model has a price per call: the page shows them, and pays with them, only then."""
    indexer = get_indexer()
    terms = indexer.sale_terms(model_id)
    if terms is None:
        return model_payments(model_id, address)
    chain = get_chain()
    token = chain.token(terms.payment_token)
    found = ModelPayments(
        token=token,
        price=terms.price,
        offer=SubscriptionOffer(terms.subscription_price, terms.subscription_period, token),
        call_price=terms.call_price,
        now=indexed_now(indexer),
    )
    client = channels_client(chain) if terms.call_price else None
    return _with_wallet(found, chain, client, model_id, address)


def _with_wallet(found: ModelPayments, chain, client, model_id: int, address: str | None):
    """``found`` with ``address``'s licence or subscription and, with a Channels ``client``,
    its channels on the model and what it spent of them."""
    if address:
        found.access = has_access(chain, model_id, address)
        found.subscribed_until = access_until(chain, model_id, address)
        if client is not None:
            mine = client.channels_of(address, from_block=_deployed_at(chain))
            found.channels = [c for c in mine if c.model_id == model_id]
            found.spent = spent_on(address, chain, client, found.channels)
    return found


def spent_on(address: str, chain, client, channels: list[ChannelState]) -> dict[int, int]:
    """Channel id -> what ``address`` spent on it: the vouchers this node signed for its calls
    (the wallet's voucher record), or what the seller claimed when that is more."""
    book = voucher_book(address, chain, client)
    return {c.channel_id: max(c.claimed, book.get(c.channel_id, "used")) for c in channels}


def _deployed_at(chain) -> int:
    return int(chain.deployment.get("block") or 0)


def voucher_book(address: str, chain, client: ChannelClient) -> VoucherBook:
    path = Path(data_dir()) / "vouchers" / f"{address.lower()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return VoucherBook(path, chain.chain_id, client.address)


def try_model(signer, model_id: int, text: str) -> tuple[int, dict, str]:
    """Run Try it for the session's wallet: (HTTP status, answer or error, how it was paid in
    words)."""
    ways = model_payments(model_id, signer.address)
    channel = None if ways.access else ways.usable_channel()
    if channel is None:
        status, body = call_inference(signer, model_id, [text])
    else:
        with _voucher_lock:
            status, body = _pay_on_channel(signer, model_id, text, channel, ways.call_price)
    return status, body, paid_words(body.get("paidWith") or {}, ways)


def paid_words(paid: dict, ways: ModelPayments) -> str:
    """How the service says a call was paid (its ``paidWith``), in words."""
    if paid.get("kind") == "voucher":
        spent = int(paid.get("cumulativeAmount") or 0)
        return (
            f"paid by a voucher on channel #{paid.get('channelId')} "
            f"({ways.token.format(spent)} spent on it so far)"
        )
    if paid.get("kind") == "trial":
        return "a free trial call"
    return f"paid with your {ways.try_with or 'licence'}"


def answer_sentence(text: str, answer: dict, paid_with: str) -> str:
    """The sentence Try it shows for the service's answer to ``text``: the first label, its
    score, and how the call was paid (the keystore form and the browser wallet's route alike)."""
    first = (answer.get("outputs") or [{}])[0]
    note = " (input truncated)" if first.get("truncated") else ""
    return f"“{text[:80]}” → {first.get('label')} ({first.get('score', 0):.2f}){note} · {paid_with}"


def _pay_on_channel(signer, model_id: int, text: str, channel: ChannelState, price: int):
    """Try it with the next voucher on ``channel``; once more above the amount the service holds
    after a 409 voucher_stale, when this wallet's record signed that much (as modex call does)."""
    chain = get_chain()
    client = channels_client(chain)
    book = voucher_book(signer.address, chain, client)
    number = channel.channel_id

    def signed_for(amount: int):
        book.set(number, signed=max(amount, book.get(number, "signed")))  # before it is sent
        return lambda body: with_voucher(
            body,
            signer,
            chain_id=chain.chain_id,
            channels_address=client.address,
            channel_id=number,
            cumulative_amount=amount,
        )

    amount = book.get(number, "used") + price
    status, body = call_inference(signer, model_id, [text], pay=signed_for(amount))
    if status == 409 and body.get("code") == "voucher_stale":
        held = int(body.get("acceptedAmount") or 0)
        if held <= book.get(number, "signed"):
            amount = held + price
            status, body = call_inference(signer, model_id, [text], pay=signed_for(amount))
    if status == 200:
        book.set(number, used=amount)
    return status, body


# The fields of a request body the page may send back signed (docs/inference-api.md).
SIGNED_FIELDS = (
    "modelId",
    "inputs",
    "nonce",
    "deadline",
    "signature",
    "signer",
    "channelId",
    "cumulativeAmount",
    "voucherSignature",
)


def try_to_sign(address: str, model_id: int, text: str) -> dict:
    """Try it for a browser wallet, which signs in the page (eth_signTypedData_v4): the request's
    unsigned body, its EIP-712 typed data (``request``) and, for a call paid on the wallet's
    channel, the next voucher's (``voucher``: the last amount served + the call price, as
    try_model signs it); ``paying`` says how. InputError, before the wallet opens, when the
    wallet has nothing to pay with (this node's service offers no free trial calls)."""
    if not text:
        raise InputError("Type a sentence to classify.")
    ways = model_payments(model_id, address)
    channel = None if ways.access else ways.usable_channel()
    if not ways.access and channel is None:
        raise InputError(why_unpaid(ways, model_id))
    chain = get_chain()
    nonce, deadline = secrets.randbits(128), int(time.time()) + DEFAULT_TTL
    request = typed_data(
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
        model_id=model_id,
        digest=inputs_digest([text]),
        nonce=nonce,
        deadline=deadline,
    )
    request["message"]["nonce"] = str(nonce)  # 128 bits: more than a JavaScript number holds
    body = {
        "modelId": model_id,
        "inputs": [text],
        "nonce": str(nonce),
        "deadline": deadline,
        "signer": address,
    }
    asked = {"request": request, "voucher": None, "paying": ways.try_with, "body": body}
    if channel is not None:
        client = channels_client(chain)
        book = voucher_book(address, chain, client)
        number = channel.channel_id
        amount = book.get(number, "used") + ways.call_price
        book.set(number, signed=max(amount, book.get(number, "signed")))  # before it is signed
        voucher = voucher_typed_data(chain.chain_id, client.address, number, amount)
        voucher["message"] = {"channelId": str(number), "cumulativeAmount": str(amount)}
        asked["voucher"] = voucher
        body |= {"channelId": str(number), "cumulativeAmount": str(amount)}
    return asked


def why_unpaid(ways: ModelPayments, model_id: int) -> str:
    """Why Try it cannot be paid now (no licence, no live subscription, no usable channel), and
    what to do about it."""
    if ways.subscribed_until:
        ended = f"Your subscription to model {model_id} ended at {when(ways.subscribed_until)}"
        return f"{ended}: extend it or open a payment channel (Use the service), then Try it."
    open_channels = [channel for channel in ways.channels if channel.open]
    if open_channels and not ways.call_price:
        return f"Model {model_id}'s seller charges no price per call now: a channel cannot pay it."
    for channel in open_channels:
        if channel.expires_at <= ways.now + CHANNEL_MARGIN_S:
            return (
                f"Your payment channel #{channel.channel_id} expires at {when(channel.expires_at)}, "
                "too soon to pay a call: extend it on the Wallet page or open another."
            )
        return (
            f"Your payment channel #{channel.channel_id} has {ways.token.format(ways.left(channel))} "
            f"left, less than one call ({ways.call_price_text}): its deposit is spent. Top it up "
            "on the Wallet page or open another."
        )
    if ways.channels:
        return (
            f"Your payment channels on model {model_id} are closed: open a new one (Use the "
            "service) to pay per call."
        )
    return (
        f"You have no licence, subscription or payment channel for model {model_id}: buy it, "
        "subscribe or open a payment channel (Use the service), then Try it."
    )


def run_signed_try(address: str, model_id: int, signed: dict) -> tuple[int, dict, str]:
    """Hand the request the page signed to the service: (HTTP status, answer or error, how it
    was paid in words). A voucher served is recorded as the channel's last; a 409 voucher_stale
    (the service holds a higher voucher this node asked the wallet to sign) moves the record up
    to it, so that the page's next request signs the amount after it."""
    body = {k: signed[k] for k in SIGNED_FIELDS if k in signed}
    if str(body.get("signer", "")).lower() != address.lower():
        raise InputError(f"Sign the request with the connected wallet, {address}.")
    if body.get("modelId") != model_id:
        raise InputError(f"The signed request is for another model than model {model_id}.")
    ways = model_payments(model_id, address)
    status, answer = handle_signed(body)
    if "channelId" in body:
        chain = get_chain()
        book = voucher_book(address, chain, channels_client(chain))
        number = int(body["channelId"])
        paid = answer.get("paidWith") or {}
        if status == 200 and paid.get("kind") == "voucher":
            book.set(number, used=max(int(paid["cumulativeAmount"]), book.get(number, "used")))
        held = int(answer.get("acceptedAmount") or 0)
        if answer.get("code") == "voucher_stale" and held <= book.get(number, "signed"):
            book.set(number, used=held)
    return status, answer, paid_words(answer.get("paidWith") or {}, ways)


@dataclass
class TokenLine:
    """One token's row on the wallet page."""

    token: Token
    balance: int
    credited: int  # Marketplace: sales and refunds, withdrawable
    channel_credit: int  # Channels: claimed vouchers, withdrawable

    def text(self, amount: int) -> str:
        return self.token.format(amount)


def wallet_payments(address: str) -> dict:
    """The wallet page's payments: per token (ETH and each the index knows) the balance and the
    credits to withdraw; the subscriptions (from the index) and the channels (from the chain)."""
    chain, indexer = get_chain(), get_indexer()
    client = channels_client(chain)
    lines = [
        TokenLine(
            token,
            chain.balance_in(token, address),
            market.credited(chain, address, token),
            client.credited(address, token.address) if client else 0,
        )
        for token in indexer.payment_tokens()
    ]
    channels = client.channels_of(address, from_block=_deployed_at(chain)) if client else []
    spent = spent_on(address, chain, client, channels) if client else {}
    return {
        "tokens": lines,
        "subscriptions": indexer.subscriptions_of(address),
        "channels": [(c, chain.token(c.token), spent[c.channel_id]) for c in channels],
        "claimable": claimable(address),
        "now": chain_now(chain),
    }


def claimable(address: str) -> list[tuple[ChannelState, int, bytes, Token]]:
    """The vouchers this node's inference service holds, not claimed yet, on channels paying a
    model ``address`` owns: (channel, cumulative amount, signature, the channel's token)."""
    store = current_app.extensions.get("modex.service_store")
    chain = get_chain()
    client = channels_client(chain)
    if store is None or client is None:
        return []
    indexer = get_indexer()
    found = []
    for channel_id, amount, signature, claimed in store.vouchers_to_claim():
        if int(amount) <= int(claimed):
            continue
        channel = client.channel(int(channel_id))
        listing = indexer.get_model(channel.model_id)
        owner = (listing or {}).get("owner") or ""
        if owner.lower() == address.lower() and channel.claimed < int(amount):
            found.append((channel, int(amount), bytes(signature), chain.token(channel.token)))
    return found
