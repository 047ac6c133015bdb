"""Subscriptions: time-limited access to a model's service (issue 14 §2), and the seller's
terms of sale (the token a listing is priced in, its price, its subscription offer).

A subscription buys calls to the seller's running service, not the weights: ``subscribe`` pays
``periods`` times the price per period in the listing's token (``node.tokens.pay``: approved
first for an ERC-20) and the access runs from the later of now and the current expiry
(``Marketplace.accessUntil``). ``Marketplace.hasAccess`` is true for a licence or a live
subscription. The payment is credited to the model's owner at once, less the fee.

A seller changes what a listing is priced in with ``set_terms``, in an order that never offers
the model cheaply in the wrong unit: the price is raised to the registry's maximum (and a
subscription offer withdrawn) before the token changes, and set in the new token's units after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from web3.logs import DISCARD

from node.amounts import Token, fmt_amount, fmt_subscription
from node.errors import ChainError, InputError
from node.fetch import sale_terms
from node.protocol import SubscriptionTerms
from node.tokens import check_max_price, pay, payment_token, require_funds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubscriptionOffer:
    """A model's subscription terms (``node.protocol.SubscriptionTerms``: the price of one
    period, the period in seconds; a price of 0: none offered) with the token they are in."""

    price_per_period: int
    period: int
    token: Token

    @property
    def offered(self) -> bool:
        return self.price_per_period > 0

    @property
    def text(self) -> str:
        """``5 mUSD per 30 days`` (or that none is offered)."""
        if not self.offered:
            return "no subscription offered"
        return fmt_subscription(self.price_per_period, self.period, self.token)


def subscription_offer(chain, model_id: int) -> SubscriptionOffer:
    """The subscription ``model_id`` offers now; ChainError for an unknown model."""
    sale_terms(chain, model_id)  # "model N is not listed" for an unknown id
    terms = SubscriptionTerms.from_call(
        chain.call(chain.registry.functions.subscriptionTerms(model_id))
    )
    return SubscriptionOffer(
        terms.price_per_period, terms.period_seconds, payment_token(chain, model_id)
    )


@dataclass(frozen=True)
class Subscription:
    """A subscription paid for: ``account`` may call the model's service until ``expires_at``."""

    model_id: int
    account: str
    periods: int
    paid: int  # in ``token``
    token: Token
    expires_at: int  # a block timestamp
    tx_hash: str

    @property
    def paid_text(self) -> str:
        return fmt_amount(self.paid, self.token)


def subscribe(
    chain, signer, model_id: int, periods: int, *, max_price: int | None = None
) -> Subscription:
    """Subscribe to ``model_id``'s service for ``periods`` periods: check the offer, the total
    against ``max_price`` (in the listing's token) and the signer's funds before anything is
    sent, pay, and return until when the access runs."""
    if periods < 1:
        raise InputError("Subscribe for 1 period or more.", what="periods")
    terms = subscription_offer(chain, model_id)
    if not terms.offered:
        raise ChainError(
            f"model {model_id} offers no subscription (its seller has not set one); nothing "
            "was sent",
            model_id=model_id,
        )
    if not sale_terms(chain, model_id).active:
        raise ChainError(
            f"model {model_id} is not for sale (the seller deactivated it); nothing was sent",
            model_id=model_id,
        )
    total = terms.price_per_period * periods
    what = f"{periods} period{'s' if periods != 1 else ''} of {terms.text} cost"
    if periods == 1:
        what = f"1 period of {terms.text} costs"
    check_max_price(total, max_price, terms.token, what, model_id=model_id)
    require_funds(chain, signer.address, terms.token, total, what)
    cap = total if max_price is None else max_price
    receipt = pay(
        chain,
        signer,
        chain.marketplace.functions.subscribe(model_id, periods, cap),
        terms.token,
        total,
    )
    events = chain.marketplace.events.Subscribed().process_receipt(receipt, errors=DISCARD)
    if not events:
        raise ChainError(
            "the subscription was mined but emitted no Subscribed event; check the "
            "deployment file's Marketplace address"
        )
    subscription = Subscription(
        model_id,
        signer.address,
        periods,
        total,
        terms.token,
        int(events[0]["args"]["expiresAt"]),
        "0x" + bytes(receipt["transactionHash"]).hex(),
    )
    log.info(
        "subscribed to model %d until %d for %s",
        model_id,
        subscription.expires_at,
        subscription.paid_text,
    )
    return subscription


def access_until(chain, model_id: int, account: str) -> int:
    """When ``account``'s subscription to ``model_id`` ends (0: never subscribed)."""
    return int(chain.call(chain.marketplace.functions.accessUntil(model_id, account)))


def has_access(chain, model_id: int, account: str) -> bool:
    """Whether ``account`` may use ``model_id``'s service now: a licence or a live subscription."""
    return bool(chain.call(chain.marketplace.functions.hasAccess(model_id, account)))


def set_terms(
    chain,
    signer,
    model_id: int,
    *,
    token: Token,
    price: int,
    subscription: tuple[int, int] | None = None,
) -> list:
    """Price ``model_id`` in ``token`` at ``price`` (in its units) and, when given, offer a
    subscription of ``(price_per_period, period_seconds)`` in it; (0, 0) withdraws an offer.
    Sends only what changes; returns the receipts. When the token changes, the price is first
    raised to the registry's maximum and any subscription offer withdrawn, so that no moment
    prices the model in the new token at a number meant for the old one."""
    registry = chain.registry.functions
    current_token = payment_token(chain, model_id)
    current_price = sale_terms(chain, model_id).price
    offered = subscription_offer(chain, model_id)
    receipts = []

    def send(fn):
        receipts.append(chain.transact(fn, signer))

    if current_token.address != token.address:
        highest = int(chain.call(registry.MAX_PRICE()))
        if current_price != highest:
            send(registry.setPrice(model_id, highest))
            current_price = highest
        if offered.offered:
            send(registry.setSubscription(model_id, 0, 0))
            offered = SubscriptionOffer(0, 0, token)
        send(registry.setPaymentToken(model_id, token.address))
        log.info("model %d: priced in %s from now on", model_id, token.symbol)
    if current_price != price:
        send(registry.setPrice(model_id, price))
    if subscription is not None and subscription != (offered.price_per_period, offered.period):
        send(registry.setSubscription(model_id, *subscription))
    return receipts
